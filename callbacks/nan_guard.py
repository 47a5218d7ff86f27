"""Stop a run at the first NaN or infinite training loss, before it reaches the weights."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step and the checkpoint to go back to."""


class NanGuard(Callback):
    """Raises :class:`NonFiniteLossError` when a training loss is not finite.

    The check runs before ``backward``, so the bad step never updates the adapters and the last
    checkpoint, and every one before it, holds finite weights. It costs one scalar read per batch.
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        finite = bool(torch.isfinite(loss.detach()).all())
        if getattr(trainer, "world_size", 1) > 1:
            # Every rank must stop together, or the others hang in the next gradient all-reduce.
            finite = not trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if finite:
            return
        value = loss.detach().float().flatten()[0].item()
        raise NonFiniteLossError(
            f"the training loss is {value} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"the run stopped before this step changed the weights. Last good checkpoint: {last_checkpoint(trainer)}. "
            "Resume from it with a lower --model.optimizer.init_args.lr, --trainer.gradient_clip_val 1.0, "
            "or --trainer.precision bf16-mixed instead of 16-mixed"
        )


def last_checkpoint(trainer: L.Trainer) -> str:
    """The newest checkpoint this run wrote, else the one it resumed from, else ``none yet``."""
    for callback in trainer.checkpoint_callbacks:
        path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
        if path:
            return f"{path} (--ckpt_path {path})"
    if trainer.ckpt_path:
        return f"{trainer.ckpt_path} (--ckpt_path {trainer.ckpt_path})"
    return "none yet (the run had saved no checkpoint)"
