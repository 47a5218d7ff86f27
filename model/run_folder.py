"""Which run folder a command writes into: the run of the checkpoint it was given, not a new ``version_N``.

``train.py test``, ``predict`` and a resumed ``fit`` given ``--ckpt_path <save_dir>/<name>/<run>/checkpoints/x.ckpt``
(a checkpoint of one of this config's runs) write their logs, configs and outputs into that run:
results sit beside the weights they came from, and a resumed run goes on in its own folder. A
checkpoint kept anywhere else leaves the logger alone (a new ``version_N`` under its ``save_dir``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_of_checkpoint(ckpt: Path) -> Path | None:
    """``<run>`` for a checkpoint at ``<run>/checkpoints/<file>``; None for a file kept elsewhere."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None


def log_into_run(logger: Any, ckpt: Path) -> None:
    """Set a configured logger's ``version`` to the checkpoint's run when that run is under its ``save_dir/name``."""
    args = getattr(logger, "init_args", None)
    run = run_of_checkpoint(ckpt)
    if run is None or args is None or not all(hasattr(args, k) for k in ("save_dir", "name", "version")):
        return
    if run.parent.resolve() == (Path(args.save_dir or ".") / (args.name or "")).resolve():
        args.version = run.name
