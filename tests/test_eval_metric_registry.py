"""A metric from outside the project, named in --metrics as module:attribute: scored, titled and rescored like ours."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from test_eval_metrics import wordnet  # noqa: F401  (autouse: METEOR finds WordNet)
from test_eval_rescore import report_path  # noqa: F401  (fixture: a report.json as eval writes it)

from eval.metrics import MetricArgs, compute_metrics
from eval.reports import metrics_markdown

LAB = """
from eval.metrics import Metric, Score


def exact(predictions, references, args):
    return [{"exact_match": 100.0 * (p.strip() == r.strip())} for p, r in zip(predictions, references)]


def extra(predictions, references, args):
    rows = [{"extra_words": len(p.split()) - min(len(r.split()) for r in refs)} for p, refs in zip(predictions, references)]
    return {"extra_words": float(sum(row["extra_words"] for row in rows))}, rows


exact_match = Metric("Exact match", (Score("exact_match", "Exact match"),), exact)
extra_words = Metric("Extra words", (Score("extra_words", "Extra words", better="lower"),), extra, per_reference=False)
clash = Metric("Clash", (Score("rouge1", "My ROUGE-1"),), exact)
not_a_metric = exact
"""


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A folder outside the project holding my_lab_metrics.py, on the import path."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "my_lab_metrics.py").write_text(LAB)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("my_lab_metrics", None)


def test_an_outside_metric_is_scored_and_its_references_combined_like_ours(lab):
    preds = ["Tom calls Ann.", "They meet at noon."]
    refs = [["Ann is called by Tom.", "Tom calls Ann."], ["They meet at noon.", "They meet at 12."]]
    names = ["my_lab_metrics.extra_words", "my_lab_metrics:exact_match", "rouge"]
    rows = {}
    for how in ("best", "mean", "first"):
        corpus, rows[how] = compute_metrics(preds, refs, MetricArgs(metrics=names, references=how))
        # Report order: the built-in metrics first, then the others as given.
        assert list(corpus) == ["rouge1", "rouge2", "rougeL", "rougeLsum", "extra_words", "exact_match"]
    assert [r["exact_match"] for r in rows["best"]] == [100.0, 100.0]
    assert [r["exact_match"] for r in rows["mean"]] == [50.0, 50.0]
    assert [r["exact_match"] for r in rows["first"]] == [0.0, 100.0]
    # Set-level: every reference, whatever the protocol (the first alone would give 3 - 5 = -2 words).
    assert [r["extra_words"] for r in rows["first"]] == [0, 0] and corpus["extra_words"] == 0.0


def test_an_outside_metric_has_its_title_and_direction_in_the_table(lab):
    MetricArgs(metrics=["my_lab_metrics:exact_match", "my_lab_metrics:extra_words", "length"])
    base = {"exact_match": 10.0, "extra_words": 40.0, "length_ratio": 1.5}
    tuned = {"exact_match": 20.0, "extra_words": 10.0, "length_ratio": 1.1}
    table = metrics_markdown(base, tuned)
    assert "| Exact match | 10.00 | 20.00 | +10.00 | +100.0% |" in table
    assert "| Extra words | 40.00 | 10.00 | -30.00 | -75.0% |" in table
    assert "Higher is better except Extra words (lower is better), Length ratio (best at 1.0)." in table


def test_bad_metric_names_fail_in_one_line_naming_what_to_do(lab):
    cases = {
        "rouge,no_such_lab.metrics:exact_match": "metric no_such_lab.metrics:exact_match: cannot import "
        "no_such_lab.metrics (No module named 'no_such_lab'); put its folder on PYTHONPATH",
        "my_lab_metrics:not_a_metric": "my_lab_metrics.not_a_metric is a function, not an eval.metrics.Metric",
        "my_lab_metrics:missing": "my_lab_metrics.missing is nothing, not an eval.metrics.Metric",
        "my_lab_metrics:clash": "metric my_lab_metrics:clash: score keys rouge1 belong to another metric; rename them",
        "rouge,blue": "unknown metrics blue; choose from rouge, bleu, meteor, bertscore, length, or name a Metric",
    }
    for names, expected in cases.items():
        with pytest.raises(ValueError) as err:
            MetricArgs(metrics=names.split(","))
        assert expected in str(err.value) and "\n" not in str(err.value), names


def test_rescore_with_an_outside_metric_by_configuration_alone(lab, report_path, tmp_path):  # noqa: F811
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lab), str(ROOT)])}
    out = tmp_path / "with_exact"
    command = [sys.executable, "-m", "eval.rescore", str(report_path), "--metrics", "rouge,my_lab_metrics:exact_match"]
    subprocess.run([*command, "--out", str(out)], cwd=ROOT, env=env, check=True, capture_output=True)
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]["fine_tuned"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match"}
    assert all(e["scores"]["base"]["exact_match"] == 0.0 for e in report["per_example"])
    assert "| Exact match | 0.00 |" in (out / "metrics.md").read_text()
    assert report["settings"]["metric_args"]["metrics"] == ["rouge", "my_lab_metrics:exact_match"]

    from eval.rescore import main

    again = main([str(out / "report.json"), "--out", str(tmp_path / "again")])  # the saved name is imported again
    assert again["metrics"] == report["metrics"]
