"""Kill a training run with SIGKILL at random moments, resume it each time, and check the final adapter.

    python bench/kill_resume.py                 # 10 kills, tiny random Phi on CPU, a few minutes
    python bench/kill_resume.py --kills 3 --seed 1

A tiny random Phi-2-shaped model trains with configs/tiny.yaml, checkpointing every
``--every`` steps. First one run goes through uninterrupted, timed. Then the same run is started
in a subprocess and killed with ``kill -9``, ``--kills`` times: one kill in five at a random moment
of its startup (imports, data, model load), one in five halfway through a random checkpoint write
(see ``child`` below), the others a random time after a random coming checkpoint, mid-step or
between. Kills follow progress, not the clock, so a busy machine can't let the run finish before
it is killed. Each restart passes ``--ckpt_path last`` once a checkpoint exists; the last runs to
the end. Its exported adapter must equal the uninterrupted run's, tensor for tensor.

``python bench/kill_resume.py child --kill-at-save N -- <train.py args>`` runs train.py in this
process and kills it with SIGKILL halfway through writing its N-th checkpoint: the test suite uses
it to cut a checkpoint write deterministically.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TOKENIZER = SHARED / "tokenizers" / "gpt2"
STEP = re.compile(r"step=(\d+)\.ckpt$")


def make_tiny_model(folder: Path, tokenizer_dir: Path = TOKENIZER) -> Path:
    """A randomly initialised 2-layer Phi with Phi-2's tokenizer, saved like a Hub model."""
    import torch
    from transformers import CodeGenTokenizer, PhiConfig, PhiForCausalLM

    tokenizer = CodeGenTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    config = PhiConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        partial_rotary_factor=0.4,
        max_position_embeddings=1024,
        initializer_range=0.1,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    PhiForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_config(folder: Path, every: int) -> Path:
    """configs/tiny.yaml with a checkpoint every ``every`` optimizer steps, all of them kept, and a warm-up + cosine schedule."""
    import yaml

    config = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    # The shipped configs' schedule, in the YAML as they give it: a resume must carry the rate on.
    config["model"]["init_args"]["scheduler"] = {
        "class_path": "model.schedule.WarmupCosine",
        "init_args": {"warmup_steps": 2},
    }
    # The callbacks train.py takes from configs/base.yaml, with the checkpoint cadence of this benchmark.
    config["trainer"]["callbacks"] = yaml.safe_load((ROOT / "configs" / "base.yaml").read_text())["trainer"][
        "callbacks"
    ]
    for callback in config["trainer"]["callbacks"]:
        if isinstance(callback, dict) and callback["class_path"].endswith("ModelCheckpoint"):
            callback["init_args"] = {"every_n_train_steps": every, "save_top_k": -1, "save_last": True}
    path = folder / "kill_resume.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def train_args(config: Path, model: Path, save_dir: Path, max_steps: int) -> list[str]:
    """train.py arguments for the run under test: enterprise data, short rows, no validation."""
    return [
        "fit",
        "--config",
        str(config),
        "--model.model",
        str(model),
        "--data.sources",
        f"{{enterprise: {{path: {ROOT / 'data' / 'enterprise'}}}}}",
        "--data.max_length",
        "96",
        "--trainer.max_steps",
        str(max_steps),
        "--trainer.limit_val_batches",
        "0",
        "--trainer.logger.init_args.save_dir",
        str(save_dir),
    ]


def command(args: list[str], kill_at_save: int | None = None) -> list[str]:
    """The subprocess command line: train.py itself, or this file's ``child`` that dies mid-write."""
    if kill_at_save is None:
        return [sys.executable, str(ROOT / "train.py"), *args]
    return [sys.executable, str(Path(__file__).resolve()), "child", "--kill-at-save", str(kill_at_save), "--", *args]


def has_checkpoint(save_dir: Path) -> bool:
    return any(save_dir.glob("*/*/checkpoints/*.ckpt"))


def resume_args(args: list[str], save_dir: Path) -> list[str]:
    """``args`` plus ``--ckpt_path last`` once any checkpoint exists (before that, start afresh)."""
    return [*args, "--ckpt_path", "last"] if has_checkpoint(save_dir) else args


