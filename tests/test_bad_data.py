"""Bad data fails before training with one line naming the file, the line or row, the field and the fix.

Each case writes a small data folder the way a user's export could go wrong, then checks the
exact place and advice in the message. Cases that are not errors (a BOM, an over-long dialogue)
check what happens instead: the data loads as intended, and what was cut or dropped is counted.
"""

from __future__ import annotations

import pytest
from conftest import ROOT

from datamodules.sources import DataError, load_split

GOOD = '{"id": "a", "dialogue": "#Person1#: hi", "summary": "They greet."}\n'

# name: (file name, file content, split, expected message after "<path>")
CASES = {
    "missing summary": (
        "train.jsonl",
        GOOD + '{"id": "b", "dialogue": "#Person1#: yo"}\n',
        "train",
        ":2: field 'summary' is missing; add the reference summary",
    ),
    "missing dialogue column": (
        "train.csv",
        "id,summary\na,ok\n",
        "train",
        ": no column 'dialogue' (dialogue); the file has columns id, summary; set data.sources.mine.columns.dialogue",
    ),
    "empty dialogue": (
        "train.jsonl",
        '{"id": "a", "dialogue": "", "summary": "x"}\n',
        "train",
        ":1: field 'dialogue' is empty; fill it or remove the row",
    ),
    "whitespace-only summary": (
        "train.jsonl",
        GOOD + '{"id": "b", "dialogue": "#P1#: yo", "summary": " \\n\\t "}\n',
        "train",
        ":2: field 'summary' is empty; fill it or remove the row",
    ),
    "invalid JSON line": (
        "train.jsonl",
        GOOD + '{"id": "b", "dialogue": "x", "summary": "y"\n',
        "train",
        ":2: invalid JSON (Expecting ',' delimiter); fix or remove the line",
    ),
    "invalid JSON array": (
        "dev.json",
        '[\n{"id": "a", "dialogue": "x", "summary": "y"},\n]\n',
        "validation",
        ":3: invalid JSON (Expecting value); fix the file",
    ),
    "unclosed CSV quote": (
        "train.csv",
        'id,dialogue,summary\na,hi,ok\nb,"#P1#: yo, there,fine\nc,x,y\n',
        "train",
        ":3: broken CSV in the row starting here (unexpected end of data); a field with commas",
    ),
    "text after a closing CSV quote": (
        "train.csv",
        'id,dialogue,summary\na,"#P1#: hi"there,ok\n',
        "train",
        ":2: broken CSV in the row starting here (',' expected after '\"')",
    ),
    "CSV row with too few columns": (
        "train.csv",
        'id,dialogue,summary\na,"line one\nline two",ok\nb,x\n',
        "train",
        ":4: the row has a different number of columns than the header; check its quoting",
    ),
    "non-UTF-8 bytes": (
        "train.jsonl",
        (GOOD + '{"id": "b", "dialogue": "caf\xe9", "summary": "y"}\n').encode("latin-1"),
        "train",
        ":2: bytes are not UTF-8; re-save the file as UTF-8",
    ),
    "dialogue is a number": (
        "train.jsonl",
        '{"id": "a", "dialogue": 42, "summary": "x"}\n',
        "train",
        ":1: field 'dialogue' must be text, got int",
    ),
    "summary is a list": (
        "train.jsonl",
        '{"id": "a", "dialogue": "x", "summary": ["y", "z"]}\n',
        "train",
        ":1: field 'summary' must be text, got list",
    ),
    "id is an object": (
        "train.jsonl",
        '{"id": {"n": 1}, "dialogue": "x", "summary": "y"}\n',
        "train",
        ":1: field 'id' must be text or a whole number, got dict",
    ),
    "topic is a list": (
        "train.jsonl",
        '{"id": "a", "dialogue": "x", "summary": "y", "topic": ["t"]}\n',
        "train",
        ":1: field 'topic' must be text, got list",
    ),
    "row is not an object": (
        "train.jsonl",
        GOOD + '["#Person1#: hi", "They greet."]\n',
        "train",
        ":2: expected an object with 'dialogue' and 'summary', got list",
    ),
    "missing id": (
        "train.jsonl",
        '{"dialogue": "x", "summary": "y"}\n',
        "train",
        ": no column 'id' or 'fname' (id); the file has columns dialogue, summary; set data.sources.mine.columns.id",
    ),
    "duplicate ids": (
        "train.jsonl",
        GOOD + "\n" + GOOD,
        "train",
        ":3: field 'id' repeats 'a' (first at line 1); make ids unique",
    ),
    "empty file": ("train.jsonl", "", "train", ": the file has no rows; add data or remove the file"),
    "blank lines only": ("train.jsonl", "\n  \n\n", "train", ": the file has no rows; add data or remove the file"),
    "CSV header only": (
        "train.csv",
        "id,dialogue,summary\n",
        "train",
        ": the file has no rows; add data or remove the file",
    ),
    "broken parquet": ("train.parquet", b"PAR1 this is not parquet", "train", ": not a readable parquet file"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_file_is_one_line_naming_file_line_field_and_fix(case, tmp_path):
    name, content, split, expected = CASES[case]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError) as info:
        load_split(str(tmp_path), split, "mine")
    message = str(info.value)
    assert message.startswith(f"{path}{expected}"), message
    assert "\n" not in message


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_utf8_bom_is_dropped_not_glued_to_the_first_field(suffix, tmp_path):
    text = GOOD if suffix == "jsonl" else 'id,dialogue,summary\na,"#Person1#: hi",They greet.\n'
    (tmp_path / f"train.{suffix}").write_bytes(b"\xef\xbb\xbf" + text.encode())
    [example] = load_split(str(tmp_path), "train", "mine")
    assert (example.id, example.dialogue, example.summary) == ("a", "#Person1#: hi", "They greet.")


def test_unknown_split_lists_the_known_ones(tmp_path):
    (tmp_path / "train.jsonl").write_text(GOOD)
    with pytest.raises(DataError, match=r"^unknown split 'training'; use one of train, validation, test, stress$"):
        load_split(str(tmp_path), "training", "mine")


def test_missing_file_folder_and_empty_folder_are_named_and_never_sent_to_the_hub(tmp_path):
    cases = {
        str(tmp_path / "gone.jsonl"): f"{tmp_path / 'gone.jsonl'}: file not found; check data.sources.mine.path",
        str(tmp_path / "gone"): f"{tmp_path / 'gone'}: no such folder or file; check data.sources.mine.path",
        str(
            tmp_path
        ): f"{tmp_path}: no data files (.jsonl, .json, .csv, .parquet) in this folder; check data.sources.mine.path",
    }
    (tmp_path / "notes.txt").write_text("not data")
    for source, expected in cases.items():
        with pytest.raises(DataError) as info:
            load_split(source, "train", "mine")
        assert str(info.value) == expected
    with pytest.raises(DataError, match=r"notes.txt: unsupported file type '.txt'; use one of .jsonl"):
        load_split(str(tmp_path / "notes.txt"), "train", "mine")


def test_two_files_for_one_split_is_ambiguous(tmp_path):
    (tmp_path / "a.train.jsonl").write_text(GOOD)
    (tmp_path / "b.train.jsonl").write_text(GOOD)
    with pytest.raises(DataError, match=r"found a.train.jsonl, b.train.jsonl; rename the files so each split has one$"):
        load_split(str(tmp_path), "train", "mine")


# ---- through the DataModule: over-long rows are cut or dropped, and counted -----------------------


def datamodule(tiny_phi, folder, max_length):
    from datamodules.dialogsum import DialogSumDataModule

    return DialogSumDataModule(tokenizer=tiny_phi, sources={"mine": str(folder)}, max_length=max_length)


def test_far_too_long_dialogue_is_cut_and_counted_and_its_summary_kept(tiny_phi, tmp_path):
    long = "#Person1#: " + "and then we talked about the weather again " * 1000  # ~9,000 tokens
    rows = [GOOD, f'{{"id": "long", "dialogue": "{long}", "summary": "They talk about the weather."}}\n']
    (tmp_path / "train.jsonl").write_text("".join(rows))
    (tmp_path / "dev.jsonl").write_text(GOOD)
    data = datamodule(tiny_phi, tmp_path, max_length=64)
    data.setup("fit")
    assert data.stats["train/examples"] == 2 and data.stats["train/truncated"] == 1
    cut = data.features["train"][1]
    assert len(cut["input_ids"]) == 64
    summary = data.tokenizer(" They talk about the weather.")["input_ids"] + [data.tokenizer.eos_token_id]
    assert [t for t in cut["labels"] if t != -100] == summary


def test_summary_longer_than_max_length_is_dropped_and_counted_and_all_dropped_is_an_error(tiny_phi, tmp_path):
    long_summary = "They talk. " * 40
    (tmp_path / "train.jsonl").write_text(
        GOOD + f'{{"id": "b", "dialogue": "#P1#: hi", "summary": "{long_summary}"}}\n'
    )
    (tmp_path / "dev.jsonl").write_text(f'{{"id": "c", "dialogue": "#P1#: hi", "summary": "{long_summary}"}}\n')
    data = datamodule(tiny_phi, tmp_path, max_length=64)
    with pytest.raises(
        DataError, match=r"^validation: all 1 examples were dropped .* data.max_length=64; raise --data.max_length$"
    ):
        data.setup("fit")
    assert data.stats["train/examples"] == 1 and data.stats["train/dropped"] == 1


# ---- through train.py: one `error:` line before any model loads ---------------------------------


@pytest.mark.parametrize(
    "content, expected",
    [
        (b'{"id": "a", "dialogue": "x", "summary": "y"}\n{"id": "b", "dialogue": "x"', ":2: invalid JSON"),
        (b'{"id": "a", "dialogue": "caf\xe9", "summary": "y"}\n', ":1: bytes are not UTF-8"),
        (
            b'{"id": "a", "dialogue": "x", "summary": "y"}\n{"id": "a", "dialogue": "x", "summary": "y"}\n',
            ":2: field 'id' repeats",
        ),
    ],
    ids=["invalid-json", "non-utf8", "duplicate-id"],
)
def test_train_py_reports_bad_data_as_one_error_line_before_loading_the_model(content, expected, tmp_path):
    from train import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_bytes(content)
    (tmp_path / "data" / "dev.jsonl").write_text(GOOD)
    with pytest.raises(SystemExit) as done:
        main(
            [
                "fit",
                "--config",
                str(ROOT / "configs" / "tiny.yaml"),
                "--model.model=/nonexistent/model",
                f"--data.sources={{mine: {{path: {tmp_path / 'data'}}}}}",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
            ]
        )
    assert str(done.value.code).startswith(f"error: {tmp_path / 'data' / 'train.jsonl'}{expected}")
