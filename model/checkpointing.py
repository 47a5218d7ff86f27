"""Checkpoints that survive a kill: atomic writes, and resuming from the newest readable file.

A run can die at any instant: a preempted GPU, ``kill -9``, a full disk. Every checkpoint is
written to a temporary file in the same folder, flushed to disk and only then renamed over the
final name, so a file named ``*.ckpt`` is always complete. Lightning 2.6 stages its writes in the
system temp folder (often another disk, where the final move is a copy that a kill can cut short)
and never fsyncs; this plugin does neither.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from model.loading import LoraArgs, QuantArgs

KEYWORDS = {"last", "best", "hpc"}  # ckpt_path values Lightning resolves itself
# Beyond tensors and plain values, our checkpoints may hold these (hyper_parameters of a module built in Python).
SAFE_GLOBALS = [LoraArgs, QuantArgs]


class CheckpointError(OSError):
    """A checkpoint can't be written or read; the message names the file and what to do."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled objects that could run code when loaded; it is not loaded."""


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
        if "://" in str(path) or kwargs.get("weights_only") is False:  # remote, or --weights_only false: user's call
            return super().load_checkpoint(path, *args, **kwargs)
        try:
            return load_checkpoint(path)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as err:
            raise CheckpointError(with_advice(str(err), Path(path))) from None


def fsync_folder(folder: Path) -> None:
    """Persist a rename: without it a power cut can forget the new name."""
    if not hasattr(os, "O_DIRECTORY"):  # Windows can't open folders; its renames are durable enough
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on CPU with ``weights_only=True``: tensors, plain values and ``SAFE_GLOBALS`` only.

    A file that would run code while loading (any other pickled object) is refused, in one line
    naming what it holds; so is a file cut short.
    """
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file; check --ckpt_path") from None
    except pickle.UnpicklingError as err:
        names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err))))  # what torch's weights-only unpickler blocked
        if not names:  # not a pickle of ours at all: garbage, or cut short
            raise CheckpointError(f"{path}: {unreadable(err)}") from None
        raise UnsafeCheckpointError(
            f"{path}: refused: it holds {', '.join(names)}, which could run code when loaded (a checkpoint of "
            "train.py holds only tensors and plain values); use it only if you trust its source and re-save its "
            "state_dict"
        ) from None
    except Exception as err:  # torch raises EOFError, RuntimeError, ValueError, ... for a cut file
        raise CheckpointError(f"{path}: {unreadable(err)}") from None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load ``path`` fully on CPU; raise :class:`CheckpointError` if it is cut short, unsafe or not a checkpoint."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict); pass a .ckpt file written by fit")
    return checkpoint


def check_resume_file(path: Path) -> dict[str, Any]:
    """Read an explicit ``--ckpt_path``; if it is unreadable, the error names the good one beside it."""
    try:
        return read_checkpoint(path)
    except UnsafeCheckpointError:
        raise
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


def resolve_last(runs: Path, max_steps: int | None = None, max_epochs: int | None = None) -> tuple[Path, list[str]]:
    """The checkpoint ``--ckpt_path last`` means: the newest readable ``*.ckpt`` of the newest unfinished run.

    A run (``runs/<version>``) is finished when its newest readable checkpoint has reached
    ``max_steps`` or ``max_epochs`` (the config's ``trainer.max_steps`` / ``max_epochs``; None or
    -1: no limit). Returns the file and warning lines: one for each newer file that was unreadable
    and skipped, and one naming any other unfinished run (the ambiguity, resolved by age).
    """
    candidates = sorted(runs.glob("*/checkpoints/*.ckpt"), key=_age_key, reverse=True)
    if not candidates:
        raise CheckpointError(f"{runs}: no */checkpoints/*.ckpt to resume; drop --ckpt_path or give a checkpoint file")
    skipped: dict[Path, list[str]] = {}  # run folder -> its unreadable files newer than its newest readable one
    newest: dict[Path, tuple[Path, dict]] = {}  # run folder -> its newest readable checkpoint, newest run first
    for path in candidates:
        run = path.parent.parent
        if run in newest:
            continue
        try:
            newest[run] = (path, read_checkpoint(path))
        except CheckpointError as err:
            skipped.setdefault(run, []).append(str(err))
    if not newest:
        raise CheckpointError(
            f"{runs}: none of the {len(candidates)} checkpoints can be read (newest: {candidates[0]}); "
            "drop --ckpt_path to start afresh"
        )
    unfinished = [(p, c) for p, c in newest.values() if not finished(c, max_steps, max_epochs)]
    if not unfinished:
        path, checkpoint = next(iter(newest.values()))
        raise CheckpointError(
            f"{runs}: every run there has finished (newest: {path}, step {checkpoint.get('global_step', '?')}, "
            f"max_steps={max_steps}); drop --ckpt_path to start a new run, or raise --trainer.max_steps to extend one"
        )
    path, checkpoint = unfinished[0]
    step = checkpoint.get("global_step", "?")
    warnings = [f"{line}; resuming from {path} (step {step}) instead" for line in skipped.get(path.parent.parent, [])]
    if len(unfinished) > 1:
        others = ", ".join(f"{p.parent.parent.name} (step {c.get('global_step', '?')})" for p, c in unfinished[1:])
        warnings.append(
            f"{runs}: {len(unfinished)} unfinished runs; resuming the newest, {path.parent.parent.name} (step {step}), "
            f"not {others}; pass --ckpt_path <file> to pick another"
        )
    return path, warnings


def finished(checkpoint: dict, max_steps: int | None, max_epochs: int | None) -> bool:
    """Whether a run whose newest checkpoint is ``checkpoint`` has reached the Trainer's step or epoch limit."""
    if max_steps is not None and max_steps >= 0 and checkpoint.get("global_step", 0) >= max_steps:
        return True
    # ``processed`` counts whole epochs, also in the checkpoint written at an epoch's end (``completed`` lags there).
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    return max_epochs is not None and max_epochs >= 0 and progress.get("processed", 0) >= max_epochs


def _age_key(path: Path) -> tuple[int, bool]:
    # On a tie (coarse clocks), a last*.ckpt is written after the step checkpoint of the same step.
    return path.stat().st_mtime_ns, path.name.startswith("last")
