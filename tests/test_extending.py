"""docs/extending.md's three examples, run as written: a module subclass, a YAML data source, an outside metric.

The code blocks are read from the document, so the document and this test cannot drift apart.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import DIALOGSUM, ROOT, fit_tiny

DOC = ROOT / "docs" / "extending.md"


def write_examples(folder: Path) -> Path:
    """Each code block of the document whose first line names a ``my_lab/`` file, written there."""
    blocks = re.findall(r"```(?:python|yaml)\n# (my_lab/\S+)\n(.*?)```", DOC.read_text(), flags=re.S)
    assert {name for name, _ in blocks} == {"my_lab/eos_weight.py", "my_lab/notes.yaml", "my_lab/metrics.py"}
    (folder / "my_lab").mkdir()
    (folder / "my_lab" / "__init__.py").write_text("")
    for name, body in blocks:
        (folder / name).write_text(body)
    return folder


def write_notes(folder: Path, summary_column: str = "notes") -> None:
    """DialogSum rows renamed to uid/conversation/notes, one CSV per split."""
    from datamodules.sources import load_split

    folder.mkdir(parents=True)
    for split, file_split, count in (("train", "train", 24), ("validation", "dev", 4), ("test", "test", 4)):
        rows = load_split(str(DIALOGSUM), split, "dialogsum")[:count]
        with open(folder / f"notes.{file_split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["uid", "conversation", summary_column])
            writer.writerows([r.id, r.dialogue, r.summary] for r in rows)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The examples outside the project tree, importable as on PYTHONPATH, with the notes data."""
    folder = write_examples(tmp_path_factory.mktemp("outside"))
    write_notes(folder / "my_lab" / "notes")
    config = yaml.safe_load((folder / "my_lab" / "notes.yaml").read_text())
    config["data"]["init_args"]["sources"]["notes"]["path"] = str(folder / "my_lab" / "notes")
    (folder / "my_lab" / "notes.yaml").write_text(yaml.safe_dump(config))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def fit_and_eval(tiny_phi: str, lab: Path, out: Path, *overrides: str) -> dict:
    from eval.__main__ import main as evaluate

    fit_tiny(tiny_phi, out, "--config", str(lab / "my_lab" / "notes.yaml"), "--trainer.max_steps=2",
             "--model.max_new_tokens=8", *overrides)  # fmt: skip
    adapter = out / "tiny" / "version_0" / "adapter"
    return evaluate(["--adapter", str(adapter), "--limit", "3", "--stress", "none", "--batch_size", "3",
                     "--metrics", "rouge,length,my_lab.metrics:exact_match", "--no_progress"])  # fmt: skip


@pytest.fixture(scope="module")
def reports(tiny_phi, lab, tmp_path_factory):
    """The same 2-step run on the notes source, with QLoRAModule and with the doc's subclass."""
    plain = fit_and_eval(tiny_phi, lab, tmp_path_factory.mktemp("plain"))
    subclass = fit_and_eval(
        tiny_phi, lab, tmp_path_factory.mktemp("subclass"),
        "--model.class_path", "my_lab.eos_weight.EosWeightedQLoRA", "--model.init_args.eos_weight", "0.5",
    )  # fmt: skip
    return plain, subclass


def test_eval_measures_the_subclass_it_was_trained_with(reports):
    plain, subclass = reports
    assert plain["settings"]["model_class"] == "model.module.QLoRAModule"
    assert subclass["settings"]["model_class"] == "my_lab.eos_weight.EosWeightedQLoRA"
    config = yaml.safe_load(Path(subclass["settings"]["config"]).read_text())
    assert config["model"]["init_args"]["eos_weight"] == 0.5 and config["model"]["init_args"]["lora"]["r"] == 8
    # Same seed, data and steps: the base summaries agree, and the extra loss term changed the adapter.
    assert [r["base"] for r in plain["per_example"]] == [r["base"] for r in subclass["per_example"]]
    assert [r["fine_tuned"] for r in plain["per_example"]] != [r["fine_tuned"] for r in subclass["per_example"]]


def test_a_yaml_source_with_other_column_names_trains_and_is_reported_by_name(reports):
    plain, _ = reports
    assert {r["source"] for r in plain["per_example"]} == {"notes"} and len(plain["per_example"]) == 3
    from datamodules.sources import load_split

    dialogsum = load_split(str(DIALOGSUM), "test", "dialogsum")[:3]
    assert [r["references"] for r in plain["per_example"]] == [[e.summary] for e in dialogsum]  # the 'notes' column
    assert [r["id"] for r in plain["per_example"]] == [e.id for e in dialogsum]  # the 'uid' column


def test_an_outside_metric_is_scored_for_both_models_by_its_name(reports):
    plain, _ = reports
    for model in ("base", "fine_tuned"):
        assert plain["metrics"][model]["exact_summary"] == 0.0  # 8 tokens never equal a human summary
    assert "my_lab.metrics:exact_match" in plain["settings"]["metric_args"]["metrics"]


def test_a_missing_column_stops_fit_in_one_line_naming_the_file_and_its_columns(tmp_path, tiny_phi):
    write_notes(tmp_path / "notes", summary_column="summary")
    source = json.dumps({"notes": {"path": str(tmp_path / "notes"), "columns": {"id": "uid", "dialogue": "conversation",
                                                                              "summary": "notes"}}})  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs" / "tiny.yaml"),
         f"--model.model={tiny_phi}", f"--data.sources={source}", f"--trainer.logger.init_args.save_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert f"{tmp_path / 'notes' / 'notes.train.csv'}: no column 'notes' (summary)" in line
    assert "the file has columns uid, conversation, summary" in line
    assert "data.sources.notes.columns.summary" in line
    assert elapsed < 60  # before any model loads: seconds (most of it importing torch on a busy machine)
    assert not list(tmp_path.glob("tiny/version_*/checkpoints"))
