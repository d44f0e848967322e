"""The one identity of a configured QR ranker.

A ``QRRankerConfig`` names everything that decides a QR ranking: the model, its heads and adapter, where
and in which precision it computes, and how the heads' attention becomes a score (question span,
aggregation, calibration, position prior, candidate orders, refinement of the top). It is frozen and
hashable, so it serves as the process cache key of loaded rankers (pipeline.get_reranker); its stored
form is its constructor's arguments (``to_json`` / ``from_json``), so an evaluation's run file records
exactly the ranker it measured.

Several values may be "auto" (decided by the machine or by the heads: the shipped adapter, the device,
the dtype, the question span the heads were detected with, the candidate orders and refinement).
``qr.resolve_config`` turns them into what this machine will run, without loading the model: that resolved
form is what a ranker describes itself as and what an evaluation compares when it resumes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

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
    def from_settings(cls, settings, **overrides: Any) -> "QRRankerConfig":
        """The ranker a ``bookqa.settings.Settings`` describes; non-None ``overrides`` (constructor
        arguments) win. (Settings validates its reranking options through this class, so this module
        does not import it.)"""
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
