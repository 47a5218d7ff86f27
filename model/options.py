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

PARSER_KWARGS = {"allow_abbrev": False, "exit_on_error": False}
UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)")


def one_line(message: str, parser: Any, subcommand: str | None) -> str:
    """jsonargparse's error ``message`` as one line, with the closest real option for an unknown one.

    Args:
        message: the ``ArgumentError`` text.
        parser: the main parser (its subcommand parsers hold the options).
        subcommand: ``fit``, ``test``, ... as given, or None.
    """
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
        prefix = f"--{keys[0]}.init_args."
        names = [o.replace(".init_args.", ".", 1) for a in (sub or parser)._actions for o in a.option_strings]
        names += [f"--{keys[0]}.{o[len(prefix):]}" for a in (sub or parser)._actions for o in a.option_strings
                  if o.startswith(prefix)]  # fmt: skip
        names += [f"--{keys[0]}.{name}" for name in init_names(sub or parser, keys[0])]
        close = difflib.get_close_matches(option, names, n=1, cutoff=0.6)
        return f"unknown option {option}" + (f"; did you mean {close[0]}?" if close else "")
    detail = [line.lstrip("- ") for line in lines if line.lstrip("- ").startswith(("Expected", "Got"))]
    detail = [line for line in detail if "NoneType" not in line] or detail
    if keys and detail:
        return f"--{'.'.join(dict.fromkeys(keys))}: {detail[0]}"
    return " ".join(lines)


def init_names(parser: Any, key: str) -> list[str]:
    """The ``__init__`` argument names of the class a subclass-mode entry (``model``, ``data``) defaults to."""
    import inspect

    for action in parser._actions:
        if action.dest == key:
            for base in (
                getattr(action, "_typehint", None).__args__
                if hasattr(getattr(action, "_typehint", None), "__args__")
                else ()
            ):
                if isinstance(base, type) and base is not type(None):
                    return [
                        n for n in inspect.signature(base.__init__).parameters if n not in ("self", "args", "kwargs")
                    ]
    return []


def subcommand_parser(parser: Any, subcommand: str | None) -> Any:
    action = getattr(parser, "_subcommands_action", None)
    return action._name_parser_map.get(subcommand) if action is not None and subcommand else None


def path_problems(config: Any) -> list[str]:
    """One line for each data source whose local path is missing (``model.model``: its load error names it)."""
    problems = []
    sources = get(config, "data.sources") or {}
    values = [(f"data.sources.{name}.path", get(source, "path")) for name, source in sources.items()]
    for key, value in values:
        if isinstance(value, str) and looks_local(value) and not Path(value).expanduser().exists():
            problems.append(f"--{key} {value}: no such file or folder; check the path")
    return problems


def looks_local(value: str) -> bool:
    """A path, not a Hub name (``name`` or ``owner/name``)."""
    return value.startswith(("/", ".", "~", "\\")) or value.count("/") > 1 or "\\" in value


def get(config: Any, key: str) -> Any:
    """The value at a dotted key; ``data.x`` finds ``data.init_args.x`` of a class_path entry."""
    for part in key.split("."):
        step = config.get(part) if isinstance(config, dict) else getattr(config, part, None)
        if step is None:
            args = config.get("init_args") if isinstance(config, dict) else getattr(config, "init_args", None)
            step = None if args is None else (args.get(part) if isinstance(args, dict) else getattr(args, part, None))
        if step is None:
            return None
        config = step
    return config
