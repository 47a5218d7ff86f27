"""Learning-rate schedule: linear warm-up then cosine decay to a floor."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine(LambdaLR):
    """Linear warm-up for ``warmup_steps`` optimizer steps, then cosine decay to ``min_ratio`` x lr.

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        warmup_steps: steps of linear warm-up from zero.
        total_steps: steps until the floor; ``None`` takes the Trainer's estimate of the whole run.
        min_ratio: final learning rate as a fraction of the peak.
    """

    def __init__(
        self, optimizer: Optimizer, warmup_steps: int = 0, total_steps: int | None = None, min_ratio: float = 0.1
    ) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_ratio = min_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        total = self.total_steps or step + 1
        progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
