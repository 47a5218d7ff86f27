"""Bad configs list every problem before anything loads; NaN losses and CUDA OOM end in one clear line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import kill_resume  # noqa: E402

from callbacks.memory_advice import memory_advice  # noqa: E402
from callbacks.nan_guard import NanGuard, NonFiniteLossError  # noqa: E402
from model.checkpointing import read_checkpoint  # noqa: E402

TINY = str(ROOT / "configs" / "tiny.yaml")


def fail(*args: str) -> str:
    """Run train.py's main in-process and return the message it exits with."""
    from train import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    return str(done.value.code)


# ---- configuration -----------------------------------------------------------------------------

BAD_OPTIONS = {
    "--model.lora.r=0": "model.lora.r=0 must be >= 1",
    "--model.lora.alpha=0": "model.lora.alpha=0 must be > 0",
    "--model.lora.dropout=1.0": "model.lora.dropout=1.0 must be in [0, 1)",
    "--model.dtype=fp8": "model.dtype='fp8' must be one of bfloat16, float16, float32",
    "--model.quant.quant_type=int8": "model.quant.quant_type='int8' must be nf4 or fp4",
    "--model.optimizer.init_args.lr=0": "model.optimizer.init_args.lr=0.0 must be > 0",
    "--data.max_length=8": "data.max_length=8 must be >= 16",
    "--data.batch_size=0": "data.batch_size=0 must be >= 1",
    "--data.eval_batch_size=-2": "data.eval_batch_size=-2 must be >= 1",
    "--data.sources.dialogsum.weight=-1": "data.sources.dialogsum.weight=-1.0 must be >= 0",
    "--data.num_workers=-1": "data.num_workers=-1 must be >= 0",
    "--data.prompt.template=Summarize:": "data.prompt.template='Summarize:' must contain {dialogue} exactly once",
    "--trainer.accumulate_grad_batches=0": "trainer.accumulate_grad_batches=0 must be >= 1",
    "--trainer.gradient_clip_val=-1.5": "trainer.gradient_clip_val=-1.5 must be >= 0 or null",
    "--trainer.max_steps=0": "trainer.max_steps=0 must be >= 1, or -1 for no limit",
}


def test_every_bad_option_is_listed_at_once_before_any_model_loads(tmp_path):
    message = fail(
        "fit",
        "--config",
        TINY,
        "--model.model=/nonexistent/model",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        *BAD_OPTIONS,
    )
    assert message.startswith(f"error: {len(BAD_OPTIONS)} configuration problems, nothing was loaded: ")
    assert "\n" not in message
    for problem in BAD_OPTIONS.values():
        assert problem in message
    assert not (tmp_path / "tiny").exists()  # no run folder: it stopped before the Trainer started


def test_max_tokens_below_max_length_and_no_data_source_are_problems(tmp_path):
    message = fail(
        "fit",
        "--config",
        TINY,
        "--data.max_tokens=100",
        "--data.max_length=256",
        "--data.sources={}",
    )
    assert "data.max_tokens=100 must be >= data.max_length (256)" in message
    assert "data.sources is empty" in message


@pytest.mark.parametrize("precision", ["16-mixed", "16-true"])
def test_fp16_with_phi2_is_refused_with_the_bf16_alternative(precision):
    message = fail("fit", f"--trainer.precision={precision}")  # the default config: microsoft/phi-2
    assert message.startswith("error: 1 configuration problem, nothing was loaded: ")
    assert f"trainer.precision='{precision}' with Phi-2: fp16 overflows" in message
    assert "use bf16-mixed" in message


