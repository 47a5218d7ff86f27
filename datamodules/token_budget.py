"""The token budget that fits the GPU: ``data.max_tokens: auto`` and ``model.gradient_checkpointing: auto``.

At start-up, before the model loads, the free memory of the training device decides the tokens a
batch (a multiple of the row length) and whether to recompute activations in backward. The peak
memory of a step is modelled as a fixed part (4-bit weights, adapters, optimizer state, the loss
head's chunk) plus a part per token of the batch, calibrated on Phi-2 in bench/README.md
(NF4 + LoRA r=16 on every linear layer, packed 512-token rows, compiled blocks) and scaled to other
models by their layer sizes. Options the user set are kept; the choice is printed in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from lightning.pytorch.utilities import rank_zero_info

AUTO = "auto"
LARGEST = 16384  # the measured-fastest budget of the default (bench/README.md); more gave no speed
# Without checkpointing, batches below this many tokens run slower than 16,384 checkpointed ones
# (H100: 8,192 tokens 31,566 tokens/s at 28.1 GiB; 16,384 checkpointed 25,088 at 9.6 GiB).
CHECKPOINT_BELOW = 8192
HEADROOM = 0.85  # of the free memory: allocator fragmentation, cuBLAS workspaces, compilation, generation
GIB = 2**30


@dataclass(frozen=True)
class ModelShape:
    """The sizes that set a causal LM's training memory."""

    layers: int
    hidden: int
    intermediate: int
    params: int

    @classmethod
    def of(cls, name: str | None) -> ModelShape:
        """The shape of a Hub name or local folder's config; Phi-2's when it can't be read (offline Hub name)."""
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(name)
        except (OSError, ValueError, TypeError):
            return PHI2
        config = getattr(config, "text_config", config)
        hidden, layers = config.hidden_size, config.num_hidden_layers
        intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
        return cls.dense(layers, hidden, intermediate, config.vocab_size)

    @classmethod
    def dense(cls, layers: int, hidden: int, intermediate: int, vocab: int) -> ModelShape:
        """A shape with its parameters counted: attention and MLP weights of each layer, embeddings and head."""
        params = layers * (4 * hidden * hidden + 2 * hidden * intermediate) + 2 * vocab * hidden
        return cls(layers, hidden, intermediate, params)


PHI2 = ModelShape.dense(layers=32, hidden=2560, intermediate=10240, vocab=51200)

# Phi-2's measured peaks: 28.1 / 54.1 GiB at 8,192 / 16,384 tokens; checkpointed 9.6 / 13.4 GiB at 16,384 / 24,576.
_PHI2_PER_TOKEN = (54.1 - 28.1) * GIB / 8192
_PHI2_PER_TOKEN_CHECKPOINTED = (13.4 - 9.6) * GIB / 8192
_PHI2_FIXED = (28.1 * GIB - 8192 * _PHI2_PER_TOKEN + 9.6 * GIB - 16384 * _PHI2_PER_TOKEN_CHECKPOINTED) / 2


def peak_bytes(shape: ModelShape, tokens: int, checkpointing: bool) -> float:
    """Estimated peak allocated memory of a training step of ``tokens`` tokens."""
    if checkpointing:  # each block's input is kept, one block's activations live at a time
        per_token = _PHI2_PER_TOKEN_CHECKPOINTED * (shape.layers * shape.hidden) / (PHI2.layers * PHI2.hidden)
    else:  # every block's activations are kept for backward
        per_token = (
            _PHI2_PER_TOKEN
            * (shape.layers * (shape.hidden + shape.intermediate))
            / (PHI2.layers * (PHI2.hidden + PHI2.intermediate))
        )
    return _PHI2_FIXED * shape.params / PHI2.params + tokens * per_token


def choose(
    free: float, shape: ModelShape, unit: int, max_tokens: int | str = AUTO, checkpointing: bool | str = AUTO
) -> tuple[int, bool]:
    """``(max_tokens, checkpointing)`` for ``free`` bytes; values given as other than ``auto`` are kept.

    The budget is the largest multiple of ``unit`` (the row length) up to ``LARGEST`` whose estimated
    peak fits ``HEADROOM`` of ``free``, never less than one row. Checkpointing turns on when, without
    it, fewer than ``CHECKPOINT_BELOW`` tokens would fit (or, for a budget the user set, when it
    wouldn't fit at all).
    """
    usable = free * HEADROOM

    def largest(ckpt: bool) -> int:
        per_token = peak_bytes(shape, 1, ckpt) - peak_bytes(shape, 0, ckpt)
        fits = (usable - peak_bytes(shape, 0, ckpt)) / per_token
        return max(unit, min(LARGEST // unit, math.floor(fits / unit)) * unit)

    if max_tokens != AUTO:
        if checkpointing == AUTO:
            checkpointing = peak_bytes(shape, int(max_tokens), False) > usable
        return int(max_tokens), bool(checkpointing)
    if checkpointing != AUTO:
        return largest(bool(checkpointing)), bool(checkpointing)
    plain = largest(False)
    if plain >= min(CHECKPOINT_BELOW, LARGEST) and peak_bytes(shape, plain, False) <= usable:
        return plain, False
    return largest(True), True


def fit_to_memory(trainer, max_tokens: int | str | None, unit: int) -> int | None:
    """Resolve ``auto`` in ``data.max_tokens`` (returned) and the module's ``gradient_checkpointing`` (set on it).

    Reads the free memory of the trainer's CUDA device (the least over ranks under DDP, so every
    rank picks the same) before the model loads.
    """
    module = getattr(trainer, "lightning_module", None)
    if max_tokens != AUTO and getattr(module, "gradient_checkpointing", False) != AUTO:
        return max_tokens
    device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
    free = None
    if device.type == "cuda":
        free = torch.tensor(free_memory(device), dtype=torch.float64, device=device)
        free = float(trainer.strategy.reduce(free, reduce_op="min"))
    return resolve(module, max_tokens, unit, free, str(device))


def resolve(module, max_tokens: int | str | None, unit: int, free: float | None, device: str) -> int | None:
    """``fit_to_memory`` for ``free`` bytes on ``device`` (None: not a CUDA device, so ``auto`` means
    ``LARGEST`` tokens without checkpointing); prints the choice with the flags that override it."""
    checkpointing = getattr(module, "gradient_checkpointing", False)
    if free is None:
        tokens = LARGEST if max_tokens == AUTO else max_tokens
        ckpt = False if checkpointing == AUTO else checkpointing
        why = f"no CUDA device ({device})"
    else:
        shape = ModelShape.of(getattr(module, "model_name", None))
        tokens, ckpt = choose(free, shape, unit, max_tokens, checkpointing)
        why = f"{free / GIB:.1f} GiB free on {device}, estimated peak {peak_bytes(shape, tokens, ckpt) / GIB:.1f} GiB"
    if module is not None and checkpointing == AUTO:
        module.gradient_checkpointing = ckpt
    rank_zero_info(
        f"token budget: data.max_tokens={tokens}, model.gradient_checkpointing={str(ckpt).lower()} ({why}); "
        "to choose yourself, set --data.max_tokens N (a multiple of data.pack_length) and "
        "--model.gradient_checkpointing true|false"
    )
    return tokens


def free_memory(device: torch.device) -> int:
    """Bytes this process may still allocate on ``device``: the device's free memory, or less under
    ``torch.cuda.set_per_process_memory_fraction``."""
    free, total = torch.cuda.mem_get_info(device)
    fraction = torch.cuda.get_per_process_memory_fraction(device)
    return int(min(free, fraction * total - torch.cuda.memory_reserved(device)))
