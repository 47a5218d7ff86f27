"""The adapter merged into a dequantized base, after the base pass, through the same modules.

``model.trained_run.load_model`` dequantizes the 4-bit base with transformers' own ``dequantize``
(the very weights the adapter was trained on, as ``nn.Linear``). PEFT's ``merge_and_unload`` can't
merge into that: the LoRA wrappers stay PEFT's 4-bit classes, whose merge reads the weight's
``quant_state`` (AttributeError); merged into the 4-bit model instead, the sum is rounded to NF4
again. :func:`detach_lora` takes the wrappers off for the base pass and folds the adapter in
afterwards, into the same tensors, so a decoder compiled for the base pass serves both.
"""

from __future__ import annotations

import torch


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
