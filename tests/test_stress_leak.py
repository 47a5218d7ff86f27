"""The stress set stays out of training: no stress dialogue, by id or by (near-identical) text, is in a
training or validation split of the enterprise dialogues or of DialogSum, nor in the enterprise test split."""

from __future__ import annotations

import re

import pytest
from conftest import DIALOGSUM, ROOT

from datamodules.sources import Example, load_split

ENTERPRISE = str(ROOT / "data" / "enterprise")
SHINGLE = 8  # words: an 8-word run shared by two dialogues written apart is rare
LEAK = 0.3  # share of a stress dialogue's 8-word runs found in the training text that counts as a copy


def shingles(text: str) -> set[tuple[str, ...]]:
    """Every run of ``SHINGLE`` words, lowercased, speaker tags and punctuation dropped."""
    words = re.sub(r"#person\d#:", " ", text.lower())
    words = re.findall(r"[a-z0-9]+", words)
    return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def copied_share(stress: Example, seen: set[tuple[str, ...]]) -> float:
    own = shingles(stress.dialogue)
    return len(own & seen) / len(own)


@pytest.fixture(scope="module")
def stress() -> list[Example]:
    return load_split(ENTERPRISE, "stress", "enterprise")


@pytest.fixture(scope="module")
def others() -> list[Example]:
    rows = [r for split in ("train", "validation", "test") for r in load_split(ENTERPRISE, split, "enterprise")]
    return rows + [r for split in ("train", "validation") for r in load_split(str(DIALOGSUM), split, "dialogsum")]


def test_no_stress_id_or_text_in_any_other_split(stress, others):
    assert len(stress) == 30 and len(others) > 12_000
    ids = {r.id for r in others}
    assert not [s.id for s in stress if s.id in ids]
    seen = set().union(*(shingles(r.dialogue) for r in others))
    shares = {s.id: copied_share(s, seen) for s in stress}
    assert max(shares.values()) < LEAK, {k: round(v, 2) for k, v in shares.items() if v >= LEAK}
    summaries = {r.summaries[0].strip().lower() for r in others}
    assert not [s.id for s in stress if s.summaries[0].strip().lower() in summaries]


def test_the_check_finds_a_lightly_edited_copy(stress):
    # A stress dialogue with its names changed and a turn dropped, put among training rows, is caught.
    original = stress[0]
    turns = original.dialogue.split("\n")
    edited = "\n".join(turns[:2] + turns[3:]).replace("Keiko", "Mira").replace("Ramon", "Tariq")
    assert copied_share(original, shingles(edited)) >= LEAK
    assert copied_share(original, shingles(stress[1].dialogue)) < LEAK  # and another stress dialogue is not
