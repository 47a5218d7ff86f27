"""Batched greedy summaries: prompts sorted by length, left padding, KV cache, stop at EOS.

The decoders give the same greedy tokens:
- ``generate``: transformers' ``generate`` with its growing cache, eager; any device, any model.
- ``static``: a loop over the model's forward with a preallocated ``StaticCache``, eager. Every
  batch of a call has the same shape (the last one is filled up with copies of its rows) and the
  cache the same length, so the one-token decode step can be made fast once and replayed:
- ``compiled``: that step through ``torch.compile(mode="reduce-overhead")`` (Inductor kernels
  replayed as CUDA graphs); compiles once per process and cache length (tens of seconds for Phi-2).
- ``graphed``: the eager step captured as one CUDA graph at a call's first batch (no compiler;
  CUDA only). About as fast as ``compiled`` once that is warm, without its compilation: on an H100
  (Phi-2, batch 64, base + fine-tuned over 500 dialogues) a whole evaluation took 44 s against 88 s.
End tokens are checked every few steps, not after each, so the GPU does not wait on the host.
``stop_bias`` adds a constant to the end tokens' logits at every step, in every decoder: above 0 a
summary ends at an earlier sentence end, below 0 it goes on longer (``python -m eval.calibrate``
picks the value that matches the human summaries' length on validation data).
``auto`` takes ``graphed`` on CUDA and ``generate`` elsewhere (and for models with other than
full-attention layers).
"""

from __future__ import annotations

import warnings

import torch

from datamodules.batching import collate
from model.decoders import DECODERS

CACHE_MULTIPLE = 128  # cache lengths are rounded up to this, so calls of similar lengths share one compiled step
CHECK_EVERY = 8  # decode steps between checks whether every row has ended
_compiled_step = None  # torch.compile(decode_step), made once: calls (base and fine-tuned passes) share its graphs


@torch.no_grad()
def generate_summaries(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int = 96,
    batch_size: int = 16,
    progress: bool | str = False,
    decoder: str = "auto",
    stop_bias: float = 0.0,
) -> list[str]:
    """Decode one summary per prompt (token ids, unpadded), returned in the prompts' order.

    Each summary ends before the first end token (the tokenizer's EOS, or any end token the model's
    generation config names, e.g. a chat turn's end), or after ``max_new_tokens``. ``model`` is a
    causal LM or PEFT model; ``progress`` shows a bar (a string labels it); ``decoder`` is one of
    ``DECODERS`` and ``stop_bias`` is added to the end tokens' logits (both in the module docstring).
    """
    ids = generate_token_ids(model, tokenizer, prompts, max_new_tokens, batch_size, progress, decoder, stop_bias)
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return [text.strip() for text in texts]


