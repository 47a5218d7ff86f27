"""Stopping on a scheduler's signal without losing work: checkpoint, adapter, the command that resumes.

SLURM, Kubernetes and spot instances send SIGTERM (SLURM's ``--signal`` sends SIGUSR1 first) some
seconds before they take the machine. Lightning on its own notes SIGTERM, stops after the current
batch (mid gradient accumulation too), saves nothing and exits with status 0, so a scheduler reads
a lost run as a success. :class:`Preemption` instead lets the current optimizer step finish (a
signal during validation lets validation finish), writes a checkpoint at that boundary through
``trainer.save_checkpoint`` (the atomic writer of ``model.checkpointing``), exports the adapter,
prints::

    stopped by SIGTERM at step 37; resume with: python train.py fit --config ... --ckpt_path <file>

and exits with ``128 + signal number`` (143 for SIGTERM). Resuming from that file ends with the
same adapter as an uninterrupted run. Ctrl-C (SIGINT) does the same; a second signal stops at once.

Under SLURM with Lightning's auto-requeue (``SLURMEnvironment(auto_requeue=True)``, the default
there), the requeue signal is left to Lightning, which saves its own ``hpc_ckpt_N.ckpt``, requeues
the job and resumes from it when the job restarts.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback, Checkpoint


class Preemption(Callback):
    """Checkpoints at the next optimizer step boundary and exits non-zero on a stop signal.

    Args:
        signals: signal names that stop training this way (``SIGTERM``, ``SIGUSR1``, ...).
        ctrl_c: treat Ctrl-C (SIGINT) the same way.
    """

    def __init__(self, signals: list[str] | None = None, ctrl_c: bool = True) -> None:
        names = ["SIGTERM", "SIGUSR1"] if signals is None else list(signals)
        unknown = [n for n in names if not isinstance(getattr(signal, n, None), signal.Signals)]
        if unknown:
            raise ValueError(f"Preemption signals: unknown {', '.join(unknown)}; use names such as SIGTERM, SIGUSR1")
        self.signals = [signal.Signals[n] for n in names] + ([signal.SIGINT] if ctrl_c else [])
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}
        self._step = 0

    # ---- the signal -----------------------------------------------------------------------------

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:  # a second signal: stop now, as Lightning does on Ctrl-C
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)
        print(
            f"received {self.received.name}: stopping after this optimizer step (again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def _install(self, trainer: L.Trainer) -> None:
        """Take the signals over from Lightning's handlers (registered when the run starts), once."""
        if self._previous:
            return
        environment = getattr(trainer.strategy, "cluster_environment", None)
        requeue = environment.requeue_signal if isinstance(environment, SLURMEnvironment) else None
        if isinstance(environment, SLURMEnvironment) and not environment.auto_requeue:
            requeue = None
        if trainer.received_sigterm and self.received is None:  # arrived before this took over
            self.received = signal.SIGTERM
        for signum in self.signals:
            if signum != requeue:
                self._previous[signum] = signal.signal(signum, self._handle)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    # ---- where training may stop ----------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning puts checkpoint callbacks last so their files hold every callback's state after
        # a step; this one writes a checkpoint too, so it goes last of all.
        if stage == "fit" and trainer.callbacks[-1] is not self:
            trainer.callbacks.remove(self)
            trainer.callbacks.append(self)

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)
        self._step = trainer.global_step
        if self.received is not None:  # during startup or the sanity check: no step to finish
            self._stop(trainer, pl_module, checkpoint=False)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        stepped, self._step = trainer.global_step != self._step, trainer.global_step
        if stepped and self._agreed(trainer):
            self._stop(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._agreed(trainer):
            self._stop(trainer, pl_module)

    def _agreed(self, trainer: L.Trainer) -> bool:
        # Under DDP the signal may reach one rank only; every rank must stop at the same step.
        return bool(trainer.strategy.reduce_boolean_decision(self.received is not None, all=False))

    def _stop(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: bool = True) -> None:
        name = self.received.name if self.received is not None else "a signal on another rank"
        path = Path(trainer.ckpt_path) if trainer.ckpt_path and not checkpoint else None
        if checkpoint:
            path = checkpoint_folder(trainer) / f"preempted-step={trainer.global_step}.ckpt"
            trainer.save_checkpoint(path, weights_only=False)  # all loop state; said, Lightning logs no default
            folder = getattr(pl_module, "adapter_dir", None) or Path(trainer.log_dir or ".") / "adapter"
            if trainer.is_global_zero and hasattr(pl_module, "export_adapter"):
                pl_module.export_adapter(folder)
        if trainer.is_global_zero:
            if path is None:
                line = f"stopped by {name} before training began; start again with: {command()}"
            else:
                line = f"stopped by {name} at step {trainer.global_step}; resume with: {command(path)}"
            print(line, file=sys.stderr, flush=True)
        raise SystemExit(128 + (self.received or signal.SIGTERM))


def checkpoint_folder(trainer: L.Trainer) -> Path:
    """Where the run's checkpoints go: the ModelCheckpoint's folder, else ``<log_dir>/checkpoints``."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, Checkpoint) and getattr(callback, "dirpath", None):
            return Path(callback.dirpath)
    return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"


def command(ckpt: Path | None = None) -> str:
    """This process's command line with ``--ckpt_path ckpt`` in place of any it had."""
    argv = sys.argv if Path(sys.argv[0]).name == "train.py" else ["train.py", "fit", "..."]
    args, skip = [], False
    for arg in argv[1:]:
        if skip or arg.startswith("--ckpt_path="):
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        args.append(arg)
    if ckpt is not None:
        args += ["--ckpt_path", str(ckpt)]
    return " ".join(["python", shlex.quote(argv[0]), *(a if a == "..." else shlex.quote(a) for a in args)])
