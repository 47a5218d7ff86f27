"""The bundled enterprise set keeps its documented schema, sizes and splits."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from conftest import ROOT

from datamodules.sources import load_split

FOLDER = ROOT / "data" / "enterprise"
CATEGORIES = {"standup", "sprint", "incident", "helpdesk", "hr", "escalation", "vendor", "scheduling"}
ABBREVIATIONS = re.compile(r"\b(Mr|Ms|Mrs|Dr|St|Jr|vs|a\.m|p\.m|e\.g|i\.e)\.")
TURN = re.compile(r"^#Person([1-8])#: \S")


def rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (FOLDER / f"{split}.jsonl").open(encoding="utf-8")]


@pytest.mark.parametrize("split, minimum", [("train", 180), ("validation", 30), ("test", 30), ("stress", 24)])
def test_sizes_and_schema(split, minimum):
    data = rows(split)
    assert len(data) >= minimum
    required = {"fname", "category", "topic", "dialogue", "summary"}
    if split == "stress":
        required |= {"must_state", "must_not_state"}
    for row in data:
        assert set(row) == required, row["fname"]
        assert all(
            isinstance(row[k], str) and row[k].strip() for k in ("fname", "category", "topic", "dialogue", "summary")
        )
        assert 1 <= len(row["topic"].split()) <= 4 and row["topic"] == row["topic"].lower()


def test_every_category_in_every_split():
    for split in ("train", "validation", "test"):
        assert set(Counter(r["category"] for r in rows(split))) == CATEGORIES, split


def test_ids_unique_splits_disjoint_no_dialogue_repeated():
    every = [r for split in ("train", "validation", "test", "stress") for r in rows(split)]
    assert len({r["fname"] for r in every}) == len(every)
    assert len({r["dialogue"] for r in every}) == len(every)
    assert len({r["summary"] for r in every}) == len(every)


def test_dialogue_shape_like_dialogsum():
    for split in ("train", "validation", "test", "stress"):
        for row in rows(split):
            turns = row["dialogue"].split("\n")
            speakers = [int(TURN.match(t).group(1)) for t in turns]  # every turn is tagged
            first_seen = list(dict.fromkeys(speakers))
            assert first_seen == list(range(1, len(first_seen) + 1)), row["fname"]  # numbered in order
            assert 2 <= len(first_seen) <= 8
            assert 60 <= len(row["dialogue"].split()) <= 400, row["fname"]
            summary = ABBREVIATIONS.sub(lambda m: m.group(0).replace(".", ""), row["summary"])
            sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z#])", summary) if s]
            assert 1 <= len(sentences) <= 3, row["fname"]


def test_stress_references_pass_their_own_facts():
    for row in rows("stress"):
        summary = row["summary"].lower()
        assert 1 <= len(row["must_state"]) and 1 <= len(row["must_not_state"])
        assert all(any(form in summary for form in fact) for fact in row["must_state"]), row["fname"]
        assert not any(form in summary for fact in row["must_not_state"] for form in fact), row["fname"]
        dialogue = row["dialogue"].lower()
        assert all(any(form in dialogue for form in fact) for fact in row["must_not_state"])  # a trap to copy


def test_loader_reads_every_split_with_facts():
    assert len(load_split(str(FOLDER), "train", "enterprise")) == len(rows("train"))
    stress = load_split(str(FOLDER), "stress", "enterprise")
    assert stress[0].extra["must_state"] and stress[0].extra["category"]
