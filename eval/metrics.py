"""Every metric in one registry: how it is computed, what its scores are called, which way is better.

``BUILTIN`` maps the names ``--metrics`` takes (``rouge``, ``bleu``, ``meteor``, ``bertscore``,
``length``) to :class:`Metric` entries; ``python -m eval``, ``eval.rescore``, ``eval.calibrate``,
the reports (titles, digits, which way is better) and the validation-time ROUGE of
``callbacks.samples`` all read them, so a new metric is one entry.

A metric from outside the project needs no edit here: name it in ``--metrics`` (or in
``TestGenerationMetrics(metrics=...)``) as ``module:attribute`` or ``module.attribute``, e.g.
``--metrics rouge,bleu,my_lab.metrics:exact_match``. The module is imported (its folder must be on
``PYTHONPATH``) and the attribute must be a :class:`Metric`; anything else stops the run with one
line. The name is saved in report.json, so ``eval.rescore`` imports it again. docs/extending.md
has a worked example.

Several references per example (DialogSum's test split has three): a per-reference metric
(ROUGE, METEOR, BERTScore) scores each (prediction, reference) pair, and an example's scores are
combined by the ``references`` setting: ``best`` (the best-matching reference's; the default, as
rouge_score's ``score_multi`` and nltk's and bert_score's multi-reference scores), ``mean`` (their
average) or ``first`` (the first reference only: DialogSum's ``summary1``, which the DialogSum
authors' baseline script scores); corpus scores are means over examples. A set-level metric (BLEU,
length ratio) sees each example's references together and gives the corpus score itself. How each
built-in metric scores is in ``eval.scorers`` and ``eval.bertscore``; heavy libraries load on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean
from typing import NamedTuple

from eval.bertscore import bertscore_pairs, check_encoder
from eval.scorers import ROUGE_KEYS, bleu_score, check_wordnet, length_ratio, meteor_pairs, rouge_pairs


class MetricResourceError(RuntimeError):
    """A metric's offline resource (WordNet, the BERTScore encoder) is missing; the message names the setting."""


@dataclass(frozen=True)
class Score:
    """One number a metric reports.

    Args:
        key: its name in report.json and the logs (``rouge1``).
        title: its name in tables (``ROUGE-1``).
        better: ``higher``, ``lower``, or the number that is best (the length ratio's 1.0).
        digits: decimals shown in tables.
        note: a sentence for the footnote under a table that shows it.
        in_samples: shown per example beside each summary in samples.{csv,html}.
    """

    key: str
    title: str
    better: str | float = "higher"
    digits: int = 2
    note: str = ""
    in_samples: bool = True


@dataclass(frozen=True)
class Metric:
    """A registry entry: what ``--metrics`` names.

    Args:
        title: the family's name in footnotes (``ROUGE``).
        scores: the numbers it reports.
        compute: with ``per_reference``, ``compute(predictions, references, args)`` gets aligned lists
            (one reference per prediction) and returns one ``{key: score}`` per pair. Otherwise it gets
            each example's list of references and returns ``(corpus scores, per-example scores)``; the
            second may be empty.
        per_reference: scored against each reference alone, then combined by ``MetricArgs.references``.
        references_note: for a set-level metric, how it uses several references (metrics.md says it).
        check: ``check(args)`` lists missing resources, one line each, before any generation.
    """

    title: str
    scores: tuple[Score, ...]
    compute: Callable
    per_reference: bool = True
    references_note: str = ""
    check: Callable | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.scores)


class Protocol(NamedTuple):
    """How an example's per-reference scores become its score, and how metrics.md says so."""

    combine: Callable[[list[float]], float]
    description: str


REFERENCES = {
    "best": Protocol(max, "each example's best-matching reference (the maximum over its references)"),
    "mean": Protocol(fmean, "the mean over each example's references"),
    "first": Protocol(
        lambda scores: scores[0],
        "each example's first reference only (DialogSum's summary1, as the DialogSum authors' baseline script scores)",
    ),
}


def _length(predictions: list[str], references: list[list[str]], args: MetricArgs) -> tuple[dict, list]:
    rows = [{"length_ratio": length_ratio([p], [refs])} for p, refs in zip(predictions, references, strict=True)]
    return {"length_ratio": length_ratio(predictions, references)}, rows


