"""The stress-test fact checker and its report, on hand-made summaries and the bundled stress set."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from datamodules.sources import DataError, Example
from eval.reports import MODELS
from eval.stress import check_summary, read_stress, stress_markdown, stress_report

STRESS = ROOT / "data" / "enterprise" / "stress.jsonl"
MUST = [["keiko"], ["ten days", "10 days"]]
MUST_NOT = [["brightlane"], ["950"]]


def test_a_fact_is_stated_by_any_of_its_forms_case_insensitively():
    assert check_summary("KEIKO leads; partners help for 10 days.", MUST, MUST_NOT).passed
    assert check_summary("Keiko leads; partners help for ten days.", MUST, MUST_NOT).passed


def test_missing_and_retracted_facts_are_named():
    verdict = check_summary("Keiko leads. Brightlane is dropped.", MUST, MUST_NOT)
    assert not verdict.passed
    assert verdict.missing == [["ten days", "10 days"]] and verdict.stated_wrongly == [["brightlane"]]
    assert verdict.describe() == "missing 'ten days' / '10 days'; states 'brightlane'"


def test_the_bundled_human_summaries_pass_their_own_checks():
    examples = read_stress(STRESS)
    assert len(examples) == 30
    for e in examples:
        verdict = check_summary(e.summary, e.extra["must_state"], e.extra["must_not_state"])
        assert verdict.passed, (e.id, verdict.describe())


def test_malformed_fact_lists_are_rejected_with_the_row(tmp_path):
    bad = tmp_path / "stress.jsonl"
    row = {"id": "s1", "dialogue": "#Person1#: hi", "summary": "hi", "must_state": ["keiko"], "must_not_state": []}
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"row 1 \(s1\): field 'must_state' must be a list of lists"):
        read_stress(bad)
    with pytest.raises(DataError, match="stress file not found"):
        read_stress(tmp_path / "missing.jsonl")


def test_report_gives_pass_rates_and_each_scenario_with_its_failed_fact():
    extra = {"category": "change_of_mind", "must_state": MUST, "must_not_state": MUST_NOT}
    examples = [Example(f"s{i}", "#Person1#: hi", ("ref",), "stress", "topic", extra) for i in range(2)]
    summaries = {
        "base": ["Brightlane for 950.", "Keiko for ten days."],
        "fine_tuned": ["Keiko, 10 days.", "Keiko, ten days."],
    }
    report = stress_report(examples, summaries)
    assert report["pass_rate"] == {"base": 50.0, "fine_tuned": 100.0}
    assert report["scenarios"][0]["results"]["base"]["failed"].startswith("missing 'keiko'")
    text = stress_markdown(report, MODELS)
    assert "| Base | 1/2 | 50.0% |" in text and "| Fine-tuned | 2/2 | 100.0% |" in text
    s0 = next(line for line in text.splitlines() if line.startswith("| s0 |"))
    assert "FAIL: missing 'keiko'" in s0 and "states 'brightlane'; states '950'" in s0 and s0.endswith("| pass |")
