"""The static-cache decoders give ``generate``'s greedy tokens: ragged prompts, a short last batch, early ends, LoRA.

Exact equality holds in float32; in bfloat16 two correct decoders may still part at a near-tie
(their attention sums run over different lengths), so these tests decode in float32.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from conftest import DIALOGSUM

from model import generation
from model.generation import generate_summaries, generate_token_ids

MAX_NEW = 20
BATCH = 3  # 7 prompts: batches of 3, 3 and 1 (filled up with copies on the static path)
BUDGETS = [30, 64, 45, 80, 20, 55, 70]  # prompt lengths (the dialogue cut to fit)


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    """Seven DialogSum test prompts in the project's format, of seven different lengths."""
    from datamodules.encoding import PromptEncoder
    from datamodules.prompts import PromptFormat
    from datamodules.sources import load_split

    encoder = PromptEncoder(tokenizer, PromptFormat(), max_length=512)
    examples = load_split(str(DIALOGSUM), "test", "dialogsum")[: len(BUDGETS)]
    ids = [encoder.prompt_ids(e.dialogue, budget)[0] for e, budget in zip(examples, BUDGETS, strict=True)]
    assert len({len(p) for p in ids}) == len(ids)
    return ids


@pytest.fixture(scope="module")
def phi(tiny_phi):
    from transformers import PhiForCausalLM

    return PhiForCausalLM.from_pretrained(tiny_phi, dtype=torch.float32).eval()


def end_early(model, tokenizer, prompts) -> list[list[int]]:
    """Make a token the shortest prompt's summary emits at its 3rd step an end token (as a chat model's turn end).

    Returns the summaries ``generate`` makes then; some rows end early, others run to ``MAX_NEW``.
    """
    free = generate_token_ids(model, tokenizer, prompts, MAX_NEW, BATCH, decoder="generate")
    shortest = min(range(len(prompts)), key=lambda i: len(prompts[i]))
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, free[shortest][2]]
    ended = generate_token_ids(model, tokenizer, prompts, MAX_NEW, BATCH, decoder="generate")
    lengths = [len(ids) for ids in ended]
    assert len(ended[shortest]) <= 3 and MAX_NEW in lengths and min(lengths) < MAX_NEW
    return ended


def test_static_decoder_gives_generates_tokens_and_texts(phi, tokenizer, prompts):
    expected = end_early(phi, tokenizer, prompts)
    stops = generation.stop_ids(phi, tokenizer)
    assert generate_token_ids(phi, tokenizer, prompts, MAX_NEW, BATCH, decoder="static") == expected
    for ids in expected:  # each summary ends at its first end token, or runs to the bound without one
        ends = [n for n, t in enumerate(ids) if t in stops]
        assert ends == [len(ids) - 1] or (ends == [] and len(ids) == MAX_NEW)
    texts = {d: generate_summaries(phi, tokenizer, prompts, MAX_NEW, BATCH, decoder=d) for d in ("generate", "static")}
    assert texts["static"] == texts["generate"] and len(set(texts["static"])) == len(prompts)
    # One batch of all seven: no filler rows, one cache, the same tokens.
    assert generate_token_ids(phi, tokenizer, prompts, MAX_NEW, 8, decoder="static") == expected


