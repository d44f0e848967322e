"""QR head sets: which (layer, query-head) pairs score candidates, where they come from, how to store them.

A heads file is JSON::

    {"model": "qwen2.5-coder-0.5b", "revision": "...", "heads": [[layer, head], ...],   # rank order
     "detection": {"method": ..., "data": ..., "n_items": ..., "layers": [a, b], ...},
     "date": "2026-11-28", "scores": [...],                                           # optional
     "position_prior": [{...}, ...]}          # optional, per scoring setting (rerank/orders.py)

Heads are 0-indexed; ``head`` is a query-head index (with GQA it reads KV head ``head // group``).

:func:`resolve_heads` picks, in order: an explicit file (or ``builtin:NAME``) > a ``qr_heads.json`` in the
model directory (a trained model, bookqa/train) > the ``qr_head_list*`` fields of a
MindscapeRAG/QRRanker-style ``config.json`` in the model directory (for a hub id: the same two files in
its hub repository) > the file shipped for the model under ``bookqa/heads/<model>.json`` > a built-in
published list matched by model id.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..errors import ConfigError, ModelError, NotFoundError
from ..fileio import read_json, write_json

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "heads"
MODEL_DIR_HEADS = "qr_heads.json"  # a heads file inside a model directory (written by `bookqa train`)


def parse_head(value: Any) -> tuple[int, int]:
    """A head from "l-h" (or "l:h", "l.h") or a [l, h] pair."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*[-:.]\s*(\d+)\s*", value)
        if not m:
            raise ConfigError(f"cannot read head {value!r}: expected 'layer-head'")
        return int(m.group(1)), int(m.group(2))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise ConfigError(f"cannot read head {value!r}: expected 'layer-head' or [layer, head]")


def _parse(spec: str) -> list[tuple[int, int]]:
    return [parse_head(h) for h in spec.split(",") if h.strip()]


# Published lists, copied exactly from the sources named in ``source`` (layer-head, 0-indexed, in published order).
BUILTIN: dict[str, dict[str, Any]] = {
    "qrranker-qwen3-4b-instruct-2507": {
        "heads": _parse("20-15,21-11,17-27,23-10,22-4,21-10,21-8,21-18,18-15,18-19,17-25,17-17,24-13,17-4,19-12,21-31"),
        "models": ("qwen/qwen3-4b-instruct-2507", "mindscaperag/qrranker"),
        "source": "QRRanker paper (arXiv 2602.12192) App. D/F; seed: 1,000 NarrativeQA training samples",
    },
    "qrranker-llama-3.2-3b-instruct": {
        "heads": _parse("12-1,13-9,13-23,12-16,8-8,13-16,12-6,13-22,12-2,15-22,12-3,15-18,12-10,14-2,21-20,9-23"),
        "models": ("meta-llama/llama-3.2-3b-instruct",),
        "source": "QRRanker paper v3 App. F; seed: 1,000 MuSiQue training samples",
    },
    "qrhead-llama-3.1-8b-instruct-lme": {
        "heads": _parse("13-18,13-21,8-11,14-13,17-29,13-1,13-13,14-29,14-31,13-8,16-1,17-21,13-3,10-31,13-4,14-22"),
        "models": ("meta-llama/llama-3.1-8b-instruct", "meta-llama/meta-llama-3.1-8b-instruct"),
        "source": "QRHead configs (princeton-pli/QRHead 7a668e7), LongMemEval detection",
    },
    "qrhead-llama-3.1-8b-instruct-nq": {
        "heads": _parse("14-22,13-16,14-28,14-31,16-19,14-1,16-26,17-24,14-0,13-0,16-25,13-12,13-1,13-10,17-27,20-14"),
        "models": (),
        "source": "QRHead configs, BEIR-NQ detection",
    },
    "qrhead-llama-3.1-70b-instruct-lme": {
        "heads": _parse("35-17,35-27,31-33,35-7,35-43,35-20,33-16,31-38,35-40,35-25,53-1,35-19,35-24,23-42,21-39,"
                        "52-58,28-45,39-43,17-61,14-21,33-18,36-52,35-47,71-6,27-21,29-55,35-23,38-48,35-28,39-41,"
                        "35-21,38-55"),
        "models": ("meta-llama/llama-3.1-70b-instruct", "meta-llama/meta-llama-3.1-70b-instruct"),
        "source": "QRHead configs, LongMemEval detection (top 32)",
    },
    "qrhead-llama-3.1-70b-instruct-nq": {
        "heads": _parse("31-32,35-26,35-25,35-21,39-41,35-29,38-18,37-9,52-19,35-6,47-18,52-58,35-24,35-28,37-29,"
                        "35-40,37-25,39-40,34-1,31-39,37-24,35-23,31-37,35-20,33-18,35-50,64-31,35-42,37-28,47-17,"
                        "35-19,35-3"),
        "models": (),
        "source": "QRHead configs, BEIR-NQ detection (top 32)",
    },
    "qrhead-llama-3.2-3b-instruct-lme": {
        "heads": _parse("15-18,15-22,16-15,18-19,13-23,12-1,21-20,20-11,18-11,18-18,13-16,16-16,18-15,19-8,15-17,17-2"),
        "models": (),
        "source": "QRHead configs, LongMemEval detection",
    },
    "qrhead-llama-3.2-3b-instruct-nq": {
        "heads": _parse("13-16,12-12,13-23,13-21,15-18,12-3,21-20,12-1,13-2,13-1,12-6,12-11,13-0,15-22,18-19,18-11"),
        "models": (),
        "source": "QRHead configs, BEIR-NQ detection",
    },
    "qrhead-llama-3.2-1b-instruct-nq": {
        "heads": _parse("8-21,8-14,7-22,6-31,8-28,10-26,10-0,5-5,8-3,6-30,8-0,7-26,7-25,7-23,11-4,8-20"),
        "models": ("meta-llama/llama-3.2-1b-instruct",),
        "source": "QRHead configs, BEIR-NQ detection",
    },
    "qrhead-qwen2.5-7b-instruct-nq": {
        "heads": _parse("16-19,16-2,16-20,16-14,16-0,15-24,16-18,17-18,16-1,19-18,19-19,18-16,16-17,19-25,19-17,20-21"),
        "models": ("qwen/qwen2.5-7b-instruct",),
        "source": "QRHead configs, BEIR-NQ detection",
    },
}


