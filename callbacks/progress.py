"""Progress in optimizer steps out of the planned total, with tokens/s and the time left.

In a terminal: one tqdm bar for the whole run, ``412/1000`` optimizer steps (right after a
resume too: it starts at the resumed step and its rate and ETA count only this process's steps),
the loss, ``val_loss`` and ``tok/s``. With stdout redirected to a file (a cluster's log): no bar,
but one plain line every ``log_every_n_steps`` optimizer steps::

    step 50/1000 (5%) | epoch 0 | loss 1.873 | val_loss 1.902 | 9,865 tok/s | 0:01:12 elapsed, ETA 0:22:48
"""

from __future__ import annotations

import importlib
import sys
import time
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from callbacks.cadence import log_point

SHORT_NAMES = {"train/loss": "loss", "val/loss": "val_loss", "train/tokens_per_sec": "tok/s"}


class StepProgress(TQDMProgressBar):
    """A training bar (or plain log lines) counting optimizer steps; validation bars as Lightning's.

    Args:
        plain: one line per ``log_every_n_steps`` instead of bars; None: when stdout is not a terminal.
    """

    def __init__(self, plain: bool | None = None) -> None:
        super().__init__()
        self.plain = (not sys.stdout.isatty()) if plain is None else plain
        self._start_step = 0
        self._start_time = 0.0
        self._shown = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self.plain:
            self.disable()

    def planned_steps(self, trainer: L.Trainer) -> int | None:
        """The run's optimizer steps in all: ``max_steps``, else Lightning's estimate from the epochs."""
        if trainer.max_steps and trainer.max_steps > 0:
            return trainer.max_steps
        estimate = trainer.estimated_stepping_batches
        return int(estimate) if estimate != float("inf") else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_step, self._start_time = trainer.global_step, time.monotonic()
        if not self.plain:
            super().on_train_start(trainer, pl_module)
            bar = self.train_progress_bar
            bar.reset(total=self.planned_steps(trainer))
            bar.n = bar.initial = trainer.global_step  # the rate and ETA count this process's steps
            bar.set_description(f"epoch {trainer.current_epoch}")  # a mid-epoch resume starts no epoch
            bar.refresh()

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        if not self.plain:  # one bar for the run, not one an epoch
            self.train_progress_bar.set_description(f"epoch {trainer.current_epoch}")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self._shown:  # still accumulating
            return
        self._shown = step
        if self.plain:
            if log_point(trainer):
                print(self.line(trainer, pl_module), flush=True)
        elif self.train_progress_bar is not None:
            self.train_progress_bar.n = step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.plain:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_end(self, *args: Any) -> None:
        if not self.plain:
            super().on_train_end(*args)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float]:
        """The bar's metrics under short names (``loss``, ``val_loss``, ``tok/s``), without Lightning's ``v_num``."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        shown: dict[str, int | str | float] = {}
        for key, value in metrics.items():
            name = SHORT_NAMES.get(key, key)
            if isinstance(value, float):
                value = f"{value:,.0f}" if name == "tok/s" else f"{value:.3f}"
            shown[name] = value
        return shown

    def line(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        """The plain log line for the step just taken."""
        step, total = trainer.global_step, self.planned_steps(trainer)
        parts = [f"step {step}/{total} ({100 * step / total:.0f}%)" if total else f"step {step}"]
        parts.append(f"epoch {trainer.current_epoch}")
        metrics = self.get_metrics(trainer, pl_module)
        parts += [f"{value} tok/s" if name == "tok/s" else f"{name} {value}" for name, value in metrics.items()]
        elapsed = time.monotonic() - self._start_time
        timing = f"{timedelta(seconds=round(elapsed))} elapsed"
        done = step - self._start_step
        if total and done > 0:
            timing += f", ETA {timedelta(seconds=round(elapsed / done * max(total - step, 0)))}"
        return " | ".join([*parts, timing])


def add_default_progress(trainer_defaults: dict, trainer_config: Any) -> None:
    """Add a :class:`StepProgress` to ``trainer_defaults["callbacks"]`` unless the config turns the bar off
    or configures a progress bar of its own.
    """
    if getattr(trainer_config, "enable_progress_bar", None) is False:
        return
    callbacks = getattr(trainer_config, "callbacks", None) or []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        if issubclass(callback_class(callback), ProgressBar):
            return
    defaults = trainer_defaults.get("callbacks") or []
    trainer_defaults["callbacks"] = [*(defaults if isinstance(defaults, list) else [defaults]), StepProgress()]


def callback_class(callback: Any) -> type:
    """The class of a configured callback: an instance, or a ``class_path`` namespace."""
    path = getattr(callback, "class_path", None)
    if not isinstance(path, str):
        return type(callback)
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return object  # LightningCLI itself reports a class it can't import
