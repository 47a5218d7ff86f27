"""Fine-tune a causal LM with QLoRA on dialogue summarization.

python train.py fit                                   # Phi-2 on DialogSum (configs/phi2_qlora.yaml)
python train.py fit --config configs/quickstart.yaml  # offline CPU quickstart
python train.py fit --print_config                    # every option, with its value
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins import TorchCheckpointIO

from callbacks.memory_advice import OutOfMemoryAdvice, memory_advice
from callbacks.nan_guard import NanGuard, NonFiniteLossError
from callbacks.phases import FitPhases
from datamodules.dialogsum import DialogSumDataModule
from datamodules.sources import DataError
from datamodules.tokenizer import SourceError
from model.checkpointing import KEYWORDS, AtomicCheckpointIO, CheckpointError, check_resume_file, resolve_last
from model.module import QLoRAModule
from model.validation import ConfigError, check_config

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "phi2_qlora.yaml"


class SummarizationCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # One source of truth: the tokenizer is the model's.
        parser.link_arguments("model.model", "data.tokenizer")

    def before_instantiate_classes(self) -> None:
        """Check every option and the checkpoint to resume, before any class or weight loads."""
        config = self.config[self.subcommand] if self.subcommand else self.config  # run=False has no subcommand
        check_config(config)
        ckpt = config.get("ckpt_path")
        if ckpt == "last" and config.trainer.logger:
            # The newest readable checkpoint of this config's runs; logging goes on in its run's folder.
            logger = config.trainer.logger.init_args
            path, skipped = resolve_last(Path(logger.save_dir) / logger.name)
            for line in skipped:
                print(f"warning: {line}", file=sys.stderr)
            logger.version = path.parent.parent.name
            config.ckpt_path = str(path)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads an explicit --ckpt_path right after parsing: a cut file must fail here, in one line.
        subcommand = self.config.get("subcommand")
        ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt is not None and str(ckpt) not in KEYWORDS and "://" not in str(ckpt):
            check_resume_file(Path(ckpt))

    def instantiate_trainer(self, **kwargs) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # leave a user's own plugin alone
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def main(args: list[str] | None = None) -> SummarizationCLI:
    args = sys.argv[1:] if args is None else args
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    if "--config" not in args and not any(a.startswith("--config=") for a in args):
        if args and args[0] in {"fit", "validate", "test", "predict"}:
            args = [args[0], "--config", str(DEFAULT_CONFIG), *args[1:]]
    oom = OutOfMemoryAdvice()
    try:
        return SummarizationCLI(
            QLoRAModule,
            DialogSumDataModule,
            args=args,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [NanGuard(), oom, FitPhases()]},  # on in every config
        )
    except (DataError, SourceError, ConfigError, CheckpointError, NonFiniteLossError) as err:
        sys.exit(f"error: {err}")
    except torch.OutOfMemoryError:
        sys.exit(f"error: {oom.advice or memory_advice()}")


if __name__ == "__main__":
    main()
