"""The one identity of a configured QR ranker.

A ``QRRankerConfig`` names everything that decides a QR ranking: the model, its heads and adapter, where
and in which precision it computes, and how the heads' attention becomes a score (question span,
aggregation, calibration, position prior, candidate orders, refinement of the top). It is frozen and
hashable, so it serves as the process cache key of loaded rankers (pipeline.get_reranker); its stored
form is its constructor's arguments (``to_json`` / ``from_json``), so an evaluation's run file records
exactly the ranker it measured.

Several values may be "auto" (decided by the machine or by the heads: the shipped adapter, the device,
the dtype, the question span the heads were detected with, the candidate orders and refinement).
``resolve_config`` turns them into what this machine will run, without loading the model: that resolved
form is what a ranker describes itself as and what an evaluation compares when it resumes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import ConfigError
from ..settings import Settings

AGGREGATES = ("sum", "max")
QUESTION_SPANS = ("auto", "question", "query")


@dataclass(frozen=True)
class QRRankerConfig:
    model: str = "qwen2.5-coder-0.5b"  # registry name, hub id, directory, .gguf, or a trained directory
    heads: str = ""  # heads file or builtin:NAME; empty = the model's own / the shipped ones
    adapter: str = "auto"  # auto | none | a shipped adapter's name | an adapter directory
    device: str = "auto"
    dtype: str = "auto"
    question_span: str = "auto"  # question | query | auto (what the heads were detected with)
    aggregate: str = "sum"  # sum | max over a candidate's tokens
    calibrate: bool = False  # subtract the "N/A" null question's attention
    debias: str = "none"  # none | position (the heads file's per-position prior)
    permutations: int = 0  # candidate orders scored and averaged; 0 = auto
    refine: int = -1  # top N scored again in a short reversed prompt; -1 = auto, 0 = off

    def __post_init__(self):
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if self.question_span not in QUESTION_SPANS:
            raise ConfigError(f"rerank_question_span must be auto, question or query, got {self.question_span!r}")
        if self.debias not in ("none", "position"):
            raise ConfigError(f"rerank_debias must be none or position, got {self.debias!r}")
        if self.refine < -1 or self.refine == 1:
            raise ConfigError(f"rerank_refine must be -1 (auto), 0 (off) or at least 2, got {self.refine}")
        if not 0 <= self.permutations <= 32:
            raise ConfigError(f"rerank_permutations must be 0 (auto) or 1..32, got {self.permutations}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "QRRankerConfig":
        """The ranker the settings describe; non-None ``overrides`` (constructor arguments) win."""
        values = dict(model=settings.reranker_model, heads=settings.reranker_heads,
                      adapter=settings.reranker_adapter, device=settings.device, dtype=settings.dtype,
                      question_span=settings.rerank_question_span, aggregate=settings.rerank_aggregate,
                      calibrate=settings.rerank_calibrate, debias=settings.rerank_debias,
                      permutations=settings.rerank_permutations, refine=settings.rerank_refine)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> "QRRankerConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "QRRankerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(row) - known)
        if unknown:
            raise ConfigError(f"unknown QR ranker setting(s) {', '.join(unknown)}")
        return cls(**row)

    def key(self) -> str:
        """A short stable digest of the whole configuration."""
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class ResolvedRanker:
    """A configuration with its "auto" values decided for this machine, and what it was decided from."""

    config: QRRankerConfig  # nothing "auto" left but ``heads`` ("" = found by model)
    adapter: Any  # adapter.Adapter or None
    heads: Any  # heads.HeadSet


def adapter_label(adapter) -> str:
    """How a configuration names a resolved adapter: a shipped one by name, any other by its path."""
    from .adapter import SHIPPED_DIR

    if adapter is None:
        return "none"
    return adapter.path.name if adapter.path.parent == SHIPPED_DIR else str(adapter.path)


_FIND = object()  # resolve_config: look the adapter up (the default)


def resolve_config(config: QRRankerConfig, model_dir: Optional[str] = None, adapter: Any = _FIND,
                   heads=None) -> ResolvedRanker:
    """Decide the "auto" values as QRRanker does, without loading weights: the adapter (a trained
    directory named as the model is its own adapter), the heads (the argument, the heads file, else the
    adapter's or the model directory's own, else the shipped ones), the device, the dtype, the question
    span (the heads' detection record), the candidate orders (by device and whether the heads were
    trained) and the refinement (by the orders). ``adapter``: the one already found (None: look for
    the configured one), or leave it out to also treat a model directory holding an adapter as one."""
    from ..weights import resolve_device
    from .adapter import chosen_adapter, find_adapter
    from .heads import HeadSet, resolve_heads
    from .orders import check_options, resolve_permutations, resolve_refine, trained_heads
    from .qr import choose_layout, resolve_dtype

    if adapter is _FIND or (adapter is None and config.adapter not in ("none", "off")):
        adapter = find_adapter(config.model) or chosen_adapter(config.model, config.adapter,
                                                               heads_given=bool(config.heads) or heads is not None)
    if heads is None:
        heads = resolve_heads(config.model, config.heads or None,
                              model_dir=str(adapter.path) if adapter is not None else model_dir)
    elif not isinstance(heads, HeadSet):
        raise ConfigError("heads must be a HeadSet here")
    device = resolve_device(config.device)
    dtype = str(resolve_dtype(config.dtype, device)).removeprefix("torch.")
    span = choose_layout(heads, config.question_span).question_span
    permutations = resolve_permutations(config.permutations, device, trained_heads(heads))
    refine = resolve_refine(config.refine, permutations)
    check_options(config.debias, permutations, refine)
    resolved = config.replace(adapter=adapter_label(adapter), device=device, dtype=dtype, question_span=span,
                              permutations=permutations, refine=refine)
    return ResolvedRanker(resolved, adapter, heads)
