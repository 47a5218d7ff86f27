"""Paste a conversation, see the base and fine-tuned summaries side by side.

    python -m eval.demo --adapter logs/quickstart/version_0/adapter            # interactive
    python -m eval.demo --adapter ... < dialogue.txt                           # piped: one summary pair
    python -m eval.demo --adapter ... --input dialogues.jsonl --json           # scripted: JSON lines

The run is rebuilt from its config.yaml; its options can be overridden in the training syntax
(``--model.stop_bias 1.0``, ``--model.max_new_tokens 64``, ``--model.model <base folder>``).
Conversations in a text file or on standard input are separated by a line holding only ``---``;
a .jsonl file gives one conversation per row (its ``dialogue`` field).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import textwrap
from pathlib import Path
from typing import TextIO

from datamodules.sources import DataError
from datamodules.tokenizer import SourceError
from eval.arguments import add_run_arguments, parse_with_overrides
from eval.runner import generate_pair
from model.trained_run import LoadedModel, find_run, load_model

SEPARATOR = "---"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m eval.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_run_arguments(p)
    p.add_argument(
        "--input", help="a text file (conversations separated by '---' lines) or a .jsonl file; '-' is stdin"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per conversation")
    p.add_argument(
        "--weights",
        default="dense",
        choices=("dense", "4bit"),
        help="dense: the 4-bit base dequantized once (fast); 4bit: as trained",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
    """Summarize conversations from a file, a pipe, or typed in, with both models."""
    args = parse_with_overrides(parser(), argv)
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        run = find_run(args.config, args.ckpt_path, args.adapter, args.overrides)
        interactive = args.input is None and stdin.isatty()
        dialogues = None if interactive else read_dialogues(args.input, stdin)
        if interactive:
            print("loading the model...", file=sys.stderr)
        loaded = load_model(run, args.weights, args.device)
    except (DataError, SourceError) as err:
        sys.exit(f"error: {err}")
    max_new, stop_bias = loaded.module.max_new_tokens, loaded.module.stop_bias
    if dialogues is not None:
        pairs = summarize(loaded, dialogues, max_new, stop_bias)
        for dialogue, (base, tuned) in zip(dialogues, pairs, strict=True):
            show(dialogue, base, tuned, args.json, stdout)
        return
    print(
        f"Paste a conversation, then a line with {SEPARATOR} (or Ctrl-D). Ctrl-D on an empty prompt quits.",
        file=sys.stderr,
    )
    while True:
        dialogue = read_one(stdin)
        if dialogue is None:
            return
        [(base, tuned)] = summarize(loaded, [dialogue], max_new, stop_bias)
        show(dialogue, base, tuned, args.json, stdout)


def summarize(
    loaded: LoadedModel, dialogues: list[str], max_new_tokens: int, stop_bias: float = 0.0
) -> list[tuple[str, str]]:
    """(base, fine-tuned) summaries of each dialogue, in the training prompt format."""
    prompts = [loaded.encoder.prompt_ids(d)[0] for d in dialogues]
    base, tuned = generate_pair(loaded, prompts, max_new_tokens, batch_size=8, progress=False, stop_bias=stop_bias)
    return list(zip(base, tuned, strict=True))


def read_dialogues(source: str | None, stdin: TextIO) -> list[str]:
    """Conversations from a .jsonl file (``dialogue`` field) or text separated by ``---`` lines; None or - is stdin."""
    if source not in (None, "-"):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"--input {source}: file not found")
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if any("dialogue" not in r for r in rows):
                raise DataError(f"--input {source}: every row needs a 'dialogue' field")
            return [r["dialogue"] for r in rows]
        text = path.read_text(encoding="utf-8")
    else:
        text = stdin.read()
    dialogues = [c.strip() for c in re.split(rf"^[ \t]*{SEPARATOR}[ \t]*$", text, flags=re.M) if c.strip()]
    if not dialogues:
        raise DataError("no conversation in the input; give text, conversations separated by '---' lines")
    return dialogues


def read_one(stdin: TextIO) -> str | None:
    """One pasted conversation: lines up to a ``---`` line or end of input; None when nothing is left."""
    lines = []
    while True:
        line = stdin.readline()
        if not line or line.strip() == SEPARATOR:
            break
        lines.append(line.rstrip("\n"))
    text = "\n".join(lines).strip()
    if text:
        return text
    return None if not line else read_one(stdin)


def show(dialogue: str, base: str, tuned: str, as_json: bool, out: TextIO) -> None:
    """Print the two summaries: as two columns for a person, or as one JSON line for a script."""
    if as_json:
        out.write(json.dumps({"dialogue": dialogue, "base": base, "fine_tuned": tuned}, ensure_ascii=False) + "\n")
        return
    width = max(60, min(shutil.get_terminal_size((120, 20)).columns, 160))
    col = (width - 3) // 2
    left = ["BASE", "-" * 4, *textwrap.wrap(base or "(empty)", col)]
    right = ["FINE-TUNED", "-" * 10, *textwrap.wrap(tuned or "(empty)", col)]
    left += [""] * (len(right) - len(left))
    right += [""] * (len(left) - len(right))
    out.write("=" * width + "\n")
    out.write("".join(f"{a:<{col}} | {b}\n" for a, b in zip(left, right, strict=True)))
    out.flush()


if __name__ == "__main__":
    main()
