"""Question-row attention read-out without materialising attention matrices.

The model runs with its normal SDPA kernels. In every layer that holds a selected head, a custom
attention function (registered with ``transformers.AttentionInterface``) receives the *post-RoPE*
query/key states exactly as the model's attention module built them (so Qwen3's q/k RMSNorm before RoPE,
Llama's RoPE scaling etc. are the model's own), calls the ordinary SDPA function for the layer output,
and additionally computes ``softmax(q_rows · Kᵀ · scale)`` in float32 for the question rows and the
selected heads only. Extra memory is O(heads × |question| × N); the N × N matrix never exists.

The forward pass is driven here, layer by layer: embeddings, rotary embedding, then
``layers[0 .. L]`` where L is the deepest layer holding a selected head. Layer L runs only its attention
(its MLP output is never needed), later layers, the final norm and the LM head are never called.

Works for decoder models laid out as ``model.model.layers[i].self_attn`` with the functional attention
interface: Qwen2, Qwen3, Llama/Mistral families.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from ..errors import ModelError

ATTN_NAME = "bookqa_qr_sdpa"
SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "llama", "mistral")

_ACTIVE: contextvars.ContextVar[Optional["_Capture"]] = contextvars.ContextVar("bookqa_qr_capture", default=None)
_REGISTER_LOCK = threading.Lock()
_SWITCH_LOCK = threading.RLock()
_registered = False


# ---------------------------------------------------------------------------------------------
# The capture itself
# ---------------------------------------------------------------------------------------------

@dataclass
class _LayerRequest:
    heads: torch.Tensor  # query-head indices (long)
    skip_output: bool = False  # the deepest layer: its attention output is never used


@dataclass
class _Capture:
    layers: dict[int, _LayerRequest]
    rows: torch.Tensor  # absolute positions of the question tokens (long)
    segments: Optional[torch.Tensor] = None  # (N,) candidate index per key position, -1 = none
    n_segments: int = 0
    want_max: bool = False
    keep_mean: bool = True
    mean: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (heads, N)
    row_sum: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (heads, rows, n_segments)
    row_max: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (heads, rows, n_segments)

    def record(self, layer: int, req: _LayerRequest, query: torch.Tensor, key: torch.Tensor,
               scaling: float, sliding_window: Optional[int]) -> None:
        # query: (1, H, T, D) for the tokens of this pass; key: (1, KVH, S, D) with S = past + T.
        n_heads, t_len = query.shape[1], query.shape[2]
        s_len = key.shape[2]
        group = n_heads // key.shape[1]  # GQA: query head h reads KV head h // group
        past = s_len - t_len
        local = self.rows - past
        if local.numel() == 0 or int(local.min()) < 0 or int(local.max()) >= t_len:
            raise ModelError("question rows fall outside the tokens of this forward pass")
        heads = req.heads.to(query.device)
        # fp32 from here on, whatever the model dtype (and with autocast off, as in bf16 training);
        # scale q before the product (fp16 overflow).
        with torch.autocast(device_type=query.device.type, enabled=False):
            self._record(layer, query, key, heads, group, local, scaling, s_len, sliding_window)

    def _record(self, layer, query, key, heads, group, local, scaling, s_len, sliding_window) -> None:
        q = query[0].index_select(0, heads).index_select(1, local.to(query.device)).float() * scaling
        k = key[0].index_select(0, torch.div(heads, group, rounding_mode="floor")).float()
        logits = torch.matmul(q, k.transpose(-1, -2))  # (h, R, S)
        key_pos = torch.arange(s_len, device=logits.device)
        row_pos = self.rows.to(logits.device)
        blocked = key_pos[None, :] > row_pos[:, None]  # causal
        if sliding_window is not None:
            blocked |= key_pos[None, :] <= row_pos[:, None] - int(sliding_window)
        logits.masked_fill_(blocked[None], float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.keep_mean:
            self.mean[layer] = probs.mean(dim=1)
        if self.segments is not None and self.n_segments > 0:
            seg = self.segments.to(probs.device)
            if seg.numel() != s_len:
                raise ModelError(f"segment map has {seg.numel()} positions, the keys have {s_len}")
            inside = seg >= 0
            picked = probs[..., inside]
            idx = seg[inside].expand(probs.shape[0], probs.shape[1], -1)
            shape = (probs.shape[0], probs.shape[1], self.n_segments)
            self.row_sum[layer] = torch.zeros(shape, device=probs.device).scatter_add_(2, idx, picked)
            if self.want_max:
                # Attention weights are >= 0, so zeros are a neutral start for the running max.
                self.row_max[layer] = torch.zeros(shape, device=probs.device).scatter_reduce_(
                    2, idx, picked, reduce="amax", include_self=True)


def _qr_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Custom attention: the model's SDPA output, plus the question-row softmax for captured layers."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    capture = _ACTIVE.get()
    req = None if capture is None else capture.layers.get(getattr(module, "layer_idx", -1))
    if req is not None:
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        capture.record(module.layer_idx, req, query, key, scale, kwargs.get("sliding_window"))
        if req.skip_output:
            # Nothing downstream reads this layer's output: skip the SDPA kernel.
            b, h, t, d = query.shape
            return query.new_zeros(b, t, h, value.shape[-1]), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                  scaling=scaling, **kwargs)


def register_attention() -> str:
    """Register the capture attention (and its mask, the SDPA one) once per process."""
    global _registered
    with _REGISTER_LOCK:
        if not _registered:
            from transformers import AttentionInterface
            from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

            AttentionInterface.register(ATTN_NAME, _qr_attention)
            ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, sdpa_mask)
            _registered = True
    return ATTN_NAME


# ---------------------------------------------------------------------------------------------
# Driving the truncated forward
# ---------------------------------------------------------------------------------------------

def decoder_of(model) -> torch.nn.Module:
    """The decoder stack (``*.model`` of a ``*ForCausalLM``, or the base model itself)."""
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "layers"):
        return inner
    if hasattr(model, "layers"):
        return model
    raise ModelError(f"{type(model).__name__} has no decoder layers (expected model.model.layers)")


def check_supported(model) -> None:
    model_type = getattr(model.config, "model_type", "")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelError(f"QR read-out supports {', '.join(SUPPORTED_MODEL_TYPES)} models, not {model_type!r}")


@dataclass
class ReadoutResult:
    # Per layer, its selected heads in the order requested:
    mean: dict[int, torch.Tensor]  # (heads, N): attention averaged over the question rows
    row_sum: dict[int, torch.Tensor]  # (heads, rows, n_segments): per row, attention summed over each segment
    row_max: dict[int, torch.Tensor]  # (heads, rows, n_segments): per row, each segment's largest weight
    tokens_run: int  # tokens this pass pushed through the layers
    layers_run: int  # decoder layers run (the deepest one attention-only)
    seconds: float


@contextlib.contextmanager
def _capture_attention(config):
    """Switch the model to the capture attention for the duration of one read-out."""
    register_attention()
    with _SWITCH_LOCK:
        previous = config._attn_implementation
        config._attn_implementation = ATTN_NAME
        try:
            yield
        finally:
            config._attn_implementation = previous


@contextlib.contextmanager
def capturing(model, heads_by_layer: dict[int, Sequence[int]], rows: Sequence[int] | torch.Tensor, *,
              segments: Optional[torch.Tensor] = None, n_segments: int = 0, skip_output: Sequence[int] = ()):
    """Capture the question-row attention of the selected heads during whatever model calls run inside
    the block; yields the capture, whose ``row_sum[layer]`` (heads, rows, n_segments) is filled once that
    layer's attention ran. Unlike :func:`read_out` it leaves grad mode alone, so the captured rows are
    differentiable (QR training, bookqa/lab/train/scores.py); layers in ``skip_output`` return zeros instead
    of their attention output."""
    check_supported(model)
    config = decoder_of(model).config
    capture = _Capture(
        layers={layer: _LayerRequest(torch.as_tensor(list(h), dtype=torch.long), skip_output=layer in skip_output)
                for layer, h in heads_by_layer.items()},
        rows=torch.as_tensor(rows, dtype=torch.long).flatten(), segments=segments, n_segments=n_segments,
        keep_mean=False)
    with _capture_attention(config):
        token = _ACTIVE.set(capture)
        try:
            yield capture
        finally:
            _ACTIVE.reset(token)


@torch.inference_mode()
def read_out(model, input_ids: torch.Tensor, heads_by_layer: dict[int, Sequence[int]],
             rows: Sequence[int] | torch.Tensor, *, cache=None, segments: Optional[torch.Tensor] = None,
             n_segments: int = 0, want_max: bool = False, keep_mean: bool = True,
             first_position: Optional[int] = None, attention_mask: Optional[torch.Tensor] = None,
             position_ids: Optional[torch.Tensor] = None) -> ReadoutResult:
    """Run ``input_ids`` (1, T) through layers 0..max(heads_by_layer) and return the question-row
    attention of the selected heads.

    ``rows`` are absolute positions of the question tokens and must lie in this pass. With a ``cache``
    (a transformers ``DynamicCache``) the tokens are appended after the cached ones (positions continue
    from the cache length) and the cache is extended. ``segments`` (length = total key length) maps
    each key position to a candidate index (-1 for none); with it the result also holds, per question
    row, each candidate's attention sum (and largest weight with ``want_max``). ``keep_mean=False``
    drops the (heads, N) row-mean vectors when only the per-candidate reductions are needed.

    Rotary positions continue from the cache length unless ``first_position`` (the position of the first
    token of this pass: the cached-chunk layout puts the question after a shared position range, not after
    the number of cached tokens) or explicit ``position_ids`` (1, T) say otherwise. ``rows`` and the causal
    order stay in key-index space either way. ``attention_mask`` (a 4D boolean mask, True = attend) replaces
    the causal mask in every layer; it must still let the question rows see every earlier key, as the
    captured softmax assumes (the block-structured reference in the tests uses it).
    """
    check_supported(model)
    if not heads_by_layer:
        raise ModelError("no heads selected")
    decoder = decoder_of(model)
    config = decoder.config
    deepest = max(heads_by_layer)
    if deepest >= len(decoder.layers):
        raise ModelError(f"head layer {deepest} does not exist: the model has {len(decoder.layers)} layers")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    device = decoder.embed_tokens.weight.device
    input_ids = input_ids.to(device)
    rows_t = torch.as_tensor(rows, dtype=torch.long).flatten()
    if rows_t.numel() == 0:
        raise ModelError("the question span is empty")
    capture = _Capture(
        layers={layer: _LayerRequest(torch.as_tensor(list(heads), dtype=torch.long), skip_output=(layer == deepest))
                for layer, heads in heads_by_layer.items()},
        rows=rows_t, segments=segments, n_segments=n_segments, want_max=want_max, keep_mean=keep_mean)

    start = time.perf_counter()
    t_len = input_ids.shape[1]
    with _capture_attention(config):
        token = _ACTIVE.set(capture)
        try:
            run_layers(decoder, input_ids, deepest, cache=cache, first_position=first_position,
                       attention_mask=attention_mask, position_ids=position_ids)
        finally:
            _ACTIVE.reset(token)
    missing = set(heads_by_layer) - (set(capture.mean) | set(capture.row_sum))
    if missing:
        raise ModelError(f"layers {sorted(missing)} did not dispatch through the attention interface; "
                         f"this model architecture is not supported by the QR read-out")
    return ReadoutResult(mean=capture.mean, row_sum=capture.row_sum, row_max=capture.row_max, tokens_run=t_len,
                         layers_run=deepest + 1,
                         seconds=time.perf_counter() - start)


def run_layers(decoder, input_ids: torch.Tensor, deepest: int, *, cache=None, first_position: Optional[int] = None,
               attention_mask: Optional[torch.Tensor] = None, position_ids: Optional[torch.Tensor] = None) -> None:
    """Push ``input_ids`` (1, T) through ``decoder.layers[0 .. deepest]``; the deepest runs only its
    attention (nothing reads its output or MLP). With a ``cache`` the keys and values of every layer run are
    appended to it. Positions: see :func:`read_out`."""
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    config = decoder.config
    device = decoder.embed_tokens.weight.device
    input_ids = input_ids.to(device)
    past = cache.get_seq_length() if cache is not None else 0
    t_len = input_ids.shape[1]
    hidden = decoder.embed_tokens(input_ids)
    if position_ids is None:
        first = past if first_position is None else int(first_position)
        position_ids = torch.arange(first, first + t_len, device=device)[None]
    else:
        position_ids = position_ids.to(device).reshape(1, t_len)
    layer_types = list(getattr(config, "layer_types", None) or ["full_attention"] * len(decoder.layers))
    if attention_mask is not None:
        if "sliding_attention" in layer_types[:deepest + 1]:
            raise ModelError("an explicit attention mask is not supported with sliding-window layers")
        masks = {"full_attention": attention_mask.to(device)}
    else:
        # The mask follows key indices (the cache length), never position ids: a question placed at a later
        # position still sees every cached key, and no position jump is read as packed sequences.
        mask_kwargs = dict(config=config, inputs_embeds=hidden, attention_mask=None, cache=cache,
                           position_ids=torch.arange(past, past + t_len, device=device)[None])
        masks = {"full_attention": create_causal_mask(**mask_kwargs)}
        if "sliding_attention" in layer_types[:deepest + 1]:
            masks["sliding_attention"] = create_sliding_window_causal_mask(**mask_kwargs)
    position_embeddings = decoder.rotary_emb(hidden, position_ids)
    for i in range(deepest + 1):
        layer = decoder.layers[i]
        mask = masks[layer_types[i]]
        if i < deepest:
            hidden = layer(hidden, attention_mask=mask, position_ids=position_ids, cache=cache,
                           use_cache=cache is not None, position_embeddings=position_embeddings)
        else:
            layer.self_attn(hidden_states=layer.input_layernorm(hidden), position_embeddings=position_embeddings,
                            attention_mask=mask, position_ids=position_ids, cache=cache,
                            use_cache=cache is not None)


def new_cache(model):
    """An empty KV cache for :func:`read_out` (calibration reuses the prefix through it)."""
    from transformers import DynamicCache

    return DynamicCache(config=decoder_of(model).config)


def cache_holding(model, kv: torch.Tensor):
    """A cache for :func:`run_layers` holding stored keys/values ``kv`` (layers, 2, kv_heads, S, head_dim),
    in the model's dtype and on its device (no copy when they already are)."""
    weight = decoder_of(model).embed_tokens.weight
    kv = kv.to(device=weight.device, dtype=weight.dtype)
    cache = new_cache(model)
    for layer in range(kv.shape[0]):
        cache.update(kv[layer, 0][None], kv[layer, 1][None], layer)
    return cache
