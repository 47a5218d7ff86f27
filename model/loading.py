"""Building the trainable model: a causal LM loaded in 4-bit NF4 with LoRA adapters through PEFT."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from datamodules.tokenizer import SourceError, hub_error

PHI2_LINEAR_LAYERS = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]


@dataclass
class LoraArgs:
    """LoRA adapter settings.

    Args:
        r: rank of each adapter.
        alpha: scale numerator; the update is scaled by ``alpha / r``.
        dropout: dropout on the adapter input (0 lets PEFT skip a copy of every activation).
        target_modules: names of the linear layers that get adapters; ``all-linear`` means every one
            but the output head.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: list(PHI2_LINEAR_LAYERS))


@dataclass
class QuantArgs:
    """4-bit loading through bitsandbytes.

    Args:
        load_in_4bit: quantize the frozen base weights; false keeps them in ``dtype``.
        quant_type: ``nf4`` (QLoRA's normal float) or ``fp4``.
        double_quant: quantize the quantization constants too (about 0.4 bits a weight saved).
    """

    load_in_4bit: bool = True
    quant_type: str = "nf4"
    double_quant: bool = True


def load_base_model(name: str, dtype: torch.dtype, quant: QuantArgs, attn_implementation: str | None = None):
    """Load a causal LM from a Hub name or local folder, frozen, optionally in 4-bit."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quant.load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quant.quant_type,
            bnb_4bit_use_double_quant=quant.double_quant,
            bnb_4bit_compute_dtype=dtype,
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except OSError as err:
        raise SourceError(hub_error(name, "--model.model", err)) from None
    model.requires_grad_(False)
    model.config.use_cache = False
    disable_cpu_repacking(model)
    return model


def disable_cpu_repacking(model: torch.nn.Module) -> None:
    """Stop bitsandbytes repacking 4-bit weights for good on AVX512-BF16 CPUs.

    On such CPUs an eval-mode forward without grad (Lightning's sanity check, ``generate``)
    rewrites the weights into a layout whose backward gives wrong LoRA gradients. CUDA never
    takes that path, so this only matters for CPU runs and tests.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def add_lora(model, lora: LoraArgs):
    """Wrap ``model`` with trainable LoRA adapters (PEFT)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)