def llama_with_grouped_query_attention(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.1,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def gpt2_with_learned_positions(tokenizer):
    """Rotary attention forgives positions shifted by the padding; learned absolute positions do not."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, initializer_range=0.1)
    return GPT2LMHeadModel(config)


@pytest.mark.parametrize("build", [llama_with_grouped_query_attention, gpt2_with_learned_positions])
def test_static_decoder_on_other_architectures(tokenizer, prompts, build):
    torch.manual_seed(0)
    model = build(tokenizer).eval()
    expected = end_early(model, tokenizer, prompts)
    assert generate_token_ids(model, tokenizer, prompts, MAX_NEW, BATCH, decoder="static") == expected


def tiny_lora_model(tiny_phi: str, tokenizer):
    """``load_model``'s result for the tiny Phi: 4-bit base dequantized, LoRA with a random B (float32 here)."""
    from test_merge import tiny_qlora

    from datamodules.encoding import PromptEncoder
    from datamodules.prompts import PromptFormat
    from model.trained_run import LoadedModel

    model = tiny_qlora(tiny_phi)
    model.get_base_model().dequantize(dtype=torch.bfloat16)
    model.float()

    module = SimpleNamespace(model=model, tokenizer=tokenizer)  # what generate_pair uses of QLoRAModule
    return LoadedModel(module, PromptEncoder(tokenizer, PromptFormat(), 512))


@pytest.mark.parametrize("weights", ["dense", "merged"])
def test_eval_pair_is_the_same_through_the_static_decoder(tiny_phi, tokenizer, prompts, weights):
    from eval.runner import generate_pair

    first = tiny_lora_model(tiny_phi, tokenizer)
    second = copy.deepcopy(first)
    first.weights = second.weights = weights
    base, tuned = generate_pair(first, prompts, MAX_NEW, BATCH, progress=False, decoder="generate")
    assert generate_pair(second, prompts, MAX_NEW, BATCH, progress=False, decoder="static") == (base, tuned)
    assert base != tuned  # the adapter changes the summaries


def test_compiled_step_is_traced_once_for_all_batches_and_both_passes(tiny_phi, tokenizer, prompts, monkeypatch):
    """Dynamo's guards decide recompilation, whatever the backend; ``eager`` keeps this fast on CPU."""
    from torch._dynamo.utils import counters

    from eval.runner import generate_pair

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(generation.decode_step, backend="eager", fullgraph=True, dynamic=False)
    monkeypatch.setattr(generation, "_compiled_step", compiled)
    first = tiny_lora_model(tiny_phi, tokenizer)
    second = copy.deepcopy(first)
    first.weights = second.weights = "merged"
    expected = generate_pair(first, prompts, MAX_NEW, BATCH, progress=False, decoder="generate")
    assert generate_pair(second, prompts, MAX_NEW, BATCH, progress=False, decoder="compiled") == expected
    assert counters["stats"]["unique_graphs"] == 1  # one graph: 3 batches x (base, merge, fine-tuned)
    torch._dynamo.reset()


def test_bad_decoder_choices_say_what_to_use(phi, tokenizer, prompts):
    with pytest.raises(ValueError, match="decoder must be one of"):
        generate_summaries(phi, tokenizer, prompts, MAX_NEW, BATCH, decoder="fast")
    with pytest.raises(ValueError, match="needs the model on a CUDA device"):
        generate_summaries(phi, tokenizer, prompts, MAX_NEW, BATCH, decoder="graphed")


@pytest.mark.gpu
@pytest.mark.parametrize("decoder", ["compiled", "graphed"])
def test_cuda_graph_decoders_give_generates_tokens(tiny_phi, tokenizer, prompts, decoder):
    """On CUDA: the compiled (CUDA graphs) and captured-graph steps, again without recompiling on later calls."""
    from transformers import PhiForCausalLM

    model = PhiForCausalLM.from_pretrained(tiny_phi, dtype=torch.float32).cuda().eval()
    expected = end_early(model, tokenizer, prompts)
    assert generate_token_ids(model, tokenizer, prompts, MAX_NEW, BATCH, decoder=decoder) == expected
    with torch._dynamo.config.patch(error_on_recompile=True):
        assert generate_token_ids(model, tokenizer, prompts, MAX_NEW, BATCH, decoder=decoder) == expected
    for bias in (2.0, 3.0):  # the bias is part of the captured step: summaries end where generate's do
        biased = generate_token_ids(model, tokenizer, prompts, MAX_NEW, BATCH, decoder="generate", stop_bias=bias)
        assert generate_token_ids(model, tokenizer, prompts, MAX_NEW, BATCH, decoder=decoder, stop_bias=bias) == biased


@pytest.mark.parametrize("decoder", ["generate", "static"])
def test_stop_bias_ends_summaries_sooner_the_larger_it_is(tiny_phi, tokenizer, prompts, decoder):
    from transformers import PhiForCausalLM

    phi = PhiForCausalLM.from_pretrained(tiny_phi, dtype=torch.float32).eval()  # the tokenizer's EOS ends summaries
    free = generate_token_ids(phi, tokenizer, prompts, MAX_NEW, BATCH, decoder=decoder, stop_bias=0.0)
    assert [len(row) for row in free] == [MAX_NEW] * len(prompts)  # this random model ends nothing unbiased
    # By hand, from the unbiased summaries' logits: adding b to the end tokens' logits ends a summary at
    # the first step where the best end token is less than b below the best other token.
    stops, gaps = generation.stop_ids(phi, tokenizer), []
    for prompt, summary in zip(prompts, free, strict=True):
        with torch.no_grad():
            logits = phi(torch.tensor([prompt + summary[:-1]])).logits[0, len(prompt) - 1 :]
        assert logits.argmax(dim=1).tolist() == summary  # bias 0 is plain greedy: each token the model's argmax
        others = logits.clone()
        others[:, stops] = float("-inf")
        gaps.append((others.max(dim=1).values - logits[:, stops].max(dim=1).values).tolist())
    lengths = {}
    for bias in (2.0, 3.0):
        lengths[bias] = [
            len(row)
            for row in generate_token_ids(phi, tokenizer, prompts, MAX_NEW, BATCH, decoder=decoder, stop_bias=bias)
        ]
        assert lengths[bias] == [next((t + 1 for t, gap in enumerate(row) if gap < bias), MAX_NEW) for row in gaps]
    assert all(b <= a for a, b in zip(lengths[2.0], lengths[3.0], strict=True)) and max(lengths[3.0]) < MAX_NEW
    overwhelming = generate_token_ids(phi, tokenizer, prompts, MAX_NEW, BATCH, decoder=decoder, stop_bias=1e4)
    assert [len(row) for row in overwhelming] == [1] * len(prompts)  # each ends at its first token


def test_static_decoder_gives_generates_tokens_with_a_stop_bias(phi, tokenizer, prompts):
    """The bias goes through transformers' sequence_bias on one path and the decode step's logits on the other."""
    for bias in (2.0, 3.0, -3.0):  # 2 ends one summary early, 3 all of them at different steps
        expected = generate_token_ids(phi, tokenizer, prompts, MAX_NEW, BATCH, decoder="generate", stop_bias=bias)
        assert generate_token_ids(phi, tokenizer, prompts, MAX_NEW, BATCH, decoder="static", stop_bias=bias) == expected
