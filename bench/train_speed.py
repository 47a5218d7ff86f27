"""Phi-2 QLoRA training speed: this project's Trainer path against the plain transformers + peft recipe.

    python bench/train_speed.py --data ../shared/data/dialogsum --tokenizer ../shared/tokenizers/gpt2

Every recipe runs in its own process (fresh memory statistics, an out-of-memory error stays local)
on a randomly initialised model of Phi-2's exact architecture saved once in bf16 and loaded in NF4
with double quantization: random weights cost the same FLOPs and bytes as the real ones.
- ``ours-*`` train through ``QLoRAModule``, ``DialogSumDataModule`` and ``lightning.Trainer`` on
  DialogSum's real lengths and count non-padding tokens. ``ours-packed*`` pack examples into
  fixed-shape rows (``data.pack_length``); with ``compile: model`` the whole loss is one graph.
- ``plain-*`` is the usual loop: ``model(input_ids, labels=...)`` with PEFT LoRA on the same layers,
  AdamW, bf16 autocast, on fixed 512-token rows cut from the same tokenized DialogSum text (no padding).
Prints one table (medians over the timed steps) and writes JSON lines to ``--out``. ``--tiny`` runs
the ``ours-*`` code paths on CPU with a 2-layer random Phi and small batches: a smoke test whose
figures mean nothing.
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

PHI2 = dict(
    vocab_size=51200,
    hidden_size=2560,
    intermediate_size=10240,
    num_hidden_layers=32,
    num_attention_heads=32,
    partial_rotary_factor=0.4,
    max_position_embeddings=2048,
)
LINEARS = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]


def ours(compile, max_tokens: int, pack_length: int | None = None, checkpointing: bool = False, dropout=0.05, **more):
    """An ``ours-*`` recipe: ``model.compile``, ``data.max_tokens``, ``data.pack_length``, ... (``attn``, ``mode``)."""
    options = dict(compile=compile, max_tokens=max_tokens, checkpointing=checkpointing, dropout=dropout, **more)
    return "ours", options | ({"pack_length": pack_length} if pack_length else {})


RECIPES = {
    # name: (kind, options)
    "plain-eager-b8": ("plain", {"batch": 8, "compile": False}),
    # Compiled: the whole loss function through torch.compile, with a chunked cross-entropy (no full fp32 logits).
    "plain-compiled-b8": ("plain", {"batch": 8, "compile": True, "chunked": True}),
    "plain-compiled-b16": ("plain", {"batch": 16, "compile": True, "chunked": True}),
    "ours-eager": ours(False, 8192),
    "ours-fast": ours(True, 16384),
    "ours-fast-12k": ours(True, 12288),
    "ours-fast-nodrop": ours(True, 16384, dropout=0.0),
    "ours-12gib": ours(True, 16384, checkpointing=True),
    # Packed rows: every batch [max_tokens // pack_length, pack_length]. 512-token rows hold DialogSum
    # (max_length 512) with ~2% padding and keep sdpa's dense document mask cheap; flex attention
    # skips the blocks between documents, so it can take longer rows.
    "ours-packed-layers": ours("layers", 16384, 512),
    "ours-packed-layers-nodrop": ours("layers", 16384, 512, dropout=0.0),
    "ours-packed-layers-ckpt": ours("layers", 16384, 512, checkpointing=True, dropout=0.0),
    "ours-packed-layers-ckpt-24k": ours("layers", 24576, 512, checkpointing=True, dropout=0.0),
    "ours-packed-layers-8k": ours("layers", 8192, 512, dropout=0.0),
    # Attention over packed documents with a FlexAttention block mask instead of sdpa's dense one.
    "ours-packed-layers-flex": ours("layers", 16384, 512, dropout=0.0, attn="flex_attention"),
    # CUDA graphs over each compiled block (fixed shapes under packing): fewer launches.
    "ours-packed-layers-cudagraphs": ours("layers", 16384, 512, dropout=0.0, mode="reduce-overhead"),
    "ours-packed": ours("model", 16384, 512),
    "ours-packed-nodrop": ours("model", 16384, 512, dropout=0.0),
    "ours-packed-nodrop-24k": ours("model", 24576, 512, dropout=0.0),
    "ours-packed-flex": ours("model", 16384, 2048, dropout=0.0, attn="flex_attention"),
    "ours-packed-cudagraphs": ours("model", 16384, 512, dropout=0.0, mode="reduce-overhead"),
    # Candidates for a preset under 12 GiB.
    "ours-packed-small": ours("model", 4096, 512, dropout=0.0),
    "ours-packed-ckpt": ours("model", 16384, 512, checkpointing=True, dropout=0.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with dialogsum.train.jsonl")
    parser.add_argument("--tokenizer", required=True, help="folder with Phi-2's vocab.json and merges.txt")
    parser.add_argument("--model-dir", default="/tmp/phi2-random", help="where the random Phi-2 is saved once")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated subset of " + ", ".join(RECIPES))
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per recipe")
    parser.add_argument("--warmup", type=int, default=8, help="untimed steps first (compilation, allocator)")
    parser.add_argument("--out", default="bench_train.jsonl")
    parser.add_argument("--timeout", type=int, default=360, help="seconds one recipe may take, compilation included")
    parser.add_argument("--profile", action="store_true", help="print the top GPU kernels of 3 steps (ours-* only)")
    parser.add_argument("--tiny", action="store_true", help="smoke-test ours-* on CPU with a 2-layer random Phi")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny and args.model_dir == "/tmp/phi2-random":
        args.model_dir = "/tmp/phi-tiny-random"
    if args.one == "make-model":
        make_random_phi2(Path(args.model_dir), Path(args.tokenizer), args.tiny)
        return
    if args.one:
        result = run_one(args, args.one)
        print("RESULT " + json.dumps(result), flush=True)
        return
    # Made in a child process so that the parent holds no GPU memory while the recipes run.
    subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", "make-model"], check=True)
    results = []
    for name in args.recipes.split(","):
        log = Path(args.out).with_name(f"{name}.log")
        try:
            with log.open("w") as sink:
                subprocess.run(
                    [sys.executable, __file__, *sys.argv[1:], "--one", name],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    timeout=args.timeout,
                )
        except subprocess.TimeoutExpired:
            pass
        proc_out = log.read_text()
        lines = [line for line in proc_out.splitlines() if line.startswith("RESULT ")]
        if lines:
            results.append(json.loads(lines[-1][7:]))
        else:
            progress = [line for line in proc_out.splitlines() if line.startswith(("training starts", "first step"))]
            tail = [line for line in proc_out.strip().splitlines()[-3:] if line not in progress]
            tail = tail or [f"no result within {args.timeout} s"]
            results.append({"recipe": name, "error": " | ".join(progress + tail)[-400:]})
        print(json.dumps(results[-1]), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(results[-1]) + "\n")
    print_table(results)


def make_random_phi2(folder: Path, tokenizer_dir: Path, tiny: bool = False) -> None:
    import torch
    from transformers import CodeGenTokenizer, PhiConfig, PhiForCausalLM

    if (folder / "config.json").exists():
        return
    if tiny:
        from bench.kill_resume import make_tiny_model

        make_tiny_model(folder, tokenizer_dir)
        return
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = PhiForCausalLM(PhiConfig(**PHI2, dtype="bfloat16")).to(torch.bfloat16)
    model.save_pretrained(folder)
    CodeGenTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(folder)


def run_one(args, name: str) -> dict:
    import torch
    from torch._dynamo.utils import counters

    kind, options = RECIPES[name]
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, tokens, params = (run_ours if kind == "ours" else run_plain)(args, options)
    timed_t, timed_n = times[args.warmup :], tokens[args.warmup :]
    tok_s = sum(timed_n) / sum(timed_t)
    floor_flops = 4 * params  # forward 2N + input-gradient backward 2N (frozen base, no recomputation)
    return {
        "recipe": name,
        "tokens_per_s": round(tok_s),
        "median_step_s": round(statistics.median(timed_t), 4),
        "median_tokens_per_step": int(statistics.median(timed_n)),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "model_tflops": round(tok_s * floor_flops / 1e12, 1),
        "first_step_s": round(times[0], 1),  # compilation, mostly
        # Graphs dynamo compiled over the whole run (recompiles included) and graph breaks.
        "graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "device": torch.cuda.get_device_name() if cuda else "cpu (--tiny smoke test)",
        **options,
    }


def run_ours(args, options: dict):
    from functools import partial

    import lightning as L
    import torch

    from datamodules.dialogsum import DialogSumDataModule
    from model.loading import LoraArgs
    from model.module import QLoRAModule

    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    launched = time.perf_counter()

    class StepTimer(L.Callback):
        def __init__(self):
            self.times, self.tokens = [], []

        def on_train_start(self, trainer, module):
            # Printed as it happens, so a recipe that runs out of time still says how far it got.
            print(f"training starts {time.perf_counter() - launched:.0f} s after launch (data, model)", flush=True)

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            sync()
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            sync()
            self.times.append(time.perf_counter() - self.start)
            self.tokens.append(int(batch["attention_mask"].sum()))
            if len(self.times) == 1:  # in the log even if the recipe runs out of time
                print(f"first step (compilation): {self.times[0]:.1f} s", flush=True)

    pack_length = options.get("pack_length")
    # --tiny: two rows a batch, a few hundred dialogues; enough to run every code path on CPU.
    max_tokens = 2 * (pack_length or 512) if args.tiny else options["max_tokens"]
    # fit ends by exporting the adapter; without a logger it would land in ./adapter, inside the repository.
    scratch = tempfile.TemporaryDirectory(prefix="bench-train-")
    module = QLoRAModule(
        model=args.model_dir,
        lora=LoraArgs(r=16, alpha=32, dropout=options["dropout"], target_modules=LINEARS),
        adapter_dir=str(Path(scratch.name) / "adapter"),
        gradient_checkpointing=options["checkpointing"],
        attn_implementation=options.get("attn", "sdpa"),
        compile=options["compile"],
        compile_mode=options.get("mode"),
        optimizer=partial(torch.optim.AdamW, lr=2e-4),
    )
    data = DialogSumDataModule(
        tokenizer=args.model_dir,
        sources={"dialogsum": args.data},
        train_limit=300 if args.tiny else None,
        max_length=512,
        batch_size=256,
        max_tokens=max_tokens,
        pack_length=pack_length,
        num_workers=0 if args.tiny else 4,
    )
    timer = StepTimer()
    callbacks = [timer, KernelProfile(args.warmup)] if args.profile else [timer]
    trainer = L.Trainer(
        accelerator="cpu" if args.tiny else "cuda",
        devices=1,
        precision="bf16-mixed",
        max_steps=args.warmup + args.steps,
        logger=False,
        enable_checkpointing=False,
        default_root_dir=scratch.name,
        enable_progress_bar=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=callbacks,
        gradient_clip_val=1.0,
    )
    with scratch:
        trainer.fit(module, data)
    return timer.times, timer.tokens, base_params(module.model)


def KernelProfile(warmup: int):
    """A callback that profiles the last 3 warm-up steps (the timed ones stay unprofiled) and prints
    where the GPU time goes and how much of the wall time the GPU was busy."""
    import lightning as L
    import torch

    start = max(1, warmup - 3)

    class Profile(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == start:
                torch.cuda.synchronize()
                self.wall = time.perf_counter()
                self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
                self.prof.__enter__()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx == start + 2:
                torch.cuda.synchronize()
                wall = time.perf_counter() - self.wall
                self.prof.__exit__(None, None, None)
                events = self.prof.key_averages()
                print(events.table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=70))
                busy = sum(e.self_device_time_total for e in events) / 1e6
                print(f"profile: GPU busy {busy:.3f} s of {wall:.3f} s wall over 3 steps ({100 * busy / wall:.0f}%)")

    return Profile()


def run_plain(args, options: dict):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        args.model_dir, quantization_config=quant, dtype=torch.bfloat16, attn_implementation="sdpa"
    ).cuda()
    model.config.use_cache = False
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LINEARS, task_type="CAUSAL_LM")
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    rows = fixed_rows(
        args, AutoTokenizer.from_pretrained(args.model_dir), options["batch"] * (args.warmup + args.steps)
    )

    def loss_fn(ids):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if not options.get("chunked"):
                return model(input_ids=ids, labels=ids).loss
            # What a user writes to skip the [batch, 512, 51200] fp32 logits: the head and loss in chunks.
            causal_lm = model.get_base_model()
            hidden = causal_lm.model(input_ids=ids).last_hidden_state[:, :-1].reshape(-1, causal_lm.config.hidden_size)
            targets = ids[:, 1:].reshape(-1)
            total = 0.0
            for start in range(0, targets.numel(), 4096):
                logits = causal_lm.lm_head(hidden[start : start + 4096]).float()
                total = total + torch.nn.functional.cross_entropy(
                    logits, targets[start : start + 4096], reduction="sum"
                )
            return total / targets.numel()

    step_loss = torch.compile(loss_fn) if options["compile"] else loss_fn
    times, tokens = [], []
    for step in range(args.warmup + args.steps):
        ids = rows[step * options["batch"] : (step + 1) * options["batch"]].cuda(non_blocking=True)
        torch.cuda.synchronize()
        start = time.perf_counter()
        step_loss(ids).backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        tokens.append(ids.numel())
    return times, tokens, base_params(model)


def fixed_rows(args, tokenizer, count: int):
    """``count`` rows of 512 tokens cut from DialogSum's train dialogues and summaries, end to end."""
    import torch

    ids: list[int] = []
    with open(Path(args.data) / "dialogsum.train.jsonl") as f:
        for line in f:
            row = json.loads(line)
            ids += tokenizer(row["dialogue"] + "\n" + row["summary"])["input_ids"] + [tokenizer.eos_token_id]
            if len(ids) >= count * 512:
                break
    return torch.tensor(ids[: count * 512]).view(count, 512)


def base_params(model) -> int:
    """Weights of the base's linear layers, counted dense: a 4-bit weight still costs its full matmul."""
    import math

    import torch

    total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "lora_" not in name:
            shape = getattr(getattr(module.weight, "quant_state", None), "shape", None) or module.weight.shape
            total += math.prod(shape)
    return total


def print_table(results: list[dict]) -> None:
    print(
        f"\n{'recipe':24} {'tokens/s':>9} {'step s':>8} {'tok/step':>9} {'peak GiB':>9} {'TFLOP/s':>8} "
        f"{'1st step s':>10} {'graphs':>6}"
    )
    for r in results:
        if "error" in r:
            print(f"{r['recipe']:24} failed: {r['error']}")
            continue
        print(
            f"{r['recipe']:24} {r['tokens_per_s']:>9} {r['median_step_s']:>8} {r['median_tokens_per_step']:>9} "
            f"{r['peak_gib']!s:>9} {r['model_tflops']:>8} {r.get('first_step_s', '-')!s:>10} {r.get('graphs', '-')!s:>6}"
        )
    if results and "device" in results[0]:
        print(f"device: {results[0]['device']}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
