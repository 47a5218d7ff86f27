"""The scoring functions behind the built-in metrics of ``eval.metrics``: ROUGE, BLEU, METEOR, length ratio.

Per-reference scorers (ROUGE, METEOR) score aligned (prediction, reference) pairs; ``eval.metrics``
makes the pairs and combines each example's by the ``references`` setting. Set-level scorers
(BLEU, length ratio) see every example's references at once. BERTScore lives in ``eval.bertscore``.
Every score is on a 0-100 scale except the length ratio. Heavy imports happen on first use.

- ROUGE-1/2/L/Lsum: ``rouge_score`` F-measure with Porter stemming; Lsum splits sentences at
  ``.``/``!``/``?`` followed by whitespace (a regex; nltk's punkt is not needed).
- BLEU: sacrebleu's corpus BLEU with every reference as its own stream.
- METEOR: nltk's single-reference METEOR with WordNet synonyms, regex word tokens.
- length ratio: words generated / words in the human summaries (each example's references
  averaged), over the whole set: 1.0 is as long as the humans wrote, 2.0 twice as long.
"""

from __future__ import annotations

import functools
import os
import re
from statistics import fmean

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def rouge_pairs(predictions: list[str], references: list[str]) -> list[dict[str, float]]:
    """ROUGE-1/2/L/Lsum F-measure (x100) of each prediction against its reference, Porter-stemmed."""
    scorer = _rouge_scorer()
    out = []
    for pred, ref in zip(predictions, references, strict=True):
        # One sentence a line: rougeLsum reads sentences from newlines; the other keys ignore them.
        scores = scorer.score(split_sentences(ref), split_sentences(pred))
        out.append({key: 100 * scores[key].fmeasure for key in ROUGE_KEYS})
    return out


def split_sentences(text: str) -> str:
    """``text`` with one sentence per line, split after ``.``, ``!`` or ``?`` and whitespace."""
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def bleu_score(predictions: list[str], references: list[list[str]]) -> float:
    """sacrebleu corpus BLEU (0-100), each reference a stream."""
    import sacrebleu

    streams = max(len(refs) for refs in references)
    # sacrebleu skips empty slots, so examples with fewer references still count all of theirs.
    ref_streams = [[refs[k] if k < len(refs) else "" for refs in references] for k in range(streams)]
    return float(sacrebleu.corpus_bleu(predictions, ref_streams).score)


def meteor_pairs(predictions: list[str], references: list[str]) -> list[float]:
    """nltk METEOR (x100) of each prediction against its reference (an empty one scores 0); needs WordNet."""
    from nltk.translate.meteor_score import single_meteor_score

    stemmer, wordnet = _stemmer(), _wordnet()
    return [
        100 * single_meteor_score(words(ref), words(pred), stemmer=stemmer, wordnet=wordnet) if pred.strip() else 0.0
        for pred, ref in zip(predictions, references, strict=True)
    ]


# Stemming and WordNet lookups were most of an eval's scoring time (two systems x 3 references share their
# words): each word is stemmed, and its synsets read, once per process. The scores are nltk's own.
@functools.cache
def _stemmer():
    """nltk's Porter stemmer, as rouge_score and nltk's METEOR use it, with each word's stem remembered."""
    from nltk.stem.porter import PorterStemmer

    stemmer = PorterStemmer()
    stemmer.stem = functools.lru_cache(maxsize=None)(stemmer.stem)
    return stemmer


@functools.cache
def _wordnet():
    """nltk's WordNet reader, as METEOR uses it (``synsets``), with each word's synsets remembered."""
    from types import SimpleNamespace

    from nltk.corpus import wordnet

    return SimpleNamespace(synsets=functools.lru_cache(maxsize=None)(wordnet.synsets))


@functools.cache
def _rouge_scorer():
    """rouge_score's scorer with its own tokenizer (lower case, alphanumeric, Porter stems), sharing the stems."""
    from rouge_score import tokenize
    from rouge_score.rouge_scorer import RougeScorer
    from rouge_score.tokenizers import Tokenizer

    class StemmedTokens(Tokenizer):
        def tokenize(self, text: str) -> list[str]:
            return tokenize.tokenize(text, _stemmer())

    return RougeScorer(list(ROUGE_KEYS), tokenizer=StemmedTokens())


def words(text: str) -> list[str]:
    """Word and punctuation tokens, as METEOR compares them (a regex: no punkt needed)."""
    return _WORD.findall(text)


def length_ratio(predictions: list[str], references: list[list[str]]) -> float:
    """Words generated / words in the references (each example's references averaged), set-wide."""
    generated = sum(len(p.split()) for p in predictions)
    human = sum(fmean(len(r.split()) for r in refs) for refs in references)
    return generated / human if human else 0.0


def check_wordnet() -> list[str]:
    """Problems finding nltk's WordNet, which METEOR's synonym matching needs (empty when found)."""
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
