"""Training telemetry: log cadence on the optimizer-step axis, smoothing, the figure, samples, HParams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, fit_tiny, scalars

# 250 optimizer steps of a tiny float model: 4-bit layers are not what these tests are about, and
# bitsandbytes' CPU kernels would triple the time.
FAST = [
    "--trainer.max_steps=250",
    "--trainer.log_every_n_steps=25",
    "--trainer.val_check_interval=100",
    "--trainer.limit_val_batches=1",
    "--data.max_length=64",
    "--data.batch_size=2",
    "--model.quant.load_in_4bit=false",
    "--model.dtype=float32",
    "--model.max_new_tokens=8",
]
TRAIN_STEPS = list(range(25, 251, 25))
VAL_STEPS = [100, 200]
# Every telemetry callback, the figure on, two samples and ROUGE on three dialogues.
CALLBACKS = """\
trainer:
  callbacks:
    - callbacks.cadence.OptimizerStepCadence
    - class_path: callbacks.losses.LossCurves
      init_args: {smooth_window: 6, figure: true}
    - callbacks.throughput.Throughput
    - lightning.pytorch.callbacks.LearningRateMonitor
    - callbacks.hyperparameters.RunHyperparameters
    - class_path: callbacks.samples.ValidationSamples
      init_args: {num_samples: 2, rouge_examples: 3}
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: a 64-wide model gains nothing from two, and on a busy machine each op
    would wait for the second thread to be scheduled (measured 30x slower under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tiny_phi, tmp_path_factory, one_thread):
    """One 250-step run with every telemetry callback; the tests below read what it wrote."""
    folder = tmp_path_factory.mktemp("telemetry")
    (folder / "callbacks.yaml").write_text(CALLBACKS)
    cli = fit_tiny(tiny_phi, folder, *FAST, "--config", str(folder / "callbacks.yaml"))
    return cli, Path(cli.trainer.log_dir)


def test_cadence_is_25_and_100_optimizer_steps(run):
    cli, log_dir = run
    assert cli.trainer.global_step == 250
    assert sorted(scalars(log_dir, "train/loss")) == TRAIN_STEPS
    assert sorted(scalars(log_dir, "val/loss")) == VAL_STEPS
    for tag in ("train/loss_smooth", "train/tokens_per_sec", "train/padding_fraction"):
        assert sorted(scalars(log_dir, tag)) == TRAIN_STEPS, tag
    # Lightning's own (LearningRateMonitor, the module's self.log) count steps from 0: step 25's values sit at 24.
    for tag in ("train/lr", "train/grad_norm"):
        assert sorted(scalars(log_dir, tag)) == [s - 1 for s in TRAIN_STEPS], tag
    assert all(v > 0 for v in scalars(log_dir, "train/tokens_per_sec").values())
    assert all(v > 0 for v in scalars(log_dir, "train/grad_norm").values())
    assert all(0 <= v < 1 for v in scalars(log_dir, "train/padding_fraction").values())
    assert scalars(log_dir, "train/lr")[249] == pytest.approx(5e-3)  # tiny.yaml's constant rate
    assert not scalars(log_dir, "hp_metric")  # Lightning's placeholder: the HParams tab has real metrics


@pytest.mark.slow
def test_cadence_counts_optimizer_steps_under_gradient_accumulation(tiny_phi, tmp_path):
    # 100 batches an epoch, 3 per step: every epoch ends on a partial window, so batch counts and
    # step counts drift apart at each epoch boundary; the cadence must follow steps regardless.
    cli = fit_tiny(tiny_phi, tmp_path, *FAST, "--trainer.accumulate_grad_batches=3")
    log_dir = cli.trainer.log_dir
    assert cli.trainer.global_step == 250
    assert sorted(scalars(log_dir, "train/loss")) == TRAIN_STEPS
    assert sorted(scalars(log_dir, "val/loss")) == VAL_STEPS
    # The logged loss is the loss, not the loss divided by accumulate_grad_batches.
    train, val = scalars(log_dir, "train/loss"), scalars(log_dir, "val/loss")
    assert abs(train[100] - val[100]) < 0.25 * val[100], (train[100], val[100])


def test_smoothed_curve_is_the_rolling_mean_of_logged_losses(run):
    from callbacks.curves import draw, read_run

    _, log_dir = run
    logged = scalars(log_dir, "train/loss")
    expected = pd.Series([logged[s] for s in sorted(logged)]).rolling(6, min_periods=1).mean().tolist()
    in_tensorboard = scalars(log_dir, "train/loss_smooth")
    assert [in_tensorboard[s] for s in sorted(in_tensorboard)] == pytest.approx(expected, rel=1e-6)

    fig = draw([read_run(log_dir)], window=6)
    lines = {line.get_gid(): line for line in fig.axes[0].get_lines() if line.get_gid()}
    smooth = next(line for gid, line in lines.items() if gid.endswith(":train/loss_smooth"))
    assert list(smooth.get_xdata()) == sorted(logged)
    assert list(smooth.get_ydata()) == pytest.approx(expected, rel=1e-9)
    assert expected[-1] != pytest.approx(logged[250])  # the smoothing did something
    val = next(line for gid, line in lines.items() if gid.endswith(":val/loss"))
    assert list(val.get_xdata()) == VAL_STEPS


