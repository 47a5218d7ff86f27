"""Dense weights for fast evaluation: the 4-bit base dequantized, the adapter optionally merged into it.

4-bit layers dequantize their weights on every forward; during generation that is every token,
which on CPU makes a 135M-parameter model crawl. Dequantizing once gives the very weights the
adapter was trained on (NF4 values times their scales, in ``dtype``) as ordinary ``nn.Linear``
layers, so the base (adapter disabled) and the fine-tuned model both decode at dense speed.
Merging can wait: :func:`detach_lora` takes the LoRA wrappers off for the base pass and folds the
adapter in afterwards, into the same tensors, so both passes run through the same modules.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def dequantize_4bit_layers(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Replace every bitsandbytes ``Linear4bit`` in ``model`` (LoRA wrappers kept) with a dense ``nn.Linear``.

    Args:
        model: a model with 4-bit linear layers, possibly wrapped by PEFT.
        dtype: dtype of the dense weights (the model's compute dtype).

    Returns the number of layers replaced.
    """
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, bnb.nn.Linear4bit):
                continue
            weight = dequantize_4bit(child.weight.data, child.weight.quant_state).to(dtype)
            dense = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            dense.to(device=weight.device, dtype=dtype)
            dense.weight.copy_(weight.reshape(child.out_features, child.in_features))
            if child.bias is not None:
                dense.bias.copy_(child.bias.to(dtype))
            dense.requires_grad_(False)
            setattr(parent, name, dense)
            replaced += 1
    return replaced


class DetachedLora:
    """LoRA updates taken off their layers by :func:`detach_lora`, folded into the dense weights later, in place.

    Args:
        layers: each dense layer with its adapter's ``A`` and ``B`` weights and scaling.
    """

    def __init__(self, layers: list[tuple[torch.nn.Linear, torch.Tensor, torch.Tensor, float]]) -> None:
        self.layers = layers

    @torch.no_grad()
    def merge(self) -> None:
        """Add ``scaling * B @ A`` to each dense weight (in its own storage; merging twice is an error)."""
        if self.layers is None:
            raise RuntimeError("the adapter is already merged")
        for dense, lora_a, lora_b, scaling in self.layers:
            delta = lora_b.float() @ lora_a.float()
            merged = dense.weight.float() + scaling * delta.to(dense.weight.device)
            dense.weight.copy_(merged.to(dense.weight.dtype))
        self.layers = None


@torch.no_grad()
def detach_lora(model: torch.nn.Module, adapter: str = "default") -> tuple[torch.nn.Module, DetachedLora]:
    """Replace each LoRA wrapper by its dense base layer, keeping the adapter's weights aside.

    The returned base model computes what the PEFT model computes with its adapter disabled. After
    ``DetachedLora.merge`` the same modules, with the same weight tensors, compute the fine-tuned
    model: a decoder compiled for the base pass serves the fine-tuned pass without recompiling.

    Args:
        model: a PEFT model whose LoRA layers wrap dense ``nn.Linear`` layers.
        adapter: the adapter to keep.
    """
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = []
    for parent in list(base.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, LoraLayer) or adapter not in child.lora_A:
                continue
            dense = child.get_base_layer()
            if not isinstance(dense, torch.nn.Linear) or getattr(child, "fan_in_fan_out", False):
                raise TypeError(f"{name}: can only merge LoRA into a dense nn.Linear; dequantize the base first")
            layers.append((dense, child.lora_A[adapter].weight, child.lora_B[adapter].weight, child.scaling[adapter]))
            setattr(parent, name, dense)
    return base, DetachedLora(layers)


def merge_lora_into_dense(model: torch.nn.Module, adapter: str = "default") -> torch.nn.Module:
    """Fold each LoRA update ``scaling * B @ A`` into its dense base weight and drop the LoRA wrappers.

    Works where PEFT's own ``merge_and_unload`` can't: after :func:`dequantize_4bit_layers` the
    wrappers are PEFT's 4-bit LoRA classes holding dense layers. Returns the plain base model.

    Args:
        model: a PEFT model whose LoRA layers wrap dense ``nn.Linear`` layers.
        adapter: the adapter to merge.
    """
    base, lora = detach_lora(model, adapter)
    lora.merge()
    return base
