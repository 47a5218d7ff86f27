"""Finding a run's config and weights from whatever the user points at (no model loads)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from datamodules.tokenizer import SourceError
from model.trained_run import find_run


@pytest.fixture
def runs(tmp_path):
    """logs/exp/version_0 and version_1, each with config.yaml, checkpoints/last.ckpt and adapter/."""
    config = {
        "trainer": {"logger": {"init_args": {"save_dir": str(tmp_path / "logs"), "name": "exp"}}},
        "model": {"class_path": "model.module.QLoRAModule", "init_args": {"model": "some/base"}},
        "data": {"init_args": {"prompt": {"template": "Sum: {dialogue}"}, "sources": {"mine": {"path": "x.csv"}}}},
    }
    for version in (0, 1):
        run = tmp_path / "logs" / "exp" / f"version_{version}"
        (run / "checkpoints").mkdir(parents=True)
        (run / "adapter").mkdir()
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
        os.utime(run / "checkpoints" / "last.ckpt", (1000 + version, 1000 + version))
        adapter = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["v_proj", "q_proj"]}
        (run / "adapter" / "adapter_config.json").write_text(json.dumps(adapter))
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_config_is_found_beside_the_adapter_or_checkpoint(runs):
    v0 = runs / "logs" / "exp" / "version_0"
    by_adapter = find_run(None, adapter=str(v0 / "adapter"))
    assert by_adapter.config_path == v0 / "config.yaml" and by_adapter.run_dir == v0
    assert by_adapter.data.prompt.template == "Sum: {dialogue}"
    by_ckpt = find_run(None, ckpt_path=str(v0 / "checkpoints" / "last.ckpt"))
    assert by_ckpt.config_path == v0 / "config.yaml" and by_ckpt.run_dir == v0


def test_last_takes_the_newest_run_of_the_experiment_config(runs):
    run = find_run(str(runs / "experiment.yaml"), ckpt_path="last")
    v1 = runs / "logs" / "exp" / "version_1"
    assert run.ckpt_path == v1 / "checkpoints" / "last.ckpt"
    assert run.run_dir == v1  # reports go to the run, not beside the experiment config


def test_the_run_is_rebuilt_from_its_config_with_training_syntax_overrides(runs):
    v0 = runs / "logs" / "exp" / "version_0"
    run = find_run(None, adapter=str(v0 / "adapter"), overrides=["--model.max_new_tokens", "7"])
    assert run.module.model_name == "some/base" and run.module.max_new_tokens == 7
    assert run.data.tokenizer_name == "some/base"  # linked to model.model, as in training
    assert list(run.data.sources) == ["mine"] and run.data.sources["mine"].path == "x.csv"
    assert run.class_paths == {"model": "model.module.QLoRAModule", "data": "datamodules.dialogsum.DialogSumDataModule"}


def test_unusable_paths_say_what_to_give(runs, tmp_path):
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "adapter_config.json").write_text("{}")
    cases = [
        ((None, None, None), "give the fine-tuned weights"),
        ((str(runs / "experiment.yaml"), None, None), "give the fine-tuned weights"),
        ((None, None, str(tmp_path / "lonely")), "give --config"),
        ((None, str(tmp_path / "missing.ckpt"), None), "file not found"),
        ((None, None, str(tmp_path)), "no adapter_config.json"),
        ((str(runs / "experiment.yaml"), "last", str(tmp_path / "lonely")), "not both"),
    ]
    for args, expected in cases:
        with pytest.raises(SourceError, match=expected):
            find_run(*args)