_PERCENT = "Scores are 0-100."
_LENGTH = "Length ratio: words generated / words in the human summaries (1.0 = as long)."
_ROUGE = dict(zip(ROUGE_KEYS, ("ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-Lsum"), strict=True))
BUILTIN: dict[str, Metric] = {
    "rouge": Metric(
        "ROUGE",
        tuple(Score(k, t, note=_PERCENT, in_samples=k == "rougeL") for k, t in _ROUGE.items()),
        lambda predictions, references, args: rouge_pairs(predictions, references),
    ),
    "bleu": Metric(
        "BLEU",
        (Score("bleu", "BLEU", note=_PERCENT, in_samples=False),),
        lambda predictions, references, args: ({"bleu": bleu_score(predictions, references)}, []),
        per_reference=False,
        references_note="BLEU is multi-reference corpus BLEU",
    ),
    "meteor": Metric(
        "METEOR",
        (Score("meteor", "METEOR", note=_PERCENT),),
        lambda predictions, references, args: [{"meteor": s} for s in meteor_pairs(predictions, references)],
        check=lambda args: check_wordnet(),
    ),
    "bertscore": Metric(
        "BERTScore",
        (Score("bertscore_f1", "BERTScore F1", note=_PERCENT),),
        bertscore_pairs,
        check=lambda args: check_encoder(args.bertscore_model),
    ),
    "length": Metric(
        "Length ratio", (Score("length_ratio", "Length ratio", 1.0, 3, _LENGTH),), _length, per_reference=False
    ),
}
METRICS = tuple(BUILTIN)
_LOADED: dict[str, Metric] = {}  # metrics imported from outside, by "module:attribute"


@dataclass
class MetricArgs:
    """Which metrics to compute and where their resources are.

    Args:
        metrics: names in ``BUILTIN`` (``rouge``, ``bleu``, ``meteor``, ``bertscore``, ``length``), or
            ``module:attribute`` / ``module.attribute`` of a :class:`Metric` defined elsewhere.
        bertscore_model: BERTScore encoder: a Hub name (``roberta-large``, bert_score's English
            default) or a local folder saved by ``save_pretrained``.
        bertscore_layers: encoder layer whose states are compared; None takes bert_score's tuned
            layer for known names and the last layer for a local folder.
        bertscore_batch_size: sentences per encoder batch.
        device: where the encoder runs; None picks CUDA when available.
        references: how per-reference metrics (ROUGE, METEOR, BERTScore) combine an example's
            references: ``best`` (the best-matching one's score), ``mean`` (the average) or ``first``.
    """

    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    bertscore_model: str = "roberta-large"
    bertscore_layers: int | None = None
    bertscore_batch_size: int = 32
    device: str | None = None
    references: str = "best"

    def __post_init__(self) -> None:
        problems = _import_problems([m for m in self.metrics if m not in BUILTIN and (":" in m or "." in m)])
        unknown = [m for m in self.metrics if m not in BUILTIN and ":" not in m and "." not in m]
        if unknown:
            problems.insert(
                0,
                f"unknown metrics {', '.join(unknown)}; choose from {', '.join(METRICS)}, "
                "or name a Metric of your own module as module:attribute",
            )
        if self.references not in REFERENCES:
            problems.append(f"unknown references {self.references!r}; choose from {', '.join(REFERENCES)}")
        if problems:
            raise ValueError("; ".join(problems))

    def chosen(self) -> list[Metric]:
        """The chosen metrics in report order: the built-in ones in registry order, then the others as given."""
        builtin = [BUILTIN[name] for name in METRICS if name in self.metrics]
        return list(dict.fromkeys(builtin + [_LOADED[_path(name)] for name in self.metrics if name not in BUILTIN]))


def check_resources(args: MetricArgs) -> None:
    """Raise one :class:`MetricResourceError` listing every missing resource, before any generation."""
    problems = [line for metric in args.chosen() if metric.check for line in metric.check(args)]
    if problems:
        raise MetricResourceError("; ".join(problems))


