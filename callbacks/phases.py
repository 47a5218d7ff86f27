"""Where the wall time of ``fit`` went: one log line at the end, from process start to exported adapter.

Phases: start-up (process start to the first training step: imports, data, loading and quantizing
the model), compilation (the first training step, which compiles), training steps (the rest of
training, data loading and logging included), validation (from each validation's start until
training resumes: the sanity check, val loss, sample generation and ROUGE, figures), checkpointing
(``trainer.save_checkpoint`` calls), export (the module's ``on_fit_end``: the PEFT adapter), other.
"""

from __future__ import annotations

import functools
import re
import time

import lightning as L
import psutil
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

PHASES = ("start-up", "compilation", "training steps", "validation", "checkpointing", "export", "other")


class FitPhases(Callback):
    """Logs, when ``fit`` ends, how many seconds each phase took (``PHASES``) and the whole."""

    def __init__(self) -> None:
        self.started = psutil.Process().create_time()  # wall clock of the process start
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._first: float | None = None  # the first training batch's start
        self._trained: float | None = None  # the first training batch's end
        self._paused: float | None = None  # a validation's start, until training resumes
        self._checkpointed = 0.0  # save_checkpoint seconds not yet booked
        self._before = 0.0  # validation and checkpoint seconds before the first step (the sanity check)
        self._fit_end: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or hasattr(trainer.save_checkpoint, "phase_timed"):
            return
        save = trainer.save_checkpoint

        @functools.wraps(save)
        def timed_save(*args, **kwargs):
            start = time.time()
            try:
                return save(*args, **kwargs)
            finally:
                self._checkpointed += time.time() - start

        timed_save.phase_timed = True
        trainer.save_checkpoint = timed_save

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._resume()
        if self._first is None:
            self._first = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._trained is None:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)  # once: the first step's kernels belong to it
            self._trained = time.time()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resume()
        self._book("checkpointing", self._checkpointed)
        self._checkpointed = 0.0
        self._paused = time.time()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._resume()
        self._fit_end = time.time()  # callbacks' on_fit_end run before the module's, which exports

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self._trained is None or self._fit_end is None:
            return
        now = time.time()
        self._book("checkpointing", self._checkpointed)
        self._checkpointed = 0.0
        s = self.seconds
        s["start-up"] = self._first - self.started - self._before
        s["compilation"] = self._trained - self._first
        # Whatever validation and checkpoints took after the first step came out of this stretch.
        after = s["validation"] + s["checkpointing"] - self._before
        s["training steps"] = self._fit_end - self._trained - after
        s["export"] = now - self._fit_end
        whole = now - self.started
        s["other"] = whole - sum(v for k, v in s.items() if k != "other")
        rank_zero_info(phase_line(s, whole))

    def _resume(self) -> None:
        """Training resumes (or fit ends): book the pause since a validation started."""
        if self._paused is None:
            return
        self._book("validation", time.time() - self._paused - self._checkpointed)
        self._book("checkpointing", self._checkpointed)
        self._paused, self._checkpointed = None, 0.0

    def _book(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds
        if self._first is None:
            self._before += seconds


def phase_line(seconds: dict[str, float], whole: float) -> str:
    """``fit phases: start-up 35.2 s, compilation 21.0 s, ...; whole 170.3 s`` (``parse_phases`` reads it back)."""
    parts = ", ".join(f"{name} {seconds[name]:.1f} s" for name in PHASES)
    return f"fit phases: {parts}; whole {whole:.1f} s (process start to exported adapter)"


def parse_phases(text: str) -> dict[str, float]:
    """The phases and ``whole`` of the last ``fit phases:`` line in ``text`` (a fit's log), in seconds."""
    lines = [line for line in text.splitlines() if "fit phases: " in line]
    if not lines:
        return {}
    found = re.findall(r"([a-z -]+?) (\d+\.\d) s", lines[-1].split("fit phases: ", 1)[1])
    return {name.strip(" ,;"): float(value) for name, value in found}
