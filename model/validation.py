"""Checking a whole run configuration before anything loads, and reporting every problem at once.

The argument parser checks types (``lora.r`` must be an int); this checks values (``lora.r`` must
be at least 1) and combinations (fp16 with Phi-2). ``train.py`` calls :func:`config_problems` on
the parsed config, so a typo costs a second, not a model load, and a user fixes all of them in one go.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datamodules.dialogsum import packing_problems
from model.module import DTYPES

QUANT_TYPES = ("nf4", "fp4")
# The precisions Lightning accepts.
PRECISIONS = set("64 64-true 32 32-true 16 16-mixed 16-true bf16 bf16-mixed bf16-true transformer-engine".split())
PRECISIONS |= {"transformer-engine-float16"}
FP16 = {"16", "16-mixed", "16-true", "transformer-engine-float16"}
MIN_LENGTH = 16  # below this no prompt plus summary fits


class ConfigError(ValueError):
    """One or more configuration values are unusable; the message lists each with what to do."""


def config_problems(config: Any) -> list[str]:
    """Every problem in a parsed run config (a jsonargparse namespace with trainer, model and data)."""
    problems: list[str] = []

    def need(ok: bool, key: str, rule: str) -> None:
        if not ok:
            problems.append(f"{key}={config_value(config, key)!r} {rule}")

    model = config_value(config, "model.model")
    r, alpha, dropout = (config_value(config, f"model.lora.{key}") for key in ("r", "alpha", "dropout"))
    need(r is None or r >= 1, "model.lora.r", "must be >= 1")
    need(alpha is None or alpha > 0, "model.lora.alpha", "must be > 0 (2 x r is usual)")
    need(dropout is None or 0 <= dropout < 1, "model.lora.dropout", "must be in [0, 1)")
    targets = config_value(config, "model.lora.target_modules", ["x"])
    need(targets not in ([], ""), "model.lora.target_modules", "must name at least one layer")
    dtype = config_value(config, "model.dtype")
    need(dtype is None or dtype in DTYPES, "model.dtype", f"must be one of {', '.join(DTYPES)}")
    quant_type = config_value(config, "model.quant.quant_type")
    need(quant_type is None or quant_type in QUANT_TYPES, "model.quant.quant_type", "must be nf4 or fp4")
    need(_at_least(config, "model.loss_chunk_size", 1), "model.loss_chunk_size", "must be >= 1")
    need(_at_least(config, "model.max_new_tokens", 1), "model.max_new_tokens", "must be >= 1")
    lr = config_value(config, "model.optimizer.init_args.lr")
    need(lr is None or not isinstance(lr, int | float) or lr > 0, "model.optimizer.init_args.lr", "must be > 0")

    max_length = config_value(config, "data.max_length")
    need(max_length is None or max_length >= MIN_LENGTH, "data.max_length", f"must be >= {MIN_LENGTH}")
    for name in ("batch_size", "eval_batch_size", "group_batches", "pad_to_multiple_of", "train_limit", "val_limit"):
        key = f"data.{name}"
        need(_at_least(config, key, 1), key, "must be >= 1" + (" or null (no limit)" if "limit" in key else ""))
    need(_at_least(config, "data.num_workers", 0), "data.num_workers", "must be >= 0")
    sources = config_value(config, "data.sources")
    if sources is not None and len(sources) == 0:
        problems.append("data.sources is empty: give at least one data source")
    for name, source in (sources or {}).items():
        weight = getattr(source, "weight", None) if not isinstance(source, dict) else source.get("weight")
        need(weight is None or weight >= 0, f"data.sources.{name}.weight", "must be >= 0 (0 leaves it out of training)")
    max_tokens = config_value(config, "data.max_tokens")
    need(
        not isinstance(max_tokens, int) or max_length is None or max_tokens >= max_length,  # or auto
        "data.max_tokens",
        f"must be >= data.max_length ({max_length}) so the longest example fits a batch, or null",
    )
    problems += packing_problems(config_value(config, "data.pack_length"), max_tokens, max_length)
    template = config_value(config, "data.prompt.template")
    need(
        template is None or template.count("{dialogue}") == 1,
        "data.prompt.template",
        "must contain {dialogue} exactly once",
    )

    precision = config_value(config, "trainer.precision")
    known = precision is None or str(precision) in PRECISIONS
    need(known, "trainer.precision", "is not a precision Lightning knows (bf16-mixed, 32-true, ...)")
    need(_at_least(config, "trainer.accumulate_grad_batches", 1), "trainer.accumulate_grad_batches", "must be >= 1")
    clip = config_value(config, "trainer.gradient_clip_val")
    need(clip is None or clip >= 0, "trainer.gradient_clip_val", "must be >= 0 or null")
    max_steps = config_value(config, "trainer.max_steps")
    need(
        max_steps is None or max_steps == -1 or max_steps >= 1, "trainer.max_steps", "must be >= 1, or -1 for no limit"
    )

    if is_phi(model):
        if str(precision) in FP16:
            problems.append(
                f"trainer.precision={precision!r} with Phi-2: fp16 overflows in Phi-2's attention and the loss "
                "turns NaN; use bf16-mixed (Ampere or newer GPUs), or 32-true on GPUs without bf16"
            )
        if dtype == "float16":
            problems.append(
                "model.dtype='float16' with Phi-2: fp16 overflows in Phi-2's attention; use bfloat16 (or float32)"
            )
    positions = _max_positions(model)
    if positions and max_length and max_length > positions:
        problems.append(
            f"data.max_length={max_length} is more than the model's {positions} positions; lower it to <= {positions}"
        )
    return problems


def check_config(config: Any) -> None:
    """Raise :class:`ConfigError` listing every problem of ``config``, if it has any."""
    problems = config_problems(config)
    if problems:
        count = f"{len(problems)} configuration problem{'s' if len(problems) > 1 else ''}"
        raise ConfigError(f"{count}, nothing was loaded: " + "; ".join(problems))


def is_phi(model: Any) -> bool:
    """Whether ``model`` (a Hub name or local folder) is Phi-1/1.5/2, whose attention overflows in fp16."""
    if not isinstance(model, str):
        return False
    if "phi-2" in model.lower() or "phi-1" in model.lower():
        return True
    return _local_config(model).get("model_type") == "phi"


def _max_positions(model: Any) -> int | None:
    return _local_config(model).get("max_position_embeddings") if isinstance(model, str) else None


def _local_config(model: str) -> dict:
    path = Path(model).expanduser() / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a Hub name, or no readable config: nothing to check against


def config_value(config: Any, key: str, default: Any = None) -> Any:
    """``config``'s value at a dotted key; ``model.x`` finds ``model.init_args.x`` of a class_path entry."""
    value = config
    for part in key.split("."):
        step = getattr(value, part, None) if not isinstance(value, dict) else value.get(part)
        if step is None:
            args = getattr(value, "init_args", None) if not isinstance(value, dict) else value.get("init_args")
            step = None if args is None else (args.get(part) if isinstance(args, dict) else getattr(args, part, None))
        if step is None:
            return default
        value = step
    return value


def _at_least(config: Any, key: str, low: float) -> bool:
    value = config_value(config, key)
    return value is None or not isinstance(value, int | float) or value >= low
