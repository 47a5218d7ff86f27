"""Evaluate a run: base vs fine-tuned summaries, metrics, side-by-side reports and the stress test.

    python -m eval --adapter logs/quickstart/version_0/adapter --limit 20 --bertscore_model <encoder folder>
    python -m eval --adapter logs/phi2_qlora/version_0/adapter --data.sources.dialogsum.path <folder>
    python -m eval --config logs/phi2_qlora/version_0/config.yaml --ckpt_path last --split validation

The run (its model class, data sources, prompt, max_new_tokens, stop_bias) is rebuilt from its saved
config.yaml; any of its options can be overridden in the training syntax (--model.stop_bias 1.0).
Base = the same model with its adapter disabled; both decode the same prompts greedily. The stress
test runs on the stress split of every source that has one (data/enterprise/stress.jsonl).
Reports land in --out (default <run>/eval/<split>): metrics.md, samples.{csv,md,html}, stress.md, report.json.
python -m eval.rescore <report.json> recomputes the metrics from a report's saved summaries.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from datamodules.sources import DataError
from datamodules.tokenizer import SourceError
from eval.arguments import add_data_arguments, add_generation_arguments, add_run_arguments, parse_with_overrides
from eval.metrics import METRICS, REFERENCES, MetricArgs, MetricResourceError, check_resources
from eval.reports import MODELS, add_scores, metrics_table, write_reports
from eval.runner import generate_pair, read_examples, stress_files
from eval.stress import read_stress, stress_markdown, stress_report
from model.trained_run import find_run, load_model


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_run_arguments(p)
    data = add_data_arguments(p, split="test")
    data.add_argument(
        "--stress", help="stress set file (default: the stress split of the run's sources); 'none' skips it"
    )
    data.add_argument("--stress_limit", type=int, help="run only the first N stress scenarios (default all)")
    data.add_argument("--stress_only", action="store_true", help="run only the stress test, no metrics")
    add_generation_arguments(p)
    met = p.add_argument_group("metrics")
    met.add_argument(
        "--metrics",
        default=",".join(METRICS),
        help=f"comma-separated, any of {','.join(METRICS)} or module:attribute of an eval.metrics.Metric of your own",
    )
    met.add_argument("--bertscore_model", default="roberta-large", help="BERTScore encoder: Hub name or local folder")
    met.add_argument(
        "--bertscore_layers", type=int, help="encoder layer (default: bert_score's for the name, else last)"
    )
    met.add_argument("--bertscore_batch_size", type=int, default=32)
    met.add_argument(
        "--references",
        default="best",
        choices=REFERENCES,
        help="how ROUGE, METEOR and BERTScore use several references per example: best (default), mean, "
        "or first (the first reference only, as the DialogSum authors' baseline scores summary1)",
    )
    p.add_argument("--out", help="report folder (default <run>/eval/<split>)")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the evaluation and return the report (everything report.json holds)."""
    args = parse_with_overrides(parser(), argv)
    try:
        return evaluate(args)
    except (DataError, SourceError, MetricResourceError) as err:
        sys.exit(f"error: {err}")


def evaluate(args: argparse.Namespace) -> dict:
    """Check everything that can fail fast, then generate, score and write the reports."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    run = find_run(args.config, args.ckpt_path, args.adapter, args.overrides)
    try:
        metric_args = MetricArgs(
            metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
            bertscore_model=args.bertscore_model,
            bertscore_layers=args.bertscore_layers,
            bertscore_batch_size=args.bertscore_batch_size,
            device=None if args.device == "auto" else args.device,
            references=args.references,
        )
    except ValueError as err:  # an unknown metric name
        sys.exit(f"error: {err}")
    # Everything that can fail without the model fails here, before minutes of loading and decoding.
    examples = []
    if not args.stress_only:
        check_resources(metric_args)
        examples = read_examples(run.data, args.split, args.limit)
    stress_paths = (
        stress_files(run.data) if args.stress is None else [] if args.stress.lower() == "none" else [args.stress]
    )
    stress = [e for path in stress_paths for e in read_stress(path)][: args.stress_limit]
    if args.stress_only and not stress:
        raise DataError("--stress_only but no stress set; give --stress <file>")

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    loaded = load_model(run, args.weights, args.device)
    max_new, stop_bias = loaded.module.max_new_tokens, loaded.module.stop_bias
    prompt_of = lambda ex: loaded.encoder.prompt_ids(ex.dialogue)[0]  # noqa: E731
    all_examples = examples + stress
    base, tuned = generate_pair(
        loaded,
        [prompt_of(e) for e in all_examples],
        max_new,
        args.batch_size,
        not args.no_progress,
        args.decoder,
        stop_bias,
    )
    summaries = {"base": base[: len(examples)], "fine_tuned": tuned[: len(examples)]}
    stress_summaries = {"base": base[len(examples) :], "fine_tuned": tuned[len(examples) :]}

    out_dir = Path(args.out) if args.out else run.run_dir / "eval" / ("stress" if args.stress_only else args.split)
    weights = run.adapter or run.ckpt_path
    title = (
        f"{weights}: base vs fine-tuned on {'stress' if args.stress_only else args.split} ({len(examples)} examples)"
    )
    report = {
        "title": title,
        "settings": {
            "config": str(run.config_path),
            "overrides": args.overrides,
            **{f"{key}_class": path for key, path in run.class_paths.items()},
            "adapter_weights": str(weights),
            "base_model": loaded.module.model_name,
            "split": args.split,
            "examples": len(examples),
            "limit": args.limit,
            "stress_limit": args.stress_limit,
            "max_new_tokens": max_new,
            "batch_size": args.batch_size,
            "decoder": args.decoder,  # auto, generate, static, compiled or graphed
            "weights": args.weights,  # merged, dense or 4bit
            "decoding": "greedy",
            "stop_bias": stop_bias,
            "metric_args": asdict(metric_args),
        },
        "metrics": {},
        "per_example": [],
    }
    rows = add_scores(report, examples, summaries, metric_args) if examples else []
    stress_md = None
    if stress:
        report["stress"] = stress_report(stress, stress_summaries)
        report["stress"]["file"] = ", ".join(map(str, stress_paths))
        stress_md = stress_markdown(report["stress"], MODELS)
    report["timings_s"] = {**loaded.timings, "total": time.perf_counter() - started}
    files = write_reports(out_dir, report, rows, stress_md)
    if examples:
        print(metrics_table(report))
    if stress:
        rates = report["stress"]["pass_rate"]
        print(f"stress test: base {rates['base']:.1f}% passed, fine-tuned {rates['fine_tuned']:.1f}% passed")
    print("reports: " + ", ".join(str(p) for p in files.values()))
    return report


if __name__ == "__main__":
    main()
