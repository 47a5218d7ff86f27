"""Training speed in the units that matter: real (non-padding) tokens per second, padding, memory.

Tokens per second counts only tokens the attention mask marks real, so a batching change that
trades padding for rows shows as what it is. The clock runs from one training batch's end to the
next, so data loading and checkpoint writes count, and it stops from the start of a validation
to the first training batch after it, so validation, sample generation and figure drawing don't.

Not Lightning's ``ThroughputMonitor``: its ``length_fn`` could count real tokens, but it has no
padding fraction or peak memory, multiplies rank 0's count by the world size instead of summing
every rank's, logs nothing until its window of batches (100) has filled, averages over that
window rather than the log window, and waits for the GPU (``torch.cuda.synchronize``) after every
micro-batch.
"""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from callbacks.cadence import log_metrics, log_point


class Throughput(Callback):
    """Logs ``train/tokens_per_sec``, ``train/padding_fraction`` and ``train/peak_memory_gib``.

    Each value covers the ``log_every_n_steps`` optimizer steps since the last log point. Tokens
    are summed over all devices (DDP); the time is this process's. Peak memory is the CUDA
    allocator's peak since the start, logged on CUDA devices only. The progress bar shows
    ``train/tokens_per_sec`` of this process's window so far.
    """

    def __init__(self) -> None:
        self._step = 0
        self._mark: float | None = None  # when the clock last read; None while it is stopped
        self._seconds = 0.0
        self._real = 0  # python ints, or device tensors summed without a sync per batch
        self._grid = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if self._mark is None:
            self._mark = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self._seconds += now - (self._mark if self._mark is not None else now)
        self._mark = now
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        if mask is not None:
            self._real = self._real + mask.sum()
            self._grid += mask.numel()
        if trainer.global_step == self._step:
            return  # still accumulating
        self._step = trainer.global_step
        if self._seconds > 0 and self._grid:
            # The progress bar shows this process's window so far; a whole number prints as 1234.0, not 1.23e+3.
            pl_module.log("train/tokens_per_sec", round(int(self._real) / self._seconds), prog_bar=True, logger=False)
        if not log_point(trainer):
            return
        # Every rank reaches each log point: the sums cover all devices (a no-op on one).
        counts = torch.stack(
            [torch.as_tensor(x, dtype=torch.float64, device=pl_module.device) for x in (self._real, self._grid)]
        )
        real, grid = trainer.strategy.reduce(counts, reduce_op="sum").tolist()
        if self._seconds > 0 and grid:
            metrics = {"train/tokens_per_sec": real / self._seconds, "train/padding_fraction": 1 - real / grid}
            if pl_module.device.type == "cuda":
                metrics["train/peak_memory_gib"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**30
            log_metrics(trainer, metrics)
        self._seconds, self._real, self._grid = 0.0, 0, 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step = trainer.global_step

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._mark is not None:
            self._seconds += time.perf_counter() - self._mark
            self._mark = None
