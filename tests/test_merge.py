"""Dense evaluation weights: transformers' dequantize keeps the model; merging keeps the adapter's effect."""

from __future__ import annotations

import copy

import pytest
import torch

from model.merge import detach_lora


def tiny_qlora(tiny_phi: str):
    """The tiny Phi in 4-bit with LoRA adapters whose B is random, so the adapter changes the logits."""
    from model.loading import LoraArgs
    from model.module import QLoRAModule

    module = QLoRAModule(model=tiny_phi, lora=LoraArgs(r=4, alpha=8, dropout=0.0))
    module.configure_model()
    torch.manual_seed(1)
    for name, param in module.model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.05)
    return module.model.eval()


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_dequantized_base_gives_the_4bit_logits_and_merge_keeps_the_adapter(tiny_phi):
    import bitsandbytes as bnb
    from peft.tuners.lora import LoraLayer

    model = tiny_qlora(tiny_phi)
    ids = torch.tensor([[50, 100, 200, 300, 400, 500, 600, 700]])
    tuned_4bit = logits(model, ids)
    with model.disable_adapter():
        base_4bit = logits(model, ids)
    assert (tuned_4bit - base_4bit).abs().max() > 0.05  # the adapter matters

    model.get_base_model().dequantize(dtype=torch.bfloat16)  # as model.trained_run.load_model does
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert sum(isinstance(m, torch.nn.Linear) and "base_layer" in n for n, m in model.named_modules()) == 12
    torch.testing.assert_close(logits(model, ids), tuned_4bit, rtol=0, atol=1e-2)
    with model.disable_adapter():
        torch.testing.assert_close(logits(model, ids), base_4bit, rtol=0, atol=1e-2)

    with pytest.raises(AttributeError, match="quant_state"):  # why model.merge exists: PEFT can't merge here
        copy.deepcopy(model).merge_and_unload()
    merged, lora = detach_lora(model)
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits.float(), base_4bit, rtol=0, atol=1e-2)
    lora.merge()
    assert not any(isinstance(m, LoraLayer) for m in merged.modules())
    # The update is rounded to bf16 with the weight, so the merged logits match only to bf16 precision.
    error = (logits(merged, ids) - tuned_4bit).abs().max()
    assert error < 0.1 * (tuned_4bit - base_4bit).abs().max(), error
