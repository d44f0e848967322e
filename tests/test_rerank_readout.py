"""The capture read-out against eager attention on tiny random Qwen2/Qwen3 models."""
from __future__ import annotations

import pytest
import torch

from bookqa.rerank.prompt import build_prompt
from bookqa.rerank.readout import new_cache, read_out
from test_rerank_tiny import eager_attentions, tiny_model, tiny_tokenizer

CANDIDATES = ["the whale was in the sea at night.", "Silas Thorne was the captain of the ship.",
              "a garden by the river with a house.", "Mara Quill wrote a letter to her sister."]
QUESTION = "who was the captain of the ship?"
HEADS = {0: [0, 3], 2: [1, 2]}  # layer -> query heads; heads 1 and 2 read different KV heads


@pytest.mark.parametrize("kind", ["qwen3", "qwen2", "llama"])
@pytest.mark.parametrize("prefix", [None, "Silas sails the ship. Mara writes letters."])
def test_readout_equals_eager_rows(kind, prefix):
    tok = tiny_tokenizer()
    model = tiny_model(kind)
    prompt = build_prompt(tok, QUESTION, CANDIDATES, prefix=prefix)
    if prefix:
        assert prompt.prefix is not None and prompt.prefix[0] < prompt.candidates[0][0]
    ids = torch.tensor([prompt.input_ids])
    rows = list(range(*prompt.question))
    att = eager_attentions(model, ids)
    res = read_out(model, ids, HEADS, rows)
    for layer, heads in HEADS.items():
        ref = att[layer][0, heads][:, rows].mean(dim=1)
        assert res.mean[layer].shape == ref.shape
        assert torch.allclose(res.mean[layer], ref, atol=1e-5, rtol=0)
    # Per-row, per-candidate sums equal the eager rows summed over each candidate's tokens.
    seg = torch.from_numpy(prompt.segment_map())
    res = read_out(model, ids, HEADS, rows, segments=seg, n_segments=len(CANDIDATES), want_max=True)
    for layer, heads in HEADS.items():
        a = att[layer][0, heads][:, rows]  # (h, R, N)
        for c, (s, e) in enumerate(prompt.candidates):
            assert torch.allclose(res.row_sum[layer][:, :, c], a[..., s:e].sum(-1), atol=1e-5)
            assert torch.allclose(res.row_max[layer][:, :, c], a[..., s:e].amax(-1), atol=1e-6)


@pytest.mark.parametrize("kind", ["qwen3", "qwen2"])
def test_gqa_mapping(kind):
    """Query head h reads KV head h // (n_heads // n_kv_heads): 1 -> 0 and 2 -> 1 here. The reference
    is eager attention; a wrong mapping (h % n_kv) would read the other KV head and differ."""
    tok = tiny_tokenizer()
    model = tiny_model(kind)
    cfg = model.config
    assert cfg.num_attention_heads // cfg.num_key_value_heads == 2
    prompt = build_prompt(tok, QUESTION, CANDIDATES)
    ids = torch.tensor([prompt.input_ids])
    rows = list(range(*prompt.question))
    att = eager_attentions(model, ids)
    for head in range(cfg.num_attention_heads):
        res = read_out(model, ids, {1: [head]}, rows)
        ref = att[1][0, head, rows].mean(0)
        assert torch.allclose(res.mean[1][0], ref, atol=1e-5)
    # The test can tell the mappings apart: heads 1 and 2 attend differently.
    assert (att[1][0, 1, rows] - att[1][0, 2, rows]).abs().max() > 1e-3


def test_layers_above_deepest_never_run():
    tok = tiny_tokenizer()
    model = tiny_model("qwen3", layers=4)
    calls: list[str] = []
    hooks = []
    for i, layer in enumerate(model.model.layers):
        hooks.append(layer.register_forward_hook(lambda m, a, o, i=i: calls.append(f"layer{i}")))
        hooks.append(layer.mlp.register_forward_hook(lambda m, a, o, i=i: calls.append(f"mlp{i}")))
        hooks.append(layer.self_attn.register_forward_hook(lambda m, a, o, i=i: calls.append(f"attn{i}")))
    hooks.append(model.model.norm.register_forward_hook(lambda *a: calls.append("norm")))
    hooks.append(model.lm_head.register_forward_hook(lambda *a: calls.append("lm_head")))
    try:
        prompt = build_prompt(tok, QUESTION, CANDIDATES)
        res = read_out(model, torch.tensor([prompt.input_ids]), {0: [1], 1: [2]}, range(*prompt.question))
    finally:
        for h in hooks:
            h.remove()
    assert res.layers_run == 2
    assert "layer0" in calls and "attn1" in calls
    # Layer 1 (the deepest) runs only its attention; layers 2-3, the final norm and the LM head never run.
    for absent in ("layer1", "mlp1", "layer2", "attn2", "mlp2", "layer3", "attn3", "norm", "lm_head"):
        assert absent not in calls


def test_cache_pass_matches_single_pass():
    """Tokens appended after a KV cache see the same attention as in one full pass."""
    tok = tiny_tokenizer()
    model = tiny_model("qwen2")
    prompt = build_prompt(tok, QUESTION, CANDIDATES)
    ids = torch.tensor([prompt.input_ids])
    rows = list(range(*prompt.question))
    full = read_out(model, ids, HEADS, rows)
    cache = new_cache(model)
    split = prompt.question[0] - 3
    first = read_out(model, ids[:, :split], HEADS, [split - 1], cache=cache)
    second = read_out(model, ids[:, split:], HEADS, rows, cache=cache)
    assert first.tokens_run == split and second.tokens_run == ids.shape[1] - split
    for layer in HEADS:
        assert torch.allclose(full.mean[layer], second.mean[layer], atol=1e-5)


def test_rows_outside_the_pass_are_refused():
    from bookqa.errors import ModelError

    tok = tiny_tokenizer()
    model = tiny_model("qwen3")
    ids = torch.tensor([build_prompt(tok, QUESTION, CANDIDATES).input_ids])
    with pytest.raises(ModelError):
        read_out(model, ids, HEADS, [ids.shape[1] + 5])
    with pytest.raises(ModelError):
        read_out(model, ids, {7: [0]}, [3])
