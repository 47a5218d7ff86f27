"""The Lightning and TensorBoard internals that callbacks/lightning_internals.py relies on, on the installed versions.

Each test states one assumption on a tiny linear model (no transformers); an upgrade that breaks
it fails here by name, not as a wrong curve or a resumed run that trains batches twice.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from callbacks import lightning_internals as internals

BATCHES = 10  # training batches an epoch


class Batches:
    """A resumable training loader, as ``datamodules.batching.ResumableDataLoader`` is: its position is the loop's.

    On load it skips one batch more than the checkpoint counted, as a rank does when a run resumes
    on fewer GPUs, and moves the loop's count to match.
    """

    def __init__(self, trainer: L.Trainer) -> None:
        self.trainer = trainer
        self.epochs: list[int] = []  # the loop's epoch at each iteration's start
        self.skip = 0

    def __len__(self) -> int:
        return BATCHES

    def __iter__(self):
        self.epochs.append(internals.loop_epoch(self.trainer))
        skip, self.skip = self.skip, 0
        return iter([torch.ones(1, 2)] * (BATCHES - skip))

    def state_dict(self) -> dict:
        return {"done": internals.batches_done(self.trainer)}

    def load_state_dict(self, state: dict) -> None:
        self.skip = state["done"] + 1
        internals.set_batches_done(self.trainer, self.skip)


class Linear(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.loader: Batches | None = None

    def training_step(self, batch, batch_idx):
        return self.layer(batch).sum()

    def validation_step(self, batch, batch_idx):
        self.layer(batch)

    def train_dataloader(self):
        self.loader = Batches(self.trainer)
        return self.loader

    def val_dataloader(self):
        return [torch.ones(1, 2)]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Record(Callback):
    """Each training batch as (the loop's epoch when the loader began iterating, batch_idx, batches_done at the
    batch's start, at its end), and the step of each validation."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int, int]] = []
        self.validations: list[int] = []
        self._start = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = internals.batches_done(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        assert pl_module.loader.epochs[-1] == trainer.current_epoch
        self.batches.append((pl_module.loader.epochs[-1], batch_idx, self._start, internals.batches_done(trainer)))

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validations.append(trainer.global_step)


def trainer(*callbacks: Callback, **options) -> L.Trainer:
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    options = {"limit_val_batches": 0, **quiet, **options}
    return L.Trainer(accelerator="cpu", callbacks=list(callbacks), num_sanity_val_steps=0, **options)


def test_the_loops_batch_count_is_the_loaders_position_and_moves_on_resume(tmp_path):
    class Save(Callback):  # where ModelCheckpoint saves: after the batch of step 13, 3 batches into epoch 1
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step == BATCHES + 3:
                trainer.save_checkpoint(tmp_path / "mid.ckpt")

    first, model = Record(), Linear()
    trainer(first, Save(), max_steps=BATCHES + 3).fit(model)
    # batches_done: the batches of this epoch finished before a batch, and after it (what a checkpoint saved
    # there records); loop_epoch: the epoch whose batches the loader's iteration yields.
    assert first.batches == [(0, i, i, i + 1) for i in range(BATCHES)] + [(1, i, i, i + 1) for i in range(3)]

    resumed, model = Record(), Linear()
    trainer(resumed, max_epochs=3).fit(model, ckpt_path=tmp_path / "mid.ckpt")
    # set_batches_done(4) after 3: the epoch carries on at batch_idx 4 and ends with the loader's last batch.
    assert resumed.batches == [(1, i, i, i + 1) for i in range(4, BATCHES)] + [(2, i, i, i + 1) for i in range(BATCHES)]


@pytest.mark.parametrize("accumulate", [1, 3])
def test_validation_runs_right_after_the_batches_aimed_at(accumulate):
    class Aim(Callback):
        step = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            stepped, self.step = trainer.global_step != self.step, trainer.global_step
            internals.validate_after_this_batch(trainer, stepped and trainer.global_step in (2, 5))

    record = Record()
    # val_check_interval 1000 batches: never, unless aimed; with accumulation, step 5 is in the second epoch.
    options = dict(accumulate_grad_batches=accumulate, limit_val_batches=1, val_check_interval=1000)
    trainer(record, Aim(), max_steps=7, check_val_every_n_epoch=None, **options).fit(Linear())
    assert record.validations == [2, 5]


def test_the_tensorboard_file_writer_writes_into_the_runs_own_event_file(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard.summary import scalar

    logger = TensorBoardLogger(tmp_path, name="run")
    internals.tensorboard_file_writer(logger).add_summary(scalar("probe", 1.5), 7)
    logger.experiment.flush()
    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("probe")] == [(7, 1.5)]
    assert internals.tensorboard_file_writer(CSVLogger(tmp_path)) is None


def test_lightning_cli_still_re_parses_the_model_from_a_checkpoint_in_parse_ckpt_path():
    """train.SummarizationCLI overrides this private step so a fit resumed from a file keeps its config's schedule."""
    import inspect

    from lightning.pytorch.cli import LightningCLI

    source = inspect.getsource(LightningCLI)
    assert "def _parse_ckpt_path(self)" in source
    assert "self._parse_ckpt_path()" in source  # still called while the CLI is built
