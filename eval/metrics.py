"""Summary metrics against one or more human references: ROUGE, BLEU, METEOR, BERTScore, length ratio.

Every score is on a 0-100 scale except ``length_ratio``. How several references per example are
used (DialogSum's test split has three) is the ``references`` setting for ROUGE, METEOR and
BERTScore: each example is scored against each of its references, then those scores are combined
per example by ``best`` (the maximum: the best-matching reference counts; the default) or ``mean``
(their average), then averaged over examples.

- ROUGE-1/2/L/Lsum: ``rouge_score`` F-measure with Porter stemming; ``best`` equals
  ``score_multi``. Lsum splits sentences at ``.``/``!``/``?`` followed by whitespace (a regex;
  nltk's punkt is not needed).
- BLEU: sacrebleu's corpus BLEU with every reference as its own stream (examples with fewer
  references leave their slot empty, which sacrebleu skips); ``references`` does not apply.
- METEOR: nltk's single-reference METEOR with WordNet synonyms; ``best`` equals nltk's
  multi-reference score.
- BERTScore: F1 from ``bert_score``; ``best`` equals bert_score's multi-reference score.
- length_ratio: words generated / words in the human summaries (each example's references
  averaged), over the whole set: 1.0 is as long as the humans wrote, 2.0 twice as long.

Heavy libraries (bert_score, nltk's WordNet) load on first use, so importing this module is cheap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean

from eval.bertscore import bertscore_f1, check_encoder

METRICS = ("rouge", "bleu", "meteor", "bertscore", "length")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# Every number compute_metrics returns, in report order.
SCORE_NAMES = (*ROUGE_KEYS, "bleu", "meteor", "bertscore_f1", "length_ratio")
# How an example's per-reference scores become its score (the ``references`` setting).
COMBINE: dict[str, Callable[[list[float]], float]] = {"best": max, "mean": fmean}
REFERENCES = tuple(COMBINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


class MetricResourceError(RuntimeError):
    """A metric's offline resource (WordNet, the BERTScore encoder) is missing; the message names the setting."""


@dataclass
class MetricArgs:
    """Which metrics to compute and where their resources are.

    Args:
        metrics: any of ``rouge``, ``bleu``, ``meteor``, ``bertscore``, ``length``.
        bertscore_model: BERTScore encoder: a Hub name (``roberta-large``, bert_score's English
            default) or a local folder saved by ``save_pretrained``.
        bertscore_layers: encoder layer whose states are compared; None takes bert_score's tuned
            layer for known names and the last layer for a local folder.
        bertscore_batch_size: sentences per encoder batch.
        device: where the encoder runs; None picks CUDA when available.
        references: how ROUGE, METEOR and BERTScore combine an example's references: ``best``
            (the best-matching one's score) or ``mean`` (the average over all of them).
    """

    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    bertscore_model: str = "roberta-large"
    bertscore_layers: int | None = None
    bertscore_batch_size: int = 32
    device: str | None = None
    references: str = "best"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {', '.join(unknown)}; choose from {', '.join(METRICS)}")
        if self.references not in COMBINE:
            raise ValueError(f"unknown references {self.references!r}; choose from {', '.join(REFERENCES)}")


def check_resources(args: MetricArgs) -> None:
    """Raise one :class:`MetricResourceError` listing every missing resource, before any generation."""
    problems = []
    if "meteor" in args.metrics:
        problems += _check_wordnet()
    if "bertscore" in args.metrics:
        problems += check_encoder(args.bertscore_model)
    if problems:
        raise MetricResourceError("; ".join(problems))


