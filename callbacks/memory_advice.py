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

    pack_length = getattr(data, "pack_length", None)
    if pack_length:
        fixes = packed_fixes(pack_length, max_tokens, accumulate)
    else:
        fixes = padded_fixes(stage, batch, getattr(data, "eval_batch_size", None), max_tokens, max_length, accumulate)
    if checkpointing is False:
        fixes.append("--model.gradient_checkpointing true (about 30% slower)")
    if not pack_length and max_length and max_length > 128:
        fixes.append(f"--data.max_length {max_length * 3 // 4} (cuts more dialogues)")
    fixes = fixes or ["a smaller --data.batch_size or --data.max_length, or --model.gradient_checkpointing true"]

    settings = (
        (f"pack_length={pack_length}" if pack_length else f"batch_size={batch}")
        + f", max_tokens={max_tokens}, max_length={max_length}, "
        f"gradient_checkpointing={checkpointing}, accumulate_grad_batches={accumulate}"
    )
    step = getattr(trainer, "global_step", None)
    where = f"CUDA out of memory in {stage}" + (f" at step {step}" if step is not None else "")
    return f"{where} ({settings}); to need less memory use one or more of: {'; '.join(fixes)}; then resume with --ckpt_path last"


def packed_fixes(pack_length: int, max_tokens: int | None, accumulate: int) -> list[str]:
    """Packed batches are ``max_tokens // pack_length`` rows in every stage: ``batch_size`` and
    ``eval_batch_size`` don't apply, and a shorter ``max_length`` doesn't shrink a row."""
    if not isinstance(max_tokens, int) or max_tokens <= pack_length:
        return []
    half = max(pack_length, max_tokens // 2 // pack_length * pack_length)
    same = " (same tokens per optimizer step)" if 2 * half == max_tokens else ""
    return [f"--data.max_tokens {half} --trainer.accumulate_grad_batches {accumulate * 2}{same}"]


def padded_fixes(
    stage: str,
    batch: int | None,
    eval_batch: int | None,
    max_tokens: int | None,
    max_length: int | None,
    accumulate: int,
) -> list[str]:
    """Padded batches: fewer rows (with more accumulation), a lower token cap, or smaller eval batches."""
    fixes = []
    if stage in ("validate", "test", "predict", "sanity_check") and eval_batch and eval_batch > 1:
        fixes.append(f"--data.eval_batch_size {eval_batch // 2}")
    if batch and batch > 1:
        # Half the batch, twice the accumulation: the same examples per optimizer step.
        fixes.append(
            f"--data.batch_size {batch // 2} --trainer.accumulate_grad_batches {accumulate * 2} (same effective batch)"
        )
    if batch and max_length:
        cap = (max_tokens or batch * max_length) // 2
        fixes.append(f"--data.max_tokens {max(cap, max_length)} (caps padded tokens per batch)")
    return fixes
