"""The real entry point on a tiny Phi with real bitsandbytes 4-bit layers, on CPU."""

from __future__ import annotations

import torch
from conftest import fit_tiny, scalars


def test_fit_trains_4bit_phi_and_loss_falls(tiny_phi, tmp_path):
    import bitsandbytes as bnb

    cli = fit_tiny(tiny_phi, tmp_path, "--trainer.log_every_n_steps=1")
    layers = [m for m in cli.model.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 12  # 6 linear layers x 2 blocks, all 4-bit
    assert layers[0].weight.quant_type == "nf4"
    losses = scalars(cli.trainer.log_dir, "train/loss")
    assert sorted(losses) == list(range(1, 21))  # the optimizer step each loss ends
    first, last = sum(losses[s] for s in range(1, 6)) / 5, sum(losses[s] for s in range(16, 21)) / 5
    assert last < first - 0.5, (first, last)


def test_checkpoint_holds_adapters_not_base_and_export_loads_with_peft(tiny_phi, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cli = fit_tiny(tiny_phi, tmp_path, "--trainer.max_steps=10")
    ckpt_dir = tmp_path / "tiny" / "version_0" / "checkpoints"
    state = torch.load(ckpt_dir / "last.ckpt", weights_only=False)["state_dict"]
    assert state and all("lora_" in k for k in state), [k for k in state if "lora_" not in k][:3]
    assert "hyper_parameters" in torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    trained = cli.model.trainable_state_dict()
    assert set(state) == set(trained)

    adapter = tmp_path / "tiny" / "version_0" / "adapter"
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_phi), adapter)
    loaded = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
    ours = {k.removeprefix("model."): v for k, v in trained.items()}
    assert len(loaded) == len(ours)
    for key, value in loaded.items():
        match = key.replace("lora_A.weight", "lora_A.default.weight").replace("lora_B.weight", "lora_B.default.weight")
        assert torch.equal(value.float(), ours[match].float().cpu()), key


def test_resume_continues_the_same_curve(tiny_phi, tmp_path):
    steps = ["--trainer.log_every_n_steps=1", "--trainer.val_check_interval=5"]
    whole = fit_tiny(tiny_phi, tmp_path / "whole", *steps)
    fit_tiny(tiny_phi, tmp_path / "split", *steps, "--trainer.max_steps=10")
    resumed = fit_tiny(tiny_phi, tmp_path / "split", *steps, "--ckpt_path=last")
    assert resumed.trainer.log_dir == str(tmp_path / "split" / "tiny" / "version_0")  # same folder, same curve

    full = scalars(whole.trainer.log_dir, "train/loss")
    split = scalars(resumed.trainer.log_dir, "train/loss")
    assert sorted(split) == list(range(1, 21))
    for step in range(1, 21):
        assert abs(full[step] - split[step]) < 1e-5, (step, full[step], split[step])
    a, b = whole.model.trainable_state_dict(), resumed.model.trainable_state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_built_model_trains_in_train_mode_so_checkpointing_and_dropout_act(tiny_phi):
    from model.module import QLoRAModule

    module = QLoRAModule(model=tiny_phi, gradient_checkpointing=True)
    module.configure_model()
    assert all(m.training for m in module.model.modules())  # from_pretrained returned eval mode
    assert all(layer.gradient_checkpointing for layer in module.decoder.layers)
