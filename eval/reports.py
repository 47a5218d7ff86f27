"""Scoring both models and writing the reports: metrics table, side-by-side samples (CSV, Markdown, HTML), JSON.

``python -m eval`` (after generating) and ``python -m eval.rescore`` (from a saved report.json)
both call :func:`add_scores`, then :func:`write_reports`.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from datamodules.sources import Example
from eval.metrics import MetricArgs, compute_metrics, describe_references, score_of, subset_scores

MODELS = {"base": "Base", "fine_tuned": "Fine-tuned"}


def add_scores(
    report: dict, examples: list[Example], summaries: dict[str, list[str]], metric_args: MetricArgs
) -> list[dict]:
    """Score each model's summaries (``summaries[model]``, one per example) into ``report``; return the samples.

    Fills ``metrics`` (corpus scores per model), ``improvement``, ``per_example`` (each
    example's dialogue, references, summaries and scores: all that rescoring needs) and, when the
    examples come from more than one source, ``metrics_by_source`` (source -> model -> scores).
    """
    references = [list(e.summaries) for e in examples]
    scores = {}
    report["metrics"] = {}
    for key in MODELS:
        report["metrics"][key], scores[key] = compute_metrics(summaries[key], references, metric_args)
    report["improvement"] = improvements(report["metrics"]["base"], report["metrics"]["fine_tuned"])
    report["per_example"] = [
        {
            "id": e.id,
            "source": e.source,
            "dialogue": e.dialogue,
            "references": list(e.summaries),
            **{k: summaries[k][i] for k in MODELS},
            "scores": {k: scores[k][i] for k in MODELS},
        }
        for i, e in enumerate(examples)
    ]
    sources = list(dict.fromkeys(e.source for e in examples))
    report.pop("metrics_by_source", None)
    if len(sources) > 1:
        report["metrics_by_source"] = {
            source: source_scores(examples, summaries, scores, source, metric_args) for source in sources
        }
    return sample_rows(examples, summaries, scores)


def source_scores(
    examples: list[Example],
    summaries: dict[str, list[str]],
    scores: dict[str, list[dict]],
    source: str,
    metric_args: MetricArgs,
) -> dict[str, dict[str, float]]:
    """Corpus scores of each model on the examples of one source, each as an evaluation of that source alone."""
    keep = [i for i, e in enumerate(examples) if e.source == source]
    references = [list(examples[i].summaries) for i in keep]
    return {
        key: subset_scores([summaries[key][i] for i in keep], references, [scores[key][i] for i in keep], metric_args)
        for key in MODELS
    }


def improvements(base: dict[str, float], tuned: dict[str, float]) -> dict[str, dict[str, float | None]]:
    """Absolute and relative (%) change from base to fine-tuned corpus scores, per metric."""
    out = {}
    for name in (n for n in base if n in tuned):
        delta = tuned[name] - base[name]
        out[name] = {"absolute": delta, "relative_pct": 100 * delta / base[name] if base[name] else None}
    return out


def metrics_markdown(base: dict[str, float], tuned: dict[str, float], header: str = "") -> str:
    """The metrics table: base, fine-tuned, absolute and relative change, under ``header`` (what was evaluated)."""
    lines = [header, ""] if header else []
    lines += ["| metric | Base | Fine-tuned | change | relative |", "| --- | ---: | ---: | ---: | ---: |"]
    changes = improvements(base, tuned)
    for name, change in changes.items():
        score = score_of(name)
        rel = "n/a" if change["relative_pct"] is None else f"{change['relative_pct']:+.1f}%"
        lines.append(
            f"| {score.title} | {base[name]:.{score.digits}f} | {tuned[name]:.{score.digits}f} | "
            f"{change['absolute']:+.{score.digits}f} | {rel} |"
        )
    if changes:
        lines += ["", footnote(list(changes))]
    return "\n".join(lines) + "\n"


def footnote(keys: list[str]) -> str:
    """What the scores ``keys`` of a table mean and which way each is better, from the registry."""
    scores = [score_of(key) for key in keys]
    notes = list(dict.fromkeys(s.note for s in scores if s.note))
    other = [
        f"{s.title} ({'lower is better' if s.better == 'lower' else f'best at {s.better}'})"
        for s in scores
        if s.better != "higher"
    ]
    return " ".join([*notes, "Higher is better" + (f" except {', '.join(other)}." if other else ".")])


def metrics_table(report: dict) -> str:
    """metrics.md for ``report``: its title, how several references were used, then the table.

    Reports written before ``settings.metric_args.references`` existed used ``best``.
    """
    corpus = report.get("metrics", {})
    base, tuned = corpus.get("base", {}), corpus.get("fine_tuned", {})
    combine = report.get("settings", {}).get("metric_args", {}).get("references", "best")
    header = [report.get("title", ""), describe_references(combine, list(base))]
    table = metrics_markdown(base, tuned, "\n".join(line for line in header if line))
    for source, models in report.get("metrics_by_source", {}).items():
        count = sum(1 for row in report.get("per_example", []) if row.get("source") == source)
        table += "\n" + metrics_markdown(models["base"], models["fine_tuned"], f"### {source} ({count} examples)")
    return table


def sample_rows(examples: list[Example], summaries: dict[str, list[str]], scores: dict[str, list[dict]]) -> list[dict]:
    """One flat row per example: dialogue, human summaries, each model's summary and its scores."""
    rows = []
    for i, example in enumerate(examples):
        row = {"id": example.id, "source": example.source, "dialogue": example.dialogue, "human": example.summaries[0]}
        row["other_references"] = "\n".join(example.summaries[1:])
        for key in MODELS:
            row[key] = summaries[key][i]
            for name, value in scores[key][i].items():
                if score_of(name).in_samples:
                    row[f"{key}_{name}"] = round(value, 4)
        rows.append(row)
    return rows


def write_samples_csv(rows: list[dict], path: Path) -> None:
    """Write the side-by-side rows as CSV (one example a row)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def samples_markdown(rows: list[dict]) -> str:
    """The side-by-side table as Markdown: Human | Base | Fine-tuned, ROUGE-L under each summary."""
    cell = lambda text: html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", "<br>")  # noqa: E731
    lines = ["# Human / Base / Fine-tuned", "", "| id | Human | Base | Fine-tuned |", "| --- | --- | --- | --- |"]
    for row in rows:
        parts = [cell(row["id"]), cell(row["human"])]
        for key in MODELS:
            score = row.get(f"{key}_rougeL")
            parts.append(cell(row[key]) + (f"<br>*ROUGE-L {score:.1f}*" if score is not None else ""))
        lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines) + "\n"


def samples_html(rows: list[dict], title: str, metrics_md: str = "") -> str:
    """A self-contained HTML page: the metrics table and every example side by side, dialogue foldable."""
    esc = lambda text: html.escape(str(text)).replace("\n", "<br>")  # noqa: E731
    body = []
    for row in rows:
        scores = []
        for key in MODELS:
            found = [f"{name[len(key) + 1 :]} {value:.2f}" for name, value in row.items() if name.startswith(f"{key}_")]
            scores.append(f"<div class=s>{', '.join(found)}</div>")
        body.append(
            f"<tr><td><b>{esc(row['id'])}</b><details><summary>dialogue</summary>{esc(row['dialogue'])}</details></td>"
            f"<td>{esc(row['human'])}</td><td>{esc(row['base'])}{scores[0]}</td>"
            f"<td>{esc(row['fine_tuned'])}{scores[1]}</td></tr>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;width:100%}"
        "td,th{border:1px solid #ccc;padding:6px;vertical-align:top;width:25%}.s{color:#666;font-size:85%}"
        "pre{background:#f6f6f6;padding:1em}"
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{esc(title)}</title><style>{style}</style></head>"
        f"<body><h1>{esc(title)}</h1><pre>{html.escape(metrics_md)}</pre>"
        "<table><tr><th>example</th><th>Human</th><th>Base</th><th>Fine-tuned</th></tr>"
        + "\n".join(body)
        + "</table></body></html>\n"
    )


def write_reports(out_dir: Path, report: dict, rows: list[dict], stress_md: str | None = None) -> dict[str, Path]:
    """Write report.json, metrics.md, the samples (``rows`` from :func:`sample_rows`) and stress.md into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out_dir / "report.json",
        "metrics": out_dir / "metrics.md",
        "csv": out_dir / "samples.csv",
        "markdown": out_dir / "samples.md",
        "html": out_dir / "samples.html",
    }
    table = metrics_table(report)
    files["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    files["metrics"].write_text(table, encoding="utf-8")
    if rows:
        write_samples_csv(rows, files["csv"])
        files["markdown"].write_text(samples_markdown(rows), encoding="utf-8")
        files["html"].write_text(samples_html(rows, report.get("title", "evaluation"), table), encoding="utf-8")
    else:
        for kind in ("csv", "markdown", "html"):
            files.pop(kind)
    if stress_md is not None:
        files["stress"] = out_dir / "stress.md"
        files["stress"].write_text(stress_md, encoding="utf-8")
    return files
