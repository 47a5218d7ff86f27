"""SIGTERM (and Ctrl-C) at a random step: a checkpoint at the step boundary, the adapter, a resume command, exit 143.

Resuming with the printed command ends with the very adapter of an uninterrupted run. The signal
lands mid gradient accumulation or between steps; the run is followed through its plain progress
lines (stdout is a pipe), so a busy machine can't let it finish first.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import kill_resume  # noqa: E402

from model.checkpointing import read_checkpoint  # noqa: E402

STEPS = 8
STOPPED = re.compile(r"^stopped by (\w+) at step (\d+); resume with: (.+)$", re.M)


def run_args(tmp_path: Path, model: str, save_dir: Path) -> list[str]:
    config = kill_resume.write_config(tmp_path, STEPS)  # ModelCheckpoint writes only at the end
    extra = ["--trainer.accumulate_grad_batches", "2", "--trainer.log_every_n_steps", "1"]
    return [
        *kill_resume.train_args(config, Path(model), save_dir, STEPS),
        *extra,
        "--trainer.enable_progress_bar",
        "true",
    ]


def stop_at_random_step(args: list[str], signum: signal.Signals, after_step: int, seed: int) -> tuple[int, str]:
    """Start train.py, send ``signum`` a random moment after its ``after_step``-th step; exit code and stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err
        )
        try:
            for line in proc.stdout:
                if line.startswith(f"step {after_step}/".encode()):
                    time.sleep(random.Random(seed).uniform(0, 0.3))
                    proc.send_signal(signum)
                    break
            proc.stdout.read()
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        err.seek(0)
        return code, err.read().decode(errors="replace")


def stop(tmp_path: Path, model: str, signum: signal.Signals) -> tuple[Path, int, list[str]]:
    """A run stopped by ``signum`` at a random step: its checkpoint, the step, the printed resume arguments."""
    seed = random.randrange(1000)
    after = random.Random(seed).randint(1, STEPS - 3)  # two steps or more left: a lost schedule would show
    code, err = stop_at_random_step(run_args(tmp_path, model, tmp_path / "stopped"), signum, after, seed)
    assert code == 128 + signum, f"seed {seed}: exit {code}\n{err[-2000:]}"
    [(name, step, command)] = STOPPED.findall(err)
    said = err[err.index(f"received {signum.name}") :].splitlines()
    assert len(said) == 2 and said[1].startswith("stopped by "), said  # the notice, the one line, nothing between
    step = int(step)
    # At the first optimizer-step boundary after the signal: the step after ``after`` unless this process read
    # the progress line late (a busy machine), never before it and never past the planned steps.
    assert name == signum.name and after <= step <= STEPS, (seed, after, step)
    run = tmp_path / "stopped" / "tiny" / "version_0"
    ckpt = run / "checkpoints" / f"preempted-step={step}.ckpt"
    assert read_checkpoint(ckpt)["global_step"] == step  # written at an optimizer-step boundary
    assert (run / "adapter" / "adapter_model.safetensors").is_file()  # the adapter as of the stop
    python, script, *resume = shlex.split(command)
    assert (python, Path(script).name) == ("python", "train.py") and resume[-2:] == ["--ckpt_path", str(ckpt)]
    return ckpt, step, resume


def test_sigterm_at_a_random_step_then_the_printed_resume_ends_with_the_uninterrupted_adapter(tiny_phi, tmp_path):
    from train import main

    main(run_args(tmp_path, tiny_phi, tmp_path / "whole"))
    _, _, resume = stop(tmp_path, tiny_phi, signal.SIGTERM)
    resumed = main(resume)
    assert resumed.trainer.global_step == STEPS
    assert [p.name for p in (tmp_path / "stopped" / "tiny").iterdir()] == ["version_0"]  # resumed in the same run
    a, b = kill_resume.final_adapter(tmp_path / "whole"), kill_resume.final_adapter(tmp_path / "stopped")
    assert set(a) == set(b) and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ctrl_c_stops_the_same_way(tiny_phi, tmp_path):
    stop(tmp_path, tiny_phi, signal.SIGINT)
