"""The run's whole configuration in TensorBoard's HParams tab, beside the metrics it produced.

Lightning records only the module's ``save_hyperparameters`` there, which leave out the optimizer,
the schedule, the data and the trainer (learning rate, batch size, accumulation). LightningCLI
holds the full parsed config; this writes it, flattened to the CLI's own flag names
(``model.lora.r``, ``model.optimizer.lr``), so runs can be compared by any option.
Set the TensorBoard logger's ``default_hp_metric: false``: this replaces its placeholder metric.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from callbacks.lightning_internals import tensorboard_file_writer

# Columns of the HParams table; their values are the scalars the other callbacks log.
METRICS = ("val/loss", "train/loss_smooth", "val/rouge1", "val/rougeL", "train/tokens_per_sec")
SKIPPED = {"config", "trainer.logger"}  # the config files' paths; the logger's own settings


class RunHyperparameters(Callback):
    """Writes every configured option to TensorBoard's HParams tab when fitting starts."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        file_writer = tensorboard_file_writer(trainer.logger) if trainer.is_global_zero else None
        if file_writer is None:
            return  # HParams is TensorBoard's; other loggers keep Lightning's own record
        from torch.utils.tensorboard.summary import hparams

        params = flatten(run_config(trainer, pl_module))
        experiment, session_start, session_end = hparams(params, dict.fromkeys(METRICS, 0.0))
        # Only the three summaries: the metric values come from the scalars of the same names,
        # so none are written here (Lightning's log_hyperparams would write a placeholder at step 0).
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary, trainer.global_step)


def run_config(trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
    """The config LightningCLI parsed for this run, or the module's hyperparameters without the CLI."""
    from lightning.pytorch.cli import SaveConfigCallback

    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback):
            return callback.config.as_dict()
    return {"model": dict(pl_module.hparams)}


def flatten(tree, prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested options as ``{"model.lora.r": 16, ...}``, each value a type TensorBoard's HParams takes.

    Args:
        tree: a parsed config (dicts, lists, scalars); ``class_path`` / ``init_args`` pairs
            become the class name under the option's own key and its arguments beside it.
        prefix: key of ``tree`` itself.
    """
    if prefix.rstrip(".") in SKIPPED:
        return {}
    if isinstance(tree, dict):
        out: dict = {}
        if "class_path" in tree:
            out[prefix.rstrip(".")] = str(tree["class_path"])
            return out | flatten(tree.get("init_args") or {}, prefix)
        for key, value in tree.items():
            out |= flatten(value, f"{prefix}{key}.")
        return out
    key = prefix.rstrip(".")
    if isinstance(tree, (list, tuple)):
        names = [
            str(x["class_path"]).rsplit(".", 1)[-1] if isinstance(x, dict) and "class_path" in x else str(x)
            for x in tree
        ]
        return {key: ", ".join(names)}
    if tree is None:
        return {key: "null"}
    return {key: tree if isinstance(tree, (bool, int, float, str)) else str(tree)}
