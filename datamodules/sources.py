"""Data sources: dialogue/summary records from local files or the Hugging Face Hub.

A source is configuration (:class:`DataSource`: a path or Hub name, a weight, the column names);
``data.sources`` maps each source's name to one. Every reader returns :class:`Example` objects and
validates each row as it reads it, so a missing column or a bad row fails with ``file:line: field``
before any model is loaded.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
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


@dataclass
class Columns:
    """Which column of a source's files holds what.

    Args:
        id: the example id; a list names alternatives, the first one a file has is used.
        dialogue: the conversation.
        summary: the reference summary; a list names several references (the first is the training
            target). A file without a column of this name uses its numbered ones (``summary1``,
            ``summary2``, ...), as DialogSum's test split has.
        topic: an optional topic (numbered ones too); None ignores topics.
    """

    id: str | list[str] = field(default_factory=lambda: ["id", "fname"])
    dialogue: str = "dialogue"
    summary: str | list[str] = "summary"
    topic: str | None = "topic"


@dataclass
class DataSource:
    """One data set: where it is, how much of it training sees, and its column names.

    Args:
        path: a Hub dataset name, a folder of data files whose names carry the split
            (``dialogsum.train.jsonl``, ``dev.csv``, ...), or one file that serves every split.
        weight: copies of each training example an epoch (0.5 keeps a seeded half, 0 none).
        columns: the column names of this source's files.
    """

    path: str
    weight: float = 1.0
    columns: Columns = field(default_factory=Columns)


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


def load_split(source: DataSource | str, split: str, name: str) -> list[Example]:
    """Load one split of a source (a bare path takes the default columns): a folder, a file or a Hub name."""
    source = DataSource(source) if isinstance(source, str) else source
    if split not in SPLIT_ALIASES:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLIT_ALIASES)}")
    path = Path(source.path).expanduser()
    if path.is_dir():
        return read_file(find_split_file(path, split, name), name, source.columns)
    if path.suffix in DATA_SUFFIXES:
        if not path.exists():
            raise DataError(f"{path}: file not found; check data.sources.{name}.path")
        return read_file(path, name, source.columns)
    if path.is_file():
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(DATA_SUFFIXES)}")
    if looks_local(source.path):
        raise DataError(f"{path}: no such folder or file; check data.sources.{name}.path")
    return _load_from_hub(source, split, name)


def has_split(source: DataSource, split: str) -> bool:
    """Whether a local folder source has a file for ``split`` (e.g. ``stress.jsonl``); Hub sources don't."""
    path = Path(source.path).expanduser()
    return path.is_dir() and any(split_tokens(p) & set(SPLIT_ALIASES[split]) for p in data_files(path))


def looks_local(source: str) -> bool:
    """A path, not a Hub name: Hub names are ``name`` or ``owner/name``, never absolute or relative."""
    return source.startswith(("/", ".", "~", "\\")) or source.count("/") > 1 or "\\" in source


def data_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.suffix in DATA_SUFFIXES]


def split_tokens(path: Path) -> set[str]:
    """The words of a file name: ``dialogsum.dev.jsonl`` -> {dialogsum, dev}."""
    return set(path.stem.lower().replace("-", ".").replace("_", ".").split("."))


def find_split_file(folder: Path, split: str, name: str = "") -> Path:
    """The one data file in ``folder`` whose name carries the split, e.g. ``dialogsum.dev.jsonl``."""
    files = data_files(folder)
    if not files:
        raise DataError(
            f"{folder}: no data files ({', '.join(DATA_SUFFIXES)}) in this folder; check data.sources.{name}.path"
        )
    matches = [p for p in files if split_tokens(p) & set(SPLIT_ALIASES[split])]
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        raise DataError(
            f"{folder}: expected one file for split {split!r} (a name containing "
            f"{' or '.join(SPLIT_ALIASES[split])}), found {found}; rename the files so each split has one"
        )
    return matches[0]


