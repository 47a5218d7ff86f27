"""Loading the tokenizer that matches the model, with a one-line error when it can't be had."""

from __future__ import annotations

from pathlib import Path


class SourceError(OSError):
    """A model or tokenizer source (Hub name or folder) can't be loaded; the message names the option."""


def load_tokenizer(name: str, option: str = "--model.model"):
    """Load a tokenizer from a Hub name or local folder; give it a pad token if it has none.

    The pad token only fills the padded grid: labels come from sequence lengths, so padding with
    EOS never hides the EOS that ends each target.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise SourceError(hub_error(name, option, err)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def hub_error(name: str, option: str, err: Exception) -> str:
    """One line saying that ``name`` could not be loaded and which option to point elsewhere."""
    if Path(name).expanduser().exists():
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        return f"cannot load {name!r} ({reason}); set {option} to a folder with a model saved by save_pretrained"
    return (
        f"cannot load {name!r}: it is not a local folder and the Hugging Face Hub can't be reached "
        f"(offline?); set {option} to a local folder"
    )
