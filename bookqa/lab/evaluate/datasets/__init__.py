"""One loader per dataset, each reading the official format into the common form of ``base``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ....errors import ConfigError
from .base import Document, EvalData, Evidence, Paragraph, Question
from .detectiveqa import load_detectiveqa
from .hotpotqa import load_hotpotqa
from .locomo import CATEGORY_NAMES as LOCOMO_CATEGORIES
from .locomo import load_locomo
from .musique import load_musique
from .narrativeqa import load_narrativeqa
from .quality import load_quality

LOADERS: dict[str, Callable[..., EvalData]] = {
    "narrativeqa": load_narrativeqa,
    "detectiveqa": load_detectiveqa,
    "locomo": load_locomo,
    "musique": load_musique,
    "hotpotqa": load_hotpotqa,
    "quality": load_quality,
}
DATASETS = tuple(LOADERS)


def load_dataset(name: str, path: Path | str, **options: Any) -> EvalData:
    """Load ``name`` from ``path``; ``options`` go to that dataset's loader (e.g. ``split``, ``langs``)."""
    key = name.strip().lower()
    if key not in LOADERS:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return LOADERS[key](Path(path).expanduser(), **{k: v for k, v in options.items() if v is not None})


__all__ = ["DATASETS", "LOADERS", "LOCOMO_CATEGORIES", "Document", "EvalData", "Evidence", "Paragraph", "Question",
           "load_dataset"]
