"""Lightning's two cadences counted in optimizer steps, across epochs and under gradient accumulation.

Lightning counts ``val_check_interval`` in training batches: with ``accumulate_grad_batches: 4``
a value of 100 validates every 25 optimizer steps, and when an epoch's batch count is not a
multiple of 4 (Lightning steps on the last, partial window) the two counts drift apart at every
epoch boundary. Researchers read curves against optimizer steps, so both cadences use them:

- ``log_every_n_steps``: the telemetry callbacks log after every N-th optimizer step, at step N
  (``log_point``).
- ``val_check_interval`` (an int, with ``check_val_every_n_epoch: null``): ``OptimizerStepCadence``
  runs validation right after every N-th optimizer step.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from callbacks.lightning_internals import validate_after_this_batch


def log_point(trainer: L.Trainer) -> bool:
    """True when the optimizer step just taken is one of every ``trainer.log_every_n_steps``."""
    every = trainer.log_every_n_steps
    return every > 0 and trainer.global_step > 0 and trainer.global_step % every == 0


def log_metrics(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """Write scalars to every logger at the optimizer step (``trainer.global_step``)."""
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


class OptimizerStepCadence(Callback):
    """Validates right after every ``val_check_interval``-th optimizer step.

    Takes effect when ``val_check_interval`` is an int and ``check_val_every_n_epoch`` is null;
    otherwise Lightning's own (per-epoch or fractional) schedule is left alone. Without gradient
    accumulation it validates exactly where Lightning would.
    """

    def __init__(self) -> None:
        self._step = 0

    def _applies(self, trainer: L.Trainer) -> bool:
        interval = trainer.val_check_interval
        return isinstance(interval, int) and interval > 0 and trainer.check_val_every_n_epoch is None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step = trainer.global_step
        if self._applies(trainer) and trainer.global_step > 0:
            # A resumed run asks, before its first batch, whether it stopped on a validation point.
            validate_after_this_batch(trainer, trainer.global_step % trainer.val_check_interval == 0)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if not self._applies(trainer):
            return
        stepped, self._step = trainer.global_step != self._step, trainer.global_step
        validate_after_this_batch(trainer, stepped and trainer.global_step % trainer.val_check_interval == 0)
