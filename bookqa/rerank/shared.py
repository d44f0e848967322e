"""Rerankers loaded once per process: loading the reranker takes seconds, so the CLI, the web app, the
API and an evaluation loop pay it once per configuration."""
from __future__ import annotations

import threading
from typing import Any, Optional

from ..progress import Progress, no_progress
from ..settings import Settings
from .config import QRRankerConfig

_cache_lock = threading.Lock()
_rerankers: dict[tuple, Any] = {}


def get_reranker(settings: Settings, progress: Progress = no_progress, config: Optional[QRRankerConfig] = None):
    """The QRRanker for ``config`` (default: the one the settings describe), loaded once per process."""
    from . import QRRanker  # looked up on the package, where tests may replace it

    config = config or QRRankerConfig.from_settings(settings)
    key = (config, str(settings.models_dir))
    with _cache_lock:
        ranker = _rerankers.get(key)
        if ranker is None:
            ranker = QRRanker(settings=settings, config=config, progress=progress)
            _rerankers[key] = ranker
        return ranker


def question_adapter(ranker, settings: Settings):
    """The cached pass's own adapter for ``ranker`` under the ``qr_cached_adapter`` setting, or None."""
    from .adapter import chosen_adapter

    base = ranker.adapter.base_model if ranker.adapter is not None else ranker.config.model
    return chosen_adapter(base, settings.qr_cached_adapter, heads_given=bool(ranker.config.heads),
                          applies_to="question")


def get_cached_reranker(settings: Settings, progress: Progress = no_progress,
                        config: Optional[QRRankerConfig] = None):
    """The cached-chunk ranker over :func:`get_reranker`'s model (one loaded model for both paths)."""
    from .cached import CachedQRRanker

    ranker = get_reranker(settings, progress, config)
    key = ("cached", ranker.config, str(settings.models_dir), settings.qr_cache_dtype, settings.qr_cached_adapter)
    with _cache_lock:
        cached = _rerankers.get(key)
        if cached is None:
            cached = CachedQRRanker(ranker, kv_dtype=settings.qr_cache_dtype,
                                    question_adapter=question_adapter(ranker, settings))
            _rerankers[key] = cached
        return cached
