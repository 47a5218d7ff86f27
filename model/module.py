"""The LightningModule: a frozen (4-bit) causal LM with LoRA adapters, trained on summary tokens."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from model.loading import LoraArgs, QuantArgs, add_lora, load_base_model
from model.loss import target_token_loss

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class QLoRAModule(L.LightningModule):
    """Fine-tunes LoRA adapters on a frozen, optionally 4-bit, causal language model.

    Args:
        model: Hub name or local folder of the base model (and its tokenizer).
        dtype: compute dtype of the base model (``bfloat16``; ``float16`` overflows with Phi-2).
        quant: 4-bit quantization of the frozen weights.
        lora: the LoRA adapters.
        gradient_checkpointing: recompute activations in backward; saves memory, costs ~30% speed.
        attn_implementation: attention kernel (``sdpa``, ``eager``, ...); None keeps the model's default.
        loss_chunk_size: target tokens projected through the output head at once.
        compile: ``torch.compile`` each decoder layer (CUDA only; ignored on CPU).
        max_new_tokens: generation bound in ``predict``.
        adapter_dir: where the PEFT adapter is exported at the end of ``fit``; None means
            ``<log_dir>/adapter``.
        optimizer: optimizer factory, given only the trainable (LoRA) parameters.
        scheduler: learning-rate scheduler factory, stepped every optimizer step.
    """

    def __init__(
        self,
        model: str = "microsoft/phi-2",
        dtype: str = "bfloat16",
        quant: QuantArgs | None = None,
        lora: LoraArgs | None = None,
        gradient_checkpointing: bool = False,
        attn_implementation: str | None = "sdpa",
        loss_chunk_size: int = 4096,
        compile: bool = False,
        max_new_tokens: int = 96,
        adapter_dir: str | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.model_name = model
        self.dtype_name = dtype
        self.quant = quant or QuantArgs()
        self.lora = lora or LoraArgs()
        self.gradient_checkpointing = gradient_checkpointing
        self.attn_implementation = attn_implementation
        self.loss_chunk_size = loss_chunk_size
        self.compile = compile
        self.max_new_tokens = max_new_tokens
        self.adapter_dir = adapter_dir
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.model = None
        self.tokenizer = None

    # ---- building -------------------------------------------------------------------------------

    def configure_model(self) -> None:
        """Load the base in 4-bit and add adapters; runs once, on the target device."""
        if self.model is not None:
            return
        from datamodules.tokenizer import load_tokenizer

        self.tokenizer = load_tokenizer(self.model_name)
        base = load_base_model(self.model_name, DTYPES[self.dtype_name], self.quant, self.attn_implementation)
        if self.gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = add_lora(base, self.lora)
        # from_pretrained returns eval mode and Lightning keeps module modes as it finds them; gradient
        # checkpointing and dropout act only in train mode.
        self.model.train()
        if self.compile and torch.cuda.is_available():
            compile_layers(self.decoder)

    @property
    def decoder(self) -> torch.nn.Module:
        """The transformer stack without the output head."""
        return self.model.get_base_model().get_decoder()

    @property
    def head(self) -> torch.nn.Module:
        return self.model.get_base_model().get_output_embeddings()

    # ---- the loss -------------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Last hidden states of right-padded ``input_ids``.

        No attention mask is passed: with right padding and causal attention no real token can see
        a pad, so the fused causal kernel (flash attention) applies and pad positions carry no loss.
        """
        return self.decoder(input_ids=input_ids, use_cache=False).last_hidden_state

    def model_step(self, batch: dict) -> torch.Tensor:
        """The loss of one batch; shared by training, validation and test."""
        hidden = self(batch["input_ids"])
        return target_token_loss(hidden, batch["labels"], self.head, self.loss_chunk_size)

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

    def summarize(self, prompts: list[list[int]], batch_size: int = 16) -> list[str]:
        """Greedy summaries of prompts given as token ids (see ``DialogSumDataModule.encoder``)."""
        from model.generation import generate_summaries

        return generate_summaries(self.model, self.tokenizer, prompts, self.max_new_tokens, batch_size)

    # ---- optimisation ---------------------------------------------------------------------------

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        if getattr(scheduler, "total_steps", 0) is None:
            scheduler.total_steps = int(self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

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


def compile_layers(decoder: torch.nn.Module) -> None:
    """Compile each transformer block in place (regional compilation).

    The blocks share one code object, so one compiled graph serves all of them: compilation takes
    seconds instead of minutes, and gradient checkpointing still wraps whole blocks.
    """
    layers = getattr(decoder, "layers", None)
    if layers is None:
        decoder.compile()
        return
    for layer in layers:
        layer.compile()
