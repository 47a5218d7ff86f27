"""The rolling mean that turns the zig-zag of length-grouped batches into a readable loss curve.

Length-grouped batching alternates groups of long and short dialogues, and short summaries are
harder per token, so consecutive log points of ``train/loss`` zig-zag even when training is
smooth. One definition serves ``train/loss_smooth`` in TensorBoard and the bold line of the
figure, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence


def rolling_mean(values: Sequence[float], window: int = 6) -> list[float]:
    """Mean of each value and the ``window - 1`` values before it (fewer at the start)."""
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1, got {window}")
    # Summing each window afresh (not a running total) keeps every point exact to float rounding.
    return [sum(values[max(0, i + 1 - window) : i + 1]) / min(i + 1, window) for i in range(len(values))]
