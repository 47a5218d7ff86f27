"""The web demo's logic without a browser: fact marks, input checks, finding the weights, the report table.

The page itself is driven in chromium by tests/test_app_browser.py (marked ``browser``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from datamodules.encoding import PromptEncoder
from datamodules.prompts import PromptFormat
from datamodules.tokenizer import SourceError
from eval.app_model import check_dialogue, demo_examples, locate_weights
from eval.fact_marks import Facts, fact_spans, summary_html
from eval.report_browser import ALL_SOURCES, ReportError, read_report, report_rows, select_rows, sort_choices, sources
from eval.stress import check_summary
from model.trained_run import Run

FACTS = Facts(must_state=[["keiko"], ["ten days", "10 days"]], must_not_state=[["brightlane"], ["950"]])


def test_stated_facts_are_green_superseded_ones_red_and_missing_ones_listed():
    summary = "Keiko leads the team; Brightlane is dropped and keiko's course starts in <September>."
    page = summary_html(summary, FACTS)
    assert page.count('<mark class="fact-stated"') == 2  # both "Keiko" and "keiko's"
    assert '<mark class="fact-stated" style="background:#bbf7d0;color:#14532d">Keiko</mark>' in page
    assert '<mark class="fact-superseded" style="background:#fecaca;color:#7f1d1d">Brightlane</mark>' in page
    assert "&lt;September&gt;" in page and "<September>" not in page  # model text can't inject HTML
    assert "✗ misses 'ten days' / '10 days'" in page
    assert "✗ states superseded 'brightlane'" in page and "✓ leaves out superseded '950'" in page
    assert "stress check fails" in page
    assert not check_summary(summary, FACTS.must_state, FACTS.must_not_state).passed  # the verdict agrees


def test_a_passing_summary_and_a_plain_conversation():
    passing = summary_html("Keiko becomes lead; ten days of consulting.", FACTS)
    assert "stress check passes" in passing and "fact-superseded" not in passing and "✗" not in passing
    plain = summary_html("Keiko becomes lead.")  # not a stress scenario: no marks, no checklist
    assert "<mark" not in plain and "fact-checks" not in plain and "Keiko becomes lead." in plain
    assert "(empty summary)" in summary_html("  ", FACTS)


def test_fact_spans_find_every_form_case_insensitively_and_merge_overlaps():
    text = "Ten days, then 10 DAYS; ten days again"
    assert fact_spans(text, [["ten days", "10 days"]]) == [(0, 8), (15, 22), (24, 32)]
    assert fact_spans("new york office", [["new york"], ["york office"]]) == [(0, 15)]


@pytest.fixture
def encoder(tokenizer):
    return PromptEncoder(tokenizer, PromptFormat(), max_length=64)


def test_input_checks_refuse_empty_and_far_too_long_and_note_a_cut(encoder):
    assert check_dialogue("   \n", encoder).refused
    assert "empty" in check_dialogue("", encoder).message
    short = check_dialogue("#Person1#: Lunch at noon?\n#Person2#: Sure.", encoder)
    assert not short.refused and short.message == ""
    room = 64 - len(encoder.prompt_ids("")[0])
    somewhat = " ".join(["word"] * int(room * 1.5))
    note = check_dialogue(somewhat, encoder)
    assert not note.refused and "were cut" in note.message and "data.max_length 64" in note.message
    far = check_dialogue(" ".join(["word"] * (3 * room)), encoder)
    assert far.refused and "too long" in far.message and "Shorten it" in far.message
    assert check_dialogue("x" * 100_000, encoder).refused  # refused before tokenizing


def test_the_weights_are_found_from_a_run_folder_adapter_or_checkpoint(tmp_path):
    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert locate_weights(str(run)) == (str(run / "checkpoints" / "last.ckpt"), None)
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}")
    assert locate_weights(str(run)) == (None, str(run / "adapter"))  # the exported adapter first
    assert locate_weights(str(run / "adapter")) == (None, str(run / "adapter"))
    assert locate_weights(str(run / "checkpoints" / "last.ckpt"))[0] == str(run / "checkpoints" / "last.ckpt")
    with pytest.raises(SourceError, match="not a checkpoint, an adapter folder"):
        locate_weights(str(tmp_path))


def test_examples_include_stress_scenarios_with_their_facts_and_skip_what_does_not_fit():
    from datamodules.dialogsum import DialogSumDataModule

    data = DialogSumDataModule(sources={"enterprise": str(ROOT / "data" / "enterprise")})
    run = Run(Path("config.yaml"), module=None, data=data)
    examples = demo_examples(run, fits=lambda text: True, plain=2, stress=3)
    assert [e.facts is None for e in examples] == [True, True, False, False, False]
    assert len({e.label for e in examples[2:]}) == 3 and all(e.label.startswith("stress: ") for e in examples[2:])
    assert all(e.facts.must_state for e in examples[2:])
    short = demo_examples(run, fits=lambda text: len(text) < 900, plain=3, stress=4)
    assert short and all(len(e.dialogue) < 900 for e in short)


def write_report(path, rows):
    path.write_text(json.dumps({"title": "t", "metrics": {}, "per_example": rows}))
    return path


def example_row(id_, source, rouge_l):
    scores = {"rougeL": rouge_l, "length_ratio": 1.23456}
    return {
        "id": id_,
        "source": source,
        "dialogue": "d",
        "references": [f"human {id_}", "second"],
        "base": f"base {id_}",
        "fine_tuned": f"tuned {id_}",
        "scores": {"base": scores, "fine_tuned": {**scores, "rougeL": rouge_l + 10}},
    }


def test_report_table_filters_by_source_and_sorts_by_score(tmp_path):
    rows = [
        example_row("a", "dialogsum", 30.04),
        example_row("b", "enterprise", 50.0),
        example_row("c", "dialogsum", 10),
    ]
    table = report_rows(read_report(write_report(tmp_path / "report.json", rows)))
    assert list(table.columns[:5]) == ["id", "source", "Human", "Base", "Fine-tuned"]
    assert table.loc[0, "Human"] == "human a" and table.loc[0, "Fine-tuned ROUGE-L"] == 40.0
    assert table.loc[0, "Base Length ratio"] == 1.235  # rounded for the page
    assert sources(table) == [ALL_SOURCES, "dialogsum", "enterprise"]
    assert "Fine-tuned ROUGE-L" in sort_choices(table)
    best_first = select_rows(table, ALL_SOURCES, "Fine-tuned ROUGE-L", descending=True)
    assert list(best_first["id"]) == ["b", "a", "c"]
    assert list(select_rows(table, "dialogsum", "Base ROUGE-L")["id"]) == ["c", "a"]


def test_unreadable_reports_say_what_is_wrong(tmp_path):
    with pytest.raises(ReportError, match="file not found"):
        read_report(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"per_example": [\n oops')
    with pytest.raises(ReportError, match=r"bad.json:2: not valid JSON"):
        read_report(tmp_path / "bad.json")
    (tmp_path / "calib.json").write_text('{"biases": []}')
    with pytest.raises(ReportError, match="no 'per_example' list"):
        read_report(tmp_path / "calib.json")
    row = example_row("a", "x", 1.0)
    del row["fine_tuned"]
    with pytest.raises(ReportError, match="row 1 lacks fine_tuned"):
        read_report(write_report(tmp_path / "r.json", [row]))


def test_a_bad_run_or_report_stops_the_app_before_the_model_loads(tmp_path):
    from eval.app import main

    with pytest.raises(SystemExit, match="--report .*missing.json: file not found"):
        main([str(tmp_path), "--report", str(tmp_path / "missing.json")])
    with pytest.raises(SystemExit, match="not a checkpoint, an adapter folder"):
        main([str(tmp_path)])
