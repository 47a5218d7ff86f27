"""The LightningDataModule: dialogue/summary sources (DialogSum and the bundled enterprise dialogues
by default) mixed, encoded with the prompt format, and batched by length or packed."""

from __future__ import annotations

import random
from functools import partial
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from callbacks.lightning_internals import batches_done, loop_epoch, set_batches_done
from datamodules.batching import (
    LengthGroupedBatchSampler,
    PackedBatchSampler,
    PackedRows,
    ResumableDataLoader,
    collate,
    collate_packed,
)
from datamodules.encoding import PromptEncoder
from datamodules.prompts import PromptFormat
from datamodules.sources import Columns, DataError, DataSource, Example, load_split
from datamodules.token_budget import AUTO, fit_to_memory
from datamodules.tokenizer import load_tokenizer


def default_sources() -> dict[str, DataSource]:
    """DialogSum from the Hub and the enterprise dialogues bundled in ``data/enterprise``."""
    return {"dialogsum": DataSource("knkarthick/dialogsum"), "enterprise": DataSource("data/enterprise")}


STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",), "predict": ("test",)}


class DialogSumDataModule(L.LightningDataModule):
    """Token ids and masked labels for dialogue summarization, in length-grouped batches.

    Args:
        tokenizer: Hub name or folder of the tokenizer; the CLI links it to ``model.model``.
        sources: each data source by its name (the name reports and ``Example.source`` carry): a
            Hub dataset name or local folder/file, its training weight and its column names
            (:class:`datamodules.sources.DataSource`). None: DialogSum from the Hub and the bundled
            enterprise dialogues. One field is set with ``--data.sources.<name>.path <folder>``.
        train_limit: use only N training examples of each source (a seeded sample), before weighting.
        val_limit: use only the first N validation examples of each source.
        prompt: how a dialogue becomes a prompt.
        max_length: tokens per example; longer dialogues are cut, never their summaries.
        batch_size: examples per training batch (the most, with ``max_tokens``).
        max_tokens: cap on padded tokens per batch; short batches then carry more rows. ``auto``:
            chosen from the GPU's free memory at start-up, with ``model.gradient_checkpointing: auto``
            (``datamodules/token_budget.py``).
        eval_batch_size: examples per validation/test/predict batch (predict only, when packing).
        pack_length: pack several examples into rows of this many tokens: every training, validation
            and test batch is then ``[max_tokens // pack_length, pack_length]`` (``batch_size`` and
            ``eval_batch_size`` don't apply) with per-example ``position_ids`` and ``seq_ids`` (see
            ``collate_packed``), the fixed shape ``model.compile: model`` needs; ~2% padding on
            DialogSum at 512. Must be >= ``max_length``; None pads each example alone.
        group_batches: batches per length-sorted group (see ``LengthGroupedBatchSampler``).
        pad_to_multiple_of: round padded lengths up (8 suits tensor cores).
        num_workers: data loader worker processes.
        seed: seed of the data order, independent of the model's seed.
    """

    def __init__(
        self,
        tokenizer: str = "microsoft/phi-2",
        sources: dict[str, DataSource] | None = None,
        train_limit: int | None = None,
        val_limit: int | None = None,
        prompt: PromptFormat | None = None,
        max_length: int = 512,
        batch_size: int = 8,
        max_tokens: int | Literal["auto"] | None = None,
        eval_batch_size: int = 16,
        group_batches: int = 64,
        pad_to_multiple_of: int = 8,
        num_workers: int = 2,
        seed: int = 42,
        pack_length: int | None = None,
    ) -> None:
        super().__init__()
        sources = default_sources() if sources is None else sources
        if not sources:
            raise ValueError("data.sources is empty; give at least one data source")
        problems = packing_problems(pack_length, max_tokens, max_length)
        if problems:
            raise ValueError("; ".join(problems))
        self.tokenizer_name = tokenizer
        # Plain dicts (a test, a notebook) become DataSource here; the CLI already gives DataSource.
        self.sources = {name: as_source(name, source) for name, source in sources.items()}
        self.train_limit = train_limit
        self.val_limit = val_limit
        self.prompt = prompt or PromptFormat()
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.eval_batch_size = eval_batch_size
        self.group_batches = group_batches
        self.pad_to_multiple_of = pad_to_multiple_of
        self.num_workers = num_workers
        self.seed = seed
        self.pack_length = pack_length
        self.examples: dict[str, list[Example]] = {}
        self.features: dict[str, list[dict]] = {}
        self.stats: dict[str, int] = {}
        self.tokenizer = None
        self.encoder: PromptEncoder | None = None

    # ---- reading --------------------------------------------------------------------------------

    def read_split(self, split: str) -> list[Example]:
        """Every source's examples of ``split``, limited and mixed as configured."""
        examples: list[Example] = []
        for name, source in self.sources.items():
            rows = load_split(source, split, name)
            if split == "train":
                if self.train_limit is not None:
                    rows = random.Random(self.seed).sample(rows, min(self.train_limit, len(rows)))
                rows = oversample(rows, source.weight, self.seed)
            examples += rows[: self.val_limit] if split == "validation" else rows
        return examples

    def setup(self, stage: str) -> None:
        # Before the model loads: the token budget (and checkpointing) that fits the GPU, where set to auto.
        self.max_tokens = fit_to_memory(self.trainer, self.max_tokens, self.pack_length or self.max_length)
        # Data first: a bad row fails here, before the tokenizer or any model weights load.
        for split in STAGE_SPLITS[stage]:
            if split not in self.examples:
                self.examples[split] = self.read_split(split)
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.tokenizer_name)
            self.encoder = PromptEncoder(self.tokenizer, self.prompt, self.max_length)
        for split in STAGE_SPLITS[stage]:
            if split not in self.features:
                self.features[split] = self.encode(split)

    def encode(self, split: str) -> list[dict]:
        features, truncated, dropped = [], 0, 0
        for example in self.examples[split]:
            encoded = self.encoder.encode(example.dialogue, example.summary)
            if encoded is None:
                dropped += 1
                continue
            truncated += encoded.truncated
            features.append({"input_ids": encoded.input_ids, "labels": encoded.labels})
        self.stats[f"{split}/examples"] = len(features)
        self.stats[f"{split}/truncated"] = truncated
        self.stats[f"{split}/dropped"] = dropped
        rank_zero_info(
            f"{split}: {len(features)} examples, {truncated} dialogues cut to max_length={self.max_length}, "
            f"{dropped} dropped (summary alone longer than max_length)"
        )
        if dropped and not features:
            raise DataError(
                f"{split}: all {dropped} examples were dropped because each summary alone is longer than "
                f"data.max_length={self.max_length}; raise --data.max_length"
            )
        return features

    # ---- loaders --------------------------------------------------------------------------------

    def _loader(self, split: str, batch_size: int, shuffle: bool, max_tokens: int | None = None):
        features = self.features[split]
        lengths = [len(f["input_ids"]) for f in features]
        trainer = self.trainer
        order = dict(
            group_batches=self.group_batches,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )
        if self.pack_length is None:
            sampler = LengthGroupedBatchSampler(lengths, batch_size=batch_size, max_tokens=max_tokens, **order)
            dataset = features
            collate_fn = partial(collate, pad_id=self.tokenizer.pad_token_id, multiple_of=self.pad_to_multiple_of)
        else:
            rows = self.max_tokens // self.pack_length
            sampler = PackedBatchSampler(lengths, self.pack_length, rows, **order)
            dataset = PackedRows(features)
            collate_fn = partial(
                collate_packed, pad_id=self.tokenizer.pad_token_id, num_rows=rows, pack_length=self.pack_length
            )
        return ResumableDataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_fn,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # A private generator keeps worker seeding off the global RNG, so resuming doesn't shift it.
            generator=torch.Generator().manual_seed(self.seed),
            progress=partial(batches_done, trainer) if shuffle and trainer else lambda: 0,
            set_progress=partial(set_batches_done, trainer) if shuffle and trainer else None,
            loop_epoch=partial(loop_epoch, trainer) if trainer else None,
        )

    def train_dataloader(self):
        return self._loader("train", self.batch_size, shuffle=True, max_tokens=self.max_tokens)

    def val_dataloader(self):
        return self._loader("validation", self.eval_batch_size, shuffle=False)

    def test_dataloader(self):
        return self._loader("test", self.eval_batch_size, shuffle=False)

    def predict_dataloader(self):
        prompts = [self.encoder.prompt_ids(e.dialogue)[0] for e in self.examples["test"]]
        return torch.utils.data.DataLoader(
            prompts, batch_size=self.eval_batch_size, collate_fn=lambda rows: {"prompts": rows}
        )


