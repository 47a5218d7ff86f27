"""Operations: predict writes, test/predict write into the run given, failed starts leave nothing,
``--ckpt_path last`` takes the newest unfinished run, untrusted checkpoints are refused, options fail in one line."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import torch
from conftest import DIALOGSUM, ROOT, fit_tiny

from model.checkpointing import CheckpointError, resolve_last

# A tiny float model: the 4-bit path is not what these tests are about.
FAST = [
    "--trainer.max_steps=4",
    "--trainer.log_every_n_steps=2",
    "--trainer.val_check_interval=4",
    "--trainer.limit_val_batches=1",
    "--data.max_length=64",
    "--data.batch_size=2",
    "--data.eval_batch_size=3",
    "--model.quant.load_in_4bit=false",
    "--model.dtype=float32",
    "--model.max_new_tokens=4",
]


@pytest.fixture(scope="module")
def trained(tiny_phi, tmp_path_factory) -> Path:
    """One finished 4-step run; the tests below test and predict from it."""
    folder = tmp_path_factory.mktemp("ops")
    return Path(fit_tiny(tiny_phi, folder, *FAST).trainer.log_dir)


def run_command(subcommand: str, tiny_phi: str, run: Path, *extra: str):
    from train import main

    return main(
        [
            subcommand,
            "--config",
            str(ROOT / "configs" / "tiny.yaml"),
            "--model.model",
            tiny_phi,
            "--data.sources.dialogsum.path",
            str(DIALOGSUM),
            "--trainer.logger.init_args.save_dir",
            str(run.parent.parent),
            *FAST,
            "--ckpt_path",
            str(run / "checkpoints" / "last.ckpt"),
            *extra,
        ]
    )


def test_predict_writes_one_json_line_per_example_into_the_run_it_was_given(trained, tiny_phi):
    config = (trained / "config.yaml").read_text()
    run_command("predict", tiny_phi, trained, "--trainer.limit_predict_batches=2")
    lines = [json.loads(line) for line in (trained / "predictions.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (DIALOGSUM / "dialogsum.test.jsonl").read_text().splitlines()[:6]]
    assert [line["id"] for line in lines] == [row["fname"] for row in test]  # 2 batches of 3, in order
    first = lines[0]
    assert first["source"] == "dialogsum" and first["dialogue"] == test[0]["dialogue"]
    assert first["reference"] == test[0]["summary1"] and len(first["references"]) == 3
    assert isinstance(first["summary"], str)
    assert sorted(p.name for p in trained.parent.iterdir()) == [trained.name]  # no new version_N
    assert (trained / "config.yaml").read_text() == config  # the training config is kept
    assert (trained / "config_predict.yaml").is_file()


def test_test_writes_into_the_run_it_was_given(trained, tiny_phi):
    cli = run_command("test", tiny_phi, trained, "--trainer.limit_test_batches=1")
    assert Path(cli.trainer.log_dir) == trained
    assert sorted(p.name for p in trained.parent.iterdir()) == [trained.name]


def test_a_failed_start_leaves_no_run_folder(tmp_path):
    from train import main

    args = [
        "fit",
        "--config",
        str(ROOT / "configs" / "tiny.yaml"),
        "--model.model=/nonexistent/model-folder",  # fails inside fit, after the logger made its folder
        f"--data.sources={{enterprise: {{path: {ROOT / 'data' / 'enterprise'}}}}}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    with pytest.raises(SystemExit):
        main(args)
    with pytest.raises(SystemExit) as done:  # a model folder without weights fails inside fit
        (tmp_path / "empty-model").mkdir()
        main([*args[:4], f"--model.model={tmp_path / 'empty-model'}", *args[5:]])
    assert "empty-model" in str(done.value.code)
    assert not (tmp_path / "tiny").exists() or not any((tmp_path / "tiny").iterdir())


def fake_checkpoint(path: Path, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "global_step": step}, path)
    stamp = time.time() + step
    os.utime(path, (stamp, stamp))
    return path


def test_last_takes_the_newest_unfinished_run_and_names_the_other(tmp_path):
    older = fake_checkpoint(tmp_path / "version_0" / "checkpoints" / "last.ckpt", 6)
    newest = fake_checkpoint(tmp_path / "version_1" / "checkpoints" / "preempted-step=8.ckpt", 8)
    fake_checkpoint(tmp_path / "version_2" / "checkpoints" / "last.ckpt", 20)  # the newest file, but finished
    path, warnings = resolve_last(tmp_path, max_steps=20)
    assert path == newest
    [warning] = warnings
    assert (
        "2 unfinished runs" in warning
        and "version_1 (step 8), not version_0 (step 6)" in warning
        and "\n" not in warning
    )
    with pytest.raises(CheckpointError, match="every run there has finished"):
        resolve_last(tmp_path, max_steps=6)
    assert older.exists()


class Payload:
    """Runs code when unpickled: what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_an_untrusted_pickle_is_refused_in_one_line_without_running_it(tmp_path, tiny_phi):
    from model.checkpointing import load_checkpoint
    from train import main

    marker = tmp_path / "pwned"
    evil = tmp_path / "run" / "checkpoints" / "evil.ckpt"
    evil.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 1, "x": Payload(marker)}, evil)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(evil)
    message = str(refused.value)
    assert message.startswith(f"{evil}: refused: it holds posix.mkdir") and "\n" not in message
    with pytest.raises(SystemExit) as done:
        main(
            [
                "test",
                "--config",
                str(ROOT / "configs" / "tiny.yaml"),
                "--model.model",
                tiny_phi,
                "--ckpt_path",
                str(evil),
            ]
        )
    assert str(done.value.code).startswith("error: ") and "refused" in str(done.value.code)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--trainer.max_step=5", "unknown option --trainer.max_step; did you mean --trainer.max_steps?"),
        ("--data.batch_sise=5", "unknown option --data.batch_sise; did you mean --data.batch_size?"),
        ("--model.lora.r=x", "--model.lora.r: Expected a <class 'int'>"),
        (
            "--data.sources.dialogsum.path=/no/such/folder",
            "--data.sources.dialogsum.path /no/such/folder: no such file or folder",
        ),
    ],
)
def test_a_bad_option_is_one_line_naming_the_real_one(option, expected, capsys):
    from train import main

    with pytest.raises(SystemExit) as done:
        main(["fit", "--config", str(ROOT / "configs" / "tiny.yaml"), option])
    message = str(done.value.code)
    assert message.startswith(f"error: {expected}") and "\n" not in message
    assert "usage:" not in capsys.readouterr().err