def test_a_local_phi_folder_is_recognised_and_fp16_is_allowed_for_other_models(tiny_phi, tmp_path):
    from model.validation import config_problems

    def problems(model: str, precision: str, max_length: int = 256) -> list[str]:
        config = SimpleNamespace(
            model=SimpleNamespace(model=model),
            data=SimpleNamespace(max_length=max_length),
            trainer=SimpleNamespace(precision=precision),
        )
        return config_problems(config)

    assert any("fp16 overflows" in p for p in problems(tiny_phi, "16-mixed"))
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    assert problems(str(llama), "16-mixed") == []
    assert problems(str(llama), "bf16-mixed", max_length=4096) == [
        "data.max_length=4096 is more than the model's 2048 positions; lower it to <= 2048"
    ]


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_have_no_problems(config, capsys):
    from model.validation import config_problems
    from train import main

    with pytest.raises(SystemExit):  # composed on configs/base.yaml, as train.py runs it
        main(["fit", "--config", str(config), "--print_config"])
    composed = yaml.safe_load(capsys.readouterr().out)
    assert composed["model"]["class_path"] == "model.module.QLoRAModule"
    assert config_problems(composed) == []
    broken = {**composed, "data": {**composed["data"], "init_args": {**composed["data"]["init_args"], "max_length": 8}}}
    assert config_problems(broken) == ["data.max_length=8 must be >= 16"]  # the check does read this config


# ---- NaN / infinite loss -----------------------------------------------------------------------


def test_nan_loss_stops_the_run_naming_the_step_and_the_last_good_checkpoint(tiny_phi, tmp_path, monkeypatch):
    import model.module

    real_loss, calls = model.module.target_token_loss, []

    def loss_turning_nan(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 4 else loss  # the 4th batch: step 3

    monkeypatch.setattr(model.module, "target_token_loss", loss_turning_nan)
    config = kill_resume.write_config(tmp_path, every=2)
    message = fail(*kill_resume.train_args(config, Path(tiny_phi), tmp_path, max_steps=6))
    folder = tmp_path / "tiny" / "version_0" / "checkpoints"
    assert message.startswith("error: the training loss is nan at step 3 (epoch 0); the run stopped before")
    assert f"Last good checkpoint: {folder / 'last.ckpt'} (--ckpt_path {folder / 'last.ckpt'})" in message
    assert "--trainer.precision bf16-mixed" in message and "\n" not in message
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["epoch=0-step=2.ckpt", "last.ckpt"]
    state = read_checkpoint(folder / "last.ckpt")
    assert state["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())


def test_infinite_loss_is_caught_too_and_names_the_checkpoint_it_resumed_from():
    trainer = SimpleNamespace(global_step=41, current_epoch=1, checkpoint_callbacks=[], ckpt_path="runs/step40.ckpt")
    NanGuard().on_before_backward(trainer, None, torch.tensor(2.5))  # a finite loss passes
    with pytest.raises(NonFiniteLossError, match=r"loss is inf at step 41 .* Last good checkpoint: runs/step40.ckpt"):
        NanGuard().on_before_backward(trainer, None, torch.tensor(float("inf")))


# ---- CUDA out of memory ------------------------------------------------------------------------


def test_cuda_out_of_memory_is_answered_with_the_settings_that_lower_memory(tiny_phi, tmp_path, monkeypatch):
    from model.module import QLoRAModule

    def out_of_memory(self, batch, batch_idx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(QLoRAModule, "training_step", out_of_memory)
    config = kill_resume.write_config(tmp_path, every=2)
    message = fail(*kill_resume.train_args(config, Path(tiny_phi), tmp_path, max_steps=6), "--data.batch_size=8")
    assert message.startswith(
        "error: CUDA out of memory in train at step 0 (batch_size=8, max_tokens=None, max_length=96, "
        "gradient_checkpointing=False, accumulate_grad_batches=1); to need less memory use one or more of: "
    )
    for fix in (
        "--data.batch_size 4 --trainer.accumulate_grad_batches 2 (same effective batch)",
        "--model.gradient_checkpointing true",
        "--data.max_tokens 384",
        "then resume with --ckpt_path last",
    ):
        assert fix in message
    assert "\n" not in message


def test_out_of_memory_in_validation_suggests_a_smaller_eval_batch():
    data = SimpleNamespace(batch_size=16, eval_batch_size=32, max_tokens=8192, max_length=512)
    trainer = SimpleNamespace(
        datamodule=data,
        accumulate_grad_batches=2,
        global_step=300,
        state=SimpleNamespace(stage=SimpleNamespace(value="validate")),
    )
    advice = memory_advice(trainer, SimpleNamespace(gradient_checkpointing=True))
    assert advice.startswith("CUDA out of memory in validate at step 300")
    assert "--data.eval_batch_size 16" in advice and "--data.max_tokens 4096" in advice
    assert "--data.max_length 384" in advice and "gradient_checkpointing true" not in advice
