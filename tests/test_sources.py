"""Reading DialogSum and our own files; bad rows fail with file:line: field."""

from __future__ import annotations

import pytest
from conftest import DIALOGSUM

from datamodules.sources import DataError, load_split


def test_official_dialogsum_files_load_as_they_are():
    train = load_split(str(DIALOGSUM), "train", "dialogsum")
    dev = load_split(str(DIALOGSUM), "validation", "dialogsum")
    test = load_split(str(DIALOGSUM), "test", "dialogsum")
    assert (len(train), len(dev), len(test)) == (12460, 500, 500)
    assert all(len(e.summaries) == 3 for e in test)  # summary1..3 all kept
    assert test[0].id == "test_0" and train[0].summary.startswith("Mr. Smith's getting a check-up")


def test_missing_field_names_file_line_and_field(tmp_path):
    path = tmp_path / "mine.train.jsonl"
    path.write_text(
        '{"id": "a", "dialogue": "#Person1#: hi", "summary": "x"}\n{"id": "b", "dialogue": "#Person1#: yo"}\n'
    )
    with pytest.raises(DataError, match=rf"^{path}:2: field 'summary' is missing"):
        load_split(str(tmp_path), "train", "mine")


def test_empty_summary_is_an_error_with_its_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('id,dialogue,summary\na,"#Person1#: hi",ok\nb,"#Person1#: yo","   "\n')
    with pytest.raises(DataError, match=rf"^{path}:3: field 'summary' is empty"):
        load_split(str(path), "train", "mine")


def test_csv_and_parquet_read_like_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": "a", "dialogue": "#Person1#: hi\n#Person2#: hello", "summary": "They greet."}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "dev.parquet")
    (tmp_path / "train.csv").write_text('id,dialogue,summary\na,"#Person1#: hi\n#Person2#: hello",They greet.\n')
    assert load_split(str(tmp_path), "validation", "x")[0].dialogue == rows[0]["dialogue"]
    assert load_split(str(tmp_path), "train", "x")[0].dialogue == rows[0]["dialogue"]


def test_hub_name_offline_is_one_actionable_line():
    with pytest.raises(DataError) as info:
        load_split("knkarthick/dialogsum", "train", "dialogsum")
    message = str(info.value)
    assert "\n" not in message and "set --data.sources.dialogsum.path to a local folder" in message