def head_name(head: tuple[int, int]) -> str:
    return f"{head[0]}-{head[1]}"


@dataclass
class HeadSet:
    heads: list[tuple[int, int]]  # rank order
    model: str = ""
    revision: str = ""
    detection: dict[str, Any] = field(default_factory=dict)
    date: str = ""
    scores: Optional[list[float]] = None
    source: str = ""  # where this set was read from (file path, "config.json", "builtin:NAME")
    # Per-position score priors of these heads, one per scoring setting (rerank/orders.py; written by
    # `bookqa heads prior`). Valid only for exactly these heads: top() and a new detection drop them.
    position_prior: Optional[list[dict[str, Any]]] = None

    def __post_init__(self):
        if not self.heads:
            raise ConfigError("a head set needs at least one head")
        if len(set(self.heads)) != len(self.heads):
            raise ConfigError("the head set lists a head twice")
        for layer, head in self.heads:
            if layer < 0 or head < 0:
                raise ConfigError(f"negative layer/head in head set: {layer}-{head}")

    @property
    def deepest_layer(self) -> int:
        return max(layer for layer, _ in self.heads)

    def by_layer(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for layer, head in self.heads:
            out.setdefault(layer, []).append(head)
        return out

    def top(self, n: int) -> "HeadSet":
        return HeadSet(heads=self.heads[:n], model=self.model, revision=self.revision, detection=self.detection,
                       date=self.date, scores=None if self.scores is None else self.scores[:n], source=self.source)

    def validate_for(self, n_layers: int, n_heads: int) -> None:
        bad = [head_name(h) for h in self.heads if h[0] >= n_layers or h[1] >= n_heads]
        if bad:
            raise ModelError(f"head set {self.source or self.model!r} does not fit a model with {n_layers} layers x "
                             f"{n_heads} heads (offending: {', '.join(bad[:5])}); were these heads detected "
                             f"for another model?")

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"model": self.model, "revision": self.revision,
                               "heads": [[l, h] for l, h in self.heads], "detection": self.detection,
                               "date": self.date or _dt.date.today().isoformat()}
        if self.scores is not None:
            row["scores"] = [float(s) for s in self.scores]
        if self.position_prior:
            row["position_prior"] = list(self.position_prior)
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any], source: str = "") -> "HeadSet":
        if "heads" not in row:
            raise ConfigError(f"{source or 'heads file'} has no 'heads' list")
        return cls(heads=[parse_head(h) for h in row["heads"]], model=str(row.get("model", "")),
                   revision=str(row.get("revision", "")), detection=dict(row.get("detection") or {}),
                   date=str(row.get("date", "")), scores=row.get("scores"), source=source,
                   position_prior=row.get("position_prior") or None)


def save_heads(path: Path | str, heads: HeadSet) -> None:
    write_json(path, heads.to_json())


def load_heads(path: Path | str) -> HeadSet:
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise NotFoundError(f"heads file not found: {path}")
    try:
        row = read_json(path)
    except ValueError as exc:
        raise ConfigError(f"heads file {path} is not valid JSON: {exc}") from None
    return HeadSet.from_json(row, source=str(path))


def builtin_heads(name: str) -> HeadSet:
    key = name.lower().removeprefix("builtin:")
    if key not in BUILTIN:
        raise NotFoundError(f"no built-in head set {name!r}; known: {', '.join(sorted(BUILTIN))}")
    entry = BUILTIN[key]
    return HeadSet(heads=list(entry["heads"]), model=(entry["models"] or ("",))[0],
                   detection={"method": "published", "source": entry["source"]}, source=f"builtin:{key}")


