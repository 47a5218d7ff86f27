"""Fine-tune a causal LM with QLoRA on dialogue summarization.

python train.py fit                                   # Phi-2 on DialogSum (configs/phi2_qlora.yaml)
python train.py fit --config configs/quickstart.yaml  # offline CPU quickstart
python train.py fit --print_config                    # every option, with its value

configs/base.yaml (cadences, logger, callbacks) is always read first and each --config is layered
on it. Model and data are LightningCLI subclass-mode entries: ``--model.class_path my_lab.MyModule``
trains a researcher's own LightningModule with every option it adds (``--model.init_args.x 0.5``).
``rebuild`` makes a run's model and data again from its saved config.yaml, through the same parser.
"""

from __future__ import annotations

import sys
import warnings
from argparse import ArgumentError
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins import TorchCheckpointIO

from callbacks.failed_start import RemoveFailedStart
from callbacks.memory_advice import OutOfMemoryAdvice, memory_advice
from callbacks.nan_guard import NanGuard, NonFiniteLossError
from callbacks.phases import FitPhases
from callbacks.predictions import PredictionWriter
from callbacks.preemption import Preemption
from callbacks.progress import add_default_progress
from datamodules.dialogsum import DialogSumDataModule
from datamodules.sources import DataError
from datamodules.tokenizer import SourceError
from model.checkpointing import KEYWORDS, AtomicCheckpointIO, CheckpointError, check_resume_file, resolve_last
from model.module import QLoRAModule
from model.options import PARSER_KWARGS, one_line, path_problems
from model.run_folder import log_into_run
from model.validation import ConfigError, check_config

CONFIGS = Path(__file__).resolve().parent / "configs"
BASE_CONFIG = CONFIGS / "base.yaml"
DEFAULT_CONFIG = CONFIGS / "phi2_qlora.yaml"
SUBCOMMANDS = ("fit", "validate", "test", "predict")
RUN_KEYS = ("seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler")
# main and rebuild pass LightningCLI its args on purpose (base.yaml first; eval's own flags are in sys.argv).
warnings.filterwarnings("ignore", message="LightningCLI's args parameter")


class SummarizationCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # One source of truth: the tokenizer is the model's.
        parser.link_arguments("model.init_args.model", "data.init_args.tokenizer")

    def before_instantiate_classes(self) -> None:
        """Check every option and the checkpoint to resume, before any class or weight loads."""
        config = self.config[self.subcommand] if self.subcommand else self.config  # run=False has no subcommand
        check_config(config)
        ckpt = config.get("ckpt_path")
        if ckpt == "last" and config.trainer.logger:
            # The newest readable checkpoint of this config's runs; logging goes on in its run's folder.
            logger = config.trainer.logger.init_args
            path, skipped = resolve_last(
                Path(logger.save_dir) / logger.name, config.trainer.max_steps, config.trainer.max_epochs
            )
            for line in skipped:
                print(f"warning: {line}", file=sys.stderr)
            logger.version = path.parent.parent.name
            config.ckpt_path = str(path)
        elif ckpt and str(ckpt) not in KEYWORDS and "://" not in str(ckpt):
            log_into_run(config.trainer.logger, Path(ckpt))  # test, predict, resume: into the checkpoint's run
        if self.subcommand not in (None, "fit"):  # beside the run's own config.yaml, not over it
            self.save_config_kwargs["config_filename"] = f"config_{self.subcommand}.yaml"
        add_default_progress(self.trainer_defaults, config.trainer)
        if path_problems(config):
            raise ConfigError("; ".join(path_problems(config)))

    def _parse_ckpt_path(self) -> None:
        # Lightning re-parses the model from the checkpoint's hyper_parameters, which leave out the
        # optimizer and scheduler (QLoRAModule's save_hyperparameters ignores them); jsonargparse then
        # drops a scheduler a YAML gave, and a resume from a file ran at a constant learning rate.
        # A fit resumes the run its config describes; validate, test and predict keep Lightning's way.
        if self.config.get("subcommand") != "fit":
            super()._parse_ckpt_path()

    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:  # exit_on_error=False: one line, no usage dump
            subcommand = next((a for a in args if a in {"fit", "validate", "test", "predict"}), None)
            raise ConfigError(one_line(str(err), parser, subcommand)) from None
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