def packing_problems(pack_length: int | None, max_tokens: int | None, max_length: int | None) -> list[str]:
    """What is wrong with a packing configuration, one line per problem (none when not packing)."""
    if pack_length is None:
        return []
    if pack_length < 1:
        return [f"data.pack_length={pack_length} must be >= 1, or null (no packing)"]
    problems = []
    if max_length is not None and pack_length < max_length:
        problems.append(
            f"data.pack_length={pack_length} is shorter than data.max_length={max_length}, so an example may not fit "
            "a row; raise data.pack_length or lower data.max_length"
        )
    if max_tokens != AUTO and (max_tokens is None or max_tokens < pack_length):
        problems.append(
            f"data.max_tokens={max_tokens} with data.pack_length={pack_length}: a packed batch is "
            "max_tokens // pack_length rows; set data.max_tokens to a multiple of data.pack_length"
        )
    return problems


def as_source(name: str, source: DataSource | dict | str) -> DataSource:
    """A :class:`DataSource` from itself, a dict of its fields, or a bare path."""
    if isinstance(source, DataSource):
        return source
    if isinstance(source, str):
        return DataSource(source)
    if not isinstance(source, dict) or "path" not in source:
        raise ValueError(f"data.sources.{name} must give at least a path, got {source!r}")
    columns = source.get("columns") or {}
    return DataSource(**{**source, "columns": columns if isinstance(columns, Columns) else Columns(**columns)})


def oversample(rows: list[Example], weight: float, seed: int) -> list[Example]:
    """``weight`` copies of ``rows``: the whole part repeats, the fraction is a seeded sample."""
    if weight < 0:
        raise ValueError(f"a data source's weight must be >= 0, got {weight}")
    whole, fraction = divmod(weight, 1)
    return rows * int(whole) + random.Random(seed).sample(rows, round(fraction * len(rows)))