def compute_metrics(
    predictions: list[str], references: list[list[str]], args: MetricArgs | None = None
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Corpus scores and per-example scores of ``predictions`` against their references.

    Args:
        predictions: one generated summary per example.
        references: the human summaries of each example (one or more).
        args: which metrics, how references combine, and the BERTScore encoder.
    """
    args = args or MetricArgs()
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every example needs at least one reference summary")
    corpus: dict[str, float] = {}
    rows: list[dict[str, float]] = [{} for _ in predictions]
    if "rouge" in args.metrics:
        _add_column(corpus, rows, rouge_scores(predictions, references, args.references))
    if "bleu" in args.metrics:
        corpus["bleu"] = bleu_score(predictions, references)
    if "meteor" in args.metrics:
        meteor = meteor_scores(predictions, references, args.references)
        _add_column(corpus, rows, [{"meteor": s} for s in meteor])
    if "bertscore" in args.metrics:
        _add_column(corpus, rows, [{"bertscore_f1": s} for s in bertscore_scores(predictions, references, args)])
    if "length" in args.metrics:
        corpus["length_ratio"] = length_ratio(predictions, references)
        for row, pred, refs in zip(rows, predictions, references, strict=True):
            row["length_ratio"] = length_ratio([pred], [refs])
    return corpus, rows


def rouge_scores(predictions: list[str], references: list[list[str]], combine: str = "best") -> list[dict[str, float]]:
    """ROUGE-1/2/L/Lsum F-measure (x100) per example, its references combined by ``combine``.

    Args:
        predictions: one generated summary per example.
        references: the human summaries of each example.
        combine: ``best`` (the best-matching reference's F-measure, per key) or ``mean``.
    """
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    out = []
    for pred, refs in zip(predictions, references, strict=True):
        # One sentence a line: rougeLsum reads sentences from newlines; the other keys ignore them.
        each = [scorer.score(split_sentences(r), split_sentences(pred)) for r in refs]
        out.append({key: COMBINE[combine]([100 * s[key].fmeasure for s in each]) for key in ROUGE_KEYS})
    return out


def split_sentences(text: str) -> str:
    """``text`` with one sentence per line, split after ``.``, ``!`` or ``?`` and whitespace.

    Args:
        text: a summary.
    """
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def bleu_score(predictions: list[str], references: list[list[str]]) -> float:
    """sacrebleu corpus BLEU (0-100), each reference a stream.

    Args:
        predictions: one generated summary per example.
        references: the human summaries of each example; their number may vary.
    """
    import sacrebleu

    streams = max(len(refs) for refs in references)
    # sacrebleu skips empty slots, so examples with fewer references still count all of theirs.
    ref_streams = [[refs[k] if k < len(refs) else "" for refs in references] for k in range(streams)]
    return float(sacrebleu.corpus_bleu(predictions, ref_streams).score)


def meteor_scores(predictions: list[str], references: list[list[str]], combine: str = "best") -> list[float]:
    """nltk METEOR (x100) per example, its references combined by ``combine``; needs WordNet (``NLTK_DATA``).

    Args:
        predictions: one generated summary per example.
        references: the human summaries of each example.
        combine: ``best`` (the best-matching reference's score, as nltk's multi-reference METEOR) or ``mean``.
    """
    problems = _check_wordnet()
    if problems:
        raise MetricResourceError(problems[0])
    from nltk.translate.meteor_score import single_meteor_score

    return [
        COMBINE[combine]([100 * single_meteor_score(words(r), words(pred)) for r in refs]) if pred.strip() else 0.0
        for pred, refs in zip(predictions, references, strict=True)
    ]


def bertscore_scores(predictions: list[str], references: list[list[str]], args: MetricArgs) -> list[float]:
    """BERTScore F1 (x100) per example, its references combined by ``args.references``.

    Every (prediction, reference) pair is scored in one encoder pass, as bert_score does for a
    multi-reference call, so ``best`` gives bert_score's own multi-reference F1.

    Args:
        predictions: one generated summary per example.
        references: the human summaries of each example.
        args: the encoder, its layer, batch size and device, and ``references``.
    """
    pairs = [(pred, ref) for pred, refs in zip(predictions, references, strict=True) for ref in refs]
    f1 = bertscore_f1(
        [p for p, _ in pairs],
        [[r] for _, r in pairs],
        args.bertscore_model,
        args.bertscore_layers,
        args.bertscore_batch_size,
        args.device,
    )
    out, start = [], 0
    for refs in references:
        out.append(COMBINE[args.references](f1[start : start + len(refs)]))
        start += len(refs)
    return out


def describe_references(combine: str) -> str:
    """One line telling a reader of a metrics table how its scores used several references.

    Args:
        combine: the ``references`` setting, ``best`` or ``mean``.
    """
    how = {
        "best": "each example's best-matching reference (the maximum over its references)",
        "mean": "the mean over each example's references",
    }[combine]
    return (
        f"References: ROUGE, METEOR and BERTScore take {how}, averaged over examples; "
        "BLEU is multi-reference corpus BLEU."
    )


def words(text: str) -> list[str]:
    """Word and punctuation tokens, as METEOR compares them (a regex: no punkt needed).

    Args:
        text: a summary.
    """
    return _WORD.findall(text)


def length_ratio(predictions: list[str], references: list[list[str]]) -> float:
    """Words generated / words in the references (each example's references averaged), set-wide.

    Args:
        predictions: one generated summary per example.
        references: the human summaries of each example.
    """
    generated = sum(len(p.split()) for p in predictions)
    human = sum(fmean(len(r.split()) for r in refs) for refs in references)
    return generated / human if human else 0.0


def _add_column(corpus: dict[str, float], rows: list[dict[str, float]], column: list[dict[str, float]]) -> None:
    for row, scores in zip(rows, column, strict=True):
        row.update(scores)
    for key in column[0] if column else ():
        corpus[key] = fmean(scores[key] for scores in column)


def _check_wordnet() -> list[str]:
    import nltk

    for name in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            nltk.data.find(name)
            return []
        except LookupError:
            continue
    where = os.environ.get("NLTK_DATA", "unset")
    return [
        f"METEOR needs WordNet, not found on nltk's path (NLTK_DATA={where}); set NLTK_DATA to a folder "
        f"holding corpora/wordnet.zip (python -m nltk.downloader wordnet), or drop meteor from --metrics"
    ]
