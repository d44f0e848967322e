"""Trained QR heads as a small artefact: LoRA adapter weights over a base model named by reference.

``bookqa train --scope lora`` writes a directory with

    adapter.json          format, base model (registry name, hub id or path), rank, alpha, target modules
    adapter.safetensors   "<module>.lora_A" (rank x in) and "<module>.lora_B" (out x rank) per target
    qr_heads.json         the heads and the prompt layout they were trained with

instead of a full copy of the model (the embedded 0.5B model: ~25 MB at rank 16 against 1.6 GB). Module
names are relative to the decoder stack (``layers.3.self_attn.q_proj``), so one adapter applies to the
bare decoder (QRRanker) and to the causal LM (the pointwise baseline) alike.

An adapter trained with ``bookqa train --attention question`` says ``"applies_to": "question"``: it was
trained to act on the question block of the cached-chunk pass only, over chunks the base model encoded
(cached.py loads it for that pass; the full prompt never uses it). Others apply to every token.

Loading merges the adapter into the base weights once (W += alpha/rank * B @ A, in float32, then cast to
the model's dtype): scoring then costs exactly what the base model costs, and peft is not needed at
inference time.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError, InputError, ModelError, NotFoundError
from ..fileio import read_json, write_json

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "adapters"  # bookqa/adapters/<name>/: inside the package
ADAPTER_META = "adapter.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
FORMAT = "bookqa-qr-lora"
VERSION = 1
APPLIES_TO = ("all", "question")  # every token of the full prompt / the cached pass's question block only


@dataclass(frozen=True)
class Adapter:
    path: Path  # the adapter directory
    base_model: str  # what the adapter was trained on: registry name, hub id or local path
    rank: int
    alpha: float
    targets: tuple[str, ...]  # decoder-relative module names
    model_type: str = ""  # the base config's model_type, checked on load
    applies_to: str = "all"  # APPLIES_TO

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def shipped_adapters() -> dict[str, Path]:
    """The adapters that ship inside the package (``bookqa/adapters/<name>/``), by name: a model setting
    such as ``reranker_model`` can name one like a registry model."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SHIPPED_DIR.iterdir()) if (p / ADAPTER_META).is_file()}


def adapter_dir(name: str | Path) -> Optional[Path]:
    """The directory of the adapter ``name`` names (a shipped adapter's name, or a directory holding
    adapter.json), or None when it names none."""
    shipped = shipped_adapters().get(str(name).strip().lower())
    if shipped is not None:
        return shipped
    path = Path(os.path.expanduser(str(name)))
    return path if (path / ADAPTER_META).is_file() else None


def find_adapter(name: str) -> Optional[Adapter]:
    """The adapter ``name`` names (shipped name or directory), or None when it is not an adapter."""
    path = adapter_dir(name)
    return read_adapter(path) if path is not None else None


def _canonical(model: str) -> str:
    """One spelling per model: the registry name, an absolute path, or the hub id as given."""
    from ..weights import lookup

    registered = lookup(model)
    if registered is not None:
        return registered.name
    path = Path(os.path.expanduser(model))
    return str(path.resolve()) if path.exists() else model.strip()


def chosen_adapter(model_name: str, setting: str, heads_given: bool = False,
                   applies_to: str = "all") -> Optional[Adapter]:
    """The adapter to merge into ``model_name`` for the ``reranker_adapter`` setting (or, with
    ``applies_to="question"``, the ``qr_cached_adapter`` one): none; ``auto``, the shipped adapter of that
    kind trained on this model (none when a heads file is given: an adapter belongs to the heads it was
    trained with); or a shipped adapter's name / an adapter directory, which must have been trained on
    ``model_name`` for that use."""
    value = (setting or "none").strip()
    if value.lower() in ("none", "off"):
        return None
    if value.lower() == "auto":
        if heads_given:
            return None
        want = _canonical(model_name)
        for path in shipped_adapters().values():
            adapter = read_adapter(path)
            if _canonical(adapter.base_model) == want and adapter.applies_to == applies_to:
                return adapter
        return None
    adapter = find_adapter(value)
    if adapter is None:
        known = ", ".join(shipped_adapters()) or "none in this installation"
        raise NotFoundError(f"reranker adapter {value!r}: neither a shipped adapter (known: {known}) nor a "
                            f"directory holding {ADAPTER_META}")
    if _canonical(adapter.base_model) != _canonical(model_name):
        raise ConfigError(f"the adapter {adapter.path} was trained on {adapter.base_model}, not {model_name}; "
                          f"set the reranker model to {adapter.base_model} (or to the adapter's directory)")
    if adapter.applies_to != applies_to:
        raise ConfigError(f"the adapter {adapter.path} acts on {_USE[adapter.applies_to]}; "
                          f"{_SETTING[applies_to]} needs one that acts on {_USE[applies_to]}")
    return adapter


_USE = {"all": "every token of the full prompt", "question": "the question of the cached-chunk pass only"}
_SETTING = {"all": "reranker_adapter (BOOKQA_RERANKER_ADAPTER)", "question": "qr_cached_adapter (BOOKQA_QR_CACHED_ADAPTER)"}


