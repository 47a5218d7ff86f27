"""Next-token loss on the summary tokens only, without materialising full-vocabulary logits.

A batch of 16k tokens with Phi-2's 51,200-word vocabulary would need 3.3 GB of fp32 logits. Only
the target positions (the summary and its EOS, ~15% of tokens) carry loss, so we project just
those hidden states through the output head, in chunks, and upcast each chunk to fp32 for a
stable softmax.
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
