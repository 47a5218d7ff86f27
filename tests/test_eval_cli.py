"""``python -m eval``, the demo and the test-time callback on a tiny Phi fitted for a few steps (CPU, 4-bit)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import DIALOGSUM, ROOT, SHARED, fit_tiny, scalars
from test_eval_metrics import MINILM

STRESS_ROWS = 3
MAX_NEW = 8


@pytest.fixture(scope="module")
def tiny_run(tiny_phi, tmp_path_factory):
    """A tiny Phi fitted 4 steps: its run folder, with config.yaml, checkpoints/last.ckpt and adapter/."""
    root = tmp_path_factory.mktemp("eval-run")
    fit_tiny(tiny_phi, root, "--trainer.max_steps=4", "--model.max_new_tokens=8")
    run = root / "tiny" / "version_0"
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    return run


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    """One full evaluation through the adapter: 4 DialogSum test dialogues + 3 stress scenarios, every metric."""
    from eval.__main__ import main

    os.environ["NLTK_DATA"] = str(SHARED / "nltk_data")
    out = tmp_path_factory.mktemp("eval-out")
    report = main(
        ["--adapter", str(tiny_run / "adapter"), "--limit", "4",
         "--stress", str(ROOT / "data" / "enterprise" / "stress.jsonl"), "--stress_limit", str(STRESS_ROWS), "--batch_size", "2",
         "--bertscore_model", str(MINILM), "--out", str(out), "--no_progress"]
    )  # fmt: skip
    return report, out


def reference_summaries(tiny_phi: str, adapter, prompts: list[list[int]]) -> tuple[list[str], list[str]]:
    """Base and fine-tuned summaries made without our runner: a fresh 4-bit base, then PEFT's own loader."""
    import torch
    from peft import PeftModel

    from datamodules.tokenizer import load_tokenizer
    from model.generation import generate_summaries
    from model.loading import QuantArgs, load_base_model

    tok = load_tokenizer(tiny_phi)
    base = load_base_model(tiny_phi, torch.bfloat16, QuantArgs(), "sdpa")
    plain = generate_summaries(base, tok, prompts, MAX_NEW, 2)
    tuned = generate_summaries(PeftModel.from_pretrained(base, adapter), tok, prompts, MAX_NEW, 2)
    return plain, tuned


