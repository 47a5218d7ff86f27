"""Score a saved evaluation again, without generating: other metrics, reference aggregation or encoder.

    python -m eval.rescore logs/run/eval/test/report.json --references mean \\
        --metrics rouge,bleu,meteor,bertscore,length --bertscore_model <encoder folder>

Reads the report.json written by ``python -m eval`` (each example's references and its base and
fine-tuned summaries), scores both models again and writes the full report set (report.json,
metrics.md, samples.{csv,md,html}, stress.md when the report holds a stress test) into --out,
by default a new folder beside the report: <report dir>/rescored-<references>. Settings left out
are the report's own, so a rescore with none given reproduces its scores. Typical use: the GPU run
scores ROUGE, BLEU and METEOR; BERTScore and the mean-over-references tables follow on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from datamodules.sources import Example
from eval.metrics import METRICS, REFERENCES, MetricArgs, MetricResourceError, check_resources
from eval.reports import MODELS, add_scores, metrics_table, write_reports
from eval.stress import stress_markdown


class ReportError(ValueError):
    """The input is not a readable report.json of ``python -m eval``, or --out would overwrite it."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m eval.rescore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("report", help="report.json written by python -m eval")
    p.add_argument(
        "--metrics",
        help=f"comma-separated, any of {','.join(METRICS)} or module:attribute of an eval.metrics.Metric "
        "(default: the report's)",
    )
    p.add_argument(
        "--references",
        choices=REFERENCES,
        help="how ROUGE, METEOR and BERTScore use several references per example: best, mean or first "
        "(default: the report's)",
    )
    p.add_argument("--bertscore_model", help="BERTScore encoder: Hub name or local folder (default: the report's)")
    p.add_argument(
        "--bertscore_layers",
        type=int,
        help="encoder layer (default: the report's; with a new --bertscore_model, that encoder's default)",
    )
    p.add_argument("--bertscore_batch_size", type=int, help="sentences per encoder batch (default: the report's)")
    p.add_argument("--device", default="auto", help="where the encoder runs: auto (default), cpu or cuda")
    p.add_argument("--out", help="report folder (default <report dir>/rescored-<references>); not the input's")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Rescore the report and return the new one (everything the new report.json holds)."""
    args = parser().parse_args(argv)
    try:
        return rescore(args)
    except (ReportError, MetricResourceError) as err:
        sys.exit(f"error: {err}")


def rescore(args: argparse.Namespace) -> dict:
    """Check the report, the settings and the metric resources, then score and write the reports."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    path = Path(args.report)
    report = read_report(path)
    metric_args = merged_metric_args(report["settings"].get("metric_args", {}), args)
    out_dir = Path(args.out) if args.out else path.parent / f"rescored-{metric_args.references}"
    if (out_dir / "report.json").resolve() == path.resolve():
        raise ReportError(f"--out {out_dir} holds the input report {path}; give another folder")
    check_resources(metric_args)

    examples = [
        Example(str(e["id"]), e.get("dialogue", ""), tuple(e["references"]), e.get("source", ""))
        for e in report["per_example"]
    ]
    summaries = {key: [e[key] for e in report["per_example"]] for key in MODELS}
    report["settings"]["metric_args"] = asdict(metric_args)
    report["settings"]["rescored_from"] = str(path)
    rows = add_scores(report, examples, summaries, metric_args)
    report.setdefault("timings_s", {})["rescore"] = time.perf_counter() - started
    stress_md = stress_markdown(report["stress"], MODELS) if report.get("stress") else None
    files = write_reports(out_dir, report, rows, stress_md)
    print(metrics_table(report))
    print("reports: " + ", ".join(str(p) for p in files.values()))
    return report


def read_report(path: Path) -> dict:
    """The report at ``path``, checked to hold what rescoring needs: references and both summaries."""
    if not path.is_file():
        raise ReportError(f"{path}: no such file; give the report.json written by python -m eval")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: not JSON ({err}); give the report.json written by python -m eval") from err
    entries = report.get("per_example") if isinstance(report, dict) else None
    if not entries or not isinstance(entries, list):
        raise ReportError(
            f"{path}: not an evaluation report (no per_example entries; a --stress_only report has none to score)"
        )
    for i, entry in enumerate(entries):
        refs = entry.get("references") if isinstance(entry, dict) else None
        missing = [key for key in ("id", *MODELS) if not isinstance(entry, dict) or key not in entry]
        if missing or not refs or not all(isinstance(r, str) for r in refs):
            what = f"lacks {', '.join(missing)}" if missing else "has no list of reference strings"
            raise ReportError(f"{path}: per_example[{i}] {what}; give a report.json written by python -m eval")
    report.setdefault("settings", {})
    return report


def merged_metric_args(saved: dict, args: argparse.Namespace) -> MetricArgs:
    """The report's metric settings with the command line's on top (the device is never inherited)."""
    settings = {key: saved[key] for key in ("metrics", "bertscore_model", "bertscore_batch_size") if key in saved}
    settings["bertscore_layers"] = saved.get("bertscore_layers")
    settings["references"] = saved.get("references", "best")  # reports before the setting used best
    if args.metrics is not None:
        settings["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.bertscore_model is not None and args.bertscore_model != saved.get("bertscore_model"):
        settings["bertscore_model"] = args.bertscore_model
        settings["bertscore_layers"] = None  # the saved layer belongs to the other encoder
    for key in ("bertscore_layers", "bertscore_batch_size", "references"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    try:
        return MetricArgs(**settings, device=None if args.device == "auto" else args.device)
    except ValueError as err:  # an unknown metric name, or one that does not import
        raise ReportError(str(err)) from err


if __name__ == "__main__":
    main()
