"""kill -9 in the middle of a checkpoint write, then ``--ckpt_path last``: nothing is lost or changed.

The fast variant of bench/kill_resume.py (which kills at 10 random moments): one kill, placed
deterministically halfway through writing a checkpoint, on the tiny config on CPU.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import kill_resume  # noqa: E402

from model.checkpointing import read_checkpoint  # noqa: E402

STEPS, EVERY = 6, 2


def adapter(run_dir: Path) -> dict:
    return kill_resume.final_adapter(run_dir)


def test_kill_during_checkpoint_write_then_resume_ends_with_the_uninterrupted_adapter(tiny_phi, tmp_path, capsys):
    from train import main

    config = kill_resume.write_config(tmp_path, EVERY)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    main(kill_resume.train_args(config, Path(tiny_phi), whole, STEPS))

    # Saves go step-2 file, last.ckpt, step-4 file, last.ckpt: the 4th is last.ckpt at step 4.
    code, _ = kill_resume.run(kill_resume.command(kill_resume.train_args(config, Path(tiny_phi), killed, STEPS), 4))
    assert code == -signal.SIGKILL
    folder = killed / "tiny" / "version_0" / "checkpoints"
    partial = list(folder.glob(".last.ckpt.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0  # the kill really cut a write short
    assert read_checkpoint(folder / "last.ckpt")["global_step"] == 2  # the previous last.ckpt is whole
    assert read_checkpoint(folder / "epoch=0-step=4.ckpt")["global_step"] == 4

    capsys.readouterr()
    resumed = main([*kill_resume.train_args(config, Path(tiny_phi), killed, STEPS), "--ckpt_path", "last"])
    assert Path(resumed.trainer.ckpt_path) == folder / "epoch=0-step=4.ckpt"  # the newest whole checkpoint
    assert resumed.trainer.global_step == STEPS
    assert not list(folder.glob(".*.tmp"))  # the next write of last.ckpt cleared the half-written one
    assert read_checkpoint(folder / "last.ckpt")["global_step"] == STEPS

    a, b = adapter(whole), adapter(killed)
    assert set(a) == set(b) and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_ten_random_kills_end_with_the_uninterrupted_adapter(tmp_path):
    assert kill_resume.bench(kills=10, seed=0, max_steps=40, every=2, work=tmp_path)
