"""Which run folder a command writes into: the run of the checkpoint it was given, not a new ``version_N``.

``train.py test``, ``predict`` and a resumed ``fit`` given ``--ckpt_path <run>/checkpoints/x.ckpt``
write their logs, configs and outputs into ``<run>``: results sit beside the weights they came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_of_checkpoint(ckpt: Path) -> Path | None:
    """``<run>`` for a checkpoint at ``<run>/checkpoints/<file>``; None for a file kept elsewhere."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None


def log_into_run(logger: Any, ckpt: Path) -> None:
    """Point a configured logger (``trainer.logger`` with ``save_dir``, ``name``, ``version``) at the checkpoint's run.

    Args:
        logger: the parsed ``trainer.logger`` (a ``class_path`` / ``init_args`` namespace); others are left alone.
        ckpt: the checkpoint given as ``--ckpt_path``.
    """
    args = getattr(logger, "init_args", None)
    run = run_of_checkpoint(ckpt)
    if run is None or args is None or not all(hasattr(args, k) for k in ("save_dir", "name", "version")):
        return
    run = run.resolve()
    args.save_dir, args.name, args.version = str(run.parent.parent), run.parent.name, run.name