def test_reports_hold_every_metric_for_both_models(evaluated):
    report, out = evaluated
    names = {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "meteor", "bertscore_f1", "length_ratio"}
    for model in ("base", "fine_tuned"):
        assert set(report["metrics"][model]) == names
        assert all(0 <= v <= 100 for k, v in report["metrics"][model].items() if k != "length_ratio")
    for name, change in report["improvement"].items():
        assert change["absolute"] == pytest.approx(
            report["metrics"]["fine_tuned"][name] - report["metrics"]["base"][name]
        )
    saved = json.loads((out / "report.json").read_text())
    assert saved["metrics"] == report["metrics"] and len(saved["per_example"]) == 4
    assert len(saved["per_example"][0]["references"]) == 3  # DialogSum test: three human summaries
    table = (out / "metrics.md").read_text()
    assert "| ROUGE-Lsum |" in table and "| BERTScore F1 |" in table and "relative" in table

    with open(out / "samples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {"human", "base", "fine_tuned", "fine_tuned_rougeL"} <= set(rows[0])
    assert [r["fine_tuned"] for r in rows] == [e["fine_tuned"] for e in report["per_example"]]
    assert (out / "samples.md").read_text().count("\n| ") == 6  # header, rule, 4 examples
    html = (out / "samples.html").read_text()
    assert html.count("<details>") == 4 and "Fine-tuned" in html


def test_base_is_the_adapter_disabled_and_tuned_is_the_peft_adapter(evaluated, tiny_run, tiny_phi):
    report, _ = evaluated
    from datamodules.encoding import PromptEncoder
    from datamodules.prompts import PromptFormat
    from datamodules.sources import load_split
    from datamodules.tokenizer import load_tokenizer

    examples = load_split(str(DIALOGSUM), "test", "dialogsum")[:4]
    encoder = PromptEncoder(load_tokenizer(tiny_phi), PromptFormat(), 256)
    plain, tuned = reference_summaries(
        tiny_phi, tiny_run / "adapter", [encoder.prompt_ids(e.dialogue)[0] for e in examples]
    )
    assert [r["base"] for r in report["per_example"]] == plain
    assert [r["fine_tuned"] for r in report["per_example"]] == tuned
    assert plain != tuned  # four steps of LoRA changed what the model says


def test_stress_report_lists_each_scenario_with_the_failed_fact(evaluated):
    report, out = evaluated
    stress = report["stress"]
    assert stress["scenarios_total"] == STRESS_ROWS
    rows = [json.loads(line) for line in (ROOT / "data" / "enterprise" / "stress.jsonl").read_text().splitlines()]
    text = (out / "stress.md").read_text()
    assert text.count("ent_stress_") == STRESS_ROWS and "pass rate" in text
    for row, facts in zip(stress["scenarios"], rows, strict=False):
        assert row["id"] == facts["fname"]
        for model in ("base", "fine_tuned"):
            result = row["results"][model]
            said = result["summary"].lower()
            # Recomputed here from the summary and the file's facts, not read back from the report.
            assert result["missing"] == [f for f in facts["must_state"] if not any(x in said for x in f)]
            assert result["stated_wrongly"] == [f for f in facts["must_not_state"] if any(x in said for x in f)]
            assert result["passed"] == (not result["missing"] and not result["stated_wrongly"])
            for fact in result["missing"]:  # each failed fact is named on the scenario's line
                line = next(x for x in text.splitlines() if x.startswith(f"| {row['id']} "))
                assert f"missing {' / '.join(repr(f) for f in fact)}" in line


def test_checkpoint_and_adapter_give_the_same_summaries(evaluated, tiny_run, tmp_path):
    from eval.__main__ import main

    report, _ = evaluated
    again = main(
        ["--ckpt_path", "last", "--config", str(tiny_run / "config.yaml"),
         "--limit", "4", "--stress", "none", "--metrics", "rouge", "--batch_size", "4", "--out", str(tmp_path),
         "--no_progress"]
    )  # fmt: skip
    assert [r["fine_tuned"] for r in again["per_example"]] == [r["fine_tuned"] for r in report["per_example"]]
    assert again["metrics"]["fine_tuned"]["rouge1"] == pytest.approx(report["metrics"]["fine_tuned"]["rouge1"])
    assert "stress" not in again


def test_decoder_flag_static_gives_generates_summaries_and_is_recorded(evaluated, tiny_run, tmp_path):
    from eval.__main__ import main

    report, _ = evaluated
    assert report["settings"]["decoder"] == "auto"  # generate on CPU
    runs = {}
    for decoder in ("generate", "static"):
        runs[decoder] = main(
            ["--adapter", str(tiny_run / "adapter"), "--limit", "4", "--stress", "none",
             "--metrics", "length", "--batch_size", "3", "--decoder", decoder, "--out", str(tmp_path / decoder),
             "--no_progress"]
        )  # fmt: skip
        assert runs[decoder]["settings"]["decoder"] == decoder
        assert json.loads((tmp_path / decoder / "report.json").read_text())["settings"]["decoder"] == decoder
    for model in ("base", "fine_tuned"):  # 4 prompts in batches of 3: the static path fills the last one up
        static = [r[model] for r in runs["static"]["per_example"]]
        assert static == [r[model] for r in runs["generate"]["per_example"]]
        assert static == [r[model] for r in report["per_example"]]


def test_rescore_reproduces_the_report_and_mean_matches_eval_with_mean(evaluated, tiny_run, tmp_path):
    from eval.__main__ import main as evaluate
    from eval.rescore import main as rescore

    report, out = evaluated
    same = rescore([str(out / "report.json"), "--out", str(tmp_path / "same")])
    for model in ("base", "fine_tuned"):
        exact = {k: v for k, v in report["metrics"][model].items() if k != "bertscore_f1"}
        assert {k: same["metrics"][model][k] for k in exact} == exact
        # float32 encoder sums may differ in the last bits from run to run
        bertscore = report["metrics"][model]["bertscore_f1"]
        assert same["metrics"][model]["bertscore_f1"] == pytest.approx(bertscore, abs=1e-4)
    assert (tmp_path / "same" / "stress.md").read_text() == (out / "stress.md").read_text()
    assert (tmp_path / "same" / "samples.md").read_text() == (out / "samples.md").read_text()

    mean = evaluate(
        ["--adapter", str(tiny_run / "adapter"), "--limit", "4", "--stress", "none",
         "--metrics", "rouge,meteor", "--references", "mean", "--batch_size", "4", "--out", str(tmp_path / "mean"),
         "--no_progress"]
    )  # fmt: skip
    assert mean["settings"]["metric_args"]["references"] == "mean"
    assert "take the mean over each example's references" in (tmp_path / "mean" / "metrics.md").read_text()
    rescored = rescore([str(out / "report.json"), "--references", "mean", "--metrics", "rouge,meteor"])
    assert rescored["metrics"] == mean["metrics"]
    assert (out / "rescored-mean" / "report.json").is_file()


def test_bad_inputs_fail_in_one_line_before_loading(tiny_run, tmp_path):
    from eval.__main__ import main

    cases = {
        ("--adapter", str(tmp_path)): "adapter_config.json",
        (
            "--adapter",
            str(tiny_run / "adapter"),
            "--data.sources.dialogsum.path",
            str(tmp_path / "nope"),
            "--metrics",
            "rouge",
        ): "nope",
        ("--adapter", str(tiny_run / "adapter"), "--dialogsum", str(DIALOGSUM)): "--data.sources.dialogsum.path",
        ("--adapter", str(tiny_run / "adapter"), "--stres", "none"): "unknown option --stres",
        ("--adapter", str(tiny_run / "adapter"), "--bertscore_model", "no-org/no-encoder"): "--bertscore_model",
        ("--adapter", str(tiny_run / "adapter"), "--metrics", "rouge,blue"): "unknown metrics blue",
        ("--config", str(tiny_run / "config.yaml")): "--ckpt_path",
    }
    for argv, expected in cases.items():
        with pytest.raises(SystemExit) as err:
            main([*argv, "--stress", "none"])
        assert expected in str(err.value) and "\n" not in str(err.value), (argv, err.value)


def test_demo_answers_piped_input(tiny_run):
    dialogues = "#Person1#: Can we meet at 3?\n#Person2#: Make it 4.\n---\n#Person1#: Lunch?\n#Person2#: Sure.\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "eval.demo",
        "--adapter",
        str(tiny_run / "adapter"),
        "--json",
        "--model.max_new_tokens",
        "4",
    ]
    result = subprocess.run(cmd, input=dialogues, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["dialogue"].splitlines()[0] for a in answers] == ["#Person1#: Can we meet at 3?", "#Person1#: Lunch?"]
    assert all(set(a) == {"dialogue", "base", "fine_tuned"} for a in answers)


