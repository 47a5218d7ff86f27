"""Next-token loss on the summary tokens only, without materialising full-vocabulary logits.

A batch of 16k tokens with Phi-2's 51,200-word vocabulary would need 3.3 GB of fp32 logits. Only
the target positions (the summary and its EOS, ~15% of tokens) carry loss, so we project just
those hidden states through the output head, in chunks, and upcast each chunk to fp32 for a
stable softmax.

Picking the target positions gives shapes that depend on the labels (and a device-to-host sync),
which whole-model compilation and CUDA graphs can't take: ``masked_token_loss`` computes the same
mean with fixed shapes, every position through the head and the non-targets weighted zero. The
head is ~5% of Phi-2's FLOPs, so that costs ~4% more compute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from datamodules.encoding import IGNORE_INDEX


def target_token_loss(
    hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module, chunk_size: int = 4096
) -> torch.Tensor:
    """Mean cross-entropy of the labelled next tokens.

    Args:
        hidden: last hidden states, ``(batch, time, dim)``.
        labels: token ids aligned with ``hidden``'s positions, ``IGNORE_INDEX`` where no loss is taken;
            position ``t`` predicts ``labels[:, t + 1]``.
        head: the output projection (``lm_head``), weight ``(vocab, dim)`` and optional bias.
        chunk_size: target positions projected at once; bounds the fp32 logits to ``chunk x vocab``.
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    states = hidden[:, :-1][keep]
    targets = targets[keep]
    if targets.numel() == 0:
        return hidden.sum() * 0.0  # keeps the graph (and DDP) intact for a batch with no targets
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_size):
        logits = head(states[start : start + chunk_size]).float()
        total = total + F.cross_entropy(logits, targets[start : start + chunk_size], reduction="sum")
    return total / targets.numel()


def masked_token_loss(
    hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module, chunk_size: int = 4096
) -> torch.Tensor:
    """``target_token_loss`` with shapes that depend only on the batch's shape, not on its labels.

    Args:
        hidden: last hidden states, ``(batch, time, dim)``.
        labels: as for ``target_token_loss``.
        head: the output projection.
        chunk_size: positions (targets or not) projected at once.
    """
    # Shift by padding the labels rather than slicing the states: no copy of ``hidden``.
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).reshape(-1)
    states = hidden.reshape(-1, hidden.shape[-1])
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_size):
        logits = head(states[start : start + chunk_size]).float()
        chunk = targets[start : start + chunk_size]
        total = total + F.cross_entropy(logits, chunk, ignore_index=IGNORE_INDEX, reduction="sum")
    # A batch with no targets gives 0 with its graph intact (DDP needs every rank's gradients).
    return total / (targets != IGNORE_INDEX).sum().clamp(min=1)
