"""Packed batches: fixed shape, every example once, resumable; the loss and attention they feed are exact."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from conftest import DIALOGSUM, fit_tiny, scalars

from datamodules.batching import PackedBatchSampler, PackedRows, ResumableDataLoader, collate, collate_packed, pack_rows
from datamodules.dialogsum import DialogSumDataModule, packing_problems
from datamodules.encoding import IGNORE_INDEX, PromptEncoder
from datamodules.prompts import PromptFormat
from model.loading import LoraArgs
from model.module import QLoRAModule

ROWS, PACK = 8, 512


@pytest.fixture(scope="module")
def data(tiny_phi) -> DialogSumDataModule:
    dm = DialogSumDataModule(
        tokenizer=tiny_phi,
        sources={"dialogsum": str(DIALOGSUM)},
        train_limit=1500,
        max_length=512,
        max_tokens=ROWS * PACK,
        pack_length=PACK,
        num_workers=0,
    )
    dm.setup("fit")
    return dm


def examples_in(batch: dict) -> list[tuple]:
    """Each example of a packed batch as (input_ids, labels), checking positions and padding on the way."""
    found = []
    for row in range(batch["input_ids"].shape[0]):
        seq = batch["seq_ids"][row]
        pad = seq == -1
        assert (batch["labels"][row][pad] == IGNORE_INDEX).all() and (batch["attention_mask"][row][pad] == 0).all()
        assert not pad.any() or pad.all() or pad.nonzero().min() > (~pad).nonzero().max(), "padding ends the row"
        for number in seq.unique():
            if number < 0:
                continue
            cols = (seq == number).nonzero().flatten()
            assert torch.equal(cols, torch.arange(cols[0], cols[0] + len(cols)))  # contiguous
            assert torch.equal(batch["position_ids"][row, cols], torch.arange(len(cols)))
            found.append((tuple(batch["input_ids"][row, cols].tolist()), tuple(batch["labels"][row, cols].tolist())))
    return found


def test_packed_epoch_has_one_shape_and_every_example_once(data):
    batches = list(data.train_dataloader())
    assert {tuple(b["input_ids"].shape) for b in batches} == {(ROWS, PACK)}
    assert all(set(b) == {"input_ids", "labels", "attention_mask", "position_ids", "seq_ids"} for b in batches)
    features = data.features["train"]
    expected = Counter((tuple(f["input_ids"]), (IGNORE_INDEX, *f["labels"][1:])) for f in features)
    assert Counter(e for b in batches for e in examples_in(b)) == expected
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    assert real == sum(len(f["input_ids"]) for f in features)
    assert 1 - real / (len(batches) * ROWS * PACK) < 0.05  # DialogSum packs into 512-token rows with <5% padding
    assert {tuple(b["input_ids"].shape) for b in data.val_dataloader()} == {(ROWS, PACK)}


def test_packing_order_follows_seed_and_epoch(data):
    lengths = [len(f["input_ids"]) for f in data.features["train"]]
    sampler = PackedBatchSampler(lengths, PACK, ROWS, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert list(PackedBatchSampler(lengths, PACK, ROWS, seed=2)) != first
    assert all(sum(lengths[i] for i in row) <= PACK for batch in first for row in batch)


def test_resumed_packed_loader_gives_the_remaining_batches(data):
    features = data.features["train"]

    def sampler(**ranks) -> PackedBatchSampler:
        return PackedBatchSampler([len(f["input_ids"]) for f in features], PACK, ROWS, seed=3, **ranks)

    def loader(**ranks) -> ResumableDataLoader:
        pad = data.tokenizer.pad_token_id
        return ResumableDataLoader(
            PackedRows(features),
            batch_sampler=sampler(**ranks),
            collate_fn=lambda rows: collate_packed(rows, pad, ROWS, PACK),
            progress=lambda: 0,
        )

    whole = loader()
    whole.batch_sampler.set_epoch(1)
    expected = list(whole)
    resumed = loader()
    resumed.load_state_dict({"epoch": 1, "batches_done": 5, "world_size": 1})
    rest = list(resumed)
    assert len(rest) == len(expected) - 5
    assert all(torch.equal(a[k], b[k]) for a, b in zip(rest, expected[5:], strict=True) for k in a)
    # Two ranks share the epoch out; a run saved on 2 ranks after 3 batches each resumes on 1 at batch 6.
    ranks = [list(sampler(num_replicas=2, rank=r, drop_last=True)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(expected) // 2
    seen = [{i for batch in batches for row in batch for i in row} for batches in ranks]
    assert not seen[0] & seen[1]
    one = loader()
    one.load_state_dict({"epoch": 0, "batches_done": 3, "world_size": 2})
    assert one.batch_sampler.skip == 6


def test_an_example_longer_than_a_row_is_refused_with_what_to_do():
    with pytest.raises(ValueError, match="raise data.pack_length or lower data.max_length"):
        PackedBatchSampler([100, 600], pack_length=512, rows=4)
    with pytest.raises(ValueError, match="data.pack_length=256 is shorter than data.max_length=512"):
        DialogSumDataModule(max_length=512, max_tokens=4096, pack_length=256)
    assert packing_problems(512, None, 512) == [
        "data.max_tokens=None with data.pack_length=512: a packed batch is max_tokens // pack_length rows; "
        "set data.max_tokens to a multiple of data.pack_length"
    ]
    assert packing_problems(None, None, 512) == []


# ---- the model on packed rows ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_examples(tokenizer) -> list[dict]:
    """Nine real DialogSum examples cut to 128 tokens, as the DataModule encodes them."""
    encoder = PromptEncoder(tokenizer, PromptFormat(), max_length=128)
    rows = [json.loads(line) for line, _ in zip((DIALOGSUM / "dialogsum.dev.jsonl").open(), range(9), strict=False)]
    return [vars(encoder.encode(r["dialogue"], r["summary"])) for r in rows]


def packed_batch(examples: list[dict], pad_id: int, pack_length: int = 256) -> dict:
    lengths = [len(e["input_ids"]) for e in examples]
    rows = pack_rows(range(len(examples)), lengths, pack_length)
    assert any(len(row) > 1 for row in rows)  # the test means nothing unless rows are shared
    return collate_packed([[examples[i] for i in row] for row in rows], pad_id, len(rows) + 1, pack_length)


def build(tiny_phi: str, **options) -> QLoRAModule:
    torch.manual_seed(0)
    module = QLoRAModule(model=tiny_phi, lora=LoraArgs(r=4, alpha=8, dropout=0.0), **options)
    module.configure_model()
    for name, param in module.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero; make the adapters count
            param.data.normal_(0, 0.05)
    return module


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("compile", [False, "model"])
def test_packed_loss_equals_one_example_per_row(tiny_phi, short_examples, tokenizer, attn, compile):
    module = build(tiny_phi, dtype="float32", attn_implementation=attn, compile=compile)
    assert module.compiled_loss is None  # on CPU compile is ignored, the fixed-shape loss is not
    with torch.no_grad():
        packed = module.model_step(packed_batch(short_examples, tokenizer.pad_token_id))
        padded = module.model_step(collate(short_examples, tokenizer.pad_token_id))
        batch = packed_batch(short_examples, tokenizer.pad_token_id)
        unmasked = module.loss(batch["input_ids"], batch["labels"])  # rows as one long sequence each
    assert torch.allclose(packed, padded, rtol=1e-5), (packed, padded)
    assert not torch.allclose(unmasked, padded, rtol=1e-4)  # examples that see each other change it


def test_changing_one_example_leaves_the_others_logits_alone(tiny_phi, short_examples, tokenizer):
    module = build(tiny_phi, dtype="float32")
    batch = packed_batch(short_examples, tokenizer.pad_token_id)
    row = next(r for r in range(batch["seq_ids"].shape[0]) if batch["seq_ids"][r].max() >= 1)
    first, others = batch["seq_ids"][row] == 0, batch["seq_ids"][row] >= 1
    changed = batch["input_ids"].clone()
    changed[row, first] = torch.randint(100, 5000, (int(first.sum()),))

    def logits(ids: torch.Tensor, packed: bool = True) -> torch.Tensor:
        with torch.no_grad():
            hidden = module(ids, batch["position_ids"], batch["seq_ids"]) if packed else module(ids)
            return module.head(hidden)[row]

    before, after = logits(batch["input_ids"]), logits(changed)
    assert not torch.allclose(before[first], after[first], atol=1e-3)
    assert torch.allclose(before[others], after[others], atol=1e-5)
    # The same change reaches the other examples when the row is read as one sequence: the check can fail.
    assert not torch.allclose(logits(batch["input_ids"], False)[others], logits(changed, False)[others], atol=1e-3)


def test_fast_path_loss_equals_the_plain_transformers_loss(tiny_phi, short_examples, tokenizer):
    module = build(tiny_phi, dtype="bfloat16", compile="model")
    padded = collate(short_examples, tokenizer.pad_token_id)
    with torch.no_grad():
        fast = module.model_step(packed_batch(short_examples, tokenizer.pad_token_id))
        plain = module.model(
            input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], labels=padded["labels"]
        ).loss
    assert torch.allclose(fast.float(), plain.float(), rtol=1e-2), (fast, plain)


@pytest.mark.slow
def test_whole_model_compiles_to_one_graph_that_no_batch_recompiles(tiny_phi, data):
    """``compile: model``'s function traced by dynamo (aot_eager on CPU): one graph, no breaks, no recompiles."""
    from torch._dynamo.testing import CompileCounterWithBackend

    module = build(tiny_phi, dtype="bfloat16", compile="model")
    torch._dynamo.reset()
    compiles = CompileCounterWithBackend("aot_eager")
    loss = torch.compile(module.loss, backend=compiles)
    batches = iter(data.train_dataloader())
    for _ in range(3):
        batch = next(batches)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = loss(batch["input_ids"], batch["labels"], batch["position_ids"], batch["seq_ids"])
        value.backward()
        assert torch.isfinite(value)
    assert compiles.frame_count == 1  # a graph break or a recompile would add one


@pytest.mark.slow
def test_packed_compiled_config_trains_and_resumes_on_the_same_curve(tiny_phi, tmp_path):
    packed = ["--data.pack_length=256", "--data.max_tokens=1024", "--model.compile=model"]
    steps = ["--trainer.log_every_n_steps=1", "--trainer.val_check_interval=5", *packed]
    whole = fit_tiny(tiny_phi, tmp_path / "whole", *steps)
    fit_tiny(tiny_phi, tmp_path / "split", *steps, "--trainer.max_steps=10")
    resumed = fit_tiny(tiny_phi, tmp_path / "split", *steps, "--ckpt_path=last")
    full = scalars(whole.trainer.log_dir, "train/loss")
    split = scalars(resumed.trainer.log_dir, "train/loss")
    assert sorted(full) == sorted(split) == list(range(1, 21))
    assert all(abs(full[s] - split[s]) < 1e-5 for s in full), (full, split)
    assert sum(full[s] for s in range(16, 21)) < sum(full[s] for s in range(1, 6)) - 2.5  # the loss falls
