"""A run that fails before its first step leaves no run folder behind.

A bad path or an unloadable model fails inside ``trainer.fit`` after the logger has made
``version_N/`` (an event file, ``config.yaml``): left there, such folders pile up, take the next
version numbers and show up as empty runs in the curve overlay.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

# What a start writes before training: the logger's events and hyperparameters, LightningCLI's config.
START_FILES = ("events.out.tfevents.*", "hparams.yaml", "config*.yaml")


class RemoveFailedStart(Callback):
    """Deletes the run folder when ``fit`` fails before any optimizer step, given no checkpoint to resume.

    The folder goes only when it holds nothing but what the start itself wrote (no checkpoint, no
    adapter, no other file): a resumed run, or a test of an existing run, is never touched.
    """

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit" or trainer.ckpt_path or trainer.global_step > 0 or not trainer.is_global_zero:
            return
        if not trainer.loggers or trainer.loggers[0].log_dir is None:
            return
        folder = Path(trainer.loggers[0].log_dir)  # the logger's own, not the Trainer's (a broadcast under DDP)
        if folder.is_dir() and only_start_files(folder):
            for logger in trainer.loggers:
                logger.finalize("failed")  # closes the event file before it goes
            shutil.rmtree(folder, ignore_errors=True)


def only_start_files(folder: Path) -> bool:
    """Whether ``folder`` holds only files a start writes (see ``START_FILES``), and no subfolder with files."""
    started = {p for pattern in START_FILES for p in folder.glob(pattern)}
    return all(p in started or (p.is_dir() and not any(p.rglob("*"))) for p in folder.iterdir())
