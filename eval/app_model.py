"""The trained run behind the web demo: loaded once, then base and fine-tuned summaries of one conversation, timed.

Every use of ``model.trained_run`` and ``eval.runner`` by the demo is in this file, so a change in how
runs are rebuilt touches it alone. Nothing here imports Gradio.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datamodules.sources import Example, has_split, load_split
from datamodules.tokenizer import SourceError
from eval.fact_marks import Facts
from eval.runner import generate_pair, stress_files
from eval.stress import read_stress
from model.trained_run import LoadedModel, Run, find_run, load_model, locate_weights

CHARS_PER_TOKEN = 20  # far more than any tokenizer packs: longer text is refused before it is tokenized


@dataclass
class Summaries:
    """Both models' summaries of one conversation and the seconds each took."""

    base: str
    fine_tuned: str
    base_s: float
    fine_tuned_s: float


@dataclass
class DemoExample:
    """A conversation to click; stress scenarios carry the facts the page marks."""

    label: str
    dialogue: str
    facts: Facts | None = None


@dataclass
class InputCheck:
    """What the page says about a conversation before summarizing it: nothing, a note, or a refusal."""

    message: str = ""
    refused: bool = False


def check_dialogue(dialogue: str, encoder) -> InputCheck:
    """Refuse an empty conversation or one far longer than the run's prompts; note one that will be cut.

    A conversation somewhat over the prompt's room is summarized as training and ``python -m eval``
    saw such dialogues: cut at the end. One over twice the room is refused: most of it would be lost.
    """
    if not dialogue or not dialogue.strip():
        return InputCheck("Paste a conversation first: the text box is empty.", refused=True)
    room = encoder.max_length - len(encoder.prompt_ids("")[0])
    where = f"this run's prompts hold {room} (data.max_length {encoder.max_length} less the instruction)"
    if len(dialogue) > CHARS_PER_TOKEN * encoder.max_length:
        return InputCheck(f"The conversation is too long: {len(dialogue):,} characters; {where}. Shorten it.", True)
    tokens = len(encoder.tokenizer(dialogue.strip(), add_special_tokens=False)["input_ids"])
    if tokens > 2 * room:
        return InputCheck(f"The conversation is too long: {tokens:,} tokens; {where}. Shorten it.", refused=True)
    if tokens > room:
        return InputCheck(f"The conversation is {tokens:,} tokens; {where}, so its last {tokens - room} were cut.")
    return InputCheck()


class AppModel:
    """The run's model, loaded once; one summarization at a time (the adapter is switched off for the base)."""

    def __init__(self, run: Run, loaded: LoadedModel, decoder: str = "auto") -> None:
        self.run = run
        self.loaded = loaded
        self.decoder = decoder
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str,
        config: str | None = None,
        overrides: list[str] = (),
        weights: str = "dense",
        device: str = "auto",
        decoder: str = "auto",
    ) -> AppModel:
        """Rebuild the run from its config and load its fine-tuned weights.

        Args:
            path: see :func:`locate_weights`.
            config: the run's config.yaml (default: the one beside the weights).
            overrides: run options in training syntax (``--model.model <base folder here>``).
            weights: ``dense`` or ``4bit`` (``model.trained_run.load_model``; ``merged`` can't go back to the base).
            device: ``auto``, ``cpu`` or ``cuda``.
            decoder: ``model.generation.DECODERS``; ``auto`` is the CUDA-graph one on a GPU.
        """
        if weights == "merged":
            raise SourceError("--weights merged folds the adapter in for good; the demo needs dense or 4bit")
        ckpt_path, adapter = locate_weights(path)
        run = find_run(config, ckpt_path, adapter, overrides)
        return cls(run, load_model(run, weights, device), decoder)

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    @property
    def max_new_tokens(self) -> int:
        return self.loaded.module.max_new_tokens

    @property
    def stop_bias(self) -> float:
        return self.loaded.module.stop_bias

    @property
    def load_s(self) -> float:
        return self.loaded.timings.get("load_s", 0.0)

    def check(self, dialogue: str) -> InputCheck:
        """See :func:`check_dialogue`."""
        return check_dialogue(dialogue, self.loaded.encoder)

    def summarize(self, dialogue: str, max_new_tokens: int, stop_bias: float) -> Summaries:
        """Both summaries of ``dialogue``, greedy, as ``python -m eval`` decodes them."""
        prompt, _ = self.loaded.encoder.prompt_ids(dialogue.strip())
        with self._lock:
            base, tuned = generate_pair(
                self.loaded, [prompt], max_new_tokens, 1, progress=False, decoder=self.decoder, stop_bias=stop_bias
            )
            timings = dict(self.loaded.timings)
        return Summaries(base[0], tuned[0], timings["base_generate_s"], timings["tuned_generate_s"])

    def examples(self, plain: int = 3, stress: int = 4) -> list[DemoExample]:
        """Conversations to click that fit the run's prompts whole: its local sources' test dialogues, then stress."""
        return demo_examples(self.run, lambda text: not self.check(text).message, plain, stress)


def demo_examples(run: Run, fits: Callable[[str], bool], plain: int = 3, stress: int = 4) -> list[DemoExample]:
    """The first ``plain`` test dialogues of the run's local sources that ``fits``, and one stress scenario of each
    of ``stress`` categories."""
    local = [(n, s) for n, s in run.data.sources.items() if has_split(s, "test") and has_split(s, "stress")]
    tests = [e for name, source in local for e in load_split(source, "test", name) if fits(e.dialogue)]
    chosen = [DemoExample(e.topic or e.id, e.dialogue) for e in tests[:plain]]
    by_category: dict[str, Example] = {}
    for example in [e for path in stress_files(run.data) for e in read_stress(path)]:
        if fits(example.dialogue):
            by_category.setdefault((example.extra or {}).get("category", ""), example)
    for category, example in list(by_category.items())[:stress]:
        extra = example.extra or {}
        facts = Facts(extra.get("must_state", []), extra.get("must_not_state", []))
        chosen.append(DemoExample(f"stress: {category.replace('_', ' ')}", example.dialogue, facts))
    return chosen
