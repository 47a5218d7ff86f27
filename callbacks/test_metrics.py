"""Generation metrics at test time: ``train.py test`` logs test/rouge1, test/bleu, ... beside test/loss.

    python train.py test --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt \\
        --trainer.callbacks+=callbacks.test_metrics.TestGenerationMetrics

The scores come from ``eval.metrics``, the same code as ``python -m eval``; summaries are the module's
own greedy ``summarize`` of the training prompt format (a subclass's, if it has one).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from eval.metrics import METRICS, MetricArgs, check_resources, compute_metrics


class TestGenerationMetrics(L.Callback):
    """Decodes summaries of the test split after the test loop and logs their scores.

    Args:
        metrics: any of ``rouge``, ``bleu``, ``meteor``, ``bertscore``, ``length``, or ``module:attribute`` of an
            ``eval.metrics.Metric`` of your own.
        bertscore_model: BERTScore encoder, a Hub name or a local folder.
        bertscore_layers: encoder layer; None: bert_score's choice for the name, else the last.
        limit: score only the first N test dialogues (decoding is the slow part); None scores all.
        batch_size: prompts decoded together.
        max_new_tokens: summary length bound; None uses ``model.max_new_tokens``.
        compare_base: also score the base model (adapter disabled), logged as ``test/base_<metric>``.
        save_summaries: write every summary to ``<log_dir>/test_summaries.jsonl``.
    """

    __test__ = False  # not a pytest class, despite the name

    def __init__(
        self,
        metrics: list[str] | None = None,
        bertscore_model: str = "roberta-large",
        bertscore_layers: int | None = None,
        limit: int | None = None,
        batch_size: int = 16,
        max_new_tokens: int | None = None,
        compare_base: bool = False,
        save_summaries: bool = True,
    ) -> None:
        self.args = MetricArgs(
            metrics=list(metrics or METRICS), bertscore_model=bertscore_model, bertscore_layers=bertscore_layers
        )
        self.limit = limit
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.compare_base = compare_base
        self.save_summaries = save_summaries

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "test":
            check_resources(self.args)  # a missing encoder or WordNet fails before the test loop, not after

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "encoder") or "test" not in getattr(datamodule, "examples", {}):
            raise RuntimeError("TestGenerationMetrics needs a DialogSumDataModule-like datamodule (examples + encoder)")
        examples = datamodule.examples["test"][: self.limit]
        # Each rank decodes its share; the summaries are gathered so every rank scores the whole set.
        rank, world = trainer.global_rank, trainer.world_size
        mine = list(range(rank, len(examples), world))
        prompts = [datamodule.encoder.prompt_ids(examples[i].dialogue)[0] for i in mine]
        decode = lambda: pl_module.summarize(prompts, self.batch_size, self.max_new_tokens)  # noqa: E731
        summaries = {"fine_tuned": self._gather(decode(), mine, len(examples), world)}
        if self.compare_base:
            with pl_module.model.disable_adapter():
                summaries["base"] = self._gather(decode(), mine, len(examples), world)

        references = [list(e.summaries) for e in examples]
        for label, texts in summaries.items():
            corpus, _ = compute_metrics(texts, references, self.args)
            prefix = "test/" if label == "fine_tuned" else "test/base_"
            pl_module.log_dict({prefix + k: float(v) for k, v in corpus.items()}, batch_size=len(examples))
        folder = trainer.log_dir  # a broadcast under DDP: every rank must ask, rank 0 alone writes
        if self.save_summaries and trainer.is_global_zero and folder:
            self._save(Path(folder) / "test_summaries.jsonl", examples, summaries)

    @staticmethod
    def _gather(texts: list[str], indices: list[int], total: int, world: int) -> list[str]:
        if world == 1:
            return texts
        shards = [None] * world
        torch.distributed.all_gather_object(shards, list(zip(indices, texts, strict=True)))
        out = [""] * total
        for shard in shards:
            for i, text in shard:
                out[i] = text
        return out

    @staticmethod
    def _save(path: Path, examples: list, summaries: dict[str, list[str]]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for i, example in enumerate(examples):
                row = {"id": example.id, "references": list(example.summaries)}
                row.update({label: texts[i] for label, texts in summaries.items()})
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
