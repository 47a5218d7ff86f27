"""The real job, timed: ``python train.py fit`` as a user runs it, then ``python -m eval``, one phase table.

    python bench/real_job.py --data ../shared/data/dialogsum --tokenizer ../shared/tokenizers/gpt2 \\
        --nltk_data ../shared/nltk_data

The default config (``configs/phi2_qlora.yaml``) for one epoch of DialogSum + the enterprise set,
on a randomly initialised model of Phi-2's exact architecture in a local folder (the one
``bench/train_speed.py`` saves): validation every 100 steps with its ROUGE and samples,
checkpoints, the adapter export. Then ``python -m eval`` on the adapter: the 500 DialogSum test
dialogues, the enterprise test set and the stress set, base and fine-tuned, ROUGE/BLEU/METEOR/length.
Each command is timed whole, from its start to its exit; the fit phases come from its own log line
(``callbacks/phases.py``), eval's from its ``report.json``.

``--cap GIB`` runs fit under ``torch.cuda.set_per_process_memory_fraction`` (the token budget then
fits that much, ``datamodules/token_budget.py``); with ``--max_steps`` and ``--skip_eval`` it shows
that the default fits a smaller card, and at what speed (median ``train/tokens_per_sec`` of the
logged windows after the first, which holds compilation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callbacks.phases import PHASES, parse_phases  # noqa: E402

# Starts train.py's main under a per-process memory cap; sys.argv[1] is the cap in GiB.
CAPPED = (
    "import sys, torch; cap = float(sys.argv.pop(1)); "
    "torch.cuda.set_per_process_memory_fraction(cap * 2**30 / torch.cuda.get_device_properties(0).total_memory); "
    "sys.argv[0] = 'train.py'; import train; train.main()"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with dialogsum.{train,dev,test}.jsonl")
    parser.add_argument("--tokenizer", required=True, help="folder with Phi-2's vocab.json and merges.txt")
    parser.add_argument("--nltk_data", help="folder with WordNet, for METEOR")
    parser.add_argument("--model-dir", default="/tmp/phi2-random", help="where the random Phi-2 is saved once")
    parser.add_argument("--work", help="folder for the run's logs (default: a temporary one)")
    parser.add_argument("--cap", type=float, help="GiB of GPU memory fit may use")
    parser.add_argument("--max_steps", type=int, help="stop fit after this many optimizer steps (default: one epoch)")
    parser.add_argument("--skip_eval", action="store_true")
    parser.add_argument("--out", default="bench_real_job.jsonl", help="JSON lines of results are appended here")
    parser.add_argument("fit_args", nargs="*", help="more train.py options after --, e.g. -- --config configs/x.yaml")
    args = parser.parse_args()

    make_model = [sys.executable, str(ROOT / "bench" / "train_speed.py"), "--data", args.data]
    subprocess.run([*make_model, "--tokenizer", args.tokenizer, "--model-dir", args.model_dir, "--one", "make-model"])
    work = Path(args.work or tempfile.mkdtemp(prefix="real-job-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    args.data = str(Path(args.data).resolve())
    result = {"cap_gib": args.cap, "max_steps": args.max_steps}
    fit = fit_command(args, work)
    result["fit_s"], fit_log = timed(fit, work / "fit.log")
    result["fit_phases"] = parse_phases(fit_log)
    run_dir = newest_run(work / "logs")
    result.update(training_speed(run_dir))
    result["fit_ok"] = (run_dir / "adapter" / "adapter_config.json").exists() if run_dir else False
    budget = [line for line in fit_log.splitlines() if "token budget:" in line]
    result["token_budget"] = budget[-1].split("token budget: ", 1)[1] if budget else None
    if not args.skip_eval and result["fit_ok"]:
        evaluate = [sys.executable, "-m", "eval", "--adapter", str(run_dir / "adapter")]
        evaluate += ["--metrics", "rouge,bleu,meteor,length", "--no_progress"]
        result["eval_s"], _ = timed(evaluate, work / "eval.log", {"NLTK_DATA": args.nltk_data or ""})
        report = run_dir / "eval" / "test" / "report.json"
        if report.exists():
            result["eval_timings"] = json.loads(report.read_text()).get("timings_s", {})
    if not result["fit_ok"]:
        result["fit_tail"] = fit_log.strip().splitlines()[-5:]
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result))
    print_table(result)


def fit_command(args, work: Path) -> list[str]:
    start = [sys.executable, "-c", CAPPED, str(args.cap)] if args.cap else [sys.executable, str(ROOT / "train.py")]
    command = [*start, "fit", "--model.model", args.model_dir, "--data.sources.dialogsum.path", args.data]
    command += ["--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(work / "logs")]
    command += ["--trainer.enable_progress_bar", "false"]  # a log file, not a terminal
    if args.max_steps:
        command += ["--trainer.max_steps", str(args.max_steps)]
    return command + args.fit_args


def timed(command: list[str], log: Path, env: dict | None = None) -> tuple[float, str]:
    """Wall seconds of ``command`` (run in the repository root, output to ``log``) and its output."""
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    with log.open("w") as sink:
        subprocess.run(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    return round(seconds, 1), log.read_text()


def newest_run(logs: Path) -> Path | None:
    runs = sorted(logs.glob("*/version_*"), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def training_speed(run_dir: Path | None) -> dict:
    """Median logged ``train/tokens_per_sec`` past the first window, and the peak memory, from TensorBoard."""
    if run_dir is None:
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    speed = [e.value for e in events.Scalars("train/tokens_per_sec")] if "train/tokens_per_sec" in tags else []
    peak = [e.value for e in events.Scalars("train/peak_memory_gib")] if "train/peak_memory_gib" in tags else []
    return {
        "tokens_per_s": round(statistics.median(speed[1:] or speed)) if speed else None,
        "peak_gib": round(max(peak), 2) if peak else None,
        "steps_logged": len(speed),
    }


def print_table(result: dict) -> None:
    fit = result.get("fit_phases", {})
    whole = result["fit_s"]
    print(f"\n{'phase':32} {'seconds':>8} {'share':>6}")
    for name in PHASES:
        if name in fit:
            print(f"fit: {name:27} {fit[name]:>8.1f} {100 * fit[name] / whole:>5.0f}%")
    print(f"{'fit, whole command':32} {whole:>8.1f}")
    for name, seconds in result.get("eval_timings", {}).items():
        print(f"eval: {name:26} {seconds:>8.1f}")
    if "eval_s" in result:
        print(f"{'eval, whole command':32} {result['eval_s']:>8.1f}")
        print(f"{'whole job':32} {whole + result['eval_s']:>8.1f}")
    print(
        f"tokens/s {result.get('tokens_per_s')}, peak {result.get('peak_gib')} GiB, cap {result['cap_gib']} GiB, "
        f"adapter exported: {result['fit_ok']}; token budget: {result.get('token_budget')}"
    )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
