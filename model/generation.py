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
    progress: bool | str = False,
) -> list[str]:
    """Decode one summary per prompt (token ids), returned in the prompts' order.

    Sorting by length keeps left padding short; each batch stops when every row has produced EOS
    (the tokenizer's, or any end token the model's generation config names, e.g. a chat turn's end).

    Args:
        model: a causal LM (or PEFT model) with ``generate``.
        tokenizer: its tokenizer; gives the pad and EOS ids and decodes.
        prompts: token ids of each prompt, without padding.
        max_new_tokens: the most tokens a summary may have.
        batch_size: prompts decoded together.
        progress: show a progress bar; a string labels it.
    """
    device = next(p for p in model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    out: list[str] = [""] * len(prompts)
    eos = stop_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        label = progress if isinstance(progress, str) else "generating"
        bar = tqdm(total=len(prompts), desc=label, unit="summary")
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = collate([{"input_ids": prompts[i]} for i in rows], pad_id=tokenizer.pad_token_id, pad_side="left")
            ids = model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos,
            )
            texts = tokenizer.batch_decode(
                ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            for i, text in zip(rows, texts, strict=True):
                out[i] = text.strip()
            if bar is not None:
                bar.update(len(rows))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return out


def stop_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS id plus any the model's generation config lists (chat models end turns with their own)."""
    ids = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured]
    return list(dict.fromkeys(i for i in ids if i is not None))
