"""Lightning DDP on CPU: 2 processes over gloo run the real entry point on the tiny 4-bit Phi.

The same-training check compares 2 processes x batch 2 x 2 accumulated batches with 1 process x
batch 2 x 4 accumulated, not with 1 process x batch 8. Our loss is a mean over each batch's target
tokens, so a batch of 8 weighs its rows by their token counts across all 8, while DDP averages 2-row
means; and the length-grouped sampler cuts other batches for batch 8. With accumulation both runs
train the same 2-row batches (global batches 4j .. 4j + 3 make optimizer step j) and average the
same four per-batch means, so only floating-point summation order can differ. The 4-bit layers
compute in float32 for this comparison: in bfloat16 an ulp of summation-order noise can flip an
activation's rounding (a 2^-8 change), which a few steps grow to ~1% of the weights' movement.
Gradient checkpointing is on, as DDP with accumulation and checkpointing is what breaks when it breaks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import DIALOGSUM, ROOT, fit_tiny, scalars
from lightning.pytorch.callbacks import Callback

from datamodules.batching import LengthGroupedBatchSampler, ResumableDataLoader

DDP_CONFIG = ROOT / "configs" / "ddp.yaml"
SAVE_AT = 5  # optimizer steps between checkpoints: the resume tests stop here, mid-epoch
TRAIN = 56  # examples: 28 batches of 2, 7 optimizer steps of 8 examples in one epoch
COMMON = [
    f"--data.train_limit={TRAIN}",
    "--data.batch_size=2",
    "--data.val_limit=2",
    "--trainer.limit_val_batches=1",
    "--trainer.max_steps=-1",
    "--trainer.max_epochs=1",
    "--model.lora.dropout=0",  # dropout masks would differ between the runs
    "--model.gradient_checkpointing=true",
    "--model.dtype=float32",  # see the module docstring
]


class Probe(Callback):
    """Runs inside train.py: writes what this rank trained on and its final LoRA weights."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.batches: list[list[int]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        import bitsandbytes as bnb

        layers = [m for m in pl_module.modules() if isinstance(m, bnb.nn.Linear4bit)]
        self.repacking_off = bool(layers) and not any(m.support_avx512bf16_for_cpu for m in layers)
        self.index = {tuple(f["input_ids"]): i for i, f in enumerate(trainer.datamodule.features["train"])}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        rows = zip(batch["input_ids"].tolist(), batch["attention_mask"].sum(1).tolist(), strict=True)
        self.batches.append([self.index[tuple(ids[:n])] for ids, n in rows])

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        rank = trainer.global_rank
        lora = {n: p.detach().cpu() for n, p in pl_module.named_parameters() if p.requires_grad}
        torch.save(lora, self.folder / f"rank{rank}.pt")
        report = {"world_size": trainer.world_size, "repacking_off": self.repacking_off, "batches": self.batches}
        (self.folder / f"rank{rank}.json").write_text(json.dumps(report))


def callbacks_config(tmp_path: Path, probe: Path) -> Path:
    """A config with the figure on, a checkpoint every SAVE_AT steps and the probe."""
    config = {
        "trainer": {
            "callbacks": [
                "callbacks.cadence.OptimizerStepCadence",
                {"class_path": "callbacks.losses.LossCurves", "init_args": {"figure": True}},
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"save_last": True, "every_n_train_steps": SAVE_AT, "save_top_k": 0},
                },
                {"class_path": "test_ddp.Probe", "init_args": {"folder": str(probe)}},
            ]
        }
    }
    path = tmp_path / f"callbacks-{probe.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ddp_strategy() -> str:
    """The DDP strategy exactly as configs/ddp.yaml sets it, as a CLI value."""
    return json.dumps(yaml.safe_load(DDP_CONFIG.read_text())["trainer"]["strategy"])


def fit_ddp(tiny_phi: str, run_dir: Path, probe: Path, *overrides: str, timeout: int = 300) -> None:
    """``train.py fit`` with 2 CPU processes; Lightning starts the second from this command line."""
    launch_ddp(
        "fit",
        "--config", str(ROOT / "configs" / "tiny.yaml"),
        "--config", str(callbacks_config(run_dir.parent, probe)),
        "--model.model", tiny_phi,
        "--data.sources.dialogsum.path", str(DIALOGSUM),
        "--trainer.logger.init_args.save_dir", str(run_dir),
        *COMMON, "--trainer.accumulate_grad_batches=2", *overrides, timeout=timeout,
    )  # fmt: skip


