"""BERTScore F1 through ``bert_score``, with the encoder given as a Hub name or a local folder.

bert_score imports slowly and its encoder is large, so both load on first use and the scorer is
kept for the next call (base and fine-tuned summaries share one encoder).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

OPTION = "--bertscore_model"


def bertscore_pairs(predictions: list[str], references: list[str], args) -> list[dict[str, float]]:
    """``{"bertscore_f1": F1 x100}`` of each prediction against its reference, no baseline rescaling.

    ``args`` (``eval.metrics.MetricArgs``) names the encoder, its layer, batch size and device.
    """
    model = args.bertscore_model
    scorer = _scorer(model, resolve_layers(model, args.bertscore_layers), args.bertscore_batch_size, args.device)
    _, _, f1 = scorer.score(predictions, references, batch_size=args.bertscore_batch_size)  # all pairs in one pass
    return [{"bertscore_f1": 100 * float(x)} for x in f1]


def resolve_layers(model: str, num_layers: int | None) -> int:
    """The encoder layer to use: the given one, bert_score's tuned one, or a local folder's last."""
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
    """Problems loading the encoder (empty when it loads); cheap: reads only its config."""
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