def read_adapter(path: Path | str) -> Adapter:
    path = Path(path)
    meta_file = path / ADAPTER_META
    try:
        meta = read_json(meta_file)
    except (OSError, ValueError) as exc:
        raise InputError(f"{meta_file}: not a readable adapter description ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{meta_file}: not a bookqa QR adapter (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if int(meta.get("version", 0)) > VERSION:
        raise InputError(f"{meta_file}: adapter format version {meta.get('version')} is newer than this bookqa "
                         f"reads ({VERSION}); upgrade bookqa")
    try:
        adapter = Adapter(path=path, base_model=str(meta["base_model"]), rank=int(meta["rank"]),
                          alpha=float(meta["alpha"]), targets=tuple(str(t) for t in meta["targets"]),
                          model_type=str(meta.get("model_type", "")),
                          applies_to=str(meta.get("applies_to", "all")))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{meta_file}: missing or malformed field ({exc})") from None
    if adapter.applies_to not in APPLIES_TO:
        raise InputError(f"{meta_file}: applies_to must be one of {', '.join(APPLIES_TO)}, got {adapter.applies_to!r}")
    if adapter.rank < 1 or not adapter.targets or not adapter.base_model:
        raise InputError(f"{meta_file}: an adapter needs a base model, a rank ≥ 1 and at least one target")
    if not (path / ADAPTER_WEIGHTS).is_file():
        raise InputError(f"{path}: {ADAPTER_WEIGHTS} is missing")
    return adapter


def _relative_names(model) -> tuple[Any, dict[int, str]]:
    """The decoder stack and, for each of its modules, its name relative to the decoder."""
    from .readout import decoder_of

    decoder = decoder_of(model)
    return decoder, {id(m): n for n, m in decoder.named_modules()}


def write_adapter(out: Path | str, model, lora_modules: dict[str, tuple[Any, Any]], *, base_model: str,
                  rank: int, alpha: float, extra: Optional[dict[str, Any]] = None) -> None:
    """Write ``lora_modules`` ({module name in ``model``: (A weight, B weight)}) as an adapter of
    ``base_model``. Names are stored relative to ``model``'s decoder stack."""
    from safetensors.torch import save_file

    out = Path(out)
    _, relative = _relative_names(model)
    by_name = dict(model.named_modules())
    tensors, targets = {}, []
    for name, (a, b) in lora_modules.items():
        module = by_name.get(name)
        if module is None or id(module) not in relative:
            raise ModelError(f"adapter target {name!r} is not a module of the model's decoder stack")
        rel = relative[id(module)]
        targets.append(rel)
        tensors[f"{rel}.lora_A"] = a.detach().float().cpu().contiguous()
        tensors[f"{rel}.lora_B"] = b.detach().float().cpu().contiguous()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{ADAPTER_WEIGHTS}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, out / ADAPTER_WEIGHTS)
    write_json(out / ADAPTER_META, {"format": FORMAT, "version": VERSION, "base_model": base_model,
                                    "model_type": str(getattr(model.config, "model_type", "")),
                                    "rank": int(rank), "alpha": float(alpha), "targets": sorted(targets),
                                    **(extra or {})})


def apply_adapter(model, adapter: Adapter) -> int:
    """Merge ``adapter`` into ``model``'s weights in place; returns the number of modules changed.
    Targets in layers the model did not load (above the deepest QR layer) are skipped."""
    import torch
    from safetensors.torch import load_file

    model_type = str(getattr(model.config, "model_type", ""))
    if adapter.model_type and model_type and adapter.model_type != model_type:
        raise ModelError(f"the adapter in {adapter.path} was trained on a {adapter.model_type} model, "
                         f"not {model_type} ({adapter.base_model})")
    try:
        tensors = load_file(str(adapter.path / ADAPTER_WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise InputError(f"{adapter.path / ADAPTER_WEIGHTS}: cannot read the adapter weights ({exc})") from None
    decoder, _ = _relative_names(model)
    present = dict(decoder.named_modules())
    n_layers = len(decoder.layers)
    changed = 0
    with torch.no_grad():
        for rel in adapter.targets:
            a, b = tensors.get(f"{rel}.lora_A"), tensors.get(f"{rel}.lora_B")
            if a is None or b is None:
                raise InputError(f"{adapter.path / ADAPTER_WEIGHTS}: no weights for target {rel}")
            module = present.get(rel)
            if module is None:
                parts = rel.split(".")
                if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit() and int(parts[1]) >= n_layers:
                    continue  # a layer the read-out never runs was not loaded
                raise ModelError(f"the adapter's target {rel} is not in the model {adapter.base_model}")
            weight = module.weight
            if a.shape[0] != adapter.rank or b.shape[1] != adapter.rank or \
                    (b.shape[0], a.shape[1]) != tuple(weight.shape):
                raise ModelError(f"the adapter's {rel} (A {tuple(a.shape)}, B {tuple(b.shape)}) does not fit the "
                                 f"model's weight {tuple(weight.shape)}: another base model?")
            delta = (b.to(weight.device) @ a.to(weight.device)) * adapter.scale
            weight.copy_((weight.float() + delta).to(weight.dtype))
            changed += 1
    return changed


def model_source(name: str, settings, progress=None) -> tuple[str, Optional[Adapter]]:
    """What to pass to ``qr.load_model`` for ``name``: the weights' directory or hub id (the base model's
    when ``name`` is an adapter directory), and the adapter to merge into them (None for a plain model)."""
    from ..weights import causal_lm_source
    from ..progress import no_progress

    adapter = find_adapter(name)
    source = causal_lm_source(adapter.base_model if adapter else name, settings, progress or no_progress)
    return source, adapter
