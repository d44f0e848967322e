"""Which parameters QR training updates.

Only the QR heads' attention at the question rows enters the loss, so the layers above the
deepest QR layer L are never loaded, and in layer L itself only what feeds its query/key states can
change the loss: the input norm, q/k projections (and Qwen3's q/k norms). Its value and output
projections, post-attention norm and MLP, and the final norm, get no gradient and are left frozen.

Scopes:

- ``full`` (the paper): the embeddings, every parameter of layers 0..L-1 and the q/k path of layer L.
- ``qr-layers``: the same, restricted to the layers holding a QR head (embeddings frozen).
- ``lora``: LoRA adapters (peft) on every linear map of that path (layers 0..L); the base weights stay
  frozen. The output is the adapter alone (bookqa/rerank/adapter.py), or with ``merge`` the adapters
  merged into a full copy of the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from ...errors import ConfigError, ModelError
from ...rerank.heads import HeadSet
from ...rerank.readout import decoder_of

SCOPES = ("full", "qr-layers", "lora")
# Names (relative to a decoder layer) that do not reach the deepest layer's query/key states.
_LAST_LAYER_UNUSED = ("self_attn.v_proj.", "self_attn.o_proj.", "post_attention_layernorm.", "mlp.")


def _in_loss_path(rel: str, deepest: int) -> Optional[int]:
    """The layer of a decoder-relative parameter name when it can affect the loss; -1 for the
    embeddings; None when it cannot (final norm, layers above L, the unused part of layer L)."""
    if rel.startswith("embed_tokens."):
        return -1
    if not rel.startswith("layers."):
        return None  # final norm, rotary buffers
    _, idx, rest = rel.split(".", 2)
    layer = int(idx)
    if layer > deepest:
        return None
    if layer == deepest and (rest.startswith(_LAST_LAYER_UNUSED) or not (rest.startswith("self_attn.")
                                                                      or rest.startswith("input_layernorm."))):
        return None
    return layer


def loss_path(model, heads: HeadSet) -> dict[str, torch.nn.Parameter]:
    """Every parameter that can change the loss, by its name in ``model``."""
    decoder = decoder_of(model)
    if heads.deepest_layer >= len(decoder.layers):
        raise ModelError(f"the model has {len(decoder.layers)} layers; the heads need layer {heads.deepest_layer}")
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for rel, p in decoder.named_parameters():
        if _in_loss_path(rel, heads.deepest_layer) is not None:
            out[names[id(p)]] = p
    return out


def scope_parameters(model, heads: HeadSet, scope: str) -> dict[str, torch.nn.Parameter]:
    """The base parameters a ``full`` / ``qr-layers`` scope trains, by name."""
    decoder = decoder_of(model)
    names = {id(p): n for n, p in model.named_parameters()}
    qr_layers = set(heads.by_layer())
    out = {}
    for rel, p in decoder.named_parameters():
        layer = _in_loss_path(rel, heads.deepest_layer)
        if layer is None:
            continue
        if scope == "full" or (scope == "qr-layers" and layer in qr_layers):
            out[names[id(p)]] = p
    return out


@dataclass
class Prepared:
    trainable: dict[str, torch.nn.Parameter]  # name -> parameter, in a fixed order
    peft_model: Any = None  # the PeftModel wrapper (lora), for merging

    def lora_modules(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{module name: (A weight, B weight)} of every adapted linear map (``lora`` only); the merge
        each one stands for is W + (alpha / rank) · B @ A."""
        if self.peft_model is None:
            raise ModelError("only the lora scope has adapters")
        out = {}
        for name, module in self.peft_model.base_model.model.named_modules():
            lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
            if lora_a is not None and lora_b is not None and "default" in lora_a:
                out[name] = (lora_a["default"].weight, lora_b["default"].weight)
        return out

    def merged(self, model):
        """The model to save: LoRA adapters merged into the base weights (other scopes: ``model``)."""
        if self.peft_model is None:
            return model
        return self.peft_model.merge_and_unload()


def prepare(model, heads: HeadSet, scope: str, lora_rank: int = 16, lora_alpha: float = 32.0) -> Prepared:
    """Freeze everything, then make the scope's parameters trainable (injecting LoRA for ``lora``)."""
    if scope not in SCOPES:
        raise ConfigError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    if scope != "lora":
        chosen = scope_parameters(model, heads, scope)
        for p in chosen.values():
            p.requires_grad_(True)
        return Prepared(trainable=chosen)
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("scope 'lora' needs peft: pip install 'bookqa[train]' (peft==0.21.0)") from None
    path_ids = {id(p) for p in loss_path(model, heads).values()}
    targets = [name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and id(module.weight) in path_ids]
    if not targets:
        raise ModelError("no linear layers on the QR heads' path to put LoRA adapters on")
    config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, lora_dropout=0.0, bias="none", target_modules=targets)
    peft_model = get_peft_model(model, config)  # injects the adapters into ``model`` in place
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not trainable or any("lora_" not in n for n in trainable):
        raise ModelError("LoRA injection left unexpected trainable parameters")
    return Prepared(trainable=trainable, peft_model=peft_model)
