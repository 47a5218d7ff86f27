"""Fine-tune a causal LM with QLoRA on dialogue summarization.

    python train.py fit                                   # Phi-2 on DialogSum (configs/phi2_qlora.yaml)
    python train.py fit --config configs/quickstart.yaml  # offline CPU quickstart
    python train.py fit --print_config                    # every option, with its value
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from datamodules.dialogsum import DialogSumDataModule
from datamodules.sources import DataError
from datamodules.tokenizer import SourceError
from model.module import QLoRAModule

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "phi2_qlora.yaml"


class SummarizationCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # One source of truth: the tokenizer is the model's.
        parser.link_arguments("model.model", "data.tokenizer")

    def before_instantiate_classes(self) -> None:
        """``--ckpt_path last`` resumes the newest run of this config, logging into the same folder."""
        config = self.config[self.subcommand]
        if config.get("ckpt_path") != "last" or not config.trainer.logger:
            return
        logger = config.trainer.logger.init_args
        runs = Path(logger.save_dir) / logger.name
        candidates = sorted(runs.glob("*/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise SourceError(f"{runs}: no */checkpoints/last.ckpt to resume; drop --ckpt_path or give a checkpoint file")
        logger.version = candidates[-1].parent.parent.name
        config.ckpt_path = str(candidates[-1])


def main(args: list[str] | None = None) -> SummarizationCLI:
    args = sys.argv[1:] if args is None else args
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    if "--config" not in args and not any(a.startswith("--config=") for a in args):
        if args and args[0] in {"fit", "validate", "test", "predict"}:
            args = [args[0], "--config", str(DEFAULT_CONFIG), *args[1:]]
    try:
        return SummarizationCLI(
            QLoRAModule,
            DialogSumDataModule,
            args=args,
            save_config_kwargs={"overwrite": True},
        )
    except (DataError, SourceError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
