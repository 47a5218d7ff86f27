"""The fast loss (target positions only, chunked, no mask) equals the plain HF loss."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from datamodules.batching import collate
from datamodules.encoding import PromptEncoder
from datamodules.prompts import PromptFormat
from model.loss import target_token_loss


def test_fast_loss_equals_plain_loss_on_the_same_batch(tiny_phi, tokenizer):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_phi, dtype=torch.float32).eval()
    encoder = PromptEncoder(tokenizer, PromptFormat(), max_length=128)
    rows = [encoder.encode(f"#Person1#: message {i} " * (i + 1), f"Summary {i}.") for i in range(4)]
    batch = collate([vars(r) for r in rows], pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        plain = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        hidden = model.get_decoder()(input_ids=batch["input_ids"]).last_hidden_state  # no mask: right padding
        fast = target_token_loss(hidden, batch["labels"], model.get_output_embeddings(), chunk_size=7)
    assert torch.allclose(fast, plain, rtol=1e-5), (fast, plain)
