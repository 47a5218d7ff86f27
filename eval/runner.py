"""Evaluation on a trained run (``model.trained_run``): its examples, its stress files, base and fine-tuned summaries."""

from __future__ import annotations

import time
from pathlib import Path

from datamodules.sources import DataError, Example, find_split_file, has_split
from model.trained_run import LoadedModel


def read_examples(data, split: str, limit: int | None = None) -> list[Example]:
    """The examples of ``split`` from each of the data module's sources (the first ``limit`` of each)."""
    examples = data.read_split(split)
    if limit is not None:
        seen: dict[str, int] = {}
        kept = []
        for example in examples:
            seen[example.source] = seen.get(example.source, 0) + 1
            if seen[example.source] <= limit:
                kept.append(example)
        examples = kept
    if not examples:
        raise DataError(f"no examples for split {split!r}; check data.sources")
    return examples


def stress_files(data) -> list[Path]:
    """The stress split of every local source that has one (a file named like ``stress.jsonl``)."""
    sources = getattr(data, "sources", {})
    return [
        find_split_file(Path(s.path).expanduser(), "stress", n) for n, s in sources.items() if has_split(s, "stress")
    ]


def generate_pair(
    loaded: LoadedModel,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    progress: bool = True,
    decoder: str = "auto",
    stop_bias: float = 0.0,
) -> tuple[list[str], list[str]]:
    """Base and fine-tuned summaries of the same prompts with the same greedy decoding.

    The base is the fine-tuned model with its adapter disabled. With ``merged`` weights the LoRA
    wrappers are taken off the dense base for the base pass and the adapter is then folded into the
    same weight tensors, so the fine-tuned pass runs without LoRA's extra matmuls, through the very
    modules (and compiled decode step) of the base pass. The decoding arguments are those of
    ``model.generation.generate_summaries``; the seconds of each pass go into ``loaded.timings``.
    """
    from model.generation import generate_summaries

    module = loaded.module
    if loaded.merged:
        raise RuntimeError("the adapter is already merged into the base; reload the model to make base summaries again")

    def timed(label: str, key: str) -> list[str]:
        start = time.perf_counter()
        texts = generate_summaries(
            module.model, module.tokenizer, prompts, max_new_tokens, batch_size, progress and label, decoder, stop_bias
        )
        loaded.timings[key] = time.perf_counter() - start
        return texts

    if loaded.weights == "merged":
        from model.merge import detach_lora

        module.model, lora = detach_lora(module.model)
        loaded.merged = True
        base = timed("base", "base_generate_s")
        start = time.perf_counter()
        lora.merge()
        loaded.timings["merge_s"] = time.perf_counter() - start
    else:
        with module.model.disable_adapter():
            base = timed("base", "base_generate_s")
    return base, timed("fine-tuned", "tuned_generate_s")
