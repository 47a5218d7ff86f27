"""Phi-2 evaluation speed: the 500 DialogSum test dialogues, base and fine-tuned, through each decoder.

    python bench/eval_speed.py --data ../shared/data/dialogsum --tokenizer ../shared/tokenizers/gpt2 \\
        --nltk_data ../shared/nltk_data

The model is a random one of Phi-2's exact architecture (``bench/train_speed.py`` saves it once in
bf16), loaded as ``python -m eval --weights merged`` loads a run: NF4 with double quantization,
dequantized once to bf16, LoRA r=16 on every linear layer with a random B (so the fine-tuned
summaries differ from the base ones), folded into the weights for the fine-tuned pass. Prompts are
the test dialogues in the project's prompt format, decoded greedily to ``--max_new_tokens``. A random
model never emits EOS, so every row runs to the bound: the worst case for decoding time.

Each decoder of ``model.generation`` makes the base summaries, then (after the one merge) the
fine-tuned ones, then both are scored (rouge, bleu, length, and meteor when WordNet is found); its
total is base + merge + fine-tuned + metrics (WordNet's loading, done once, is in every total). ``generate`` makes its base summaries as today's eval
did, through the PEFT model with the adapter disabled. The compiled decoder compiles during its base
pass, so its fine-tuned pass shows the warm rate. One process, one model load; prints a table and
appends JSON lines to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DECODERS = ["generate", "compiled", "graphed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with dialogsum.test.jsonl")
    parser.add_argument("--tokenizer", required=True, help="folder with Phi-2's vocab.json and merges.txt")
    parser.add_argument("--model-dir", default="/tmp/phi2-random", help="where the random Phi-2 is saved once")
    parser.add_argument("--decoders", default=",".join(DECODERS), help="comma-separated, run in this order")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument("--limit", type=int, help="first N test dialogues (default all 500)")
    parser.add_argument("--nltk_data", help="folder with WordNet for METEOR; without it METEOR is skipped")
    parser.add_argument(
        "--device", default="cuda", help="cpu: a smoke run of the script (a tiny --model-dir, decoders generate,static)"
    )
    parser.add_argument("--out", default="bench_eval.jsonl")
    args = parser.parse_args()
    if args.nltk_data:
        os.environ["NLTK_DATA"] = str(Path(args.nltk_data).resolve())
    results = run(args)
    with open(args.out, "a") as f:
        for row in results:
            f.write(json.dumps(row) + "\n")
    print_table(results)


def run(args) -> list[dict]:
    import torch

    from bench.train_speed import LINEARS, make_random_phi2
    from eval.metrics import MetricArgs, MetricResourceError, check_resources
    from eval.runner import read_examples
    from model.generation import generate_token_ids
    from model.merge import detach_lora
    from model.trained_run import Run, load_model

    decoders = args.decoders.split(",")
    metrics = ["rouge", "bleu", "meteor", "length"]
    try:
        check_resources(MetricArgs(metrics=metrics))
    except MetricResourceError as err:
        print(f"METEOR skipped: {err}", flush=True)
        metrics.remove("meteor")

    start = time.perf_counter()
    make_random_phi2(Path(args.model_dir), Path(args.tokenizer))
    made_s = time.perf_counter() - start
    lora = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": LINEARS}
    config = Path(args.model_dir) / "config.yaml"  # the run a user would have trained: Phi-2 format, this data
    config.write_text(
        json.dumps({"model": {"init_args": {"model": args.model_dir, "lora": lora}},
                    "data": {"init_args": {"sources": {"dialogsum": {"path": args.data}}}}})
    )  # fmt: skip
    from train import rebuild

    run = Run(config, *rebuild(config))
    loaded = load_model(run, weights="merged", device=args.device)
    cuda = next(loaded.module.model.parameters()).device.type == "cuda"
    module, tokenizer = loaded.module, loaded.tokenizer
    torch.manual_seed(0)
    for name, param in module.model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.02)
    examples = read_examples(run.data, "test", args.limit)
    prompts = [loaded.encoder.prompt_ids(e.dialogue)[0] for e in examples]
    references = [list(e.summaries) for e in examples]
    print(
        f"model saved in {made_s:.0f} s, loaded in {loaded.timings['load_s']:.0f} s; {len(prompts)} prompts of "
        f"{min(map(len, prompts))}-{max(map(len, prompts))} tokens; metrics {','.join(metrics)}",
        flush=True,
    )
    generate_token_ids(module.model, tokenizer, prompts[:2], 4, 2, decoder="generate")  # CUDA warm-up, untimed
    start = time.perf_counter()
    score([r[0] for r in references[:2]], references[:2], metrics)  # loads WordNet: once per eval, in every total
    metrics_load_s = time.perf_counter() - start

    def timed(model, decoder: str) -> dict:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        ids = generate_token_ids(model, tokenizer, prompts, args.max_new_tokens, args.batch_size, decoder=decoder)
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        seconds = time.perf_counter() - start
        return {
            "ids": ids,
            "texts": [t.strip() for t in texts],
            "s": seconds,
            "new_tokens": sum(map(len, ids)),
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
        }

    passes = {d: {} for d in decoders}
    graphs = {}  # graphs dynamo has compiled after the compiled decoder's base pass, and after its fine-tuned pass
    if "generate" in decoders:  # today's eval: the PEFT model with its adapter disabled
        with module.model.disable_adapter():
            passes["generate"]["base"] = guarded(lambda: timed(module.model, "generate"), "generate base")
    model, held = detach_lora(module.model)
    for d in decoders:
        if d != "generate":
            passes[d]["base"] = guarded(lambda d=d: timed(model, d), f"{d} base")
            if d == "compiled":
                graphs["base"] = compile_counts()
    start = time.perf_counter()
    held.merge()
    if cuda:
        torch.cuda.synchronize()
    merge_s = time.perf_counter() - start
    for d in decoders:
        if "error" not in passes[d]["base"]:
            passes[d]["tuned"] = guarded(lambda d=d: timed(model, d), f"{d} fine-tuned")
            if d == "compiled":
                graphs["tuned"] = compile_counts()

    device = torch.cuda.get_device_name() if cuda else "cpu"
    results = []
    for d in decoders:
        base, tuned = passes[d]["base"], passes[d].get("tuned", {"error": "base pass failed"})
        row = {"decoder": d, "device": device, "examples": len(prompts), "batch_size": args.batch_size}
        row |= {
            "max_new_tokens": args.max_new_tokens,
            "metrics": ",".join(metrics),
            "load_s": round(loaded.timings["load_s"], 1),
        }
        if "error" in base or "error" in tuned:
            results.append(row | {"error": base.get("error") or tuned.get("error")})
            print(json.dumps(results[-1]), flush=True)
            continue
        start = time.perf_counter()
        scores = {k: score(p["texts"], references, metrics) for k, p in (("base", base), ("fine_tuned", tuned))}
        metrics_s = time.perf_counter() - start
        row |= {
            "base_s": round(base["s"], 2),
            "merge_s": round(merge_s, 2),
            "tuned_s": round(tuned["s"], 2),
            "metrics_s": round(metrics_s, 2),
            "metrics_load_s": round(metrics_load_s, 2),
            "total_s": round(base["s"] + merge_s + tuned["s"] + metrics_load_s + metrics_s, 2),
            "new_tokens": base["new_tokens"] + tuned["new_tokens"],
            "base_tokens_per_s": round(base["new_tokens"] / base["s"]),
            "tuned_tokens_per_s": round(tuned["new_tokens"] / tuned["s"]),
            "peak_gib": round(max(base["peak_gib"], tuned["peak_gib"]), 1),
            "rougeL": {k: round(v["rougeL"], 2) for k, v in scores.items()},
        }
        reference = passes.get("generate", {})
        if d != "generate" and all("ids" in reference.get(k, {}) for k in ("base", "tuned")):
            row["same_as_generate"] = {
                k: sum(a == b for a, b in zip(p["ids"], reference[k]["ids"], strict=True))
                for k, p in (("base", base), ("tuned", tuned))
            }
        if d == "compiled":
            row |= {
                "graphs_compiled": graphs["base"]["graphs"],
                "recompiled_in_tuned": graphs["tuned"]["graphs"] - graphs["base"]["graphs"],
                "cudagraph_skips": graphs["tuned"]["cudagraph_skips"],
            }
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def guarded(work, label: str) -> dict:
    """Run one timed pass; a failure is recorded (and printed) instead of ending the benchmark."""
    try:
        result = work()
    except Exception as err:  # noqa: BLE001 - one decoder failing must not cost the other results
        print(f"{label} failed: {type(err).__name__}: {err}", flush=True)
        return {"error": f"{type(err).__name__}: {str(err)[:300]}"}
    print(f"{label}: {result['s']:.1f} s, {result['new_tokens']} new tokens", flush=True)
    return result


def compile_counts() -> dict:
    """Graphs dynamo has compiled so far, and CUDA-graph skips Inductor has logged (both 0 without compiling)."""
    from torch._dynamo.utils import counters

    return {"graphs": counters["stats"]["unique_graphs"], "cudagraph_skips": counters["inductor"]["cudagraph_skips"]}


def score(texts: list[str], references: list[list[str]], metrics: list[str]) -> dict:
    from eval.metrics import MetricArgs, compute_metrics

    corpus, _ = compute_metrics(texts, references, MetricArgs(metrics=metrics))
    return corpus


def print_table(results: list[dict]) -> None:
    print(
        f"\n{'decoder':10} {'base s':>7} {'merge s':>7} {'tuned s':>7} {'metrics s':>9} {'total s':>7} "
        f"{'tok/s base':>10} {'tok/s tuned':>11} {'peak GiB':>8} {'same as generate':>17}"
    )
    for r in results:
        if "error" in r:
            print(f"{r['decoder']:10} failed: {r['error']}")
            continue
        same = r.get("same_as_generate")
        same = f"{same['base']}/{same['tuned']} of {r['examples']}" if same else ""
        print(
            f"{r['decoder']:10} {r['base_s']:>7} {r['merge_s']:>7} {r['tuned_s']:>7} {r['metrics_s']:>9} "
            f"{r['total_s']:>7} {r['base_tokens_per_s']:>10} {r['tuned_tokens_per_s']:>11} {r['peak_gib']:>8} {same:>17}"
        )
    if results:
        r = results[0]
        print(
            f"{r['examples']} dialogues x (base + fine-tuned), batch {r['batch_size']}, up to {r['max_new_tokens']} "
            f"new tokens (a random model never stops early), metrics {r['metrics']} (totals include "
            f"{r.get('metrics_load_s', 0)} s of WordNet loading); model load {r['load_s']} s, not in the totals; "
            f"device: {r['device']}"
        )


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