def launch_ddp(*train_args: str, timeout: int = 300) -> None:
    """``train.py <train_args>`` on 2 CPU processes (gloo) with the DDP config's strategy."""
    args = [sys.executable, str(ROOT / "train.py"), *train_args]
    args += ["--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.strategy={ddp_strategy()}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])  # train.py imports test_ddp.Probe
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # both ranks: a hung collective never returns
        out, _ = proc.communicate()
        pytest.fail(f"DDP run hung for {timeout} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-4000:]


def fit_one(tiny_phi: str, run_dir: Path, probe: Path, *overrides: str):
    """The same job in one process (in this one), batch 2 x 4 accumulated: the same global batch."""
    args = ["--config", str(callbacks_config(run_dir.parent, probe)), *COMMON]
    return fit_tiny(tiny_phi, run_dir, *args, "--trainer.accumulate_grad_batches=4", *overrides)


def read_probe(folder: Path) -> list[dict]:
    ranks = sorted(folder.glob("rank*.json"))
    return [json.loads(p.read_text()) | {"lora": torch.load(p.with_suffix(".pt"))} for p in ranks]


def assert_same_weights(got: dict, want: dict) -> None:
    """``got`` equals ``want`` to float rounding, measured against how far training moved them."""
    assert set(got) == set(want)
    moved = max(want[k].abs().max().item() for k in want if "lora_B" in k)  # PEFT starts B at zero
    assert moved > 1e-3, "training did not move the adapters; the comparison would prove nothing"
    off = max((got[k] - want[k]).abs().max().item() for k in want)
    assert off < 1e-3 * moved, (off, moved)


@pytest.fixture(scope="module")
def one_process(tiny_phi, tmp_path_factory) -> dict:
    """One process, a whole epoch: what it trained at each step, its final adapter weights, its run."""
    root = tmp_path_factory.mktemp("one")
    cli = fit_one(tiny_phi, root / "run", root / "probe")
    (probe,) = read_probe(root / "probe")
    assert cli.trainer.global_step == TRAIN // 8
    return probe | {"run": Path(cli.trainer.log_dir)}


# ---- fast: the data position across world sizes, without processes -----------------------------


@pytest.mark.parametrize(("before", "after", "per_rank"), [(2, 1, 5), (1, 2, 7), (2, 3, 4), (3, 2, 5), (2, 3, 12)])
def test_resume_position_maps_to_a_new_world_size(before: int, after: int, per_rank: int):
    lengths = [(i * 37) % 200 + 10 for i in range(96)]  # 24 batches of 4: no rank padding for 1, 2, 3 ranks

    def loaders(ranks: int, done: int, moved: list[int]) -> list[ResumableDataLoader]:
        samplers = [
            LengthGroupedBatchSampler(lengths, 4, group_batches=3, seed=1, num_replicas=ranks, rank=r)
            for r in range(ranks)
        ]
        return [
            ResumableDataLoader(
                range(96), batch_sampler=s, collate_fn=list, progress=lambda: done, set_progress=moved.append
            )
            for s in samplers
        ]

    old = loaders(before, per_rank, [])
    trained = [i for loader in old for batch in list(loader)[:per_rank] for i in batch]
    state = old[0].state_dict()
    moved: list[int] = []
    new = loaders(after, 0, moved)
    for loader in new:
        loader.load_state_dict(state)
    rest = [i for loader in new for batch in loader for i in batch]
    assert len(set(trained) | set(rest)) == len(trained) + len(rest)  # no example twice in the epoch
    left_out = 96 - len(trained) - len(rest)
    assert 0 <= left_out < 4 * after  # fewer than one global batch per new rank
    assert left_out == 0 or (before * per_rank) % after != 0
    assert moved == ([] if new[0].batch_sampler.skip == per_rank else [new[0].batch_sampler.skip] * after)
    assert all(len(loader) == 96 // 4 // after for loader in new)  # the loop counts the skipped batches itself


def test_a_resumed_position_holds_only_in_its_own_epoch():
    lengths = [(i * 37) % 200 + 10 for i in range(96)]
    epoch = [0]
    loader = ResumableDataLoader(
        range(96), batch_sampler=LengthGroupedBatchSampler(lengths, 4, seed=1), collate_fn=list,
        progress=lambda: 0, loop_epoch=lambda: epoch[0],
    )  # fmt: skip
    full = list(loader)
    loader.load_state_dict({"epoch": 0, "batches_done": 10})  # a checkpoint from before world_size was saved
    assert list(loader) == full[10:]
    epoch[0] = 1  # Lightning moves to the next epoch; it never calls set_epoch on a batch sampler
    second = list(loader)
    assert len(second) == 24 and second != full  # the whole next epoch, in a new order


def test_ddp_overlay_changes_only_the_strategy_of_the_job_it_is_layered_on(capsys):
    from train import main

    def printed(*configs: Path) -> dict:
        with pytest.raises(SystemExit):
            main(["fit", *[a for c in configs for a in ("--config", str(c))], "--print_config"])
        return yaml.safe_load(capsys.readouterr().out)

    single = printed(ROOT / "configs" / "phi2_qlora.yaml")
    ddp = printed(ROOT / "configs" / "phi2_qlora.yaml", DDP_CONFIG)
    strategy = ddp["trainer"].pop("strategy")
    assert strategy["class_path"].endswith("DDPStrategy")
    assert strategy["init_args"]["find_unused_parameters"] is False
    assert ddp["trainer"].pop("devices") == "auto" and single["trainer"].pop("devices") == 1
    single["trainer"].pop("strategy")
    assert ddp == single  # everything else: the same job, so results compare
    assert ddp["trainer"]["use_distributed_sampler"] is False  # our sampler shards by rank itself


# ---- 2 processes ---------------------------------------------------------------------------------


def test_two_processes_match_one_and_split_the_data(tiny_phi, tmp_path, one_process):
    fit_ddp(tiny_phi, tmp_path / "run", tmp_path / "probe")
    ranks = read_probe(tmp_path / "probe")
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(r["repacking_off"] for r in ranks)  # the bitsandbytes CPU hazard is off on every rank

    seen = [[i for batch in r["batches"] for i in batch] for r in ranks]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(TRAIN))  # disjoint halves covering the epoch
    lengths = [len(b) for r in ranks for b in r["batches"]]
    assert lengths == [2] * (TRAIN // 2)
    # Optimizer step j: the two ranks' two batches each are the four one process accumulated.
    step = lambda batches, j, n: sorted(i for b in batches[n * j : n * j + n] for i in b)  # noqa: E731
    ddp = [step(ranks[0]["batches"], j, 2) + step(ranks[1]["batches"], j, 2) for j in range(TRAIN // 8)]
    assert [sorted(s) for s in ddp] == [step(one_process["batches"], j, 4) for j in range(TRAIN // 8)]

    assert_same_weights(ranks[1]["lora"], ranks[0]["lora"])  # DDP kept ranks equal
    assert_same_weights(ranks[0]["lora"], one_process["lora"])

    # Rank 0 alone wrote the run: one version, one event file, one figure, one adapter.
    runs = sorted((tmp_path / "run" / "tiny").iterdir())
    assert [r.name for r in runs] == ["version_0"]
    assert len(list(runs[0].rglob("events.out.tfevents.*"))) == 1
    assert (runs[0] / "learning_curve.png").is_file()
    assert (runs[0] / "adapter" / "adapter_model.safetensors").is_file()
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)])
def test_resume_on_another_number_of_processes(tiny_phi, tmp_path, one_process, first: int, then: int):
    run = tmp_path / "run"
    stop = [f"--trainer.max_steps={SAVE_AT}"]
    resume = ["--ckpt_path=last"]
    if first == 2:
        fit_ddp(tiny_phi, run, tmp_path / "before", *stop)
        fit_one(tiny_phi, run, tmp_path / "after", *resume)
    else:
        fit_one(tiny_phi, run, tmp_path / "before", *stop)
        fit_ddp(tiny_phi, run, tmp_path / "after", *resume)
    before, after = read_probe(tmp_path / "before"), read_probe(tmp_path / "after")
    assert [r["world_size"] for r in after] == [then] * then

    trained = [i for r in before + after for batch in r["batches"] for i in batch]
    assert sorted(trained) == list(range(TRAIN))  # the epoch finishes where it stopped, nothing twice
    assert sum(len(r["batches"]) for r in after) == TRAIN // 2 - 4 * SAVE_AT
    assert_same_weights(after[0]["lora"], one_process["lora"])
    assert [r.name for r in (run / "tiny").iterdir()] == ["version_0"]  # the resumed run logs on


@pytest.mark.slow
def test_test_metrics_on_two_processes_match_one_and_are_written_once(one_process, tmp_path):
    from train import main

    callback = {
        "class_path": "callbacks.test_metrics.TestGenerationMetrics",
        "init_args": {"metrics": ["rouge", "length"], "limit": 5, "max_new_tokens": 6},
    }
    run = one_process["run"]
    args = ["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
            "--trainer.limit_test_batches=1", f"--trainer.callbacks+={json.dumps(callback)}"]  # fmt: skip
    launch_ddp(*args, "--trainer.logger.init_args.save_dir", str(tmp_path / "ddp"))
    main([*args, "--trainer.logger.init_args.save_dir", str(tmp_path / "one")])

    ddp, one = (list((tmp_path / name).rglob("test_summaries.jsonl")) for name in ("ddp", "one"))
    assert len(ddp) == 1  # rank 0 alone wrote it
    # Each rank decoded its share (dialogues 0, 2, 4 and 1, 3); gathered, they are one process's.
    assert ddp[0].read_text() == one[0].read_text()
    assert len(ddp[0].read_text().splitlines()) == 5
    assert scalars(tmp_path / "ddp", "test/rouge1") == scalars(tmp_path / "one", "test/rouge1")
