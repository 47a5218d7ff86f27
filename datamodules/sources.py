"""Reading dialogue/summary records from local files or the Hugging Face Hub.

Every reader returns :class:`Example` objects and validates each row as it reads it, so a bad row
fails with ``file:line: field`` before any model is loaded.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# File-name tokens that name each split, e.g. ``dialogsum.dev.jsonl`` or ``validation.csv``.
SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "dev", "val"),
    "test": ("test",),
    "stress": ("stress",),
}


class DataError(ValueError):
    """A data source or row is unusable; the message says where and what to do."""


@dataclass(frozen=True)
class Example:
    """One dialogue with one or more human reference summaries."""

    id: str
    dialogue: str
    summaries: tuple[str, ...]
    source: str
    topic: str = ""
    extra: dict | None = None  # fields a source adds (e.g. the stress set's fact lists)

    @property
    def summary(self) -> str:
        """The first reference: the training target."""
        return self.summaries[0]


def load_split(source: str, split: str, name: str) -> list[Example]:
    """Load one split of ``source``: a local folder of data files or a Hub dataset name."""
    if split not in SPLIT_ALIASES:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLIT_ALIASES)}")
    path = Path(source).expanduser()
    if path.is_dir():
        return read_file(find_split_file(path, split), name)
    if path.suffix in DATA_SUFFIXES:
        if not path.exists():
            raise DataError(f"{path}: file not found; check the path")
        return read_file(path, name)
    if path.is_file():
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(DATA_SUFFIXES)}")
    if _looks_local(source):
        raise DataError(f"{path}: no such folder or file; check the path")
    return _load_from_hub(source, split, name)


def _looks_local(source: str) -> bool:
    """A path, not a Hub name: Hub names are ``name`` or ``owner/name``, never absolute or relative."""
    return source.startswith(("/", ".", "~", "\\")) or source.count("/") > 1 or "\\" in source


def find_split_file(folder: Path, split: str) -> Path:
    """The one data file in ``folder`` whose name carries the split, e.g. ``dialogsum.dev.jsonl``."""
    files = [p for p in sorted(folder.iterdir()) if p.suffix in DATA_SUFFIXES]
    if not files:
        raise DataError(f"{folder}: no data files ({', '.join(DATA_SUFFIXES)}) in this folder; check the path")
    tokens = lambda p: set(p.stem.lower().replace("-", ".").replace("_", ".").split("."))  # noqa: E731
    matches = [p for p in files if tokens(p) & set(SPLIT_ALIASES[split])]
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        raise DataError(
            f"{folder}: expected one file for split {split!r} (a name containing "
            f"{' or '.join(SPLIT_ALIASES[split])}), found {found}; rename the files so each split has one"
        )
    return matches[0]


def read_file(path: Path, name: str) -> list[Example]:
    """Read a jsonl/json/csv/parquet file, validating every row."""
    rows = {".jsonl": _jsonl_rows, ".json": _jsonl_rows, ".csv": _csv_rows, ".parquet": _parquet_rows}
    examples, seen = [], {}
    for line, row in rows[path.suffix](path):
        where = f"{path}:{line}" if isinstance(line, int) else f"{path}: {line}"
        example = to_example(row, where, name)
        if example.id in seen:
            raise DataError(
                f"{where}: field 'id' repeats {example.id!r} (first at {seen[example.id]}); make ids unique"
            )
        seen[example.id] = f"line {line}" if isinstance(line, int) else line
        examples.append(example)
    if not examples:
        raise DataError(f"{path}: the file has no rows; add data or remove the file")
    return examples


def to_example(row: dict, where: str, name: str) -> Example:
    """Validate one raw row (DialogSum's field names) and turn it into an :class:`Example`."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with 'dialogue' and 'summary', got {type(row).__name__}")
    rid = row.get("id", row.get("fname"))
    if rid is None or str(rid).strip() == "":
        raise DataError(f"{where}: field 'id' (or 'fname') is missing or empty; give every row an id")
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        raise DataError(f"{where}: field 'id' must be text or a whole number, got {type(rid).__name__}")
    dialogue = _text(row, "dialogue", where)
    keys = ["summary"] if "summary" in row else sorted(k for k in row if k.startswith("summary") and k[7:].isdigit())
    if not keys:
        raise DataError(f"{where}: field 'summary' is missing; add the reference summary")
    summaries = tuple(_text(row, key, where) for key in keys)
    topic = row.get("topic", row.get("topic1", "")) or ""
    if not isinstance(topic, str):
        raise DataError(f"{where}: field 'topic' must be text, got {type(topic).__name__}")
    known = {"id", "fname", "dialogue", "topic", *keys} | {k for k in row if k.startswith("topic")}
    extra = {k: v for k, v in row.items() if k not in known} or None
    return Example(str(rid), dialogue, summaries, name, str(topic), extra)


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if value is None:
        raise DataError(f"{where}: field {key!r} is missing; add it or remove the row")
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be text, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field {key!r} is empty; fill it or remove the row")
    return value.strip()


def _decode(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")  # a BOM is harmless, drop it
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: bytes are not UTF-8; re-save the file as UTF-8") from None


def _jsonl_rows(path: Path):
    text = _decode(path)
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            yield from enumerate(json.loads(text), 1)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg}); fix the file") from None
        return
    for line, raw in enumerate(text.splitlines(), 1):
        if raw.strip():
            try:
                yield line, json.loads(raw)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line}: invalid JSON ({err.msg}); fix or remove the line") from None


def _csv_rows(path: Path):
    reader = csv.DictReader(_decode(path).splitlines(keepends=True), strict=True)
    try:
        if reader.fieldnames is None:  # reads the header now, so the line numbers below count from it
            return
    except csv.Error as err:
        raise DataError(f"{path}:1: broken CSV header ({err}); check its quoting") from None
    while True:
        start = reader.line_num + 1  # a quoted field can span lines: name the line the row starts on
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(
                f"{path}:{start}: broken CSV in the row starting here ({err}); "
                'a field with commas or line breaks must be quoted, and a quote inside it doubled ("")'
            ) from None
        if None in row or any(v is None for v in row.values()):
            raise DataError(
                f"{path}:{start}: the row has a different number of columns than the header; check its quoting"
            )
        yield start, row


def _parquet_rows(path: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable parquet file ({err})") from None
    for number, row in enumerate(table.to_pylist(), 1):
        yield f"row {number}", row


def _load_from_hub(name: str, split: str, label: str) -> list[Example]:
    import datasets

    hub_split = {"validation": "validation", "train": "train", "test": "test"}.get(split, split)
    try:
        table = datasets.load_dataset(name, split=hub_split)
    except Exception as err:  # offline, unknown name, missing split: all are "can't get it"
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise DataError(
            f"cannot load dataset {name!r} split {split!r} from the Hugging Face Hub ({reason}); "
            f"set --data.{label} to a local folder of jsonl/csv/parquet files"
        ) from None
    return [to_example(row, f"{name}[{split}] row {i}", label) for i, row in enumerate(table, 1)]
