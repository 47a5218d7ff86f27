"""A saved evaluation report (``report.json`` of ``python -m eval``) as a table to sort and filter, and its metrics.

Nothing here imports Gradio or torch: the web demo's report tab calls these, and so can a notebook.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from eval.metrics import score_of
from eval.reports import MODELS, metrics_table

ALL_SOURCES = "all sources"
CURVE = "learning_curve.png"  # drawn by callbacks.losses.LossCurves in the run's log folder


class ReportError(ValueError):
    """A report file that can't be read as one ``python -m eval`` wrote."""


def find_report(run_dir: Path) -> Path | None:
    """The newest ``report.json`` under ``<run>/eval/`` (where ``python -m eval`` writes by default), or None."""
    found = list((Path(run_dir) / "eval").glob("**/report.json"))
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def read_report(path: str | Path) -> dict:
    """The report in ``path``, checked for the per-example rows the table needs."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"--report {path}: file not found; give a report.json written by python -m eval")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(f"--report {path}:{err.lineno}: not valid JSON ({err.msg})") from err
    rows = report.get("per_example") if isinstance(report, dict) else None
    if not isinstance(rows, list):
        raise ReportError(f"--report {path}: no 'per_example' list; give a report.json written by python -m eval")
    for number, row in enumerate(rows, 1):
        missing = [key for key in ("id", "references", *MODELS) if key not in row]
        if missing:
            raise ReportError(f"--report {path}: per_example row {number} lacks {', '.join(missing)}")
    return report


def score_column(model: str, score: str) -> str:
    """A score's column title: ``Fine-tuned ROUGE-L``."""
    return f"{MODELS[model]} {score_of(score).title}"


def report_rows(report: dict) -> pd.DataFrame:
    """One row per evaluated example: id, source, Human / Base / Fine-tuned, then each model's per-example scores."""
    records = []
    for row in report["per_example"]:
        record = {"id": row["id"], "source": row.get("source", ""), "Human": row["references"][0]}
        record.update({title: row[key] for key, title in MODELS.items()})
        for key in MODELS:
            scores = (row.get("scores") or {}).get(key, {})
            for name, value in scores.items():
                if shown(name):
                    record[score_column(key, name)] = round(value, 3 if name == "length_ratio" else 1)
        records.append(record)
    return pd.DataFrame.from_records(records)


def sources(rows: pd.DataFrame) -> list[str]:
    """The choices of the source filter: all, then each source in the report's order."""
    return [ALL_SOURCES, *dict.fromkeys(rows["source"])] if len(rows) else [ALL_SOURCES]


def sort_choices(rows: pd.DataFrame) -> list[str]:
    """The columns worth sorting by: the id and every score column."""
    fixed = {"id", "source", "Human", *MODELS.values()}
    return ["id", *(c for c in rows.columns if c not in fixed)]


def shown(name: str) -> bool:
    """Whether the registry shows this per-example score beside the summaries."""
    return score_of(name).in_samples


def select_rows(rows: pd.DataFrame, source: str = ALL_SOURCES, sort_by: str = "id", descending: bool = False):
    """The rows of one source (or :data:`ALL_SOURCES`), sorted by a column title (see :func:`sort_choices`)."""
    if source != ALL_SOURCES:
        rows = rows[rows["source"] == source]
    if sort_by not in rows.columns:
        raise ReportError(f"sort by {sort_by!r}: no such column; choose one of {', '.join(rows.columns)}")
    return rows.sort_values(sort_by, ascending=not descending, kind="stable").reset_index(drop=True)


def report_markdown(report: dict) -> str:
    """The report's metrics table (as metrics.md has it) and, when a stress test ran, its pass rates."""
    text = (
        metrics_table(report)
        if report.get("metrics")
        else f"{report.get('title', '')}\n\n(no metrics in this report)\n"
    )
    stress = report.get("stress")
    if stress:
        rates = ", ".join(
            f"{title} {stress['passed'][key]}/{stress['scenarios_total']} ({stress['pass_rate'][key]:.1f}%)"
            for key, title in MODELS.items()
        )
        text += f"\n**Stress test** (must-state facts stated, superseded ones left out): {rates}\n"
    return text


def curve_figure(run_dir: Path) -> Path | None:
    """The run's learning-curve figure, when its training drew one."""
    path = Path(run_dir) / CURVE
    return path if path.is_file() else None
