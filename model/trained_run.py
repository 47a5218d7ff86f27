"""A trained run loaded back: its model and data classes rebuilt from its config, its adapter, its prompt format.

A run is found from a Lightning checkpoint (``<run>/checkpoints/*.ckpt``) or an exported PEFT adapter
(``<run>/adapter``); the config.yaml LightningCLI saved in ``<run>`` is the only description of the run:
``train.rebuild`` instantiates its model and data classes from it through the training parser, so a
researcher's subclass, its extra arguments and every option are what eval measures and export writes.
Overrides use the training syntax (``--model.init_args.max_new_tokens 64``, ``--data.sources.dialogsum.path <folder>``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from datamodules.tokenizer import SourceError


def locate_weights(path: str) -> tuple[str | None, str | None]:
    """``(ckpt_path, adapter)`` for a run folder, an adapter folder or a Lightning checkpoint."""
    where = Path(path)
    if where.is_file():
        return str(where), None
    if (where / "adapter_config.json").is_file():
        return None, str(where)
    if (where / "adapter" / "adapter_config.json").is_file():
        return None, str(where / "adapter")
    if (where / "checkpoints" / "last.ckpt").is_file():
        return str(where / "checkpoints" / "last.ckpt"), None
    raise SourceError(
        f"run {path}: not a checkpoint, an adapter folder (adapter_config.json) or a run folder holding "
        "adapter/ or checkpoints/last.ckpt; give one of those (e.g. logs/quickstart/version_0)"
    )


@dataclass
class Run:
    """A run rebuilt from its config: the (not yet loaded) module and data module, and its weights.

    Args:
        config_path: the run's config.yaml.
        module: the LightningModule the config names, instantiated (weights load in ``load_model``).
        data: the LightningDataModule the config names, instantiated (nothing read yet).
        ckpt_path: a Lightning checkpoint holding the adapter weights, or None.
        adapter: a PEFT adapter folder, or None.
    """

    config_path: Path
    module: object
    data: object
    ckpt_path: Path | None = None
    adapter: Path | None = None

    @property
    def run_dir(self) -> Path:
        """The run's log folder: the one holding the weights (``<run>/checkpoints/x.ckpt``, ``<run>/adapter``)."""
        if self.ckpt_path is not None:
            parent = self.ckpt_path.parent
            return parent.parent if parent.name == "checkpoints" else parent
        if self.adapter is not None:
            return self.adapter.parent
        return self.config_path.parent

    @property
    def class_paths(self) -> dict[str, str]:
        """The model and data classes measured (a researcher's subclass shows here)."""
        return {key: f"{type(obj).__module__}.{type(obj).__qualname__}" for key, obj in (("model", self.module),
                ("data", self.data))}  # fmt: skip


def find_run(
    config: str | None, ckpt_path: str | None = None, adapter: str | None = None, overrides: list[str] = ()
) -> Run:
    """Rebuild a run from its config: the one given, else the config.yaml beside the checkpoint or adapter.

    Args:
        config: a config YAML (a run's saved config.yaml).
        ckpt_path: a Lightning checkpoint, or ``last`` for the config's newest ``last.ckpt``.
        adapter: a PEFT adapter folder (``adapter_config.json`` + weights).
        overrides: options in training syntax, applied on top of the config.
    """
    if not ckpt_path and not adapter:
        raise SourceError("give the fine-tuned weights: --ckpt_path <file or last> or --adapter <folder>")
    if ckpt_path and adapter:
        raise SourceError("give --ckpt_path or --adapter, not both")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise SourceError(
            f"--adapter {adapter}: no adapter_config.json there; give the folder a fit exported (<run>/adapter)"
        )
    if ckpt_path not in (None, "last") and not Path(ckpt_path).is_file():
        raise SourceError(f"--ckpt_path {ckpt_path}: file not found")
    if config is None:
        weights = Path(adapter) if adapter else Path(ckpt_path) if ckpt_path not in (None, "last") else None
        guesses = [weights.parent / "config.yaml", weights.parent.parent / "config.yaml"] if weights else []
        found = [g for g in guesses if g.is_file()]
        if not found:
            raise SourceError(
                "no config.yaml found beside the checkpoint or adapter; give --config (the run's config.yaml)"
            )
        config = str(found[0])
    path = Path(config)
    if not path.is_file():
        raise SourceError(f"--config {config}: file not found")
    if ckpt_path == "last":
        ckpt_path = str(newest_last_checkpoint(yaml.safe_load(path.read_text()) or {}, path))
    from model.validation import ConfigError
    from train import rebuild

    try:
        module, data = rebuild(path, list(overrides))
    except ConfigError as err:  # a bad option or a missing path, said in one line
        raise SourceError(str(err)) from None
    return Run(path, module, data, Path(ckpt_path) if ckpt_path else None, Path(adapter) if adapter else None)


