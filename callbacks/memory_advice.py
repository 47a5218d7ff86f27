"""Answer a CUDA out-of-memory error with the settings that lower memory, in one message."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class OutOfMemoryAdvice(Callback):
    """Remembers, when a run dies of CUDA out-of-memory, which settings would lower its memory.

    ``train.py`` prints :attr:`advice` as its one-line ``error:``; the callback only reads the
    trainer, module and data module, so it works with any of them.
    """

    def __init__(self) -> None:
        self.advice: str | None = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, torch.OutOfMemoryError):
            self.advice = memory_advice(trainer, pl_module)


def memory_advice(trainer: L.Trainer | None = None, module: L.LightningModule | None = None) -> str:
    """What ran out of memory, with which settings, and the flags that need less."""
    data = getattr(trainer, "datamodule", None)
    batch = getattr(data, "batch_size", None)
    max_tokens = getattr(data, "max_tokens", None)
    max_length = getattr(data, "max_length", None)
    accumulate = getattr(trainer, "accumulate_grad_batches", 1)
    checkpointing = getattr(module, "gradient_checkpointing", None)
    stage = getattr(getattr(trainer, "state", None), "stage", None)
    stage = getattr(stage, "value", "") or "the run"

    fixes = []
    if stage in ("validate", "test", "predict", "sanity_check"):
        eval_batch = getattr(data, "eval_batch_size", None)
        if eval_batch and eval_batch > 1:
            fixes.append(f"--data.eval_batch_size {eval_batch // 2}")
    if batch and batch > 1:
        # Half the batch, twice the accumulation: the same examples per optimizer step.
        fixes.append(
            f"--data.batch_size {batch // 2} --trainer.accumulate_grad_batches {accumulate * 2} (same effective batch)"
        )
    if checkpointing is False:
        fixes.append("--model.gradient_checkpointing true (about 30% slower)")
    if batch and max_length:
        cap = (max_tokens or batch * max_length) // 2
        fixes.append(f"--data.max_tokens {max(cap, max_length)} (caps padded tokens per batch)")
    if max_length and max_length > 128:
        fixes.append(f"--data.max_length {max_length * 3 // 4} (cuts more dialogues)")
    fixes = fixes or ["a smaller --data.batch_size or --data.max_length, or --model.gradient_checkpointing true"]

    settings = (
        f"batch_size={batch}, max_tokens={max_tokens}, max_length={max_length}, "
        f"gradient_checkpointing={checkpointing}, accumulate_grad_batches={accumulate}"
    )
    step = getattr(trainer, "global_step", None)
    where = f"CUDA out of memory in {stage}" + (f" at step {step}" if step is not None else "")
    return f"{where} ({settings}); to need less memory use one or more of: {'; '.join(fixes)}; then resume with --ckpt_path last"
