"""What the model writes, as it trains: fixed validation dialogues summarised at every validation.

The loss says the model fits the references' tokens; a reader trusts a run by reading what it
writes. The same dialogues every time make the text comparable across steps, and ROUGE on a small
fixed subset gives the metric users care about a curve beside ``val/loss``.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback

from callbacks.cadence import log_metrics
from eval.metrics import MetricArgs, compute_metrics


class ValidationSamples(Callback):
    """Summarises fixed validation dialogues at every validation: TensorBoard text and, optionally, ROUGE.

    The dialogues are spread evenly over the validation split (so every source shows), the same
    ones each time. Generation is greedy, with the module's ``max_new_tokens``; it dominates the
    cost: about (number of dialogues) x ``max_new_tokens`` decoding steps per validation.

    Args:
        num_samples: dialogues whose summaries are written as text under ``val/samples``, next to
            their reference.
        rouge_examples: dialogues scored at every validation as ``val/rouge1`` and ``val/rougeL``
            (``eval.metrics``' ROUGE: F-measure x 100 against the best-matching reference, as eval scores);
            0 leaves ROUGE out. The text samples are the first of these.
        max_dialogue_chars: characters of each dialogue shown in the text; longer ones are cut.
    """

    def __init__(self, num_samples: int = 3, rouge_examples: int = 0, max_dialogue_chars: int = 1200) -> None:
        if num_samples < 0 or rouge_examples < 0:
            raise ValueError(f"num_samples and rouge_examples must be >= 0, got {num_samples} and {rouge_examples}")
        self.num_samples = num_samples
        self.rouge_examples = rouge_examples
        self.max_dialogue_chars = max_dialogue_chars

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        examples = pick_evenly(
            trainer.datamodule.examples.get("validation", []), max(self.num_samples, self.rouge_examples)
        )
        if not examples:
            return
        encoder = trainer.datamodule.encoder
        summaries = pl_module.summarize([encoder.prompt_ids(e.dialogue)[0] for e in examples])
        shown = list(zip(examples, summaries, strict=True))[: self.num_samples]
        writer = getattr(trainer.logger, "experiment", None)
        if shown and hasattr(writer, "add_text"):
            writer.add_text("val/samples", self.markdown(shown, trainer.global_step), global_step=trainer.global_step)
        if self.rouge_examples:
            references = [list(e.summaries) for e in examples]
            corpus, _ = compute_metrics(summaries, references, MetricArgs(metrics=["rouge"]))
            log_metrics(trainer, {f"val/{key}": corpus[key] for key in ("rouge1", "rougeL")})

    def markdown(self, shown: list, step: int) -> str:
        """The samples as one Markdown page (TensorBoard's text tab renders it)."""
        parts = [f"Greedy summaries at optimizer step {step}."]
        for i, (example, summary) in enumerate(shown, 1):
            dialogue = example.dialogue
            if len(dialogue) > self.max_dialogue_chars:
                dialogue = dialogue[: self.max_dialogue_chars] + " [...]"
            # Indented as a code block: dialogue lines start with "#Person1#", which Markdown reads as headings.
            quoted = "\n".join("    " + line for line in dialogue.splitlines())
            parts.append(
                f"### {i}. {example.source} {example.id}\n\n{quoted}\n\n"
                f"**Reference:** {example.summary}\n\n**Generated:** {summary or '(empty)'}"
            )
        return "\n\n---\n\n".join(parts)


def pick_evenly(items: list, n: int) -> list:
    """``n`` items spread evenly over ``items``, first one included, in order (all if fewer)."""
    if n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]
