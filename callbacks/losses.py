"""``train/loss``, ``train/loss_smooth`` and ``val/loss`` on the optimizer-step axis, and the figure.

The module logs its losses for the progress bar and for checkpoint monitoring only; this callback
is what writes them to the loggers, so that:

- ``train/loss`` at step N is the mean loss of the ``log_every_n_steps`` optimizer steps ending
  at N, each step the mean of its accumulated micro-batches (not, as Lightning's own on-step
  logging would give, the last micro-batch only, repeated for every micro-batch of the window);
- ``val/loss`` sits at the optimizer step it followed (Lightning's axis puts it one step early);
- ``train/loss_smooth`` is the rolling mean of the last ``smooth_window`` ``train/loss`` points.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from callbacks.cadence import log_metrics, log_point
from callbacks.smoothing import rolling_mean


class LossCurves(Callback):
    """Logs the training and validation loss against optimizer steps and redraws the learning curve.

    Args:
        smooth_window: ``train/loss`` points averaged into ``train/loss_smooth`` (and the figure's bold line).
        figure: redraw ``learning_curve.png`` and ``.svg`` in the run's log folder at every validation
            and at the end of training.
    """

    def __init__(self, smooth_window: int = 6, figure: bool = True) -> None:
        rolling_mean([], smooth_window)  # rejects a bad window now, not at the first log point
        self.smooth_window = smooth_window
        self.figure = figure
        self._step = 0
        self._micro: list[torch.Tensor] = []  # losses of the optimizer step in progress
        self._steps: list[torch.Tensor] = []  # per-step losses since the last log point
        self._logged: list[float] = []  # the last smooth_window train/loss points

    # ---- training -------------------------------------------------------------------------------

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step = trainer.global_step
        # A resumed run's partial window comes back on the CPU; its new losses live on the device.
        self._micro = [x.to(pl_module.device) for x in self._micro]
        self._steps = [x.to(pl_module.device) for x in self._steps]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            # Lightning hands this hook the loss it back-propagated: divided by accumulate_grad_batches.
            self._micro.append(loss.detach().float() * trainer.accumulate_grad_batches)
        if trainer.global_step == self._step:
            return  # still accumulating
        self._step = trainer.global_step
        if self._micro:
            self._steps.append(torch.stack(self._micro).mean())
            self._micro = []
        if not log_point(trainer):
            return
        local = torch.stack(self._steps).mean() if self._steps else torch.tensor(float("nan"), device=pl_module.device)
        # Every rank reaches each log point: the mean over devices (a no-op on one), one host sync.
        value = trainer.strategy.reduce(local, reduce_op="mean").item()
        self._steps = []
        self._logged = (self._logged + [value])[-self.smooth_window :]
        smooth = rolling_mean(self._logged, self.smooth_window)[-1]
        log_metrics(trainer, {"train/loss": value, "train/loss_smooth": smooth})

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw(trainer)

    # ---- validation -----------------------------------------------------------------------------

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val/loss" not in trainer.callback_metrics:
            return
        log_metrics(trainer, {"val/loss": float(trainer.callback_metrics["val/loss"])})
        if trainer.state.fn == "fit":
            self._draw(trainer)

    # ---- the figure -----------------------------------------------------------------------------

    def _draw(self, trainer: L.Trainer) -> None:
        # The logger's own log_dir: trainer.log_dir is a DDP broadcast, which rank 0 alone must not call.
        if not self.figure or not trainer.is_global_zero or getattr(trainer.logger, "log_dir", None) is None:
            return
        from callbacks.curves import draw, read_run, save

        writer = getattr(trainer.logger, "experiment", None)
        if not hasattr(writer, "flush"):
            return  # not TensorBoard: the figure is drawn from TensorBoard's event files
        writer.flush()
        folder = Path(trainer.logger.log_dir)
        try:
            figure = draw([read_run(folder)], window=self.smooth_window)
            save(figure, folder / "learning_curve.png", folder / "learning_curve.svg")
        except Exception as err:  # noqa: BLE001 - a plotting failure must not end a long run
            rank_zero_warn(f"learning curve not drawn in {folder}: {err}")

    # ---- resuming continues the same curve ------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "micro": [float(x) for x in self._micro],
            "steps": [float(x) for x in self._steps],
            "logged": list(self._logged),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._micro = [torch.tensor(x) for x in state_dict.get("micro", [])]
        self._steps = [torch.tensor(x) for x in state_dict.get("steps", [])]
        self._logged = list(state_dict.get("logged", []))
