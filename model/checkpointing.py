"""Checkpoints that survive a kill: atomic writes, and resuming from the newest readable file.

A run can die at any instant: a preempted GPU, ``kill -9``, a full disk. Every checkpoint is
written to a temporary file in the same folder, flushed to disk and only then renamed over the
final name, so a file named ``*.ckpt`` is always complete. Lightning 2.6 stages its writes in the
system temp folder (often another disk, where the final move is a copy that a kill can cut short)
and never fsyncs; this plugin does neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

KEYWORDS = {"last", "best", "hpc"}  # ckpt_path values Lightning resolves itself


class CheckpointError(OSError):
    """A checkpoint can't be written or read; the message names the file and what to do."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to ``.<name>.<pid>.tmp`` beside it, fsyncs, then renames it into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote storage: fsspec's own transaction is the best there is
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
            fsync_folder(path.parent)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(
                f"{path}: cannot write the checkpoint ({err.strerror or err}); free disk space or set "
                f"ModelCheckpoint's dirpath elsewhere; the previous checkpoints in {path.parent} are intact"
            ) from None

    def load_checkpoint(self, path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no such checkpoint file; check --ckpt_path") from None
        except Exception as err:  # torch raises EOFError, RuntimeError, ValueError, ... for a cut file
            raise CheckpointError(with_advice(f"{path}: {unreadable(err)}", Path(path))) from None


def fsync_folder(folder: Path) -> None:
    """Persist a rename: without it a power cut can forget the new name."""
    if not hasattr(os, "O_DIRECTORY"):  # Windows can't open folders; its renames are durable enough
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load ``path`` fully on CPU; raise :class:`CheckpointError` if it is cut short or not a checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file; check --ckpt_path") from None
    except Exception as err:  # torch raises EOFError, RuntimeError, ValueError, ... for a cut file
        raise CheckpointError(f"{path}: {unreadable(err)}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict); pass a .ckpt file written by fit")
    return checkpoint


def check_resume_file(path: Path) -> dict[str, Any]:
    """Read an explicit ``--ckpt_path``; if it is unreadable, the error names the good one beside it."""
    try:
        return read_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(with_advice(str(err), path)) from None


def unreadable(err: Exception) -> str:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
    return f"unreadable checkpoint, probably cut short by a crash or a full disk ({reason})"


def with_advice(message: str, path: Path) -> str:
    """``message`` plus the newest readable checkpoint beside ``path`` to resume from instead."""
    others = [p for p in path.parent.glob("*.ckpt") if p.resolve() != path.resolve()] if path.parent.is_dir() else []
    for other in sorted(others, key=_age_key, reverse=True):
        try:
            read_checkpoint(other)
        except CheckpointError:
            continue
        return f"{message}; resume from the one before it: --ckpt_path {other}"
    return f"{message}; resume from an earlier checkpoint or drop --ckpt_path to start afresh"


def resolve_last(runs: Path) -> tuple[Path, list[str]]:
    """The checkpoint ``--ckpt_path last`` means: the newest readable ``*.ckpt`` of any run under ``runs``.

    Returns the file and one warning line for each newer file that was unreadable and skipped.
    """
    candidates = sorted(runs.glob("*/checkpoints/*.ckpt"), key=_age_key, reverse=True)
    if not candidates:
        raise CheckpointError(f"{runs}: no */checkpoints/*.ckpt to resume; drop --ckpt_path or give a checkpoint file")
    skipped: list[str] = []
    for path in candidates:
        try:
            checkpoint = read_checkpoint(path)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        step = checkpoint.get("global_step", "?")
        return path, [f"{line}; resuming from {path} (step {step}) instead" for line in skipped]
    raise CheckpointError(
        f"{runs}: none of the {len(candidates)} checkpoints can be read (newest: {candidates[0]}); "
        "drop --ckpt_path to start afresh"
    )


def _age_key(path: Path) -> tuple[int, bool]:
    # On a tie (coarse clocks), a last*.ckpt is written after the step checkpoint of the same step.
    return path.stat().st_mtime_ns, path.name.startswith("last")
