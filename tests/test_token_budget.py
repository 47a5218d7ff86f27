"""The default fits the GPU: data.max_tokens and gradient checkpointing chosen from free memory."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from datamodules.token_budget import AUTO, GIB, PHI2, ModelShape, choose, peak_bytes, resolve

PACK = 512


@pytest.mark.parametrize(
    ("free_gib", "tokens", "checkpointing"),
    [(12, 16384, True), (16, 16384, True), (24, 16384, True), (40, 9728, False), (80, 16384, False)],
)
def test_phi2_budget_for_each_card_fits_with_headroom(free_gib, tokens, checkpointing):
    chosen = choose(free_gib * GIB, PHI2, PACK)
    assert chosen == (tokens, checkpointing)
    assert chosen[0] % PACK == 0
    assert peak_bytes(PHI2, *chosen) <= 0.85 * free_gib * GIB


def test_estimates_match_the_measured_phi2_peaks():
    # bench/README.md, one H100: packed 512-token rows, compiled blocks, LoRA r=16 on every linear layer.
    for tokens, checkpointing, measured in ((8192, False, 28.1), (16384, False, 54.1), (16384, True, 9.6)):
        assert peak_bytes(PHI2, tokens, checkpointing) / GIB == pytest.approx(measured, abs=0.1)


def test_options_the_user_set_are_kept():
    # A budget the user set stays; checkpointing turns on only if it wouldn't fit without.
    assert choose(24 * GIB, PHI2, PACK, max_tokens=8192) == (8192, True)
    assert choose(80 * GIB, PHI2, PACK, max_tokens=8192) == (8192, False)
    # Checkpointing the user turned off: the budget shrinks to what fits without it, at least one row.
    assert choose(24 * GIB, PHI2, PACK, checkpointing=False) == (5632, False)
    assert choose(4 * GIB, PHI2, PACK, checkpointing=False) == (PACK, False)
    assert choose(80 * GIB, PHI2, PACK, max_tokens=4096, checkpointing=True) == (4096, True)


def test_a_smaller_model_gets_the_largest_budget_on_a_small_card(tiny_phi):
    shape = ModelShape.of(tiny_phi)
    assert shape.layers == 2 and shape.params < PHI2.params / 100
    assert choose(8 * GIB, shape, PACK) == (16384, False)
    assert ModelShape.of("microsoft/phi-2") == PHI2  # offline, a Hub name falls back to Phi-2's shape


def test_resolve_sets_checkpointing_on_the_module_and_prints_how_to_override(caplog):
    module = SimpleNamespace(model_name="microsoft/phi-2", gradient_checkpointing=AUTO)
    with caplog.at_level(logging.INFO):
        tokens = resolve(module, AUTO, PACK, 16 * GIB, "cuda:0")
    assert tokens == 16384 and module.gradient_checkpointing is True
    (line,) = [r.getMessage() for r in caplog.records if "token budget" in r.getMessage()]
    assert line.startswith("token budget: data.max_tokens=16384, model.gradient_checkpointing=true (16.0 GiB free")
    assert "--data.max_tokens N" in line and "--model.gradient_checkpointing true|false" in line


def test_without_cuda_auto_keeps_the_measured_default(caplog, tiny_phi):
    from datamodules.dialogsum import DialogSumDataModule
    from tests.conftest import DIALOGSUM

    data = DialogSumDataModule(
        tokenizer=tiny_phi, sources={"dialogsum": str(DIALOGSUM)}, train_limit=50, val_limit=8,
        max_tokens=AUTO, pack_length=PACK,
    )  # fmt: skip
    with caplog.at_level(logging.INFO):
        data.setup("fit")
    assert data.max_tokens == 16384
    assert any("no CUDA device (cpu)" in r.getMessage() for r in caplog.records)
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape == (16384 // PACK, PACK)


def test_out_of_memory_advice_under_packing_names_the_token_budget_not_the_batch_size():
    from callbacks.memory_advice import memory_advice

    data = SimpleNamespace(batch_size=64, eval_batch_size=32, max_tokens=16384, max_length=512, pack_length=512)
    trainer = SimpleNamespace(
        datamodule=data,
        accumulate_grad_batches=1,
        global_step=7,
        state=SimpleNamespace(stage=SimpleNamespace(value="train")),
    )
    advice = memory_advice(trainer, SimpleNamespace(gradient_checkpointing=False))
    assert advice.startswith("CUDA out of memory in train at step 7 (pack_length=512, max_tokens=16384,")
    assert "--data.max_tokens 8192 --trainer.accumulate_grad_batches 2 (same tokens per optimizer step)" in advice
    assert "--model.gradient_checkpointing true" in advice
    assert "batch_size" not in advice.split("(", 2)[2] and "--data.max_length" not in advice
