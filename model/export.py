"""Export a trained run as a full model that plain transformers loads, serves and shares.

    python -m model.export logs/quickstart/version_0 exported/            # adapter merged in
    python -m model.export logs/quickstart/version_0/adapter exported/    # the same, from the adapter
    python -m model.export <run>/checkpoints/last.ckpt exported/ --keep-adapter

The 4-bit base is dequantized (the very weights the adapter was trained on), the adapter is folded
into it (``scaling * B @ A`` per layer, as eval's ``merged`` weights) and the result is written with
``save_pretrained``: safetensors, config, tokenizer, and a generation config that decodes as the
run does (greedy, its end tokens, ``max_new_tokens``, ``stop_bias`` as a ``sequence_bias`` on the end
tokens). ``prompt_format.json`` records how a dialogue becomes a prompt. Then::

    model = AutoModelForCausalLM.from_pretrained("exported")
    model.generate(**tokenizer(prompt, return_tensors="pt"))   # the run's greedy summary

``--keep-adapter`` saves the dequantized base unmerged and the adapter in ``<out>/adapter``
(``PeftModel.from_pretrained(base, "<out>/adapter")``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from datamodules.sources import DataError
from datamodules.tokenizer import SourceError


def export(source: str | Path, out: str | Path, keep_adapter: bool = False, base_model: str | None = None) -> Path:
    """Write the run at ``source`` (run folder, adapter folder or checkpoint) as a full model in ``out``.

    Args:
        source: a run folder (``logs/<name>/version_N``), its ``adapter`` folder, or a ``.ckpt`` file.
        out: the folder to write.
        keep_adapter: save the base and the adapter apart instead of merging them.
        base_model: replaces the run's ``model.model`` (the base model's folder on this machine).
    """
    from model.generation import stop_ids
    from model.merge import detach_lora
    from model.trained_run import find_run, load_model, locate_weights

    out = Path(out)
    ckpt, adapter = locate_weights(str(source))
    loaded = load_model(
        find_run(None, ckpt, adapter, ["--model.model", base_model] if base_model else []),
        weights="dense",
        device="cpu",
    )
    module, tokenizer = loaded.module, loaded.tokenizer
    stops = stop_ids(module.model, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    if keep_adapter:
        module.model.peft_config["default"].base_model_name_or_path = str(out.resolve())
        module.model.save_pretrained(out / "adapter")
    base, lora = detach_lora(module.model)
    if not keep_adapter:
        lora.merge()
    # The weights are dense now: what was quantized is no longer, and the config must not say otherwise.
    base.hf_quantizer = None
    if hasattr(base.config, "quantization_config"):
        del base.config.quantization_config
    base.config.use_cache = True  # off for training; generation wants it
    generation = base.generation_config
    generation.update(
        do_sample=False,
        max_new_tokens=module.max_new_tokens,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
        sequence_bias=[[[s], module.stop_bias] for s in stops] if module.stop_bias else None,
    )
    for unused in ("temperature", "top_p", "top_k"):  # greedy: sampling settings would only warn
        setattr(generation, unused, None)
    base.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "prompt_format.json").write_text(json.dumps(asdict(loaded.encoder.prompt), indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> Path:
    """Merge a run's adapter into its dequantized base and save the full model."""
    parser = argparse.ArgumentParser(prog="python -m model.export", description=main.__doc__, allow_abbrev=False)
    parser.add_argument("source", help="run folder (logs/NAME/version_N), its adapter folder, or a .ckpt file")
    parser.add_argument("out", help="folder to write the model to")
    parser.add_argument("--keep-adapter", action="store_true", help="save the base and the adapter (out/adapter) apart")
    parser.add_argument("--base-model", default=None, help="the base model's folder, if not the run's model.model")
    args = parser.parse_args(argv)
    try:
        out = export(args.source, args.out, args.keep_adapter, args.base_model)
    except (DataError, SourceError) as err:
        sys.exit(f"error: {err}")
    print(out)
    return out


if __name__ == "__main__":
    main()