def test_demo_stop_bias_ends_both_summaries_sooner(tiny_run):
    import io

    from eval.demo import main

    def words(bias: str) -> tuple[int, int]:
        out = io.StringIO()
        main(["--adapter", str(tiny_run / "adapter"), "--json", "--model.max_new_tokens", "8", "--model.stop_bias", bias],
             stdin=io.StringIO("#Person1#: Can we meet at 3?\n#Person2#: Make it 4.\n"), stdout=out)  # fmt: skip
        answer = json.loads(out.getvalue())
        return len(answer["base"].split()), len(answer["fine_tuned"].split())

    assert min(words("0")) > 0  # this tiny random model ends nothing within 8 tokens unbiased
    assert words("1e4") == (0, 0)  # an overwhelming bias: each summary is its end token alone


def test_demo_side_by_side_columns(tiny_run):
    import io

    from eval.demo import main

    out = io.StringIO()
    main(
        ["--adapter", str(tiny_run / "adapter"), "--model.max_new_tokens", "4"],
        stdin=io.StringIO("#Person1#: Hi.\n"),
        stdout=out,
    )
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("BASE") and "| FINE-TUNED" in lines[1]


def test_train_test_logs_generation_metrics(tiny_run, tiny_phi, tmp_path):
    from train import main

    os.environ["NLTK_DATA"] = str(SHARED / "nltk_data")
    callback = {
        "class_path": "callbacks.test_metrics.TestGenerationMetrics",
        "init_args": {"metrics": ["rouge", "bleu", "meteor", "length"], "limit": 4, "compare_base": True},
    }
    main(
        ["test", "--config", str(tiny_run / "config.yaml"), "--ckpt_path", str(tiny_run / "checkpoints" / "last.ckpt"),
         "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.limit_test_batches=0.02",
         f"--trainer.callbacks+={json.dumps(callback)}"]
    )  # fmt: skip
    rouge = scalars(tmp_path, "test/rouge1")
    assert len(rouge) == 1 and 0 <= next(iter(rouge.values())) <= 100
    for tag in ("test/rougeLsum", "test/bleu", "test/meteor", "test/length_ratio", "test/base_rouge1", "test/loss"):
        assert scalars(tmp_path, tag), tag
    saved = [json.loads(line) for line in next(tmp_path.rglob("test_summaries.jsonl")).read_text().splitlines()]
    assert len(saved) == 4 and {"fine_tuned", "base", "references"} <= set(saved[0])


