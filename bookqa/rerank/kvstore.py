"""A book's chunk keys and values on disk, memory-mapped, filled once per chunk.

One directory per fingerprint under ``<book>/qr_kv/``::

    cache.json     the fingerprint (everything the stored keys/values depend on), shapes, dtype
    prefix.npy     (layers, 2, kv_heads, p, head_dim) float32: the shared prefix's keys and values
    kv.npy         (tokens, layers, 2, kv_heads, head_dim): every chunk block's keys and values, token-major,
                   chunk i at rows offsets[i] .. offsets[i+1]
    scale.npy      (tokens, layers, 2, kv_heads) float16: per-row scales, only for int8
    lengths.npy    (chunks,) int32 block tokens; text_spans.npy (chunks, 2) int32 the chunk text's tokens
    built.npy      (chunks,) bool: which chunks are filled

``kv.npy`` is allocated for the whole book when the directory is made (a sparse file: unfilled rows take
no disk) and filled chunk by chunk, eagerly at ingest or lazily for the chunks questions draw. A chunk's
rows are written and flushed before ``built.npy`` (replaced atomically) says so, so an interruption loses at
most the chunks since the last commit, and filling them again writes the same bytes (each chunk is encoded
alone, from the same prefix). The directory's name is a digest of the fingerprint: a cache made for another
model, adapter, template, dtype or chunking has another name and is never read.

Row formats (``kv_dtype``): ``bfloat16`` (the default: exact for a bfloat16 reranker, stored as its raw 16
bits since numpy has no bfloat16), ``float16``, ``float32``, and ``int8`` (symmetric, one float16 scale per
token, layer, key/value and head: half the bytes of bfloat16).
"""
from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import ModelError
from ..fileio import atomic_path, fingerprint, read_json, read_npy, write_json, write_npy

KV_DTYPES = ("bfloat16", "float16", "float32", "int8")
CACHE_DIR = "qr_kv"
_STORAGE = {"bfloat16": np.uint16, "float16": np.float16, "float32": np.float32, "int8": np.int8}


