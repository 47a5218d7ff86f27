"""Checkpoint writes are atomic; a cut or corrupt checkpoint is named in one line and the good one is used."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from model.checkpointing import AtomicCheckpointIO, CheckpointError, read_checkpoint, resolve_last


def fake_checkpoint(path: Path, step: int) -> Path:
    """A small Lightning-shaped checkpoint, written with a later modification time than the ones before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.full((4,), float(step))}, "global_step": step}, path)
    stamp = time.time() + step  # distinct, increasing times even on coarse clocks
    os.utime(path, (stamp, stamp))
    return path


def cut_short(path: Path) -> None:
    """What a non-atomic write leaves when the process dies halfway."""
    data = path.read_bytes()
    stamp = path.stat().st_mtime
    path.write_bytes(data[: len(data) // 2])
    os.utime(path, (stamp + 100, stamp + 100))


def test_atomic_write_leaves_a_whole_file_and_no_temporary(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    stale = target.with_name(".last.ckpt.99999.tmp")  # a run killed mid-write left this
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 7}, target)
    assert read_checkpoint(target)["global_step"] == 7
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]


def test_failed_write_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {}, "global_step": 1}, target)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError) as info:
        io.save_checkpoint({"state_dict": {}, "global_step": 2}, target)
    message = str(info.value)
    assert message.startswith(f"{target}: cannot write the checkpoint (No space left on device); free disk space")
    assert "\n" not in message
    monkeypatch.undo()
    assert read_checkpoint(target)["global_step"] == 1  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # the partial temporary is gone


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_unreadable_checkpoint_is_one_line_naming_the_file(damage, tmp_path):
    path = fake_checkpoint(tmp_path / "last.ckpt", 4)
    if damage == "truncated":
        cut_short(path)
    else:
        path.write_bytes(b"" if damage == "empty" else b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unreadable checkpoint, probably cut short by a crash or a full disk (")
    assert "\n" not in message


def test_last_resolves_to_the_newest_readable_checkpoint_of_the_newest_unfinished_run(tmp_path):
    fake_checkpoint(tmp_path / "version_0" / "checkpoints" / "last.ckpt", 10)
    fake_checkpoint(tmp_path / "version_1" / "checkpoints" / "epoch=0-step=2.ckpt", 12)
    newest = fake_checkpoint(tmp_path / "version_1" / "checkpoints" / "last.ckpt", 14)
    path, warnings = resolve_last(tmp_path)
    assert path == newest
    assert warnings == [  # both runs unfinished (no step limit given): the choice is named
        f"{tmp_path}: 2 unfinished runs; resuming the newest, version_1 (step 14), not version_0 (step 10); "
        "pass --ckpt_path <file> to pick another"
    ]


def test_corrupt_last_falls_back_to_the_previous_good_checkpoint_with_a_warning(tmp_path):
    folder = tmp_path / "version_0" / "checkpoints"
    good = fake_checkpoint(folder / "epoch=0-step=10.ckpt", 10)
    last = fake_checkpoint(folder / "last.ckpt", 20)
    cut_short(last)
    path, warnings = resolve_last(tmp_path)
    assert path == good and good.exists() and last.exists()  # nothing deleted
    [warning] = warnings
    assert warning.startswith(f"{last}: unreadable checkpoint")
    assert warning.endswith(f"resuming from {good} (step 10) instead")


def test_no_readable_checkpoint_at_all_is_an_error_naming_the_folder(tmp_path):
    with pytest.raises(CheckpointError, match=rf"^{tmp_path}: no \*/checkpoints/\*.ckpt to resume"):
        resolve_last(tmp_path)
    cut_short(fake_checkpoint(tmp_path / "version_0" / "checkpoints" / "last.ckpt", 3))
    with pytest.raises(CheckpointError, match=rf"^{tmp_path}: none of the 1 checkpoints can be read"):
        resolve_last(tmp_path)


def fit_args(tmp_path: Path, *extra: str) -> list[str]:
    # A model that can't load: these runs must stop (or get past the checkpoint) before loading it.
    return [
        "fit",
        "--config",
        str(ROOT / "configs" / "tiny.yaml"),
        "--model.model=/nonexistent/model",
        f"--data.sources={{enterprise: {{path: {ROOT / 'data' / 'enterprise'}}}}}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        *extra,
    ]


def test_train_py_names_a_corrupt_ckpt_path_and_the_good_one_beside_it(tmp_path):
    from train import main

    folder = tmp_path / "tiny" / "version_0" / "checkpoints"
    good = fake_checkpoint(folder / "epoch=0-step=10.ckpt", 10)
    bad = fake_checkpoint(folder / "epoch=0-step=20.ckpt", 20)
    cut_short(bad)
    with pytest.raises(SystemExit) as done:
        main(fit_args(tmp_path, f"--ckpt_path={bad}"))
    message = str(done.value.code)
    assert message.startswith(f"error: {bad}: unreadable checkpoint")
    assert message.endswith(f"resume from the one before it: --ckpt_path {good}")


def test_train_py_resumes_last_from_the_good_checkpoint_when_last_is_corrupt(tmp_path, capsys):
    from train import main

    folder = tmp_path / "tiny" / "version_0" / "checkpoints"
    good = fake_checkpoint(folder / "epoch=0-step=10.ckpt", 10)
    cut_short(fake_checkpoint(folder / "last.ckpt", 20))
    with pytest.raises(SystemExit) as done:  # gets past the checkpoint, then the model can't load
        main(fit_args(tmp_path, "--ckpt_path=last"))
    assert "/nonexistent/model" in str(done.value.code)
    warning = capsys.readouterr().err.strip().splitlines()
    assert f"warning: {folder / 'last.ckpt'}: unreadable checkpoint" in warning[0]
    assert warning[0].endswith(f"resuming from {good} (step 10) instead")