def test_figure_is_written_and_redrawn_for_one_and_two_runs(run, tiny_phi, tmp_path):
    _, log_dir = run
    for name in ("learning_curve.png", "learning_curve.svg"):
        assert (log_dir / name).stat().st_size > 10_000, name
    assert (log_dir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"

    # The documented command, as a user runs it.
    out = tmp_path / "one.png"
    proc = subprocess.run(
        [sys.executable, "-m", "callbacks.curves", str(log_dir), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"

    # Two runs overlaid: a second, shorter one.
    other = fit_tiny(tiny_phi, tmp_path / "other", *FAST, "--trainer.max_steps=50", "--model.lora.r=4")
    from callbacks.curves import draw, find_runs, main

    both = tmp_path / "both.svg"
    assert main([str(log_dir), other.trainer.log_dir, "--out", str(both), "--labels", "r=8", "r=4"]) == [both]
    svg = both.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg[:1000]
    runs = find_runs([log_dir, other.trainer.log_dir])
    assert [sorted(r.train) for r in runs] == [TRAIN_STEPS, [25, 50]]
    gids = [line.get_gid() for line in draw(runs).axes[0].get_lines() if line.get_gid()]
    assert sum(g.endswith(":train/loss_smooth") for g in gids) == 2


def test_redraw_of_a_folder_without_events_says_so(tmp_path):
    from callbacks.curves import main

    with pytest.raises(SystemExit) as done:
        main([str(tmp_path), "--out", str(tmp_path / "x.png")])
    assert "no TensorBoard event files" in str(done.value.code)


def test_samples_and_rouge_at_every_validation(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, log_dir = run
    for tag in ("val/rouge1", "val/rougeL"):
        values = scalars(log_dir, tag)
        assert sorted(values) == VAL_STEPS, tag
        assert all(0 <= v <= 100 for v in values.values())
    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    texts = {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors("val/samples/text_summary")}
    assert sorted(texts) == VAL_STEPS
    page = texts[200]
    assert page.count("**Reference:**") == 2 and page.count("**Generated:**") == 2
    assert "    #Person1#:" in page  # the dialogue is shown, as a code block


def test_hparams_tab_holds_the_whole_config(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    _, log_dir = run
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["model.optimizer.lr"].number_value == pytest.approx(5e-3)
    assert hparams["data.batch_size"].number_value == 2
    assert hparams["trainer.accumulate_grad_batches"].number_value == 1
    assert hparams["model.optimizer"].string_value == "torch.optim.AdamW"


def test_progress_bar_shows_loss_and_tokens_per_second(run):
    cli, _ = run
    shown = cli.trainer.progress_bar_metrics
    assert "train/loss" in shown and shown["train/tokens_per_sec"] > 0


def test_resume_mid_window_continues_the_same_curves(tiny_phi, tmp_path):
    # Log every 4 steps, stop at 10: steps 9 and 10 are half a window when the run resumes.
    steps = [*FAST, "--trainer.max_steps=20", "--trainer.log_every_n_steps=4", "--trainer.val_check_interval=5"]
    whole = fit_tiny(tiny_phi, tmp_path / "whole", *steps)
    fit_tiny(tiny_phi, tmp_path / "split", *steps, "--trainer.max_steps=10")
    resumed = fit_tiny(tiny_phi, tmp_path / "split", *steps, "--ckpt_path=last")
    for tag, expected_steps in (
        ("train/loss", [4, 8, 12, 16, 20]),
        ("train/loss_smooth", [4, 8, 12, 16, 20]),
        ("val/loss", [5, 10, 15, 20]),
    ):
        full, split = scalars(whole.trainer.log_dir, tag), scalars(resumed.trainer.log_dir, tag)
        assert sorted(split) == expected_steps, tag
        assert split == pytest.approx(full, abs=1e-5), tag


def test_rolling_mean_rejects_a_bad_window():
    from callbacks.smoothing import rolling_mean

    assert rolling_mean([4.0, 2.0, 3.0], 2) == [4.0, 3.0, 2.5]
    with pytest.raises(ValueError, match="window"):
        rolling_mean([1.0], 0)


def test_warmup_cosine_spans_the_run_the_trainer_estimates(tiny_phi, tmp_path):
    import math

    schedule = '--model.scheduler={"class_path": "model.schedule.WarmupCosine", "init_args": {"warmup_steps": 5}}'
    cli = fit_tiny(tiny_phi, tmp_path, *FAST, "--trainer.max_steps=20", "--trainer.log_every_n_steps=1", schedule)
    lr = scalars(cli.trainer.log_dir, "train/lr")  # at each step's 0-based index, the rate that step used
    assert sorted(lr) == list(range(20))
    assert [lr[i] for i in range(6)] == pytest.approx([5e-3 * i / 5 for i in range(6)])  # from 0 to the peak
    # Cosine from the peak to the floor (min_ratio 0.1) at step 20, the Trainer's estimate: not the YAML's.
    floor = [5e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (i - 5) / 15))) for i in range(5, 20)]
    assert [lr[i] for i in range(5, 20)] == pytest.approx(floor)