@dataclass(frozen=True)
class KVShape:
    layers: int  # decoder layers stored: 0 .. deepest QR layer
    kv_heads: int
    head_dim: int

    @property
    def row_elements(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim


def bytes_per_token(shape: KVShape, kv_dtype: str) -> float:
    if kv_dtype == "int8":
        return shape.row_elements + 2 * shape.layers * 2 * shape.kv_heads
    return shape.row_elements * np.dtype(_STORAGE[kv_dtype]).itemsize


def encode_rows(rows, kv_dtype: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(n, layers, 2, kv_heads, head_dim) torch rows → stored form (and int8 scales)."""
    import torch

    if kv_dtype == "bfloat16":
        return rows.to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint16), None
    if kv_dtype in ("float16", "float32"):
        return rows.to(getattr(torch, kv_dtype)).contiguous().numpy(), None
    x = rows.float()
    amax = x.abs().amax(dim=-1, keepdim=True)
    scale = (amax / 127.0).to(torch.float16).float()  # rounded first: the stored scale is what decodes
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(x / safe), -127, 127).to(torch.int8)
    return q.numpy(), scale[..., 0].to(torch.float16).numpy()


def decode_rows(data: np.ndarray, scale: Optional[np.ndarray], kv_dtype: str, dtype):
    """Stored rows → a torch tensor in ``dtype``."""
    import torch

    if kv_dtype == "bfloat16":
        t = torch.from_numpy(np.ascontiguousarray(data).view(np.int16)).view(torch.bfloat16)
        return t.to(dtype)
    if kv_dtype in ("float16", "float32"):
        return torch.from_numpy(np.ascontiguousarray(data)).to(dtype)
    q = torch.from_numpy(np.ascontiguousarray(data)).float()
    s = torch.from_numpy(np.ascontiguousarray(scale)).float()[..., None]
    return (q * s).to(dtype)


class ChunkKVStore:
    """The stored keys/values of one book for one fingerprint (see module docstring)."""

    def __init__(self, directory: Path, meta: dict[str, Any]):
        self.dir = Path(directory)
        self.meta = meta
        self.kv_dtype: str = meta["kv_dtype"]
        self.shape = KVShape(**meta["shape"])
        self.lengths = read_npy(self.dir / "lengths.npy").astype(np.int64)
        self.text_spans = read_npy(self.dir / "text_spans.npy").astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.built = read_npy(self.dir / "built.npy").astype(bool)
        self.prefix = read_npy(self.dir / "prefix.npy")
        self._kv = None
        self._scale = None
        self._kv_writable = False
        self._pending: set[int] = set()
        self._lock = threading.Lock()

    # --- opening ------------------------------------------------------------------------------
    @staticmethod
    def key(identity: dict[str, Any]) -> str:
        return fingerprint(identity)

    @classmethod
    def open(cls, book_dir: Path, identity: dict[str, Any]) -> Optional["ChunkKVStore"]:
        """The store for ``identity`` if one was made (and says it was made for exactly that), else None."""
        directory = Path(book_dir) / CACHE_DIR / cls.key(identity)
        meta_path = directory / "cache.json"
        if not meta_path.exists():
            return None
        try:
            meta = read_json(meta_path)
        except (OSError, ValueError):
            return None
        if meta.get("identity") != json.loads(json.dumps(identity)):
            return None
        try:
            return cls(directory, meta)
        except (OSError, ValueError, KeyError):
            return None

    @classmethod
    def create(cls, book_dir: Path, identity: dict[str, Any], shape: KVShape, kv_dtype: str,
               lengths: Sequence[int], text_spans: Sequence[tuple[int, int]], prefix: np.ndarray,
               prefix_tokens: int) -> "ChunkKVStore":
        """Make the directory for ``identity`` (every chunk unfilled) and remove the book's caches of
        any other fingerprint (they can never be read again by this configuration, and each is the size of
        the book's keys and values)."""
        if kv_dtype not in KV_DTYPES:
            raise ModelError(f"qr_cache_dtype must be one of {', '.join(KV_DTYPES)}, got {kv_dtype!r}")
        root = Path(book_dir) / CACHE_DIR
        key = cls.key(identity)
        directory = root / key
        if root.exists():
            for other in root.iterdir():
                if other.name != key:
                    shutil.rmtree(other, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        lengths = np.asarray(lengths, dtype=np.int32)
        tokens = int(lengths.sum())
        write_npy(directory / "lengths.npy", lengths)
        write_npy(directory / "text_spans.npy", np.asarray(text_spans, dtype=np.int32).reshape(-1, 2))
        write_npy(directory / "prefix.npy", np.asarray(prefix, dtype=np.float32))
        row = (shape.layers, 2, shape.kv_heads, shape.head_dim)
        with atomic_path(directory / "kv.npy") as tmp:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=_STORAGE[kv_dtype], shape=(max(tokens, 1),) + row).flush()
        if kv_dtype == "int8":
            with atomic_path(directory / "scale.npy") as tmp:
                np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16,
                                          shape=(max(tokens, 1),) + row[:-1]).flush()
        write_npy(directory / "built.npy", np.zeros(len(lengths), dtype=bool))
        meta = {"identity": identity, "kv_dtype": kv_dtype, "shape": shape.__dict__, "chunks": int(len(lengths)),
                "tokens": tokens, "prefix_tokens": int(prefix_tokens),
                "longest_block": int(lengths.max()) if len(lengths) else 0}
        write_json(directory / "cache.json", meta)  # last: a directory without it is not a cache
        return cls(directory, meta)

    # --- what it holds --------------------------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        return int(len(self.lengths))

    @property
    def prefix_tokens(self) -> int:
        return int(self.meta["prefix_tokens"])

    def missing(self, ids: Optional[Sequence[int]] = None) -> list[int]:
        ids = range(self.n_chunks) if ids is None else ids
        return [int(i) for i in ids if not self.built[int(i)]]

    @property
    def complete(self) -> bool:
        return bool(self.built.all())

    def disk_bytes(self) -> int:
        """Bytes the cache takes on disk (allocated blocks: unfilled rows of the sparse file count nothing)."""
        total = 0
        for f in self.dir.iterdir():
            st = f.stat()
            total += getattr(st, "st_blocks", 0) * 512 or st.st_size
        return total

    def full_bytes(self) -> int:
        return int(self.meta["tokens"] * bytes_per_token(self.shape, self.kv_dtype))

    # --- writing --------------------------------------------------------------------------------
    def _arrays(self, writable: bool):
        mode = "r+" if writable else "r"
        if self._kv is None or (writable and not self._kv_writable):
            self._kv = np.load(self.dir / "kv.npy", mmap_mode=mode)
            self._scale = np.load(self.dir / "scale.npy", mmap_mode=mode) if self.kv_dtype == "int8" else None
            self._kv_writable = writable
        return self._kv, self._scale

    def write(self, chunk_id: int, rows) -> None:
        """Store chunk ``chunk_id``'s block rows, (tokens, layers, 2, kv_heads, head_dim) torch; it counts as
        built after the next :meth:`commit`."""
        i = int(chunk_id)
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        if rows.shape[0] != b - a:
            raise ModelError(f"chunk {i} encoded to {rows.shape[0]} tokens, the cache expects {b - a}")
        data, scale = encode_rows(rows, self.kv_dtype)
        with self._lock:
            kv, sc = self._arrays(writable=True)
            kv[a:b] = data
            if sc is not None:
                sc[a:b] = scale
            self._pending.add(i)

    def commit(self) -> None:
        """Flush written rows to disk, then record their chunks as built (atomically)."""
        with self._lock:
            pending = self._pending
            if not pending:
                return
            kv, sc = self._arrays(writable=True)
            kv.flush()
            if sc is not None:
                sc.flush()
            built = self.built.copy()
            built[sorted(pending)] = True
            write_npy(self.dir / "built.npy", built)
            self.built = built
            self._pending = set()

    # --- reading --------------------------------------------------------------------------------
    def read(self, ids: Sequence[int], dtype):
        """The prefix and the chunks' rows for ``ids`` (all built), concatenated in that order:
        (layers, 2, kv_heads, p + tokens, head_dim) torch in ``dtype``, with each chunk's text token range
        in that concatenation."""
        import torch

        missing = self.missing(ids)
        if missing:
            raise ModelError(f"chunks {missing[:5]} are not in the QR cache yet")
        with self._lock:
            kv, sc = self._arrays(writable=False) if self._kv is None else (self._kv, self._scale)
            pieces = [kv[int(self.offsets[i]):int(self.offsets[i + 1])] for i in ids]
            scales = [sc[int(self.offsets[i]):int(self.offsets[i + 1])] for i in ids] if sc is not None else None
        rows = decode_rows(np.concatenate(pieces) if pieces else np.zeros((0,) + kv.shape[1:], kv.dtype),
                           np.concatenate(scales) if scales else None, self.kv_dtype, dtype)
        chunk_kv = rows.permute(1, 2, 3, 0, 4)  # (layers, 2, kvh, tokens, d)
        prefix = torch.from_numpy(self.prefix).to(dtype)
        spans, pos = [], self.prefix_tokens
        for i in ids:
            a, b = self.text_spans[int(i)]
            spans.append((pos + int(a), pos + int(b)))
            pos += int(self.lengths[int(i)])
        return torch.cat([prefix, chunk_kv], dim=3), spans


def book_caches(book_dir: Path) -> list[dict[str, Any]]:
    """What QR caches a book holds: per fingerprint directory, its meta and bytes on disk (for listings)."""
    root = Path(book_dir) / CACHE_DIR
    out = []
    if not root.exists():
        return out
    for directory in sorted(root.iterdir()):
        try:
            store = ChunkKVStore(directory, read_json(directory / "cache.json"))
        except (OSError, ValueError, KeyError):
            continue
        out.append({"key": directory.name, "chunks": store.n_chunks, "built": int(store.built.sum()),
                    "kv_dtype": store.kv_dtype, "disk_bytes": store.disk_bytes(), "full_bytes": store.full_bytes(),
                    "model": store.meta["identity"].get("model")})
    return out