def read_file(path: Path, name: str, columns: Columns | None = None) -> list[Example]:
    """Read a jsonl/json/csv/parquet file, validating its columns (first row) and then every row."""
    columns = columns or Columns()
    rows = {".jsonl": _jsonl_rows, ".json": _jsonl_rows, ".csv": _csv_rows, ".parquet": _parquet_rows}
    examples, seen = [], {}
    for line, row in rows[path.suffix](path):
        where = f"{path}:{line}" if isinstance(line, int) else f"{path}: {line}"
        if not examples:
            check_columns(row, columns, path, name)
        example = to_example(row, where, name, columns)
        if example.id in seen:
            raise DataError(
                f"{where}: field 'id' repeats {example.id!r} (first at {seen[example.id]}); make ids unique"
            )
        seen[example.id] = f"line {line}" if isinstance(line, int) else line
        examples.append(example)
    if not examples:
        raise DataError(f"{path}: the file has no rows; add data or remove the file")
    return examples


def _names(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _numbered(row: dict, base: str) -> list[str]:
    """``base`` itself if the row has it, else its numbered columns in order (summary1, summary2, ...)."""
    if base in row:
        return [base]
    found = [k for k in row if k.startswith(base) and k[len(base) :].isdigit()]
    return sorted(found, key=lambda k: int(k[len(base) :]))


def summary_keys(row: dict, columns: Columns) -> list[str]:
    """The row's reference columns: the configured list as given, or one name with its numbered forms."""
    names = _names(columns.summary)
    return names if len(names) > 1 else _numbered(row, names[0])


def check_columns(row: dict, columns: Columns, path: Path, name: str) -> None:
    """Fail in one line when a file lacks a configured column, naming the columns it has."""
    if not isinstance(row, dict):
        return  # to_example names the row
    wanted = [("id", _names(columns.id))] if not any(k in row for k in _names(columns.id)) else []
    wanted += [("dialogue", [columns.dialogue])] if columns.dialogue not in row else []
    names = _names(columns.summary)
    missing = [n for n in names if n not in row] if len(names) > 1 else ([] if summary_keys(row, columns) else names)
    wanted += [("summary", missing)] if missing else []
    if wanted:
        role, cols = wanted[0]
        raise DataError(
            f"{path}: no column {' or '.join(map(repr, cols))} ({role}); the file has columns "
            f"{', '.join(map(str, row))}; set data.sources.{name}.columns.{role}"
        )


def to_example(row: dict, where: str, name: str, columns: Columns | None = None) -> Example:
    """Validate one raw row and turn it into an :class:`Example` (column names from ``columns``)."""
    columns = columns or Columns()
    if not isinstance(row, dict):
        wanted = f"{columns.dialogue!r} and {_names(columns.summary)[0]!r}"
        raise DataError(f"{where}: expected an object with {wanted}, got {type(row).__name__}")
    id_key = next((k for k in _names(columns.id) if k in row), _names(columns.id)[0])
    rid = row.get(id_key)
    if rid is None or str(rid).strip() == "":
        raise DataError(f"{where}: field {id_key!r} (the id) is empty; give every row an id")
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        raise DataError(f"{where}: field {id_key!r} must be text or a whole number, got {type(rid).__name__}")
    dialogue = _text(row, columns.dialogue, where)
    keys = summary_keys(row, columns)
    if not keys:
        raise DataError(f"{where}: field {_names(columns.summary)[0]!r} is missing; add the reference summary")
    summaries = tuple(_text(row, key, where) for key in keys)
    topic_keys = _numbered(row, columns.topic) if columns.topic else []
    topic = (row.get(topic_keys[0]) if topic_keys else "") or ""
    if not isinstance(topic, str):
        raise DataError(f"{where}: field {topic_keys[0]!r} must be text, got {type(topic).__name__}")
    known = {*_names(columns.id), columns.dialogue, *keys, *topic_keys} | {
        k for k in row if columns.topic and k.startswith(columns.topic)
    }
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


def _load_from_hub(source: DataSource, split: str, name: str) -> list[Example]:
    import datasets

    try:
        table = datasets.load_dataset(source.path, split=split)
    except Exception as err:  # offline, unknown name, missing split: all are "can't get it"
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise DataError(
            f"cannot load dataset {source.path!r} split {split!r} from the Hugging Face Hub ({reason}); "
            f"set --data.sources.{name}.path to a local folder of jsonl/csv/parquet files"
        ) from None
    rows = iter(table)
    first = next(rows, None)
    if first is not None:
        check_columns(first, source.columns, Path(f"{source.path}[{split}]"), name)
    return [to_example(row, f"{source.path}[{split}] row {i}", name, source.columns) for i, row in enumerate(table, 1)]