def test_overlay_skips_runs_without_points(tmp_path, monkeypatch, capsys):
    from torch.utils.tensorboard import SummaryWriter

    import callbacks.curves as curves

    with SummaryWriter(tmp_path / "tiny" / "version_0") as writer:
        for step in (1, 2, 3):
            writer.add_scalar("train/loss", 3.0 - step / 2, step)
    SummaryWriter(tmp_path / "tiny" / "version_1").close()  # a run that stopped before its first point
    drawn = []
    monkeypatch.setattr(curves, "draw", lambda runs, **kw: drawn.append(runs))
    monkeypatch.setattr(curves, "save", lambda fig, *paths: list(paths))
    curves.main([str(tmp_path / "tiny"), "--out", str(tmp_path / "x.png")])
    assert [r.label for r in drawn[0]] == ["tiny/version_0"]
    assert "skipped (no train/loss or val/loss points): tiny/version_1" in capsys.readouterr().err


def test_progress_is_steps_of_the_planned_total_one_plain_line_per_log_point_also_after_resume(
    tiny_phi, tmp_path, capsys
):
    first = fit_tiny(tiny_phi, tmp_path, *FAST, "--trainer.enable_progress_bar=true")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in lines] == ["step 2/4 (50%)", "step 4/4 (100%)"]
    fields = lines[0].split(" | ")
    assert (
        fields[1] == "epoch 0"
        and fields[2].startswith("loss ")
        and re.search(r"elapsed, ETA \d:\d\d:\d\d$", fields[-1])
    )
    assert lines[1].endswith("elapsed, ETA 0:00:00")
    assert any(f.endswith(" tok/s") for f in fields) and "v_num" not in lines[0]

    last = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    fit_tiny(
        tiny_phi, tmp_path, *FAST, "--trainer.enable_progress_bar=true", "--trainer.max_steps=8", f"--ckpt_path={last}"
    )
    out = capsys.readouterr().out
    lines = [line.split(" | ")[0] for line in out.splitlines() if line.startswith("step ")]
    assert lines == ["step 6/8 (75%)", "step 8/8 (100%)"]  # counted from the resumed step, out of the new total
    assert "-2" not in out and "v_num" not in out
