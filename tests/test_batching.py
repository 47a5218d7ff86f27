"""Length-grouped batches on DialogSum's real train lengths."""

from __future__ import annotations

import json
import random

import pytest
from conftest import DIALOGSUM

from datamodules.batching import LengthGroupedBatchSampler


@pytest.fixture(scope="module")
def train_lengths(tokenizer) -> list[int]:
    rows = [json.loads(line) for line in (DIALOGSUM / "dialogsum.train.jsonl").open()]
    ids = tokenizer([r["dialogue"] + " " + r["summary"] for r in rows])["input_ids"]
    return [min(len(i), 512) for i in ids]


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    """Share of the padded batch grid that is padding."""
    real = sum(lengths[i] for b in batches for i in b)
    grid = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - real / grid


def random_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def test_length_grouping_at_least_halves_padding(train_lengths):
    sampler = LengthGroupedBatchSampler(train_lengths, batch_size=16, seed=1)
    grouped = padding_fraction(list(sampler), train_lengths)
    plain = padding_fraction(random_batches(len(train_lengths), 16, seed=1), train_lengths)
    assert grouped <= plain / 2, (grouped, plain)
    assert grouped < 0.05


def test_every_example_once_per_epoch_and_epochs_differ(train_lengths):
    sampler = LengthGroupedBatchSampler(train_lengths, batch_size=16, seed=1)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(len(train_lengths)))
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # the order is a function of (seed, epoch)


def test_token_budget_caps_padded_tokens(train_lengths):
    sampler = LengthGroupedBatchSampler(train_lengths, batch_size=64, max_tokens=4096, seed=1)
    batches = list(sampler)
    assert all(len(b) * max(train_lengths[i] for i in b) <= 4096 for b in batches)
    assert max(len(b) for b in batches) > 16  # short rows pack more per batch


def test_ranks_get_disjoint_batches_covering_the_epoch(train_lengths):
    lengths = train_lengths[:1000]
    per_rank = [
        list(LengthGroupedBatchSampler(lengths, 8, seed=3, num_replicas=2, rank=r, drop_last=True)) for r in (0, 1)
    ]
    assert len(per_rank[0]) == len(per_rank[1])
    seen = [set(i for b in batches for i in b) for batches in per_rank]
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) >= 1000 - 8


def test_skip_resumes_mid_epoch(train_lengths):
    sampler = LengthGroupedBatchSampler(train_lengths[:500], 8, seed=5)
    full = list(sampler)
    sampler.skip = 10
    assert list(sampler) == full[10:]
    sampler.set_epoch(1)
    assert sampler.skip == 0