def heads_from_config(model_dir: Path | str) -> Optional[HeadSet]:
    """The head list of a MindscapeRAG/QRRanker-style ``config.json`` (``qr_head_list_mapped`` as [l, h]
    pairs, or ``qr_head_list`` as "l-h" strings / pairs), or None when the fields are absent."""
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = read_json(cfg_path)
    except (OSError, ValueError):
        return None
    raw = cfg.get("qr_head_list_mapped") or cfg.get("qr_head_list")
    if not raw:
        return None
    if isinstance(raw, str):
        raw = [h for h in re.split(r"[,\s]+", raw) if h]
    heads = [parse_head(h) for h in raw]
    detection: dict[str, Any] = {"method": "config.json"}
    for key in ("qr_start_layer", "qr_end_layer"):
        if key in cfg:
            detection[key] = cfg[key]
    start, end = cfg.get("qr_start_layer"), cfg.get("qr_end_layer")
    if isinstance(start, int) and isinstance(end, int):
        outside = [head_name(h) for h in heads if not start <= h[0] < end]
        if outside:
            # qr_end_layer is exclusive in the released config (17..25 for layers 17-24).
            raise ConfigError(f"{cfg_path}: heads {', '.join(outside)} lie outside qr_start_layer..qr_end_layer")
    return HeadSet(heads=heads, model=str(cfg.get("_name_or_path", "")), detection=detection,
                   source=str(cfg_path))


def _shipped_name(model_name: str) -> Optional[str]:
    from ..weights import lookup

    entry = lookup(model_name)
    if entry is not None:
        return entry.name
    return None


def shipped_heads(model_name: str) -> Optional[HeadSet]:
    name = _shipped_name(model_name)
    if name is None:
        return None
    path = SHIPPED_DIR / f"{name}.json"
    return load_heads(path) if path.is_file() else None


def builtin_for_model(model_id: str) -> Optional[HeadSet]:
    """The published list whose model matches ``model_id`` (hub id, or a directory named like it)."""
    key = model_id.strip().lower().rstrip("/")
    tail = key.split("/")[-1]
    for name, entry in BUILTIN.items():
        if any(key == m or tail == m.split("/")[-1] for m in entry["models"]):
            return builtin_heads(name)
    return None


def resolve_heads(model_name: str, heads_arg: Optional[str] = None, model_dir: Optional[str] = None) -> HeadSet:
    """The head set to use for ``model_name`` (registry name, hub id or directory).

    Order: ``heads_arg`` (a heads file or ``builtin:NAME``) > ``qr_heads.json`` in the model directory (or
    hub repository) > ``qr_head_list*`` in its config.json > the shipped ``bookqa/heads/<model>.json`` > a
    built-in published list for this model id.
    """
    if heads_arg:
        if heads_arg.lower().startswith("builtin:"):
            return builtin_heads(heads_arg)
        return load_heads(heads_arg)
    for directory in dict.fromkeys((model_dir, model_name)):  # a hub id is often both
        if not directory:
            continue
        own = _model_file(directory, MODEL_DIR_HEADS)
        if own is not None:  # a model written by `bookqa train` carries its heads file
            return load_heads(own)
        config = _model_file(directory, "config.json")
        found = heads_from_config(config.parent) if config is not None else None
        if found is not None:
            return found
    found = shipped_heads(model_name)
    if found is not None:
        return found
    for ident in (model_name, _config_name(model_dir) or "", _config_name(model_name) or ""):
        if ident:
            found = builtin_for_model(ident)
            if found is not None:
                return found
    raise NotFoundError(
        f"no QR heads known for model {model_name!r}: detect them with "
        f"`bookqa heads detect --model {model_name} --data SEED.jsonl --out heads.json` "
        f"(seed files come from `bookqa heads build-seeds`), then pass the file as the reranker heads")


def _model_file(model: str, filename: str) -> Optional[Path]:
    """``filename`` of a model as a local path: in its directory, or for a hub id the cached copy (fetched
    first unless HF_HUB_OFFLINE is set). None when the model has no such file, the name is neither a
    directory nor a hub id, or neither the cache nor the hub has it: the caller then looks elsewhere,
    and loading the model gives the error."""
    local = Path(os.path.expanduser(model))
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    repo_id = model.strip()
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        return None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, filename))
    except Exception:  # not found, offline and not cached, unreachable: all mean "not here"
        return None


def _config_name(directory: Optional[str]) -> Optional[str]:
    """The ``_name_or_path`` recorded in a local model directory's config.json (its hub id)."""
    if not directory:
        return None
    cfg = Path(os.path.expanduser(directory)) / "config.json"
    if not cfg.is_file():
        return None
    try:
        return str(json.loads(cfg.read_text()).get("_name_or_path") or "") or None
    except (OSError, ValueError):
        return None


def merge_unique(heads: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    seen, out = set(), []
    for h in heads:
        if h not in seen:
            seen.add(h)
            out.append(h)
    return out


def all_heads(layers: Sequence[int], n_heads: int) -> list[tuple[int, int]]:
    return [(l, h) for l in layers for h in range(n_heads)]
