"""Blocks compiled for training run eagerly when the module generates (validation samples, predict)."""

from __future__ import annotations

import torch

from model.loading import LoraArgs
from model.module import QLoRAModule


def test_summaries_do_not_compile_the_training_blocks(tiny_phi, tokenizer):
    module = QLoRAModule(model=tiny_phi, lora=LoraArgs(r=4, alpha=8, dropout=0.0), max_new_tokens=4)
    module.configure_model()
    graphs = []

    def counting_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    for layer in module.decoder.layers:  # what model.compile: layers does on CUDA, with a counting backend
        layer.compile(backend=counting_backend)
    prompt = tokenizer("Summarize the following conversation.\nA: Lunch at noon?\nB: Yes.")["input_ids"]
    [summary] = module.summarize([prompt])
    assert isinstance(summary, str)
    assert graphs == []  # each KV-cache step would otherwise compile the blocks again
    module.model(input_ids=torch.tensor([prompt]))
    assert graphs  # a forward outside generation does use the compiled blocks
