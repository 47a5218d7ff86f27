"""Command-line option errors in one line: unknown or abbreviated options, bad values, missing paths.

``train.py`` parses with ``allow_abbrev=False`` (``--trainer.max_step 5`` would otherwise be taken
as ``--trainer.max_steps``) and ``exit_on_error=False`` (no usage dump of 200 options before the
message); :func:`one_line` turns jsonargparse's error into one line that names the closest real
option, and :func:`path_problems` names the option of a local path that does not exist.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from datamodules.sources import looks_local
from model.validation import config_value

PARSER_KWARGS = {"allow_abbrev": False, "exit_on_error": False}
UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)")


def one_line(message: str, parser: Any, subcommand: str | None) -> str:
    """jsonargparse's error ``message`` as one line, with the closest real option for an unknown one."""
    sub = subcommand_parser(parser, subcommand)
    found = UNRECOGNIZED.search(message)
    if found:
        given = [a.split("=", 1)[0] for a in found.group(1).split() if a.startswith("-")]
        options = [o for a in (sub or parser)._actions for o in a.option_strings if o.startswith("--")]
        lines = []
        for option in given or found.group(1).split()[:1]:
            close = difflib.get_close_matches(option, options, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"unknown option {option}{hint}")
        command = f"python train.py {subcommand} --help" if subcommand else "python train.py --help"
        return "; ".join(lines) + f" ({command} lists every option)"
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    keys = re.findall(r'Parser key "([^"]+)"', message)
    refused = re.search(r"Option '([^']+)' is not accepted", message)
    if keys and refused:  # an init argument a class_path entry (model, data) does not take
        option = f"--{keys[0]}.{refused.group(1)}"
        given = re.search(r"given class_path '([^']+)'", message)
        names = [f"--{keys[0]}.{name}" for name in init_names(given.group(1))] if given else []
        close = difflib.get_close_matches(option, names, n=1, cutoff=0.6)
        return f"unknown option {option}" + (f"; did you mean {close[0]}?" if close else "")
    detail = [line.lstrip("- ") for line in lines if line.lstrip("- ").startswith(("Expected", "Got"))]
    detail = [line for line in detail if "NoneType" not in line] or detail
    if keys and detail:
        return f"--{'.'.join(dict.fromkeys(keys))}: {detail[0]}"
    return " ".join(lines)


def init_names(class_path: str) -> list[str]:
    """The ``__init__`` argument names of a class and the classes it extends (a subclass passes ``**kwargs`` on)."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    params = [p for c in cls.__mro__ if "__init__" in vars(c) for p in inspect.signature(c.__init__).parameters]
    return [p for p in dict.fromkeys(params) if p not in ("self", "args", "kwargs")]


def subcommand_parser(parser: Any, subcommand: str | None) -> Any:
    action = getattr(parser, "_subcommands_action", None)
    return action._name_parser_map.get(subcommand) if action is not None and subcommand else None


def path_problems(config: Any) -> list[str]:
    """One line for each data source whose local path is missing (``model.model``: its load error names it)."""
    problems = []
    sources = config_value(config, "data.sources") or {}
    values = [(f"data.sources.{name}.path", config_value(source, "path")) for name, source in sources.items()]
    for key, value in values:
        if isinstance(value, str) and looks_local(value) and not Path(value).expanduser().exists():
            problems.append(f"--{key} {value}: no such file or folder; check the path")
    return problems
