"""Which configurations an evaluation run compares: their names, and the objects that run them.

``default`` is the reranker ``bookqa ask`` uses out of the box for the run's model (every reranking
option at its default, resolved on this machine as ``bookqa ask`` resolves it), so it can be measured
next to ``qr`` (the reranker as the run's settings configure it, e.g. the plain heads) in one run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from ...errors import ConfigError
from ...pipeline import get_reranker
from ...rerank.config import QRRankerConfig
from ...settings import Settings
from ..settings import EvalSettings
from .configs import (ALL_CONFIGS, DEFAULT_CONFIGS, FIRST_STAGE, PERMUTATIONS_DEFAULT, QR_VARIANTS, REFINE_DEFAULT,
                      TRAINED_CONFIGS, TRAINED_EXTENSIONS, Config, FirstStageConfig, FusedConfig, RerankConfig)
from .cached import CACHED_CONFIGS
from .robust import ExtendedConfig, PassPlan, make_variant


def default_ranker_config(settings: Settings) -> QRRankerConfig:
    """The QR ranker a user gets with no reranking setting changed: the run's model, device and dtype, and
    every other option at its default."""
    return QRRankerConfig(model=settings.reranker_model, device=settings.device, dtype=settings.dtype)


_POINTWISE: dict[tuple, Any] = {}


def get_pointwise(settings: Settings, options: EvalSettings):
    """The pointwise baseline for these settings, loaded once per process."""
    from ..baselines.pointwise import PointwiseReranker

    key = (settings.reranker_model, settings.device, settings.dtype, options.pointwise_batch_size,
           str(settings.models_dir))
    if key not in _POINTWISE:
        _POINTWISE[key] = PointwiseReranker(settings.reranker_model, settings=settings,
                                                  batch_size=options.pointwise_batch_size)
    return _POINTWISE[key]


_GENERATIVE: dict[tuple, Any] = {}


def get_generative(name: str, settings: Settings, options: EvalSettings):
    """The ``rankgpt`` or ``likert`` baseline over the configured generator, made once per process."""
    key = (name, settings.generator, settings.generator_model, settings.base_url, settings.generator_n_ctx,
           options.rankgpt_window, options.rankgpt_stride, options.likert_group_size, options.likert_scale,
           options.genrank_passage_tokens, str(settings.models_dir))
    if key not in _GENERATIVE:
        if name == "rankgpt":
            from ..baselines.rankgpt import PermutationReranker

            _GENERATIVE[key] = PermutationReranker(settings=settings, window=options.rankgpt_window,
                                                   stride=options.rankgpt_stride,
                                                   passage_tokens=options.genrank_passage_tokens)
        else:
            from ..baselines.likert import LikertReranker

            _GENERATIVE[key] = LikertReranker(settings=settings, group_size=options.likert_group_size,
                                              scale=options.likert_scale,
                                              passage_tokens=options.genrank_passage_tokens)
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
                  rerankers: Optional[dict[str, Any]] = None, permutations: Optional[int] = None,
                  options: Optional[EvalSettings] = None) -> list[Config]:
    """Configurations in run order (first stage, rerankers, fusions); a fusion brings in the reranker
    it reads. ``rerankers`` overrides the reranker object of "qr" / "qr_prefix" / "qr_trained" /
    "pointwise" / "rankgpt" / "likert" (tests pass tiny models and fake generators). ``permutations``:
    orders of the ``*_perm`` configurations (default: rerank_permutations, or 3 when that is 0 or 1)."""
    rerankers = dict(rerankers or {})
    options = options or EvalSettings.from_env()
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
        return get_reranker(settings)

    def trained_ranker():
        if "qr_trained" in rerankers:
            return rerankers["qr_trained"]
        # cached per configuration: every trained configuration shares it
        return get_reranker(settings.replace(reranker_model=str(trained), reranker_heads="", reranker_adapter="none"))

    wrapped: dict[str, Any] = {}

    def make(name: str) -> Config:
        if name in FIRST_STAGE:
            return FirstStageConfig(name, settings)
        if name == "qr" or name in QR_VARIANTS:
            return make_variant(name, shipped, plan, permutations or settings.rerank_permutations,
                                settings.rerank_refine)
        if name == "default":
            return RerankConfig("default", lambda: rerankers.get("default") or get_reranker(
                settings, config=default_ranker_config(settings)))
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
        if name in CACHED_CONFIGS:
            from .cached import CachedConfig

            base, cascade, adapted = CACHED_CONFIGS[name]

            def make_cached(base=base, adapted=adapted):  # one cached ranker per QR ranker and adapter
                from ...rerank.cached import CachedQRRanker
                from ...rerank.shared import question_adapter

                if (base, adapted) not in wrapped:
                    ranker = shipped() if base == "qr" else trained_ranker()
                    adapter = question_adapter(ranker, settings) if adapted else None
                    if adapted and adapter is None:
                        raise ConfigError(f"{name} needs the cached pass's adapter: set BOOKQA_QR_CACHED_ADAPTER")
                    wrapped[base, adapted] = CachedQRRanker(ranker, kv_dtype=settings.qr_cache_dtype,
                                                            question_adapter=adapter)
                return wrapped[base, adapted]

            return CachedConfig(name, make_cached, cascade_top=settings.qr_cascade_top if cascade else 0)
        if name == "pointwise":
            config = RerankConfig("pointwise", lambda: rerankers.get("pointwise") or get_pointwise(settings, options))
            config.order_sensitive = False  # one (question, passage) pair at a time
            return config
        if name in ("rankgpt", "likert"):
            return RerankConfig(name, lambda: rerankers.get(name) or get_generative(name, settings, options))
        if name == "qr_fused":
            return FusedConfig("qr_fused", "qr", options.eval_fusion_weight, settings.rrf_k)
        raise ConfigError(f"unknown configuration {name!r}")

    configs = [make(n) for n in names]
    rank = {"first": 0, "rerank": 1, "fused": 2}
    kind = lambda c: "first" if isinstance(c, FirstStageConfig) else ("fused" if c.depends else "rerank")  # noqa: E731
    by_name = {c.name: c for c in configs}
    depth = lambda c: 1 + max((depth(by_name[d]) for d in c.depends if d in by_name), default=0)  # noqa: E731
    return sorted(configs, key=lambda c: (rank[kind(c)], depth(c)))  # a configuration after those it reads
