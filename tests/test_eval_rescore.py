"""``python -m eval.rescore`` on a report written by the eval's own scoring and writing code (no model)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from statistics import fmean

import pytest
from conftest import DIALOGSUM, ROOT
from test_eval_metrics import wordnet  # noqa: F401  (autouse: METEOR finds WordNet)

from datamodules.sources import load_split
from eval.metrics import MetricArgs
from eval.reports import MODELS, add_scores, write_reports
from eval.rescore import main
from eval.scorers import rouge_pairs
from eval.stress import read_stress, stress_markdown, stress_report

N = 5


@pytest.fixture
def report_path(tmp_path):
    """A report.json of 5 DialogSum test dialogues (3 references each) and 2 stress scenarios, as eval writes it."""
    examples = load_split(str(DIALOGSUM), "test", "dialogsum")[:N]
    # Stand-in summaries: base rambles (the dialogue's first turn), fine-tuned paraphrases a reference.
    summaries = {
        "base": [e.dialogue.splitlines()[0] for e in examples],
        "fine_tuned": [" ".join(e.summaries[2].split()[:12]) for e in examples],
    }
    args = MetricArgs(metrics=["rouge", "bleu", "meteor", "length"])
    report = {"title": "tiny: base vs fine-tuned on test", "settings": {"metric_args": asdict(args)}}
    rows = add_scores(report, examples, summaries, args)
    stress = read_stress(ROOT / "data" / "enterprise" / "stress.jsonl")[:2]
    report["stress"] = stress_report(stress, {"base": ["nothing", "nothing"], "fine_tuned": ["x", "y"]})
    out = tmp_path / "eval" / "test"
    write_reports(out, report, rows, stress_markdown(report["stress"], MODELS))
    return out / "report.json"


def test_same_settings_reproduce_every_score_and_write_every_file(report_path):
    before = report_path.read_bytes()
    original = json.loads(before)
    new = main([str(report_path)])
    out = report_path.parent / "rescored-best"
    assert new["metrics"] == original["metrics"]  # exactly: same summaries, references and settings
    assert [e["scores"] for e in new["per_example"]] == [e["scores"] for e in original["per_example"]]
    assert report_path.read_bytes() == before  # the input report is left alone
    saved = json.loads((out / "report.json").read_text())
    assert saved["metrics"] == original["metrics"] and saved["settings"]["rescored_from"] == str(report_path)
    assert (out / "stress.md").read_text() == (report_path.parent / "stress.md").read_text()
    assert (out / "metrics.md").read_text() == (report_path.parent / "metrics.md").read_text()
    assert "best-matching reference" in (out / "metrics.md").read_text()
    with open(out / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["dialogue"] for r in rows] == [e["dialogue"] for e in original["per_example"]]
    assert (out / "samples.html").read_text().count("<details>") == N


def test_mean_references_rescore_averages_each_reference(report_path, tmp_path):
    original = json.loads(report_path.read_text())
    new = main([str(report_path), "--references", "mean", "--metrics", "rouge,bleu"])
    out = report_path.parent / "rescored-mean"
    by_hand = [
        fmean(s["rouge1"] for s in rouge_pairs([e["fine_tuned"]] * 3, e["references"])) for e in original["per_example"]
    ]
    assert [e["scores"]["fine_tuned"]["rouge1"] for e in new["per_example"]] == pytest.approx(by_hand)
    assert new["metrics"]["fine_tuned"]["rouge1"] == pytest.approx(fmean(by_hand))
    assert new["metrics"]["fine_tuned"]["rouge1"] < original["metrics"]["fine_tuned"]["rouge1"]  # mean < best here
    assert new["metrics"]["fine_tuned"]["bleu"] == original["metrics"]["fine_tuned"]["bleu"]  # BLEU: no aggregation
    assert set(new["metrics"]["base"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"}
    saved = json.loads((out / "report.json").read_text())
    assert saved["settings"]["metric_args"]["references"] == "mean"
    assert "take the mean over each example's references" in (out / "metrics.md").read_text()
    main([str(out / "report.json"), "--out", str(tmp_path / "again")])  # a rescored report rescoring itself
    assert json.loads((tmp_path / "again" / "report.json").read_text())["metrics"] == new["metrics"]


def test_bad_inputs_fail_in_one_line(report_path, tmp_path):
    (tmp_path / "notes.json").write_text("not json")
    (tmp_path / "other.json").write_text(json.dumps({"title": "x", "per_example": []}))
    entry = {"id": "a", "base": "b"}
    (tmp_path / "partial.json").write_text(json.dumps({"per_example": [{**entry, "references": ["r"]}, entry]}))
    cases = {
        (str(tmp_path / "missing.json"),): "no such file",
        (str(tmp_path / "notes.json"),): "not JSON",
        (str(tmp_path / "other.json"),): "no per_example entries",
        (str(tmp_path / "partial.json"),): "per_example[0] lacks fine_tuned",
        (str(report_path), "--metrics", "rouge,blue"): "unknown metrics blue",
        (str(report_path), "--out", str(report_path.parent)): "holds the input report",
    }
    for argv, expected in cases.items():
        with pytest.raises(SystemExit) as err:
            main(list(argv))
        assert expected in str(err.value) and "\n" not in str(err.value), (argv, err.value)


def test_two_sources_get_their_own_tables_equal_to_scoring_each_alone():
    dialogsum = load_split(str(DIALOGSUM), "test", "dialogsum")[:4]
    enterprise = load_split(str(ROOT / "data" / "enterprise"), "test", "enterprise")[:3]

    def make(examples):
        return {
            "base": [e.dialogue.splitlines()[0] for e in examples],
            "fine_tuned": [" ".join(e.summaries[0].split()[:10]) for e in examples],
        }

    args = MetricArgs(metrics=["rouge", "bleu", "length"])
    both = {"title": "two sources", "settings": {"metric_args": asdict(args)}}
    add_scores(both, dialogsum + enterprise, {k: make(dialogsum)[k] + make(enterprise)[k] for k in MODELS}, args)
    for name, examples in (("dialogsum", dialogsum), ("enterprise", enterprise)):
        alone = {}
        add_scores(alone, examples, make(examples), args)
        assert "metrics_by_source" not in alone  # one source: the overall table is its table
        for key in MODELS:
            assert both["metrics_by_source"][name][key] == pytest.approx(alone["metrics"][key])
    assert both["metrics_by_source"]["dialogsum"]["fine_tuned"] != both["metrics"]["fine_tuned"]
    from eval.reports import metrics_table

    table = metrics_table(both)
    assert "### dialogsum (4 examples)" in table and "### enterprise (3 examples)" in table


def test_first_reference_rescore_scores_summary1_and_says_so(report_path):
    # The DialogSum authors' baseline (cylnlp/dialogsum, Baseline/bart_train.py) scores the file's summary1 column
    # alone, so "first" must be summary1 as the file has it, whatever order the references take elsewhere.
    rows = [json.loads(line) for line in (DIALOGSUM / "dialogsum.test.jsonl").read_text().splitlines()[:N]]
    original = json.loads(report_path.read_text())
    new = main([str(report_path), "--references", "first", "--metrics", "rouge"])
    fine_tuned = [e["fine_tuned"] for e in original["per_example"]]
    by_hand = [s["rougeL"] for s in rouge_pairs(fine_tuned, [row["summary1"] for row in rows])]
    assert [e["scores"]["fine_tuned"]["rougeL"] for e in new["per_example"]] == pytest.approx(by_hand)
    others = [s["rougeL"] for s in rouge_pairs(fine_tuned, [row["summary3"] for row in rows])]
    assert others != pytest.approx(by_hand)  # the stand-in summaries paraphrase summary3: the choice shows
    footnote = (report_path.parent / "rescored-first" / "metrics.md").read_text()
    assert (
        "References: the scores of ROUGE take each example's first reference only "
        "(DialogSum's summary1, as the DialogSum authors' baseline script scores)"
    ) in footnote
