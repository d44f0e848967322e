"""Differentiable QR scores, which parameters each training scope moves, and one optimiser step, on tiny
random Qwen2/Qwen3 models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bookqa.lab.train.loss import group_contrastive_loss
from bookqa.lab.train.samples import TrainSample
from bookqa.lab.train.scope import SCOPES, loss_path, prepare
from bookqa.lab.train.scores import QRScorer
from bookqa.lab.train.trainer import Example, make_optimizer, optimizer_step, sample_loss, TrainOptions
from bookqa.rerank import QRRanker
from bookqa.rerank.heads import HeadSet
from test_rerank_tiny import tiny_model, tiny_tokenizer

CANDIDATES = ["the whale was in the sea at night.", "Silas Thorne was the captain of the ship.",
              "a garden by the river with a house.", "Mara Quill wrote a letter to her sister.",
              "the doctor rode to the village on the road."]
QUESTION = "who was the captain of the ship?"
GOLD = [1, 3]
# Layers 0 and 2 hold heads, layer 1 none; layer 3 (of 4) lies above the deepest and is never run.
HEADS = HeadSet(heads=[(2, 1), (0, 3), (2, 2)])


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(kind: str):
    return tiny_model(kind, layers=4).model  # the decoder, as load_model gives it (no LM head)


def _example(scorer) -> Example:
    sample = TrainSample("t", "test", QUESTION, CANDIDATES, GOLD)
    return Example(sample, scorer.prompt(QUESTION, CANDIDATES))


@pytest.mark.parametrize("kind", ["qwen2", "qwen3"])
@pytest.mark.parametrize("prefix", [None, "Silas sails the ship. Mara writes letters."])
def test_scores_equal_qrranker_inference(kind, prefix, settings):
    model, tok = _model(kind), tiny_tokenizer()
    ranker = QRRanker(model=(model, tok), heads=HEADS, settings=settings)
    ref, _ = ranker.head_scores(QUESTION, CANDIDATES, prefix)
    for checkpointing in (True, False):
        scorer = QRScorer(model, tok, HEADS, ranker.layout, checkpointing=checkpointing)
        got = scorer.scores(scorer.prompt(QUESTION, CANDIDATES, prefix))
        assert got.requires_grad and got.dtype == torch.float32
        np.testing.assert_allclose(got.detach().numpy(), ref.sum(axis=0), atol=1e-5)


def _nonzero_grads(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_loss_path_is_exactly_what_gets_gradient():
    """With every parameter trainable, the ones with a non-zero gradient are exactly the loss path:
    nothing above the deepest QR layer, nor that layer's value/output projections, MLP or final norm."""
    model, tok = _model("qwen2"), tiny_tokenizer()
    scorer = QRScorer(model, tok, HEADS)
    group_contrastive_loss(scorer.scores(scorer.prompt(QUESTION, CANDIDATES)), GOLD).backward()
    path = set(loss_path(model, HEADS))
    assert _nonzero_grads(model) == path
    assert "embed_tokens.weight" in path and "layers.1.mlp.up_proj.weight" in path
    assert "layers.2.self_attn.k_proj.bias" in path and "layers.2.self_attn.v_proj.weight" not in path
    assert not any(n.startswith(("layers.3.", "norm.")) or ".2.mlp." in n for n in path)


@pytest.mark.parametrize("kind", ["qwen2", "qwen3"])
@pytest.mark.parametrize("scope", SCOPES)
def test_gradients_exactly_in_the_scope(kind, scope):
    model, tok = _model(kind), tiny_tokenizer()
    prepared = prepare(model, HEADS, scope)
    allowed = set(prepared.trainable)
    assert allowed == {n for n, p in model.named_parameters() if p.requires_grad}
    scorer = QRScorer(model, tok, HEADS)
    ex = _example(scorer)
    sample_loss(scorer, ex).backward()
    if scope == "lora":
        # LoRA's B starts at zero, so A's gradient is zero on the very first pass; after one step it is not.
        assert allowed and all("lora_" in n for n in allowed)
        assert {n for n in allowed if "lora_B" in n} <= _nonzero_grads(model)
        optimizer = torch.optim.AdamW(list(prepared.trainable.values()), lr=1e-3)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sample_loss(scorer, ex).backward()
        layers = {int(n.split(".")[1]) for n in allowed}
        assert layers == {0, 1, 2}  # every layer up to the deepest, not above
        assert {n.split(".lora_")[0] for n in allowed if n.startswith("layers.2.")} == \
            {"layers.2.self_attn.q_proj", "layers.2.self_attn.k_proj"}
    else:
        qr_layers = {0, 2}
        for name in allowed:
            assert name == "embed_tokens.weight" or int(name.split(".")[1]) <= 2
            if scope == "qr-layers":
                assert name != "embed_tokens.weight" and int(name.split(".")[1]) in qr_layers
        if scope == "full":
            assert allowed == set(loss_path(model, HEADS))
    assert _nonzero_grads(model) == allowed  # non-zero exactly where the scope allows
    for name, p in model.named_parameters():
        if name not in allowed:
            assert p.grad is None


@pytest.mark.parametrize("scope", SCOPES)
def test_one_step_lowers_the_loss_on_the_same_batch(scope):
    model, tok = _model("qwen2"), tiny_tokenizer()
    prepared = prepare(model, HEADS, scope)
    scorer = QRScorer(model, tok, HEADS)
    ex = _example(scorer)
    other = Example(TrainSample("u", "test", "what did Mara Quill write?", CANDIDATES, [3]),
                    scorer.prompt("what did Mara Quill write?", CANDIDATES))
    batch = [ex, other]
    with torch.no_grad():
        before = sum(sample_loss(scorer, e).item() for e in batch) / len(batch)
    optimizer = make_optimizer(prepared.trainable, TrainOptions(lr=1e-3 if scope != "lora" else 1e-2))
    reported = optimizer_step(scorer, batch, prepared.trainable, optimizer, grad_clip=1.0)
    assert reported == pytest.approx(before, abs=1e-5)
    with torch.no_grad():
        after = sum(sample_loss(scorer, e).item() for e in batch) / len(batch)
    assert after < before
    assert all(p.grad is None for p in prepared.trainable.values())  # zeroed for the next step


def test_bf16_autocast_path_keeps_fp32_rows_and_gradients():
    """The mixed-precision path (used on CUDA) exercised on CPU: bf16 matmuls in the layers, the
    question-row softmax still float32, gradients into float32 weights."""
    model, tok = _model("qwen2"), tiny_tokenizer()
    prepared = prepare(model, HEADS, "full")
    exact = QRScorer(model, tok, HEADS)
    mixed = QRScorer(model, tok, HEADS, autocast_dtype=torch.bfloat16)
    prompt = exact.prompt(QUESTION, CANDIDATES)
    with torch.no_grad():
        ref = exact.scores(prompt)
    got = mixed.scores(prompt)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.detach(), ref, atol=0.05, rtol=0.05)
    group_contrastive_loss(got, GOLD).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in prepared.trainable.values())
    assert _nonzero_grads(model) == set(prepared.trainable)
