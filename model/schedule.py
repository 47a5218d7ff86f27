"""Learning-rate schedule: transformers' linear warm-up then cosine decay to a floor, as a LightningCLI scheduler."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine(LambdaLR):
    """``get_cosine_with_min_lr_schedule_with_warmup``: from 0 to lr in ``warmup_steps``, then a cosine to the floor.

    transformers builds it for a known length; the YAML can't know it, so ``total_steps`` is left
    null there and ``QLoRAModule.configure_optimizers`` builds the schedule again with the Trainer's
    estimate of the run's optimizer steps (``trainer.estimated_stepping_batches``).

    Args:
        optimizer: the optimizer whose learning rate is scheduled.
        warmup_steps: optimizer steps of linear warm-up from zero.
        total_steps: optimizer steps until the floor; null takes the Trainer's estimate of the whole run.
        min_ratio: the floor, as a fraction of the peak learning rate.
    """

    def __init__(
        self, optimizer: Optimizer, warmup_steps: int = 0, total_steps: int | None = None, min_ratio: float = 0.1
    ) -> None:
        # Imported here: transformers' schedules pull in peft and bitsandbytes, seconds a bad config needn't wait.
        from transformers import get_cosine_with_min_lr_schedule_with_warmup

        self.total_steps = total_steps
        schedule = get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, warmup_steps, total_steps or warmup_steps + 1, min_lr_rate=min_ratio
        )
        super().__init__(optimizer, schedule.lr_lambdas)