def test_eval_help_lists_the_decoders_without_loading_torch():
    code = (
        "import sys; from eval.__main__ import parser; from eval.calibrate import parser as calibrate; "
        "print(parser().format_help(), calibrate().format_help(), 'torch' in sys.modules, sep='@@')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    *helps, torch_loaded = out.split("@@")
    from model.generation import DECODERS  # what generate_summaries accepts

    assert all("  --decoder {" + ",".join(DECODERS) + "}" in h for h in helps) and torch_loaded.strip() == "False"


def test_calibrate_tries_each_bias_on_validation_and_picks_the_length_closest_to_target(tiny_run, tmp_path):
    from eval.__main__ import main as evaluate
    from eval.calibrate import main as calibrate

    common = ["--adapter", str(tiny_run / "adapter"), "--limit", "4", "--batch_size", "4", "--no_progress"]
    result = calibrate([*common, "--biases", "0,3,1e4", "--target", "0.5", "--out", str(tmp_path / "cal")])
    assert result["split"] == "validation" and result["examples"] == 4
    words = {row["stop_bias"]: row["words"] for row in result["rows"]}
    assert words[1e4] == 0 < words[3] <= words[0]  # an overwhelming bias: nothing but the end token
    ratios = {row["stop_bias"]: row["length_ratio"] for row in result["rows"]}
    assert result["stop_bias"] == min(ratios, key=lambda b: abs(ratios[b] - 0.5))
    assert "(chosen)" in (tmp_path / "cal" / "calibration.md").read_text()

    # The chosen bias given to eval (on the same split) reproduces the calibration's length ratio.
    report = evaluate([*common, "--split", "validation", "--stress", "none", "--metrics", "length",
                       "--model.stop_bias", str(result["stop_bias"]), "--out", str(tmp_path / "eval")])  # fmt: skip
    assert report["settings"]["stop_bias"] == result["stop_bias"]
    assert report["metrics"]["fine_tuned"]["length_ratio"] == pytest.approx(ratios[result["stop_bias"]])


def test_calibrate_rejects_bad_biases_in_one_line(tiny_run):
    from eval.calibrate import main as calibrate

    for biases in ("0,a", "1,1", ","):
        with pytest.raises(SystemExit) as err:
            calibrate(["--adapter", str(tiny_run / "adapter"), "--biases", biases])
        assert "--biases" in str(err.value) and "\n" not in str(err.value)
