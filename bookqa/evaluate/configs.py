"""The configurations one evaluation run compares, all on identical candidates.

``bm25``, ``dense``, ``hybrid``      first-stage retrieval, top-K each (K = --k, default 50)
``qr``                               QRRanker with the shipped heads, reranking the hybrid top-K
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

Every reranking configuration reads the same candidate list (the hybrid top-K computed once per
question and stored in the results file), so differences are the reranker's alone. Each run of a
configuration returns the ranked chunk ids, their scores and the seconds it took.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..errors import ConfigError
from ..settings import Settings

FIRST_STAGE = ("bm25", "dense", "hybrid")
ALL_CONFIGS = ("bm25", "dense", "hybrid", "qr", "qr_prefix", "qr_trained", "qr_fused", "pointwise", "rankgpt",
               "likert")
DEFAULT_CONFIGS = ("bm25", "dense", "hybrid", "qr", "qr_prefix", "qr_fused", "pointwise")
# issue 11: order-robust QR options (evaluate/robust.py), not in the default set
QR_VARIANTS = ("qr_cal", "qr_pos", "qr_perm", "qr_cal_pos", "qr_pos_perm", "qr_cal_perm", "qr_cal_pos_perm",
               "qr_refine", "qr_perm_refine")
TRAINED_CONFIGS = ("qr_trained", "qr_trained_refine", "qr_trained_perm", "qr_trained_perm_refine")  # need --trained DIR
# The extensions of a stored trained ranking (ExtendedConfig): the configuration each reads, and what it adds.
TRAINED_EXTENSIONS = {"qr_trained_refine": ("qr_trained", "refine"), "qr_trained_perm": ("qr_trained", "orders"),
                      "qr_trained_perm_refine": ("qr_trained_perm", "refine")}
ALL_CONFIGS = ALL_CONFIGS + QR_VARIANTS + TRAINED_CONFIGS[1:]
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
        found = ctx.book.search(ctx.question, k=ctx.k, method=self.method, settings=ctx.settings)
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
            from ..summaries import summary_prefix

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


class ExtendedConfig(Config):
    """A stored one-order QR ranking (``base``) taken further the way QRRanker's options would: scored
    under ``orders`` orders in all (the stored one is the input order; the others — reversed, interleaved —
    are computed) and averaged, then the top ``refine`` scored again in a short reversed prompt
    (rerank/debias.py). The stored pass is not run twice; the seconds are the base's plus the new prompts'.
    A base that is itself averaged over orders (``qr_trained_perm``) can only be refined (``orders=1``):
    refinement reads nothing of the first ranking but its scores, so that equals QRRanker with both options."""

    needs_candidates = True
    order_sensitive = True

    def __init__(self, name: str, base: str, make_ranker: Callable[[], Any], orders: int = 1, refine: int = 0):
        self.name = name
        self.base = base
        self.depends = (base,)
        self.make_ranker = make_ranker
        self.orders = max(1, int(orders))
        self.refine = int(refine)

    def setup(self) -> None:
        ranker = self.make_ranker()
        if int(getattr(ranker, "refine", 0)) > 1 or int(getattr(ranker, "permutations", 1)) > 1:
            raise ConfigError(f"{self.name} extends {self.base}'s one-order ranking, but the reranker already "
                              f"scores {ranker.permutations} order(s) and refines its top {ranker.refine}; run with "
                              "BOOKQA_RERANK_PERMUTATIONS=1 BOOKQA_RERANK_REFINE=0")

    def run(self, ctx: QuestionContext) -> ConfigResult:
        import numpy as np

        from ..rerank.debias import ScorePass, candidate_orders, combine, refine_top, score_pass

        base = ctx.results[self.base]
        ids = ctx.prompt_ids
        by_id = dict(zip(base["chunk_ids"], base["scores"]))
        if len(ids) < 2 or set(by_id) != set(ids):
            return ConfigResult(list(base["chunk_ids"]), list(base["scores"]), float(base["seconds"]),
                                {"rerank": float(base["seconds"])}, {"base": self.base, "passes": 1, "refined": 0})
        ranker, texts = self.make_ranker(), [ctx.book.chunks[i].text for i in ids]
        # The stored scores are the input-order pass max-min normalised, which is all combine() reads of it.
        passes = [ScorePass(order=list(range(len(ids))), raw=np.array([float(by_id[i]) for i in ids]), null=None,
                            timings={})]
        passes += [score_pass(ranker, ctx.question, texts, None, order, with_null=False)
                   for order in candidate_orders(len(ids), self.orders)[1:]]
        scores = combine(passes, calibrate=False)
        parts = {"orders": sum(p.seconds(False) for p in passes[1:])}
        refined, tokens = 0, passes[-1].prompt_tokens
        orders = int((base.get("info") or {}).get("passes") or 1) + len(passes) - 1
        if self.refine > 1:
            scores, extra = refine_top(ranker, ctx.question, texts, None, scores, list(range(len(ids))), self.refine)
            parts["refine"], refined, tokens = extra.seconds(False), len(extra.order), extra.prompt_tokens
        best = sorted(range(len(ids)), key=lambda i: (-float(scores[i]), i))  # ties: earlier in the prompt
        seconds = float(base["seconds"]) + sum(parts.values())
        return ConfigResult([ids[i] for i in best], [float(scores[i]) for i in best], seconds,
                            {"rerank": seconds, **{f"rerank.{k}": v for k, v in parts.items() if v}},
                            {"base": self.base, "passes": orders, "refine": self.refine or None,
                             "refined": refined, "prompt_tokens": tokens})


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
        from ..retrieve.fusion import reciprocal_rank_fusion

        base = ctx.results[self.base]
        t0 = time.perf_counter()
        fused = reciprocal_rank_fusion(
            {self.base: list(zip(base["chunk_ids"], base["scores"])),
             "first_stage": [(c["chunk_id"], c["score"]) for c in ctx.candidates]},
            {self.base: 1.0, "first_stage": self.weight}, k=self.rrf_k)
        fusion = time.perf_counter() - t0
        return ConfigResult([c.chunk_id for c in fused], [c.score for c in fused], float(base["seconds"]) + fusion,
                            {"fusion": fusion}, {"base": self.base, "weight": self.weight, "rrf_k": self.rrf_k})


# --- building the set for a run ------------------------------------------------------------------

_POINTWISE: dict[tuple, Any] = {}


def get_pointwise(settings: Settings):
    """The pointwise baseline for these settings, loaded once per process."""
    from ..rerank.pointwise import PointwiseReranker

    key = (settings.reranker_model, settings.device, settings.dtype, settings.pointwise_batch_size,
           str(settings.models_dir))
    if key not in _POINTWISE:
        _POINTWISE[key] = PointwiseReranker(settings.reranker_model, settings=settings)
    return _POINTWISE[key]


_GENERATIVE: dict[tuple, Any] = {}


def get_generative(name: str, settings: Settings):
    """The ``rankgpt`` or ``likert`` baseline over the configured generator, made once per process."""
    key = (name, settings.generator, settings.generator_model, settings.base_url, settings.generator_n_ctx,
           settings.rankgpt_window, settings.rankgpt_stride, settings.likert_group_size, settings.likert_scale,
           settings.genrank_passage_tokens, str(settings.models_dir))
    if key not in _GENERATIVE:
        if name == "rankgpt":
            from ..rerank.permutation import PermutationReranker

            _GENERATIVE[key] = PermutationReranker(settings=settings)
        else:
            from ..rerank.likert import LikertReranker

            _GENERATIVE[key] = LikertReranker(settings=settings)
    return _GENERATIVE[key]


def parse_config_names(spec: Optional[str | Sequence[str]], trained: Optional[Path] = None) -> list[str]:
    """Config names from "a,b,c" (or a list); default: all but ``qr_trained`` (plus it with --trained) and
    the generative baselines ``rankgpt`` / ``likert``."""
    if spec is None or spec == "" or spec == "all":
        names = list(DEFAULT_CONFIGS) + (["qr_trained"] if trained else [])
    else:
        raw = spec.split(",") if isinstance(spec, str) else list(spec)
        names = [n.strip().lower().replace("-", "_").replace("+", "") for n in raw if n.strip()]
    unknown = [n for n in names if n not in ALL_CONFIGS]
    if unknown:
        raise ConfigError(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(ALL_CONFIGS)}")
    needs_trained = [n for n in names if n in TRAINED_CONFIGS]
    if needs_trained and trained is None:
        raise ConfigError(f"configuration {needs_trained[0]} needs --trained DIR (a trained QRRanker checkpoint)")
    return list(dict.fromkeys(names))


def build_configs(names: Sequence[str], settings: Settings, trained: Optional[Path] = None,
                  rerankers: Optional[dict[str, Any]] = None, permutations: Optional[int] = None) -> list[Config]:
    """Configurations in run order (first stage, rerankers, fusions); a fusion brings in the reranker
    it reads. ``rerankers`` overrides the reranker object of "qr" / "qr_prefix" / "qr_trained" /
    "pointwise" / "rankgpt" / "likert" (tests pass tiny models and fake generators). ``permutations``:
    orders of the ``*_perm`` configurations (default: rerank_permutations, or 3 when that is 0 or 1)."""
    from .robust import PassPlan, make_variant

    rerankers = dict(rerankers or {})
    names = list(names)
    plan = PassPlan()  # the QR configurations share forward passes
    if "qr_fused" in names and "qr" not in names:
        names.insert(names.index("qr_fused"), "qr")
    for name, (base, _) in reversed(TRAINED_EXTENSIONS.items()):  # an extension brings in what it extends
        if name in names and base not in names:
            names.insert(names.index(name), base)

    def shipped():
        if "qr" in rerankers:
            return rerankers["qr"]
        from ..pipeline import get_reranker

        return get_reranker(settings)

    def trained_ranker():
        if "qr_trained" in rerankers:
            return rerankers["qr_trained"]
        from ..pipeline import get_reranker  # cached per settings: both trained configurations share it

        return get_reranker(settings.replace(reranker_model=str(trained), reranker_heads="", reranker_adapter="none"))

    def make(name: str) -> Config:
        if name in FIRST_STAGE:
            return FirstStageConfig(name, settings)
        if name == "qr" or name in QR_VARIANTS:
            return make_variant(name, shipped, plan, permutations or settings.rerank_permutations,
                                settings.rerank_refine)
        if name == "qr_prefix":
            return RerankConfig("qr_prefix", lambda: rerankers.get("qr_prefix") or shipped(), prefix=True)
        if name == "qr_trained":
            return RerankConfig("qr_trained", trained_ranker)
        if name in TRAINED_EXTENSIONS:
            base, adds = TRAINED_EXTENSIONS[name]
            if adds == "orders":
                orders = permutations or settings.rerank_permutations
                return ExtendedConfig(name, base, trained_ranker, orders=orders if orders > 1 else PERMUTATIONS_DEFAULT)
            refine = settings.rerank_refine
            return ExtendedConfig(name, base, trained_ranker, refine=refine if refine > 1 else REFINE_DEFAULT)
        if name == "pointwise":
            config = RerankConfig("pointwise", lambda: rerankers.get("pointwise") or get_pointwise(settings))
            config.order_sensitive = False  # one (question, passage) pair at a time
            return config
        if name in ("rankgpt", "likert"):
            return RerankConfig(name, lambda: rerankers.get(name) or get_generative(name, settings))
        if name == "qr_fused":
            return FusedConfig("qr_fused", "qr", settings.eval_fusion_weight, settings.rrf_k)
        raise ConfigError(f"unknown configuration {name!r}")

    configs = [make(n) for n in names]
    rank = {"first": 0, "rerank": 1, "fused": 2}
    kind = lambda c: "first" if isinstance(c, FirstStageConfig) else ("fused" if c.depends else "rerank")  # noqa: E731
    by_name = {c.name: c for c in configs}
    depth = lambda c: 1 + max((depth(by_name[d]) for d in c.depends if d in by_name), default=0)  # noqa: E731
    return sorted(configs, key=lambda c: (rank[kind(c)], depth(c)))  # a configuration after those it reads


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
