"""python -m model.export: a full model that plain transformers reloads and decodes as eval's merged path does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import DIALOGSUM, fit_tiny

STOP_BIAS = 1.5


@pytest.fixture(scope="module")
def run(tiny_phi, tmp_path_factory) -> Path:
    """A 4-step QLoRA run of the tiny Phi (real 4-bit layers) with a stop_bias to carry into the export."""
    folder = tmp_path_factory.mktemp("export")
    args = ["--trainer.max_steps=4", "--trainer.limit_val_batches=0", "--data.max_length=64", "--data.batch_size=2"]
    cli = fit_tiny(tiny_phi, folder, *args, "--model.max_new_tokens=12", f"--model.stop_bias={STOP_BIAS}")
    return Path(cli.trainer.log_dir)


def eval_merged_summaries(run: Path, dialogues: list[str]) -> tuple[list[str], list[list[int]]]:
    from eval.runner import generate_pair
    from model.trained_run import find_run, load_model

    loaded = load_model(find_run(None, adapter=str(run / "adapter")), weights="merged", device="cpu")
    prompts = [loaded.encoder.prompt_ids(d)[0] for d in dialogues]
    _, tuned = generate_pair(loaded, prompts, 12, batch_size=1, progress=False, decoder="generate", stop_bias=STOP_BIAS)
    return tuned, prompts


def plain_summaries(folder: Path, prompts: list[list[int]]) -> list[str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)  # no peft, no bitsandbytes config
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = []
    with torch.no_grad():
        for ids in prompts:
            new = model.generate(input_ids=torch.tensor([ids]))[0, len(ids) :]  # its own generation config
            out.append(tokenizer.decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip())
    return out


def test_export_reloads_with_plain_transformers_and_decodes_as_eval_merged(run, tmp_path):
    from model.export import main

    dialogues = [json.loads(line)["dialogue"] for line in (DIALOGSUM / "dialogsum.test.jsonl").open()][:3]
    expected, prompts = eval_merged_summaries(run, dialogues)
    out = main([str(run), str(tmp_path / "merged")])
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 12 and generation["sequence_bias"]  # the trained stop settings
    assert json.loads((out / "prompt_format.json").read_text())["template"].count("{dialogue}") == 1
    assert all(expected) and plain_summaries(out, prompts) == expected


def test_export_can_keep_the_adapter_apart(run, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from model.export import main

    out = main([str(run / "adapter"), str(tmp_path / "apart"), "--keep-adapter"])
    base = AutoModelForCausalLM.from_pretrained(out)
    tuned = PeftModel.from_pretrained(base, out / "adapter")
    trained = load_file(run / "adapter" / "adapter_model.safetensors")
    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    assert set(saved) == set(trained) and all(torch.equal(saved[k], trained[k]) for k in trained)
    assert any("lora_A" in name for name, _ in tuned.named_parameters())
