"""Command-line arguments that ``python -m eval``, ``eval.calibrate`` and ``eval.demo`` share.

Each command's own options (which weights, decoding, metrics, reports) are argparse options; every
option of the run itself (model, data, prompt, ``max_new_tokens``, ``stop_bias``) is given in the
training syntax (``--model.init_args.max_new_tokens 64``, ``--data.sources.dialogsum.path <folder>``)
and goes to the training parser that rebuilds the run (``train.rebuild``). Nothing here imports
torch, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse

from model.decoders import DECODERS
from model.trained_run import WEIGHTS


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Which run: its config and fine-tuned weights."""
    run = p.add_argument_group("the run")
    run.add_argument("--config", help="the run's config.yaml (found beside --ckpt_path/--adapter when left out)")
    run.add_argument("--ckpt_path", help="Lightning checkpoint with the adapter weights, or 'last'")
    run.add_argument("--adapter", help="PEFT adapter folder exported by fit (<run>/adapter)")


def add_data_arguments(p: argparse.ArgumentParser, split: str) -> argparse._ArgumentGroup:
    """Which examples: the split and the sources; returns the group for more options."""
    data = p.add_argument_group("data")
    data.add_argument("--split", default=split, help=f"train, validation or test (default {split})")
    data.add_argument("--limit", type=int, help="evaluate only the first N examples of each source")
    return data


def add_generation_arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """How summaries are decoded; returns the group for more options."""
    gen = p.add_argument_group("generation")
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


OVERRIDE_PREFIXES = ("--model.", "--data.")
# Options that earlier releases had; each is now an option of the run, in training syntax.
RENAMED = {
    "--dialogsum": "--data.sources.dialogsum.path <folder or Hub name>",
    "--enterprise": "--data.sources.enterprise.path <folder> (or --data.sources '{name: {path: ...}}' for a new list)",
    "--base_model": "--model.model <folder or Hub name>",
    "--max_new_tokens": "--model.max_new_tokens N",
    "--stop_bias": "--model.stop_bias X",
}


def parse_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The command's own options, with ``overrides``: the run options given in training syntax.

    Exits with one line for an old option (naming its new form) or an option nobody knows.
    """
    args, rest = parser.parse_known_args(argv)
    overrides = []
    for i, token in enumerate(rest):
        name = token.split("=", 1)[0]
        if name in RENAMED:
            raise SystemExit(f"error: {name} was removed; give {RENAMED[name]} (the training syntax)")
        if name.startswith(OVERRIDE_PREFIXES):
            overrides.append(token)
        elif token.startswith("-"):
            raise SystemExit(f"error: unknown option {token}; see {parser.prog} --help")
        elif not (i > 0 and rest[i - 1].startswith(OVERRIDE_PREFIXES) and "=" not in rest[i - 1]):
            raise SystemExit(f"error: unexpected argument {token!r}; see {parser.prog} --help")
        else:
            overrides.append(token)
    args.overrides = overrides
    return args