class RebuildCLI(SummarizationCLI):
    """A run's model and data from its config, checked as ``fit`` checks them, with no Trainer."""

    def instantiate_trainer(self, **kwargs) -> None:
        return None


def layered(args: list[str]) -> list[str]:
    """``args`` with configs/base.yaml read first (and configs/phi2_qlora.yaml when no --config is given).

    A ``--config`` that lists ``trainer.callbacks`` replaces the list before it as a whole. Left to
    itself, jsonargparse merges a list of classes item by item into an earlier list of the same
    length: a ``ModelCheckpoint(every_n_train_steps: 2)`` would keep base.yaml's ``monitor: val/loss``
    and, in a run without validation, never save.
    """
    if not args or args[0] not in SUBCOMMANDS:
        return args
    rest, given, items = [], False, iter(args[1:])
    for arg in items:
        if arg == "--config" or arg.startswith("--config="):
            given = True
            config = arg.partition("=")[2] if "=" in arg else next(items, None)
            if config is None:  # a bare --config at the end: jsonargparse reports it
                rest.append(arg)
                continue
            rest += [*(["--trainer.callbacks=[]"] if lists_callbacks(config) else []), "--config", config]
        else:
            rest.append(arg)
    configs = ["--config", str(BASE_CONFIG)] + ([] if given else ["--config", str(DEFAULT_CONFIG)])
    return [args[0], *configs, *rest]


def lists_callbacks(config: str) -> bool:
    """Whether a ``--config`` value (a file or a YAML string) gives ``trainer.callbacks`` itself, not ``callbacks+``."""
    try:
        text = Path(config).read_text() if Path(config).is_file() else config
    except OSError:  # a YAML string too long for a file name
        text = config
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:  # jsonargparse names the problem
        return False
    trainer = data.get("trainer") if isinstance(data, dict) else None
    return isinstance(trainer, dict) and isinstance(trainer.get("callbacks"), list)


def rebuild(config: Path, overrides: list[str] = ()) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The model and data classes of a run, instantiated from its saved config.yaml plus ``overrides``.

    Args:
        config: the run's config.yaml (LightningCLI saves it into the run folder).
        overrides: options in training syntax, e.g. ``--model.init_args.max_new_tokens 64``.
    """
    saved = yaml.safe_load(Path(config).read_text()) or {}
    # The subcommand's own options (ckpt_path, weights_only) describe how fit ran, not the run.
    saved = {key: value for key, value in saved.items() if key in RUN_KEYS}
    cli = RebuildCLI(
        QLoRAModule,
        DialogSumDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=["--config", str(BASE_CONFIG), "--config", yaml.safe_dump(saved), *overrides],
        run=False,
        save_config_callback=None,
        parser_kwargs=PARSER_KWARGS,
    )
    return cli.model, cli.datamodule


def main(args: list[str] | None = None) -> SummarizationCLI:
    args = layered(sys.argv[1:] if args is None else args)
    oom = OutOfMemoryAdvice()
    try:
        return SummarizationCLI(
            QLoRAModule,
            DialogSumDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=PARSER_KWARGS,  # no abbreviated options, no usage dump before an error
            trainer_defaults={  # on in every config
                "callbacks": [NanGuard(), oom, FitPhases(), Preemption(), PredictionWriter(), RemoveFailedStart()]
            },
        )
    except (DataError, SourceError, ConfigError, CheckpointError, NonFiniteLossError) as err:
        sys.exit(f"error: {err}")
    except torch.OutOfMemoryError:
        sys.exit(f"error: {oom.advice or memory_advice()}")


if __name__ == "__main__":
    main()
