"""Choose ``stop_bias`` on validation data: the fine-tuned summaries as long as the human ones there.

    python -m eval.calibrate --adapter <run>/adapter --biases 0,0.5,1,1.5,2 \\
        --data.sources.dialogsum.path ../shared/data/dialogsum

A fine-tuned model writes summaries about as long as its training summaries. Where the summaries
wanted are shorter (DialogSum's validation and test references are shorter than its training ones),
a positive ``stop_bias`` ends each at an earlier sentence end. This decodes the validation split
with the fine-tuned model once per bias, scores ROUGE and the length ratio, prints the table, and
names the bias whose length ratio is closest to ``--target``. The test split stays unseen; pass the
chosen bias to ``python -m eval --model.stop_bias`` or set ``model.stop_bias`` in the config.
Writes calibration.json and calibration.md into --out (default <run>/eval/calibration).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from datamodules.sources import DataError
from datamodules.tokenizer import SourceError
from eval.arguments import add_data_arguments, add_generation_arguments, add_run_arguments, parse_with_overrides
from eval.metrics import MetricArgs, compute_metrics, score_of
from eval.runner import read_examples
from model.trained_run import find_run, load_model

SCORES = ("length_ratio", "rouge1", "rouge2", "rougeL")  # eval.metrics registry keys, in table order


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m eval.calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_run_arguments(p)
    add_data_arguments(p, split="validation")
    add_generation_arguments(p)
    choice = p.add_argument_group("the choice")
    choice.add_argument(
        "--biases",
        default="0,0.25,0.5,0.75,1,1.5,2,3",
        help="comma-separated stop_bias values to try (default 0,0.25,0.5,0.75,1,1.5,2,3)",
    )
    choice.add_argument(
        "--target", type=float, default=1.0, help="length ratio wanted: words generated / human words (default 1.0)"
    )
    p.add_argument("--out", help="folder for calibration.json and calibration.md (default <run>/eval/calibration)")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Run the calibration and return what calibration.json holds."""
    args = parse_with_overrides(parser(), argv)
    try:
        biases = parse_biases(args.biases)
        return calibrate(args, biases)
    except (DataError, SourceError) as err:
        sys.exit(f"error: {err}")


def parse_biases(text: str) -> list[float]:
    """The ``--biases`` list: numbers, at least one, each once."""
    try:
        biases = [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise DataError(f"--biases {text!r}: give comma-separated numbers, e.g. 0,0.5,1,2") from None
    if not biases or len(set(biases)) != len(biases):
        raise DataError(f"--biases {text!r}: give at least one number, each once")
    return biases


def calibrate(args: argparse.Namespace, biases: list[float]) -> dict:
    """Decode the split once per bias, score it, choose, and write the two files."""
    from model.generation import generate_summaries

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run = find_run(args.config, args.ckpt_path, args.adapter, args.overrides)
    examples = read_examples(run.data, args.split, args.limit)  # bad data fails here, before the model loads
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    loaded = load_model(run, args.weights, args.device)
    module = loaded.module
    max_new = module.max_new_tokens
    prompts = [loaded.encoder.prompt_ids(e.dialogue)[0] for e in examples]
    references = [list(e.summaries) for e in examples]
    rows = []
    for bias in biases:
        label = not args.no_progress and f"stop_bias {bias:g}"
        texts = generate_summaries(
            module.model, module.tokenizer, prompts, max_new, args.batch_size, label, args.decoder, bias
        )
        scores, _ = compute_metrics(texts, references, MetricArgs(metrics=["rouge", "length"], references="mean"))
        words = sum(len(t.split()) for t in texts) / len(texts)
        rows.append({"stop_bias": bias, "words": words, **{k: scores[k] for k in SCORES}})
    chosen = min(rows, key=lambda r: (abs(r["length_ratio"] - args.target), abs(r["stop_bias"])))
    result = {
        "split": args.split,
        "examples": len(examples),
        "sources": sorted({e.source for e in examples}),
        "adapter_weights": str(run.adapter or run.ckpt_path),
        "decoder": args.decoder,
        "max_new_tokens": max_new,
        "target": args.target,
        "rows": rows,
        "stop_bias": chosen["stop_bias"],
    }
    out = Path(args.out) if args.out else run.run_dir / "eval" / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    table = calibration_markdown(result)
    (out / "calibration.md").write_text(table)
    print(table)
    print(f"written: {out / 'calibration.json'}, {out / 'calibration.md'}")
    return result


def calibration_markdown(result: dict) -> str:
    """The table of every bias tried, the chosen one marked, with how it was chosen."""
    lines = [
        "# stop_bias calibration",
        "",
        f"{result['examples']} {result['split']} examples ({', '.join(result['sources'])}), fine-tuned model, "
        f"greedy; ROUGE F1 averaged over each example's references; length ratio = words generated / human words.",
        "",
        "| stop_bias | words | " + " | ".join(score_of(k).title for k in SCORES) + " |",
        "| --- | --- |" + " --- |" * len(SCORES),
    ]
    for row in result["rows"]:
        mark = " (chosen)" if row["stop_bias"] == result["stop_bias"] else ""
        cells = [f"{row['words']:.2f}", *(f"{row[k]:.{score_of(k).digits}f}" for k in SCORES)]
        lines.append(f"| {row['stop_bias']:g}{mark} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Chosen: stop_bias {result['stop_bias']:g}, the length ratio closest to {result['target']:g}. "
        f"Use it with python -m eval --model.stop_bias {result['stop_bias']:g}, or set model.stop_bias in the config.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
