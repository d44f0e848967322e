"""The configurations one evaluation run compares, all on identical candidates.

``bm25``, ``dense``, ``hybrid``      first-stage retrieval, top-K each (K = --k, default 50)
``qr``                               QRRanker as the run's settings configure it, reranking the hybrid top-K
``default``                          QRRanker as ``bookqa ask`` uses it out of the box (registry.py)
``qr_prefix``                        the same with the summary prefix (the book's extractive summaries)
``qr_trained``                       QRRanker from a trained checkpoint (``--trained DIR``)
``qr_fused``                         RRF of the ``qr`` order and the hybrid order (first-stage weight
                                     ``settings.eval_fusion_weight``, QR's weight 1)
``pointwise``                        yes/no logits of the same backbone, one pair at a time
``qr_cal``, ``qr_pos``, ``qr_perm``  QR with null-query calibration / the per-position prior / permutation
(and their combinations)             averaging; they share forward passes with ``qr`` (evaluate/robust.py)
``qr_refine``, ``qr_perm_refine``    one order (or permutation averaging), then the top M again in a short
                                     reversed prompt
``qr_trained_refine``,               ``qr_trained``'s stored ranking, then its top M again in a short reversed
``qr_trained_perm``                  prompt / averaged with more orders (reversed, ...) of the same checkpoint;
                                     the stored pass is reused
``qr_trained_perm_refine``           ``qr_trained_perm``'s stored ranking, then its top M again (both options)
``rankgpt``                          the generator writes the order of a sliding window of candidates
                                     (RankGPT style; not in the default set: it generates)
``likert``                           the generator scores groups of candidates 0–10 in JSON (GroupRank
                                     style; not in the default set: it generates)
``qr_cached``, ``qr_cascade``,       cached-chunk QR over stored chunk keys/values, alone or with the full
``qr_trained_cached``, ``…_cascade``  prompt re-ranking its top (evaluate/cached.py); ``qr_cached_adapted``
``qr_trained_cascade_adapted``       with the cached pass's question-side adapter (``qr_cached_adapter``), and
                                     under the trained full prompt (what ``BOOKQA_QR_MODE=cascade`` runs)

Every reranking configuration reads the same candidate list (the hybrid top-K computed once per
question and stored in the results file), so differences are the reranker's alone. Each run of a
configuration returns the ranked chunk ids, their scores and the seconds it took.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ...retrieve import search
from ...settings import Settings

FIRST_STAGE = ("bm25", "dense", "hybrid")
ALL_CONFIGS = ("bm25", "dense", "hybrid", "qr", "default", "qr_prefix", "qr_trained", "qr_fused", "pointwise", "rankgpt",
               "likert")
DEFAULT_CONFIGS = ("bm25", "dense", "hybrid", "qr", "qr_prefix", "qr_fused", "pointwise")
# issue 11: order-robust QR options (evaluate/robust.py), not in the default set
QR_VARIANTS = ("qr_cal", "qr_pos", "qr_perm", "qr_cal_pos", "qr_pos_perm", "qr_cal_perm", "qr_cal_pos_perm",
               "qr_refine", "qr_perm_refine")
TRAINED_CONFIGS = ("qr_trained", "qr_trained_refine", "qr_trained_perm", "qr_trained_perm_refine")  # need --trained DIR
# The extensions of a stored trained ranking (ExtendedConfig): the configuration each reads, and what it adds.
TRAINED_EXTENSIONS = {"qr_trained_refine": ("qr_trained", "refine"), "qr_trained_perm": ("qr_trained", "orders"),
                      "qr_trained_perm_refine": ("qr_trained_perm", "refine")}
# cached-chunk QR (evaluate/cached.py), not in the default set; the trained ones need --trained DIR
CACHED_NAMES = ("qr_cached", "qr_cascade", "qr_trained_cached", "qr_trained_cascade", "qr_cached_adapted",
                "qr_trained_cascade_adapted")
TRAINED_CONFIGS = TRAINED_CONFIGS + ("qr_trained_cached", "qr_trained_cascade", "qr_trained_cascade_adapted")
ALL_CONFIGS = ALL_CONFIGS + QR_VARIANTS + TRAINED_CONFIGS[1:] + ("qr_cached", "qr_cascade", "qr_cached_adapted")
CANDIDATES_METHOD = "hybrid"
# What the *_perm / *_refine configurations run when the settings leave it to the machine (0 / -1) or turn
# it off: orders averaged (input, reversed, interleaved) and candidates scored again.
PERMUTATIONS_DEFAULT = 3
REFINE_DEFAULT = 5


@dataclass
class ConfigResult:
    chunk_ids: list[int]  # best first
    scores: list[float]
    seconds: float  # wall time of this configuration for the question (what a user would wait)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"chunk_ids": self.chunk_ids, "scores": [round(float(s), 6) for s in self.scores],
                "seconds": round(self.seconds, 4), "timings": {k: round(v, 4) for k, v in self.timings.items()},
                "info": self.info}


@dataclass
class QuestionContext:
    """What a configuration may read for one question."""

    book: Any  # bookqa.store.Book
    question: str
    k: int
    settings: Settings
    candidates: list[dict[str, Any]]  # the hybrid top-K: {"chunk_id", "rank", "score", "ranks"}
    candidates_seconds: float
    results: dict[str, dict[str, Any]]  # configurations already run for this question (stored form)
    # The order rerankers show the candidates in (chunk ids); None = the first-stage order. The shuffle
    # check (runner) sets a seeded shuffled order.
    prompt_order: Optional[list[int]] = None
    passes: dict[str, Any] = field(default_factory=dict)  # QR forward passes by shown order (evaluate/robust.py)

    @property
    def candidate_ids(self) -> list[int]:
        return [c["chunk_id"] for c in self.candidates]

    @property
    def prompt_ids(self) -> list[int]:
        return list(self.prompt_order) if self.prompt_order is not None else self.candidate_ids


class Config(ABC):
    name: str
    needs_candidates = False
    depends: tuple[str, ...] = ()
    needs_dense = False
    needs_summaries = False
    order_sensitive = False  # its ranking may change with the order the candidates are shown in

    def setup(self) -> None:
        """Load what the configuration needs (models) before the first question."""

    @abstractmethod
    def run(self, ctx: QuestionContext) -> ConfigResult: ...


class FirstStageConfig(Config):
    def __init__(self, method: str, settings: Settings):
        self.name = self.method = method
        self.needs_dense = method == "dense" or (method == "hybrid" and settings.dense_weight > 0)

    def run(self, ctx: QuestionContext) -> ConfigResult:
        if self.method == CANDIDATES_METHOD:  # the candidates are this configuration's own top-K
            return ConfigResult(ctx.candidate_ids, [c["score"] for c in ctx.candidates], ctx.candidates_seconds,
                                {"search": ctx.candidates_seconds})
        t0 = time.perf_counter()
        found = search(ctx.book, ctx.question, k=ctx.k, method=self.method, settings=ctx.settings)
        seconds = time.perf_counter() - t0
        return ConfigResult([c.chunk_id for c in found], [c.score for c in found], seconds, {"search": seconds})


class RerankConfig(Config):
    """A reranker over the hybrid candidates, optionally with the summary prefix."""

    needs_candidates = True
    order_sensitive = True

    def __init__(self, name: str, make_reranker: Callable[[], Any], prefix: bool = False):
        self.name = name
        self.make_reranker = make_reranker
        self.prefix = prefix
        self.needs_summaries = prefix
        self._reranker = None

    @property
    def reranker(self):
        if self._reranker is None:
            self._reranker = self.make_reranker()
        return self._reranker

    def setup(self) -> None:
        _ = self.reranker

    def run(self, ctx: QuestionContext) -> ConfigResult:
        chunks = ctx.book.chunks
        ids = ctx.prompt_ids
        timings: dict[str, float] = {}
        info: dict[str, Any] = {}
        t0 = time.perf_counter()
        prefix_text = None
        if self.prefix:
            from ...summaries import summary_prefix

            prefix = summary_prefix(ctx.book, ids, ctx.settings)
            prefix_text = prefix.text or None
            timings["prefix"] = time.perf_counter() - t0
            info.update(prefix_tokens=prefix.tokens, prefix_summaries=list(prefix.used))
        t1 = time.perf_counter()
        results = self.reranker.rank(ctx.question, [chunks[i] for i in ids], prefix=prefix_text)
        timings["rerank"] = time.perf_counter() - t1
        for key, value in (results.timings or {}).items():
            timings[f"rerank.{key}"] = float(value)
        for key in ("prompt_tokens", "tokens", "pairs", "batches", "heads", "heads_source", "dtype", "model",
                    "tokens_generated", "generator_calls", "parse_failures", "repairs", "calls_unchanged", "generator",
                    "permutations", "refine", "refined"):
            if key in results.info:
                info[key] = results.info[key]
        seconds = time.perf_counter() - t0
        return ConfigResult(results.chunk_ids, [r.score for r in results.results], seconds, timings, info)


class FusedConfig(Config):
    """RRF of a reranker's order and the first-stage order: score = 1/(rrf_k + rank_rerank) +
    w/(rrf_k + rank_first_stage). Reads the reranker's stored result, so it costs no extra forward; its
    seconds are the reranker's plus the fusion."""

    needs_candidates = True
    order_sensitive = True  # through the reranker it reads

    def __init__(self, name: str, base: str, weight: float, rrf_k: int):
        self.name = name
        self.base = base
        self.depends = (base,)
        self.weight = weight
        self.rrf_k = rrf_k

    def run(self, ctx: QuestionContext) -> ConfigResult:
        from ...retrieve.fusion import reciprocal_rank_fusion

        base = ctx.results[self.base]
        t0 = time.perf_counter()
        fused = reciprocal_rank_fusion(
            {self.base: list(zip(base["chunk_ids"], base["scores"])),
             "first_stage": [(c["chunk_id"], c["score"]) for c in ctx.candidates]},
            {self.base: 1.0, "first_stage": self.weight}, k=self.rrf_k)
        fusion = time.perf_counter() - t0
        return ConfigResult([c.chunk_id for c in fused], [c.score for c in fused], float(base["seconds"]) + fusion,
                            {"fusion": fusion}, {"base": self.base, "weight": self.weight, "rrf_k": self.rrf_k})


def closure(name: str, configs: Sequence[Config]) -> set[str]:
    """``name`` and every configuration it reads."""
    by_name = {c.name: c for c in configs}
    out, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n in out or n not in by_name:
            continue
        out.add(n)
        todo.extend(by_name[n].depends)
    return out