def run(cmd: list[str], kill_when: Callable[[float], bool] | None = None) -> tuple[int, float]:
    """Run ``cmd``; SIGKILL it as soon as ``kill_when(seconds since start)`` is true. Returns exit code, wall time."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            while proc.poll() is None:
                if kill_when is not None and kill_when(time.monotonic() - start):
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    break
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode not in (0, -signal.SIGKILL):
            err.seek(0)
            sys.stderr.write(err.read().decode(errors="replace")[-3000:])
    return proc.returncode, time.monotonic() - start


def newest_step(save_dir: Path) -> int:
    """The highest step among the step checkpoints under ``save_dir`` (0 when there are none)."""
    steps = [int(m.group(1)) for p in save_dir.glob("*/*/checkpoints/*.ckpt") if (m := STEP.search(p.name))]
    return max(steps, default=0)


def final_adapter(save_dir: Path) -> dict:
    """The tensors of the newest exported adapter under ``save_dir``."""
    from safetensors.torch import load_file

    files = sorted(save_dir.glob("*/*/adapter/adapter_model.safetensors"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise SystemExit(f"error: no adapter was exported under {save_dir}")
    return load_file(str(files[-1]))


def compare(a: dict, b: dict) -> tuple[bool, float]:
    """Whether two adapters are identical, and their largest absolute difference."""
    if set(a) != set(b):
        return False, float("inf")
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    return all(a[k].equal(b[k]) for k in a), diff


def state_after_kill(save_dir: Path) -> str:
    """Where a kill left the run: its newest checkpoint's step, and any half-written file."""
    import torch

    ckpts = sorted(save_dir.glob("*/*/checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime_ns)
    partial = [p.name for p in save_dir.glob("*/*/checkpoints/.*.tmp")]
    newest = "no checkpoint yet"
    if ckpts:
        newest = f"newest {ckpts[-1].name} (step {torch.load(ckpts[-1], weights_only=False)['global_step']})"
    return newest + (f", half-written {', '.join(partial)}" if partial else "")


def child(kill_at_save: int, args: list[str]) -> None:
    """Run train.py here; on the ``kill_at_save``-th checkpoint write, write half of it and SIGKILL."""
    import torch

    real_save, saves = torch.save, 0

    def save(obj, f, *a, **k):
        nonlocal saves
        if isinstance(obj, dict) and "state_dict" in obj and hasattr(f, "write"):
            saves += 1
            if saves == kill_at_save:
                buffer = io.BytesIO()
                real_save(obj, buffer, *a, **k)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *a, **k)

    torch.save = save
    sys.path.insert(0, str(ROOT))
    from train import main

    main(args)


def bench(kills: int, seed: int, max_steps: int, every: int, work: Path) -> bool:
    """The whole experiment; prints a line per kill and the verdict. True when the adapters match."""
    make_tiny_model(work / "model")
    config = write_config(work, every)
    whole_dir, killed_dir = work / "whole", work / "killed"

    # The uninterrupted run, timed: when its first checkpoint appears and how long a step takes.
    seen: dict[int, float] = {}

    def watch(elapsed: float) -> bool:
        seen.setdefault(newest_step(whole_dir), elapsed)
        return False

    code, total = run(command(train_args(config, work / "model", whole_dir, max_steps)), kill_when=watch)
    assert code == 0, f"the uninterrupted run failed with exit code {code}"
    first, last = min(s for s in seen if s), max(seen)
    step_time = (seen[last] - seen[first]) / max(last - first, 1)
    startup = seen[first] - first * step_time
    print(f"uninterrupted run: {max_steps} steps in {total:.1f}s ({startup:.1f}s startup, {step_time:.2f}s a step)")

    rng = random.Random(seed)
    args = train_args(config, work / "model", killed_dir, max_steps)
    for kill in range(1, kills + 1):
        done = newest_step(killed_dir)
        targets = list(range(done + every, max_steps, every))  # checkpoints still to come, the end excluded
        kind, dies_at_save = rng.random(), None
        if not targets or kind < 0.2:  # a kill while it imports, reads data or loads the model
            delay = rng.uniform(0.1, 1.0) * startup
            when, kill_when = f"{delay:.1f}s in, during startup", lambda t, d=delay: t > d
        elif kind < 0.4:  # halfway through a checkpoint write (each checkpoint step writes two files)
            dies_at_save = rng.randint(1, min(4, 2 * len(targets)))
            when, kill_when = f"halfway through its checkpoint write no. {dies_at_save}", None
        else:
            # A random moment in the steps after a random checkpoint: mid-step, mid-write or between.
            # Spread the kills over the run: the target is one of the next few checkpoints.
            span = max(1, round(len(targets) / (kills - kill + 1)))
            target, extra = rng.choice(targets[:span]), rng.uniform(0, every * step_time)
            when = f"{extra:.2f}s after the step-{target} checkpoint"
            landed: list[float] = []

            def kill_when(t: float, target: int = target, extra: float = extra, landed: list = landed) -> bool:
                if not landed and newest_step(killed_dir) >= target:
                    landed.append(t)
                return bool(landed) and t > landed[0] + extra

        code, _ = run(command(resume_args(args, killed_dir), dies_at_save), kill_when=kill_when)
        assert code in (0, -signal.SIGKILL), f"a restarted run failed with exit code {code}"
        outcome = "finished first" if code == 0 else state_after_kill(killed_dir)
        print(f"kill {kill:2d}, {when}: {outcome}")
        if code == 0:  # finished: --ckpt_path last now refuses to resume a finished run
            break
    else:
        code, _ = run(command(resume_args(args, killed_dir)))
        assert code == 0, f"the final resumed run failed with exit code {code}"
    same, diff = compare(final_adapter(whole_dir), final_adapter(killed_dir))
    verdict = "IDENTICAL" if same else f"DIFFERENT (max abs diff {diff:.3g})"
    print(f"final adapter after {kills} kills and resumes vs the uninterrupted run's: {verdict}")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    kid = sub.add_parser("child", help="run train.py here and die halfway through its N-th checkpoint write")
    kid.add_argument("--kill-at-save", type=int, required=True)
    kid.add_argument("train_args", nargs=argparse.REMAINDER)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=2, help="checkpoint every N optimizer steps")
    parser.add_argument("--work", type=Path, default=None, help="folder for runs (default: a temporary one)")
    options = parser.parse_args()
    if options.mode == "child":
        rest = options.train_args[1:] if options.train_args[:1] == ["--"] else options.train_args
        return child(options.kill_at_save, rest)
    with tempfile.TemporaryDirectory() as tmp:
        work = options.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ok = bench(options.kills, options.seed, options.max_steps, options.every, work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