def compute_metrics(
    predictions: list[str], references: list[list[str]], args: MetricArgs | None = None
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Corpus scores and per-example scores of ``predictions`` against their references."""
    args = args or MetricArgs()
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every example needs at least one reference summary")
    check_resources(args)
    corpus: dict[str, float] = {}
    rows: list[dict[str, float]] = [{} for _ in predictions]
    for metric in args.chosen():
        if metric.per_reference:
            column = _combined(metric, predictions, references, args)
            corpus.update({key: fmean(scores[key] for scores in column) for key in column[0]} if column else {})
        else:
            scores, column = metric.compute(predictions, references, args)
            corpus.update(scores)
        for row, scores in zip(rows, column or [{}] * len(rows), strict=True):
            row.update(scores)
    return corpus, rows


def subset_scores(
    predictions: list[str], references: list[list[str]], rows: list[dict[str, float]], args: MetricArgs
) -> dict[str, float]:
    """Corpus scores of some of the examples, as an evaluation of those alone gives them.

    Per-reference metrics are averaged from the examples' ``rows``; set-level ones are computed again.
    """
    corpus: dict[str, float] = {}
    for metric in args.chosen():
        if metric.per_reference:
            corpus.update({key: fmean(row[key] for row in rows) for key in metric.keys if key in rows[0]})
        else:
            corpus.update(metric.compute(predictions, references, args)[0])
    return corpus


def score_of(key: str) -> Score:
    """The registry's :class:`Score` named ``key`` (a plain one titled ``key`` for a metric not loaded here)."""
    for metric in (*BUILTIN.values(), *_LOADED.values()):
        for score in metric.scores:
            if score.key == key:
                return score
    return Score(key, key)


def describe_references(combine: str, keys: list[str]) -> str:
    """One line telling a reader of a metrics table how its scores used several references."""
    present = [m for m in (*BUILTIN.values(), *_LOADED.values()) if set(m.keys) & set(keys)]
    titles = [m.title for m in present if m.per_reference]
    notes = [m.references_note for m in present if m.references_note]
    parts = []
    if titles:
        names = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
        parts.append(f"the scores of {names} take {REFERENCES[combine].description}, averaged over examples")
    return "References: " + "; ".join(parts + notes) + "." if parts or notes else ""


def _combined(
    metric: Metric, predictions: list[str], references: list[list[str]], args: MetricArgs
) -> list[dict[str, float]]:
    """Each example's scores: ``metric`` on each (prediction, reference) pair, combined by ``args.references``."""
    if args.references == "first":
        references = [refs[:1] for refs in references]  # the others are never scored
    pairs = [(pred, ref) for pred, refs in zip(predictions, references, strict=True) for ref in refs]
    flat = metric.compute([p for p, _ in pairs], [r for _, r in pairs], args)
    combine = REFERENCES[args.references].combine
    out, start = [], 0
    for refs in references:
        each = flat[start : start + len(refs)]
        start += len(refs)
        out.append({key: combine([s[key] for s in each]) for key in each[0]})
    return out


def _import_problems(names: list[str]) -> list[str]:
    """Import each ``module:attribute`` / ``module.attribute`` into ``_LOADED``; the problems, one line each."""
    problems = []
    for name in names:
        module_name, _, attribute = _path(name).rpartition(":")
        try:
            module = importlib.import_module(module_name)
        except (ImportError, ValueError) as err:  # ValueError: an empty module name
            problems.append(f"metric {name}: cannot import {module_name} ({err}); put its folder on PYTHONPATH")
            continue
        entry = getattr(module, attribute, None)
        if not isinstance(entry, Metric):
            what = "nothing" if entry is None else f"a {type(entry).__name__}"
            problems.append(f"metric {name}: {module_name}.{attribute} is {what}, not an eval.metrics.Metric")
            continue
        # A score key names one quantity everywhere (reports, logs), so it may belong to one metric only.
        others = [m for path, m in (*BUILTIN.items(), *_LOADED.items()) if path != _path(name)]
        taken = [key for key in entry.keys if any(key in m.keys for m in others)]
        if taken:
            problems.append(f"metric {name}: score keys {', '.join(taken)} belong to another metric; rename them")
            continue
        _LOADED[_path(name)] = entry  # a module imported again replaces its metrics
    return problems


def _path(name: str) -> str:
    """``module:attribute`` for either spelling of an outside metric's name."""
    return name if ":" in name else ":".join(name.rsplit(".", 1))