def newest_last_checkpoint(config: dict, config_path: Path) -> Path:
    """The newest ``last*.ckpt`` of the run a config describes (its own folder, or its logger's runs)."""
    logger = ((config.get("trainer") or {}).get("logger") or {}).get("init_args") or {}
    folders = [config_path.parent]
    if logger.get("save_dir") and logger.get("name"):
        folders.append(Path(logger["save_dir"]) / logger["name"])
    found = [p for folder in folders for p in folder.glob("**/checkpoints/last*.ckpt")]
    if not found:
        raise SourceError(f"--ckpt_path last: no checkpoints/last.ckpt under {', '.join(map(str, folders))}")
    return max(found, key=lambda p: p.stat().st_mtime)


WEIGHTS = ("dense", "merged", "4bit")


@dataclass
class LoadedModel:
    """The module with its adapter weights, and the encoder that builds its prompts."""

    module: object  # QLoRAModule
    encoder: object  # PromptEncoder
    weights: str = "dense"  # see load_model
    merged: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def tokenizer(self):
        return self.module.tokenizer


def load_model(run: Run, weights: str = "dense", device: str = "auto") -> LoadedModel:
    """Load the run's base (4-bit) with fresh LoRA, then its adapter weights; build its prompt encoder.

    Args:
        run: the run from :func:`find_run`.
        weights: ``dense`` dequantizes the 4-bit layers once into ``model.dtype`` (the same weights
            and summaries as ``4bit``, faster); ``merged`` also folds the adapter into those weights
            for the fine-tuned pass (faster still, but rounding the update to bf16 can change a few
            tokens); ``4bit`` decodes through the 4-bit layers as trained (they dequantize every token).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """
    import torch

    from datamodules.encoding import PromptEncoder
    from model.checkpointing import CheckpointError, load_checkpoint
    from model.module import DTYPES

    if weights not in WEIGHTS:
        raise ValueError(f"--weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    start = time.perf_counter()
    module = run.module
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # the weights load, and are quantized, on the device (not on the CPU first)
        module.configure_model()
    if run.adapter:
        load_adapter_folder(module, run.adapter)
    elif run.ckpt_path:
        try:
            checkpoint = load_checkpoint(run.ckpt_path)  # weights_only: a stranger's pickle is refused
        except CheckpointError as err:
            raise SourceError(str(err)) from None
        module.load_state_dict(checkpoint["state_dict"])
    module.to(device)
    if weights != "4bit" and module.quant.load_in_4bit:
        module.model.get_base_model().dequantize(dtype=DTYPES[module.dtype_name])  # transformers' own
    module.eval()
    encoder = PromptEncoder(module.tokenizer, run.data.prompt, run.data.max_length)
    return LoadedModel(module, encoder, weights=weights, timings={"load_s": time.perf_counter() - start})


def load_adapter_folder(module, folder: Path) -> None:
    """Load PEFT adapter weights (``adapter_model.safetensors`` or ``.bin``) into the module's LoRA layers."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    folder = Path(folder)
    if not any((folder / f"adapter_model.{ext}").is_file() for ext in ("safetensors", "bin")):
        raise SourceError(f"--adapter {folder}: no adapter_model.safetensors or adapter_model.bin")
    result = set_peft_model_state_dict(module.model, load_peft_weights(str(folder), device="cpu"))
    missing_lora = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing_lora:
        raise SourceError(
            f"--adapter {folder} does not fit the base model: {len(result.unexpected_keys)} unexpected weights "
            f"(e.g. {result.unexpected_keys[:1]}), {len(missing_lora)} LoRA weights missing; is it for another base?"
        )
