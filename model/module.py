"""The LightningModule: a frozen (4-bit) causal LM with LoRA adapters, trained on summary tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import grad_norm, rank_zero_warn

from model.loading import LoraArgs, QuantArgs, add_lora, load_base_model
from model.loss import masked_token_loss, target_token_loss

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class QLoRAModule(L.LightningModule):
    """Fine-tunes LoRA adapters on a frozen, optionally 4-bit, causal language model.

    Args:
        model: Hub name or local folder of the base model (and its tokenizer).
        dtype: compute dtype of the base model (``bfloat16``; ``float16`` overflows with Phi-2).
        quant: 4-bit quantization of the frozen weights.
        lora: the LoRA adapters.
        gradient_checkpointing: recompute activations in backward; saves memory, costs ~30% speed.
            ``auto``: chosen with ``data.max_tokens: auto`` from the GPU's free memory (``datamodules/token_budget.py``).
        attn_implementation: attention kernel (``sdpa``, ``eager``, ...); None keeps the model's default.
        loss_chunk_size: target tokens (positions, with ``compile: model``) projected through the
            output head at once.
        compile: ``torch.compile`` on CUDA (ignored on CPU). ``layers`` (or true) compiles each
            decoder block, in seconds, for any batch shape. ``model`` compiles the whole loss (masks,
            decoder, head) into one graph with fixed shapes: pair it with ``data.pack_length``, as
            every new batch shape recompiles; the loss then runs every position through the head
            (``masked_token_loss``), also on CPU. false: eager.
        compile_mode: ``torch.compile``'s ``mode`` (``reduce-overhead`` adds CUDA graphs,
            ``max-autotune-no-cudagraphs`` tunes kernels); None is its default.
        max_new_tokens: generation bound in ``predict``.
        stop_bias: added to the end tokens' logits at each greedy step of ``summarize`` (predict,
            test metrics, samples, eval); above 0 summaries end sooner. ``python -m eval.calibrate``
            picks it on validation data.
        adapter_dir: where the PEFT adapter is exported at the end of ``fit``; None means
            ``<log_dir>/adapter``.
        optimizer: optimizer factory, given only the trainable (LoRA) parameters.
        scheduler: learning-rate scheduler factory, stepped every optimizer step; None keeps the rate constant.
    """

    def __init__(
        self,
        model: str = "microsoft/phi-2",
        dtype: str = "bfloat16",
        quant: QuantArgs | None = None,
        lora: LoraArgs | None = None,
        gradient_checkpointing: bool | Literal["auto"] = False,
        attn_implementation: str | None = "sdpa",
        loss_chunk_size: int = 4096,
        compile: bool | Literal["layers", "model"] = False,
        compile_mode: str | None = None,
        max_new_tokens: int = 96,
        stop_bias: float = 0.0,
        adapter_dir: str | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if compile not in (False, True, "layers", "model"):
            raise ValueError(f"model.compile must be false, true, layers or model, got {compile!r}")
        self.model_name = model
        self.dtype_name = dtype
        self.quant = quant or QuantArgs()
        self.lora = lora or LoraArgs()
        self.gradient_checkpointing = gradient_checkpointing
        self.attn_implementation = attn_implementation
        self.loss_chunk_size = loss_chunk_size
        self.compile = compile
        self.compile_mode = compile_mode
        self.max_new_tokens = max_new_tokens
        self.stop_bias = stop_bias
        self.adapter_dir = adapter_dir
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.model = None
        self.tokenizer = None
        self.compiled_loss = None  # ``loss`` through torch.compile, with ``compile: model`` on CUDA

    # ---- building -------------------------------------------------------------------------------

    def configure_model(self) -> None:
        """Load the base in 4-bit and add adapters; runs once, on the target device."""
        if self.model is not None:
            return
        from datamodules.tokenizer import load_tokenizer

        self.tokenizer = load_tokenizer(self.model_name)
        base = load_base_model(self.model_name, DTYPES[self.dtype_name], self.quant, self.attn_implementation)
        if self.gradient_checkpointing is True:  # auto, unresolved without a data module, means off
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            # Non-reentrant checkpointing needs no gradient on the embeddings; the hook transformers adds
            # for the reentrant kind (``requires_grad_`` on their output) would split a whole-model graph.
            base.disable_input_require_grads()
        self.model = add_lora(base, self.lora)
        # from_pretrained returns eval mode and Lightning keeps module modes as it finds them; gradient
        # checkpointing and dropout act only in train mode.
        self.model.train()
        if self.compile == "model" and torch.cuda.is_available():
            self.compiled_loss = torch.compile(self.loss, mode=self.compile_mode)
        elif self.compile and torch.cuda.is_available():
            compile_layers(self.decoder, self.compile_mode)

    @property
    def decoder(self) -> torch.nn.Module:
        """The transformer stack without the output head."""
        return self.model.get_base_model().get_decoder()

    @property
    def head(self) -> torch.nn.Module:
        return self.model.get_base_model().get_output_embeddings()

    # ---- the loss -------------------------------------------------------------------------------

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None, seq_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Last hidden states of right-padded ``input_ids``, or of packed rows.

        Unpacked rows get no attention mask: with right padding and causal attention no real token
        can see a pad, so the fused causal kernel (flash attention) applies and pad positions carry
        no loss. Packed rows (``seq_ids`` given, see ``datamodules.batching.collate_packed``) get a
        document-causal mask, so examples sharing a row can't see each other, and their own
        ``position_ids``.
        """
        mask = None if seq_ids is None else document_mask(self.decoder.config, seq_ids, DTYPES[self.dtype_name])
        return self.decoder(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state

    def loss(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        seq_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy of the target tokens; with ``compile: model``, in fixed shapes."""
        hidden = self(input_ids, position_ids, seq_ids)
        token_loss = masked_token_loss if self.compile == "model" else target_token_loss
        return token_loss(hidden, labels, self.head, self.loss_chunk_size)

    def model_step(self, batch: dict) -> torch.Tensor:
        """The loss of one batch; shared by training, validation and test.

        With ``compile: model`` only training runs the compiled graph: validation (eval mode, no
        grad) would compile a second whole-model graph, minutes for a few seconds of eager work.
        """
        loss = self.compiled_loss if self.compiled_loss is not None and self.training else self.loss
        return loss(batch["input_ids"], batch["labels"], batch.get("position_ids"), batch.get("seq_ids"))

    def on_fit_start(self) -> None:
        data = getattr(self.trainer, "datamodule", None)
        if self.compile == "model" and data is not None and getattr(data, "pack_length", 0) is None:
            rank_zero_warn(
                "model.compile=model without data.pack_length: every new batch shape compiles again; "
                "set data.pack_length (fixed shapes) or use model.compile=layers"
            )

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model_step(batch)
        # logger=False: callbacks.losses.LossCurves writes train/loss and val/loss against optimizer steps.
        self.log("train/loss", loss, prog_bar=True, logger=False, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.model_step(batch)
        self.log("val/loss", loss, prog_bar=True, logger=False, sync_dist=True, batch_size=batch["input_ids"].shape[0])

    def test_step(self, batch: dict, batch_idx: int) -> None:
        loss = self.model_step(batch)
        self.log("test/loss", loss, sync_dist=True, batch_size=batch["input_ids"].shape[0])

    def predict_step(self, batch: dict, batch_idx: int) -> list[str]:
        """Greedy summaries of a batch of prompts (token id lists)."""
        return self.summarize(batch["prompts"])

    def summarize(self, prompts: list[list[int]], batch_size: int = 16, max_new_tokens: int | None = None) -> list[str]:
        """Greedy summaries of prompts given as token ids (see ``DialogSumDataModule.encoder``).

        ``max_new_tokens`` None is ``model.max_new_tokens``.
        """
        from model.generation import generate_summaries

        # transformers' generate: this also runs inside the Trainer (samples, test metrics), where capturing
        # a CUDA graph of the 4-bit PEFT model (LoRA dropout, checkpointing, compiled blocks) is untested.
        # The blocks compiled for training run eagerly here: each decoding step's KV cache would recompile
        # them up to torch._dynamo's recompile_limit, seconds per validation, before falling back to eager.
        max_new = max_new_tokens or self.max_new_tokens
        with torch.compiler.set_stance("force_eager"):
            return generate_summaries(
                self.model, self.tokenizer, prompts, max_new, batch_size, decoder="generate", stop_bias=self.stop_bias
            )

    # ---- optimisation ---------------------------------------------------------------------------

    def on_before_optimizer_step(self, optimizer) -> None:
        """Logs ``train/grad_norm``: the L2 norm of the LoRA gradients after accumulation, before clipping."""
        # Lightning's grad_norm moves every parameter's norm to the host: only at the steps Lightning logs.
        every = self.trainer.log_every_n_steps
        if every and (self.trainer.global_step + 1) % every == 0:
            self.log("train/grad_norm", grad_norm(self, norm_type=2)["grad_2.0_norm_total"])

    def configure_optimizers(self):
        from transformers import get_constant_schedule  # imports peft: seconds a bad config needn't wait

        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        scheduler = (self.scheduler_factory or get_constant_schedule)(optimizer)
        if getattr(scheduler, "total_steps", 0) is None:  # sized to the run (model.schedule.WarmupCosine)
            scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        # The name is what LearningRateMonitor logs the rate as.
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "train/lr"},
        }

    # ---- checkpoints: adapters only -------------------------------------------------------------

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in super().state_dict().items() if k in names}

    def state_dict(self, *args, **kwargs):
        """Only the trainable weights: a checkpoint holds megabytes of LoRA, not the 4-bit base."""
        if self.model is None:
            return super().state_dict(*args, **kwargs)
        return self.trainable_state_dict()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        expected = {n for n, p in self.named_parameters() if p.requires_grad}
        missing = sorted(expected - set(state_dict))
        unexpected = sorted(set(state_dict) - expected)
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"checkpoint does not match the adapters: {len(missing)} missing (e.g. {missing[:2]}), "
                f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}); were lora.r or target_modules changed?"
            )
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The RNG state makes a resumed run draw the same LoRA dropout masks as an uninterrupted one.
        checkpoint["rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def on_fit_end(self) -> None:
        """Export the adapter in PEFT's format so ``PeftModel.from_pretrained`` loads it."""
        # Under DDP trainer.log_dir is a broadcast: every rank must ask for it, only rank 0 writes.
        folder = self.adapter_dir or Path(self.trainer.log_dir or ".") / "adapter"
        if self.trainer.is_global_zero:
            self.export_adapter(folder)

    def export_adapter(self, folder: str | Path) -> Path:
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return folder


def compile_layers(decoder: torch.nn.Module, mode: str | None = None) -> None:
    """Compile each transformer block in place (regional compilation).

    The blocks share one code object, so one compiled graph serves all of them: compilation takes
    seconds instead of minutes, and gradient checkpointing still wraps whole blocks.
    """
    layers = getattr(decoder, "layers", None)
    if layers is None:
        decoder.compile(mode=mode)
        return
    for layer in layers:
        layer.compile(mode=mode)


def document_mask(config, seq_ids: torch.Tensor, dtype: torch.dtype):
    """The document-causal attention mask of packed rows, in the form the model's attention takes.

    Token ``q`` may attend to token ``k`` of its row when ``k <= q`` and both have the same
    ``seq_ids`` (padding, -1, attends to the padding before it, so no softmax row is empty). A 4D
    mask or a BlockMask passed as ``attention_mask`` is used as it is (transformers 5,
    ``masking_utils._preprocess_mask_arguments``). ``flex_attention`` gets a ``BlockMask``, with which
    it skips the blocks between documents; it is built here rather than by transformers, whose
    ``create_block_mask(_compile=True)`` breaks a whole-model graph. The others get transformers'
    own masks: boolean ``(batch, 1, L, L)`` for ``sdpa``, additive float for ``eager``, and None for
    ``flash_attention_*``, which find the documents from the ``position_ids``. A model with
    sliding-window layers (Gemma 3) gets one mask per layer type, ``{"full_attention": ...,
    "sliding_attention": ...}``, which its decoder takes as it is; the sliding one also keeps each
    token to the last ``config.sliding_window`` positions.
    """
    from torch.nn.attention.flex_attention import create_block_mask
    from transformers.masking_utils import (
        ALL_MASK_ATTENTION_FUNCTIONS,
        and_masks,
        causal_mask_function,
        packed_sequence_mask_function,
        sliding_window_overlay,
    )

    batch, length = seq_ids.shape
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if config._attn_implementation == "flex_attention":

        def same_document(b, h, q, k):
            return (q >= k) & (seq_ids[b, q] == seq_ids[b, k])

        def same_document_window(b, h, q, k):
            return same_document(b, h, q, k) & (k > q - config.sliding_window)

        def block(mask_mod):
            return create_block_mask(mask_mod, batch, None, length, length, device=seq_ids.device)

        if kinds == {"full_attention"}:
            return block(same_document)
        return {"full_attention": block(same_document), "sliding_attention": block(same_document_window)}
    try:
        build = ALL_MASK_ATTENTION_FUNCTIONS[config._attn_implementation]
    except KeyError:
        raise ValueError(
            f"model.attn_implementation={config._attn_implementation!r} has no attention mask for packed rows; "
            f"use one of {', '.join(ALL_MASK_ATTENTION_FUNCTIONS)}, or set data.pack_length null"
        ) from None

    def mask(mask_function):
        return build(
            batch_size=batch,
            q_length=length,
            kv_length=length,
            mask_function=mask_function,
            allow_is_causal_skip=False,
            dtype=dtype,
            device=seq_ids.device,
            config=config,
        )

    same_document = and_masks(causal_mask_function, packed_sequence_mask_function(seq_ids))
    if kinds == {"full_attention"}:
        return mask(same_document)
    window = and_masks(same_document, sliding_window_overlay(config.sliding_window))
    return {"full_attention": mask(same_document), "sliding_attention": mask(window)}
