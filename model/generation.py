"""Batched greedy summaries: prompts sorted by length, left padding, KV cache, stop at EOS."""

from __future__ import annotations

import torch

from datamodules.batching import collate


@torch.no_grad()
def generate_summaries(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int = 96,
    batch_size: int = 16,
    progress: bool = False,
) -> list[str]:
    """Decode one summary per prompt (token ids), returned in the prompts' order.

    Sorting by length keeps left padding short; each batch stops when every row has produced EOS.
    """
    device = next(p for p in model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    out: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    batches = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="generating", unit="batch")
    for start in batches:
        rows = order[start : start + batch_size]
        batch = collate([{"input_ids": prompts[i]} for i in rows], pad_id=tokenizer.pad_token_id, pad_side="left")
        ids = model.generate(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        texts = tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        for i, text in zip(rows, texts):
            out[i] = text.strip()
    model.train(was_training)
    return out
