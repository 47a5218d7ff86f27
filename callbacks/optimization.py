"""The optimizer's side of a run: learning rate and gradient norm, on the optimizer-step axis."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from callbacks.cadence import log_metrics, log_point


class OptimizerStats(Callback):
    """Logs ``train/lr`` and ``train/grad_norm`` at every log point.

    ``train/lr`` is the rate the log point's optimizer step used (the first parameter group's).
    ``train/grad_norm`` is the mean, over the optimizer steps since the last log point, of the
    L2 norm of all trainable gradients, after accumulation and AMP unscaling and before
    ``gradient_clip_val`` clips them: how often it sits above the clip value says how much
    clipping shapes the run.
    """

    def __init__(self) -> None:
        self._step = 0
        self._norms: list[torch.Tensor] = []
        self._lr = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step = trainer.global_step

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        grads = [p.grad.detach() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            # Summed on the device: no host sync until a log point.
            self._norms.append(
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
            )
        self._lr = float(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if trainer.global_step == self._step:
            return  # still accumulating
        self._step = trainer.global_step
        if not log_point(trainer):
            return
        metrics = {"train/lr": self._lr}
        if self._norms:
            metrics["train/grad_norm"] = torch.stack(self._norms).mean().item()
        log_metrics(trainer, metrics)
        self._norms = []
