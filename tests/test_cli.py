"""Configs validate; the default job fails fast and clearly without the Hub."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_begins_with_the_command_that_runs_it_and_that_command_composes(config: Path, capsys):
    from train import main

    command = config.read_text().splitlines()[0]
    assert command.startswith("# python "), command
    # The --config files the header names (e.g. a preset after the job it is layered on), this one among them.
    configs = [w for i, w in enumerate(command.split()) if i and command.split()[i - 1] == "--config"]
    assert f"configs/{config.name}" in configs or config.name in ("base.yaml", "phi2_qlora.yaml", "quickstart.yaml")
    with pytest.raises(SystemExit) as done:
        main(["fit", *[a for c in configs for a in ("--config", str(ROOT / c))], "--print_config"])
    assert done.value.code in (None, 0)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "model.module.QLoRAModule"
    assert printed["trainer"]["log_every_n_steps"] >= 1 and printed["trainer"]["callbacks"]  # base.yaml's part


def test_print_config_defaults_to_phi2(capsys):
    from train import main

    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    out = capsys.readouterr().out
    assert "model: microsoft/phi-2" in out and "knkarthick/dialogsum" in out and "class_path: model.module" in out
    assert "target_modules:\n    - q_proj" in out or "- fc2" in out


def test_default_fit_without_hub_fails_fast_with_one_line(tmp_path):
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "fit", f"--trainer.logger.init_args.save_dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert time.monotonic() - start < 30
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and ("--data.sources.dialogsum.path" in last or "--model.model" in last), last


def test_bad_data_row_fails_before_any_model_loads(tiny_phi, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"id": "1", "dialogue": "#Person1#: hi", "summary": ""}\n')
    (tmp_path / "data" / "dev.jsonl").write_text('{"id": "2", "dialogue": "#Person1#: hi", "summary": "ok"}\n')
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "fit",
            "--config",
            str(ROOT / "configs" / "tiny.yaml"),
            "--model.model=/nonexistent/model",
            f"--data.sources={{mine: {{path: {tmp_path / 'data'}}}}}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"error: {tmp_path / 'data' / 'train.jsonl'}:1: field 'summary' is empty; fill it or remove the row"


def test_12gib_preset_layers_checkpointing_on_the_default_job(capsys):
    from train import main

    default, preset = ROOT / "configs" / "phi2_qlora.yaml", ROOT / "configs" / "phi2_12gib.yaml"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(default), "--config", str(preset), "--print_config"])
    out = capsys.readouterr().out
    assert "gradient_checkpointing: true" in out
    assert "pack_length: 512" in out and "model: microsoft/phi-2" in out  # the rest is the default job


def test_full_data_overlay_keeps_the_smollm2_job_and_lifts_the_budget(capsys):
    import yaml

    from train import main

    base, overlay = ROOT / "configs" / "smollm2_dialogsum.yaml", ROOT / "configs" / "smollm2_dialogsum_full.yaml"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(base), "--config", str(overlay), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    data = config["data"]["init_args"]
    assert data["train_limit"] is None and data["sources"]["enterprise"]["weight"] == 4.0
    assert config["trainer"]["max_epochs"] == 2
    assert config["trainer"]["logger"]["init_args"]["name"] == "smollm2_dialogsum_full"
    assert config["model"]["init_args"]["model"] == "models/smollm2-135m-instruct"  # the rest is the 4,000 run's
    assert data["max_length"] == 640 and config["trainer"]["log_every_n_steps"] == 25  # the run's, then base.yaml's
    callbacks = [c["class_path"].rsplit(".", 1)[-1] for c in config["trainer"]["callbacks"]]
    assert "ModelCheckpoint" in callbacks and callbacks[-1] == "ValidationSamples"  # base.yaml's, then its own


def test_an_overlay_listing_callbacks_replaces_base_yaml_list_as_written(tmp_path, capsys):
    from train import main

    # base.yaml's callbacks, its ModelCheckpoint given other arguments: what a user copies and edits.
    callbacks = yaml.safe_load((ROOT / "configs" / "base.yaml").read_text())["trainer"]["callbacks"]
    callbacks[-1] = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"every_n_train_steps": 2, "save_top_k": -1},
    }
    overlay = tmp_path / "every2.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / "configs" / "tiny.yaml"), f"--config={overlay}", "--print_config"])
    composed = yaml.safe_load(capsys.readouterr().out)["trainer"]["callbacks"]
    assert [c["class_path"] for c in composed] == [c if isinstance(c, str) else c["class_path"] for c in callbacks]
    checkpoint = composed[-1]["init_args"]
    assert checkpoint["every_n_train_steps"] == 2 and checkpoint["save_top_k"] == -1
    assert checkpoint["monitor"] is None and checkpoint["filename"] is None  # none of base.yaml's val/loss ones
    assert checkpoint["save_last"] is None  # Lightning's default, not base.yaml's true
