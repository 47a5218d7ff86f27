"""``train.py predict`` writes its summaries: one JSON line per example in the run folder.

    python train.py predict --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt
    # -> <run>/predictions.jsonl: {"id", "source", "dialogue", "summary", "reference"} per line

``summary`` is the model's; ``reference`` is the first human summary where the split has one
(``references`` lists all of them when there are several, as in DialogSum's test split). Lines are
written and flushed batch by batch, so a long predict shows its progress in the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter

from datamodules.dialogsum import STAGE_SPLITS


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.jsonl`` (``predictions.rank<N>.jsonl`` under DDP) into the run folder.

    Args:
        filename: the file's name inside ``trainer.log_dir``.
    """

    def __init__(self, filename: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self.path: Path | None = None
        self._file: IO[str] | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        name = self.filename
        if trainer.world_size > 1:
            name = name.replace(".jsonl", f".rank{trainer.global_rank}.jsonl")
        self.path = Path(trainer.log_dir or trainer.default_root_dir) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in on_predict_end

    def write_on_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, prediction, batch_indices, batch, batch_idx, dl_idx
    ) -> None:
        examples = split_examples(trainer)
        for index, summary in zip(batch_indices, prediction, strict=True):
            self._file.write(json.dumps(record(examples[index] if examples else None, index, summary)) + "\n")
        self._file.flush()

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            print(f"predictions: {self.path}", file=sys.stderr)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def split_examples(trainer: L.Trainer) -> list | None:
    """The examples the predict loader was built from, in its order (``DialogSumDataModule.examples``)."""
    examples = getattr(trainer.datamodule, "examples", None) or {}
    return examples.get(STAGE_SPLITS["predict"][0])


def record(example, index: int, summary: str) -> dict:
    """One output line: the example's id, source and dialogue, the summary, and its references."""
    if example is None:  # a datamodule without examples: the loader's index is all there is
        return {"id": index, "summary": summary}
    line = {"id": example.id, "source": example.source, "dialogue": example.dialogue, "summary": summary}
    if example.summaries:
        line["reference"] = example.summaries[0]
    if len(example.summaries) > 1:
        line["references"] = list(example.summaries)
    return line
