"""Shared fixtures: offline mode, the real DialogSum files and tokenizer from ../shared, a tiny Phi."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from several threads, and threads fighting over 2 busy cores cost 10x.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# WordNet for METEOR. nltk reads NLTK_DATA once, when first imported (rouge_score imports it), so it is
# set here, before any test: a test that sets it later is too late if another scored ROUGE first.
os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))
DIALOGSUM = SHARED / "data" / "dialogsum"
GPT2_TABLES = SHARED / "tokenizers" / "gpt2"


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import CodeGenTokenizer

    tok = CodeGenTokenizer.from_pretrained(str(GPT2_TABLES))
    tok.pad_token = tok.eos_token  # as load_tokenizer does for Phi-2, whose tokenizer has no pad
    return tok


@pytest.fixture(scope="session")
def tiny_phi(tmp_path_factory) -> str:
    """A randomly initialised 2-layer PhiForCausalLM with Phi-2's tokenizer, saved like a Hub model."""
    from bench.kill_resume import make_tiny_model  # the kill-and-resume benchmark trains the same one

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-phi"), GPT2_TABLES))


def fit_tiny(tiny_phi: str, run_dir: Path, *overrides: str):
    """Run ``train.py fit`` with configs/tiny.yaml in-process and return the CLI."""
    from train import main

    args = [
        "fit",
        "--config",
        str(ROOT / "configs" / "tiny.yaml"),
        "--model.model",
        tiny_phi,
        "--data.sources.dialogsum.path",
        str(DIALOGSUM),
        "--trainer.logger.init_args.save_dir",
        str(run_dir),
        *overrides,
    ]
    return main(args)


def scalars(log_dir: Path, tag: str) -> dict[int, float]:
    """Every value TensorBoard recorded for ``tag`` under ``log_dir``, by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[int, float] = {}
    for events in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            values.update({e.step: e.value for e in acc.Scalars(tag)})
    return values
