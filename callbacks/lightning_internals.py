"""Every use of Lightning's (and TensorBoard's) private state in the project, in one place.

Lightning has no public API for what these do. tests/test_lightning_internals.py checks each
assumption against the installed Lightning on a tiny run, so an upgrade that breaks one fails
there, by name, rather than as a wrong curve or a resumed run that trains batches twice.
One more lives where it must, in ``train.SummarizationCLI``: its ``_parse_ckpt_path`` override keeps a
fit resumed from a checkpoint file on its config's options (schedule included); the same test file
checks that LightningCLI still has and calls that method.
"""

from __future__ import annotations

import lightning as L


def batches_done(trainer: L.Trainer) -> int:
    """Training batches of the current epoch the fit loop has finished: the resumable loader's position."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


def set_batches_done(trainer: L.Trainer, batches: int) -> None:
    """Move the fit loop's count of this epoch's batches to ``batches``, so the next ``batch_idx`` is ``batches``.

    A run resumed on another number of GPUs skips another number of batches a rank than it counted,
    and the loop's count must follow, or the epoch would not end with the data.
    """
    current = trainer.fit_loop.epoch_loop.batch_progress.current
    shift = batches - current.processed
    current.ready, current.started = current.ready + shift, current.started + shift
    current.processed, current.completed = current.processed + shift, current.completed + shift


def loop_epoch(trainer: L.Trainer) -> int:
    """The fit loop's epoch, read as a training loader starts an epoch (Lightning never calls a batch sampler's
    ``set_epoch``)."""
    return trainer.fit_loop.epoch_progress.current.processed


def validate_after_this_batch(trainer: L.Trainer, due: bool) -> None:
    """Make Lightning validate, or not, right after the training batch in progress (from ``on_train_batch_end``).

    With ``check_val_every_n_epoch: null`` Lightning validates after a batch when (batches so far) %
    ``val_check_batch`` == 0, and checks right after that hook: aiming ``val_check_batch`` at this
    very batch, or just past it, decides. Lightning counts ``val_check_interval`` in batches and has
    no optimizer-step trigger (Lightning-AI/pytorch-lightning#12205, won't fix; #19740, open).
    """
    done = trainer.fit_loop.epoch_loop.total_batch_idx + 1
    trainer.val_check_batch = done if due else done + 1


def tensorboard_file_writer(logger):
    """TensorBoard's event-file writer behind a ``TensorBoardLogger``, or None for another logger.

    Summaries written to it land in the run's own event file at the step given, as Lightning's
    ``log_hyperparams`` writes its own; the public ``SummaryWriter.add_hparams`` would open a new
    sub-run and write placeholder metric values. Call it on rank 0 only: elsewhere the logger's
    ``experiment`` is a stand-in that has every attribute.
    """
    writer = getattr(logger, "experiment", None)
    return writer._get_file_writer() if hasattr(writer, "_get_file_writer") else None
