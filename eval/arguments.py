"""Command-line arguments that ``python -m eval`` and ``python -m eval.calibrate`` share.

Nothing here imports torch, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse

from eval.runner import WEIGHTS
from model.decoders import DECODERS


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Which run: its config and fine-tuned weights."""
    run = p.add_argument_group("the run")
    run.add_argument("--config", help="the run's config.yaml (found beside --ckpt_path/--adapter when left out)")
    run.add_argument("--ckpt_path", help="Lightning checkpoint with the adapter weights, or 'last'")
    run.add_argument("--adapter", help="PEFT adapter folder exported by fit (<run>/adapter)")
    run.add_argument("--base_model", help="replaces model.model: the base model's folder or Hub name here")


def add_data_arguments(p: argparse.ArgumentParser, split: str) -> argparse._ArgumentGroup:
    """Which examples: the split and the sources; returns the group for more options."""
    data = p.add_argument_group("data")
    data.add_argument("--split", default=split, help=f"train, validation or test (default {split})")
    data.add_argument("--dialogsum", help="replaces data.dialogsum (a folder or Hub name; 'none' leaves it out)")
    data.add_argument("--enterprise", help="replaces data.enterprise (a folder; 'none' leaves it out)")
    data.add_argument(
        "--limit", type=int, help="evaluate only the first N examples of each source (the stress set too)"
    )
    return data


def add_generation_arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """How summaries are decoded; returns the group for more options."""
    gen = p.add_argument_group("generation")
    gen.add_argument("--max_new_tokens", type=int, help="summary length bound (default model.max_new_tokens)")
    gen.add_argument("--batch_size", type=int, default=64, help="prompts decoded together (default 64)")
    gen.add_argument(
        "--decoder",
        default="auto",
        choices=DECODERS,
        help="auto (default): graphed on CUDA, generate elsewhere; generate: transformers' generate; "
        "static: a static-cache loop, eager; compiled: its decode step through torch.compile CUDA graphs "
        "(tens of seconds to compile, fastest once warm); graphed: its eager decode step captured as one "
        "CUDA graph (no compiler, CUDA only). All give the same greedy summaries",
    )
    gen.add_argument(
        "--weights",
        default="dense",
        choices=WEIGHTS,
        help="dense (default): the 4-bit base dequantized once into model.dtype, same summaries as 4bit, faster; "
        "merged: the adapter also folded into those weights (bf16 rounding may change a few tokens); "
        "4bit: decode through the 4-bit layers as trained",
    )
    gen.add_argument("--device", default="auto", help="auto, cpu or cuda")
    gen.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: one per core; 1 is faster on a busy machine)"
    )
    gen.add_argument("--no_progress", action="store_true", help="hide the progress bars")
    return gen


def none_or(override: str | None, default: str | None) -> str | None:
    """The command-line value if given ('none' turns the setting off), else the config's."""
    if override is None:
        return default
    return None if override.lower() in ("none", "null", "") else override


def chosen_sources(args: argparse.Namespace, run_data: dict) -> dict[str, str | None]:
    """Each data source: ``--dialogsum`` / ``--enterprise`` if given ('none' leaves it out), else the run config's."""
    return {name: none_or(getattr(args, name), run_data.get(name)) for name in ("dialogsum", "enterprise")}
