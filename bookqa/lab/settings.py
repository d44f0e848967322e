"""The research bench's settings: the evaluation's baselines and fusion, and QR training.

Same mechanism as the product's ``bookqa.settings.Settings`` (defaults here, ``BOOKQA_<FIELD>``
variables, CLI flags through ``replace``), kept apart so the product's settings hold only what
``ingest``, ``ask`` and the UI read (``python -m bookqa.lab.settings`` prints the README's tables).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..settings import EnvSettings, settings_table


@dataclass(frozen=True)
class EvalSettings(EnvSettings):
    # --- bookqa eval: fusion and the baseline rerankers (lab/baselines/) ---
    pointwise_batch_size: int = 16  # (question, passage) pairs per forward of the pointwise baseline reranker
    eval_fusion_weight: float = 1.0  # bookqa eval "qr_fused": RRF weight of the first-stage order (QR's is 1)
    rankgpt_window: int = 20  # rankgpt: candidates the generator orders per call (sliding window, at least 2; RankGPT's 20)
    rankgpt_stride: int = 10  # rankgpt: positions the window moves up per step, back to front (1..window; RankGPT's 10)
    likert_group_size: int = 5  # likert: candidates the generator scores per call
    likert_scale: str = "0-10"  # likert: score range low-high (e.g. 0-10 or 1-5)
    genrank_passage_tokens: int = 256  # rankgpt/likert: tokens kept of each passage (fewer if a call would overflow generator_n_ctx)

    def validate(self) -> None:
        if self.pointwise_batch_size < 1:
            raise ConfigError("pointwise_batch_size must be at least 1")
        if self.eval_fusion_weight < 0:
            raise ConfigError("eval_fusion_weight must not be negative")


@dataclass(frozen=True)
class TrainSettings(EnvSettings):
    # --- QR training (bookqa train; lab/train/) ---
    train_scope: str = "full"  # full (embeddings + every layer up to the deepest QR layer) | qr-layers | lora
    train_steps: int = 100  # optimiser steps
    train_lr: float = 0.0  # AdamW rate (constant); 0 = by scope: 1e-5 (the paper's; full, qr-layers), 1e-4 (lora)
    train_accum: int = 4  # samples per optimiser step (gradient accumulation over batches of 1)
    train_weight_decay: float = 0.0  # AdamW weight decay
    train_grad_clip: float = 1.0  # clip the gradient norm to this (0 = off)
    train_candidates: int = 20  # candidates per training prompt: the first C in retriever order
    train_order: str = "retriever"  # their order in a training prompt: retriever (the paper's) | shuffled (per sample)
    train_attention: str = "full"  # full (the full prompt, as qr_mode=full ranks) | block (each candidate sees only the shared prefix and itself, at one position range, as qr_mode=cached ranks) | question (that layout with the adapter on the question only: chunks keep the base model's keys/values, as qr_cached_adapter ranks; scope lora)
    train_max_tokens: int = 120  # cap on each candidate's tokens in training prompts
    train_checkpoint_every: int = 25  # steps between checkpoints (resume points; validation runs there too)
    train_val_frac: float = 0.1  # share of documents held out for validation (samples without a split)
    train_val_limit: int = 50  # validation samples scored per evaluation (the first N of the split)
    train_grad_checkpointing: bool = True  # recompute each decoder layer in the backward pass (less memory)
    train_lora_rank: int = 16  # LoRA rank (scope lora)
    train_lora_alpha: float = 32.0  # LoRA alpha (scope lora)
    train_seed: int = 0  # seed of the sample order

if __name__ == "__main__":  # pragma: no cover - prints the README's tables of the bench's settings
    print(settings_table(EvalSettings) + "\n\n" + settings_table(TrainSettings))