@torch.no_grad()
def generate_token_ids(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int = 96,
    batch_size: int = 16,
    progress: bool | str = False,
    decoder: str = "auto",
    stop_bias: float = 0.0,
) -> list[list[int]]:
    """The new token ids of each prompt, through the first end token; arguments as :func:`generate_summaries`."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    device = next(p for p in model.parameters()).device
    if decoder == "auto":
        decoder = "graphed" if device.type == "cuda" and full_attention_only(model) else "generate"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    stops = stop_ids(model, tokenizer)
    out: list[list[int]] = [[] for _ in prompts]
    width = min(batch_size, len(prompts))  # every batch has this many rows on the static path
    static = None
    if decoder != "generate" and prompts:
        cache_len = -(-(len(prompts[order[0]]) + max_new_tokens) // CACHE_MULTIPLE) * CACHE_MULTIPLE
        static = StaticDecoder(model, width, cache_len, stops, decoder, stop_bias)
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
            # The static path fills the last batch up with copies of its last row (same shapes, same ends).
            rows_in = rows + rows[-1:] * (width - len(rows)) if static is not None else rows
            batch = collate([{"input_ids": prompts[i]} for i in rows_in], tokenizer.pad_token_id, "left")
            if static is not None:
                new = static.decode(batch["input_ids"], batch["attention_mask"], max_new_tokens, len(rows))
            else:
                ids = model.generate(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=stops,
                    sequence_bias=[[[s], stop_bias] for s in stops] if stop_bias else None,
                )
                new = ids[:, batch["input_ids"].shape[1] :].cpu()
            for i, row in zip(rows, new.tolist(), strict=False):
                out[i] = cut_after_stop(row, stops)
            if bar is not None:
                bar.update(len(rows))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return out


class StaticDecoder:
    """Greedy decoding of fixed-shape batches over one ``StaticCache``.

    The prefill runs eagerly (its length changes from batch to batch); each following step feeds one
    token per row, so its inputs keep their shapes and addresses: tokens and positions ``(rows, 1)``
    and the padding mask ``(rows, cache_len)``, all held here. Positions count each row's real tokens,
    as ``generate`` does with left padding; the mask marks the pads and leaves every later slot open
    (causal masking hides the slots not yet written).

    Args:
        model: a causal LM (or PEFT model, decoded through its LoRA layers as they are set).
        rows: rows of every batch.
        cache_len: cache slots; at least the longest padded prompt plus ``max_new_tokens``.
        stops: token ids that end a summary.
        decoder: ``static``, ``compiled`` or ``graphed`` (see the module docstring).
        stop_bias: added to the logits of ``stops`` before each greedy choice.
    """

    def __init__(
        self, model, rows: int, cache_len: int, stops: list[int], decoder: str = "static", stop_bias: float = 0.0
    ) -> None:
        from transformers import StaticCache

        if not full_attention_only(model):
            raise ValueError(
                "the static decoders need a model whose layers all use full attention; use decoder='generate'"
            )
        # PEFT's wrapper adds only hooks for per-call adapter options; its LoRA layers live in the base model.
        self.model = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.device = next(p for p in model.parameters()).device
        if decoder == "graphed" and self.device.type != "cuda":
            raise ValueError("decoder='graphed' captures a CUDA graph and needs the model on a CUDA device")
        self.rows, self.cache_len, self.decoder = rows, cache_len, decoder
        self.stops = torch.tensor(stops, device=self.device)
        self.stop_bias = stop_bias
        self.bias = None  # (vocab,) float32: stop_bias on the end tokens, 0 elsewhere; sized at the first prefill
        self.cache = StaticCache(config=self.model.config, max_cache_len=cache_len)
        self.token = torch.zeros(rows, 1, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(rows, 1, dtype=torch.long, device=self.device)
        self.mask = torch.ones(rows, cache_len, dtype=torch.long, device=self.device)
        self.step = compiled_decode_step() if decoder == "compiled" else decode_step
        self.graph = None  # ``graphed``: the decode step as a CUDA graph, captured at the first batch

    def decode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, real_rows: int
    ) -> torch.Tensor:
        """New tokens ``(rows, steps)`` of a left-padded batch; steps stop once the first ``real_rows`` have all ended."""
        rows, width = input_ids.shape
        if rows != self.rows or width + max_new_tokens > self.cache_len:
            raise ValueError(
                f"batch {rows}x{width} + {max_new_tokens} new tokens does not fit the {self.rows}x{self.cache_len} cache"
            )
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        self.mask.fill_(1)
        self.mask[:, :width] = attention_mask
        positions = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        self.cache.reset()
        logits = self.model(
            input_ids=input_ids,
            attention_mask=self.mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        if self.bias is None:
            self.bias = torch.zeros(logits.shape[-1], device=self.device)
            self.bias[self.stops] = self.stop_bias
        self.token.copy_(greedy(logits[:, -1], self.bias))
        self.positions.copy_(positions[:, -1:] + 1)
        out = torch.empty(rows, max_new_tokens, dtype=torch.long, device=self.device)
        out[:, 0] = self.token[:, 0]
        steps = max_new_tokens
        for t in range(1, max_new_tokens):
            if t % CHECK_EVERY == 0 and torch.isin(out[:real_rows, :t], self.stops).any(-1).all():
                steps = t
                break
            if self.graph is not None:
                self.graph.replay()
            elif self.decoder == "graphed":
                self.capture()
            else:
                self.advance()
            out[:, t] = self.token[:, 0]
        return out[:, :steps].cpu()

    def advance(self) -> None:
        """One greedy step for every row: the next token into ``self.token``, positions moved on."""
        if self.decoder == "compiled" and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        # Copied at once: a compiled step's output lives in its CUDA graph's memory, overwritten by the next replay.
        self.token.copy_(self.step(self.model, self.token, self.positions, self.mask, self.cache, self.bias))
        self.positions += 1

    def capture(self) -> None:
        """Take one step eagerly on a side stream (lazy initialisations happen outside the graph), then capture the next."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            self.advance()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):  # records the kernels without running them: no state changes
                self.advance()
        except RuntimeError as err:  # e.g. a model whose forward waits on the GPU; the eager step still works
            warnings.warn(
                f"decoder='graphed': capturing the decode step failed ({err}); decoding eagerly", stacklevel=2
            )
            self.decoder = "static"
            return
        self.graph = graph


def decode_step(
    model, token: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache, bias: torch.Tensor
) -> torch.Tensor:
    """One greedy step: the next token ``(rows, 1)`` after ``token`` at ``positions``, written into ``cache``."""
    logits = model(input_ids=token, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    return greedy(logits.logits[:, -1], bias)


def greedy(logits: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The most likely token ``(rows, 1)`` of ``(rows, vocab)`` logits after adding ``bias`` (in float32)."""
    return (logits.float() + bias).argmax(-1, keepdim=True)


def compiled_decode_step():
    """:func:`decode_step` through ``torch.compile`` (CUDA graphs on CUDA), made once per process."""
    global _compiled_step
    if _compiled_step is None:
        _compiled_step = torch.compile(decode_step, mode="reduce-overhead", dynamic=False)
    return _compiled_step


def full_attention_only(model) -> bool:
    """Whether every layer attends to the whole past (sliding-window and recurrent layers keep other caches)."""
    from transformers.cache_utils import get_layer_types_and_kwargs

    kinds, _ = get_layer_types_and_kwargs(model.config.get_text_config(decoder=True))
    return set(kinds) == {"full_attention"}


def cut_after_stop(ids: list[int], stops: list[int]) -> list[int]:
    """``ids`` through the first stop id (what greedy ``generate`` returns before its padding)."""
    for n, token in enumerate(ids):
        if token in stops:
            return ids[: n + 1]
    return ids


def stop_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS id plus any the model's generation config lists (chat models end turns with their own)."""
    ids = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured]
    return list(dict.fromkeys(i for i in ids if i is not None))
