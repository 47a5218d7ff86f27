"""The metrics table and side-by-side files, on hand-made scores."""

from __future__ import annotations

import csv
import json

from datamodules.sources import Example
from eval.reports import improvements, metrics_markdown, sample_rows, write_reports

BASE = {"rouge1": 20.0, "bleu": 0.0, "length_ratio": 2.0}
TUNED = {"rouge1": 30.0, "bleu": 5.0, "length_ratio": 1.1}


def test_improvement_is_absolute_and_relative():
    change = improvements(BASE, TUNED)
    assert change["rouge1"] == {"absolute": 10.0, "relative_pct": 50.0}
    assert change["bleu"] == {"absolute": 5.0, "relative_pct": None}  # no relative change from zero
    assert round(change["length_ratio"]["absolute"], 6) == -0.9


def test_metrics_table_rows():
    table = metrics_markdown(BASE, TUNED, "run x")
    assert table.startswith("run x\n")
    assert "| ROUGE-1 | 20.00 | 30.00 | +10.00 | +50.0% |" in table
    assert "| BLEU | 0.00 | 5.00 | +5.00 | n/a |" in table
    assert "| Length ratio | 2.000 | 1.100 | -0.900 | -45.0% |" in table
    assert table.endswith("Scores are 0-100. Length ratio: words generated / words in the human summaries (1.0 = "
                          "as long). Higher is better except Length ratio (best at 1.0).\n")  # fmt: skip


def test_side_by_side_files_escape_and_keep_every_example(tmp_path):
    examples = [
        Example("a", "#Person1#: <b>hi</b> | there", ("Ref one.", "Ref two."), "dialogsum"),
        Example("b", "#Person1#: bye", ("Ref b.",), "enterprise"),
    ]
    summaries = {"base": ["base a | pipe", "base b"], "fine_tuned": ["tuned <a>", "tuned b"]}
    scores = {k: [{"rougeL": 12.345, "length_ratio": 1.0}] * 2 for k in summaries}
    rows = sample_rows(examples, summaries, scores)
    report = {"title": "t", "metrics": {"base": BASE, "fine_tuned": TUNED}}
    files = write_reports(tmp_path, report, rows, stress_md="# Stress test\n")
    assert set(files) == {"json", "metrics", "csv", "markdown", "html", "stress"}

    with open(files["csv"], newline="") as f:
        saved = list(csv.DictReader(f))
    assert [r["base"] for r in saved] == ["base a | pipe", "base b"]
    assert saved[0]["other_references"] == "Ref two." and saved[0]["fine_tuned_rougeL"] == "12.345"
    md = files["markdown"].read_text()
    assert "base a \\| pipe<br>*ROUGE-L 12.3*" in md and "tuned &lt;a&gt;" in md
    page = files["html"].read_text()
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page and page.count("<tr>") == 3
    assert json.loads(files["json"].read_text())["metrics"]["fine_tuned"]["bleu"] == 5.0
