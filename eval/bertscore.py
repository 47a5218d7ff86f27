"""BERTScore F1 through ``bert_score``, with the encoder given as a Hub name or a local folder.

bert_score imports slowly and its encoder is large, so both load on first use and the scorer is
kept for the next call (base and fine-tuned summaries share one encoder).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

OPTION = "--bertscore_model"


def bertscore_f1(
    predictions: list[str],
    references: list[list[str]],
    model: str,
    num_layers: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
) -> list[float]:
    """BERTScore F1 (x100) per example: the best-matching reference's, no baseline rescaling.

    Args:
        predictions: one generated summary per example.
        references: the human summaries of each example.
        model: encoder Hub name or local folder.
        num_layers: encoder layer to compare; None: bert_score's choice for known names, else the last.
        batch_size: sentences per encoder batch.
        device: ``cpu``, ``cuda``...; None picks CUDA when available.
    """
    scorer = _scorer(model, resolve_layers(model, num_layers), batch_size, device)
    # A list of reference lists makes bert_score keep each prediction's best reference.
    _, _, f1 = scorer.score(predictions, [list(refs) for refs in references], batch_size=batch_size)
    return [100 * float(x) for x in f1]


def bertscore_pairs(predictions: list[str], references: list[str], args) -> list[dict[str, float]]:
    """``{"bertscore_f1": F1 x100}`` of each prediction against its reference, all pairs in one encoder pass.

    Args:
        predictions: generated summaries.
        references: one human summary per prediction.
        args: ``eval.metrics.MetricArgs``: the encoder, its layer, batch size and device.
    """
    pairs = [[r] for r in references]
    f1 = bertscore_f1(
        predictions, pairs, args.bertscore_model, args.bertscore_layers, args.bertscore_batch_size, args.device
    )
    return [{"bertscore_f1": s} for s in f1]


def resolve_layers(model: str, num_layers: int | None) -> int:
    """The encoder layer to use: the given one, bert_score's tuned one, or a local folder's last.

    Args:
        model: encoder Hub name or local folder.
        num_layers: the layer asked for, or None.
    """
    if num_layers is not None:
        return num_layers
    from bert_score.utils import model2layers

    if model in model2layers:
        return model2layers[model]
    config = Path(model).expanduser() / "config.json"
    if config.is_file():
        return int(json.loads(config.read_text())["num_hidden_layers"])
    raise ValueError(f"BERTScore encoder {model!r}: unknown layer count; set --bertscore_layers")


def check_encoder(model: str) -> list[str]:
    """Problems loading the encoder (empty when it loads); cheap: reads only its config.

    Args:
        model: encoder Hub name or local folder.
    """
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            return [
                f"BERTScore encoder folder {model} has no config.json; set {OPTION} to a folder saved by save_pretrained"
            ]
        return []
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model)
    except (OSError, ValueError):
        return [
            f"BERTScore encoder {model!r} is not a local folder and is not in the Hugging Face cache "
            f"(offline?); set {OPTION} to a local encoder folder, or drop bertscore from --metrics"
        ]
    return []


@lru_cache(maxsize=2)
def _scorer(model: str, num_layers: int, batch_size: int, device: str | None):
    from bert_score import BERTScorer

    return BERTScorer(model_type=model, num_layers=num_layers, batch_size=batch_size, device=device)
