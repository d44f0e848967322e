"""Dense retrieval: sentence-transformers embeddings of every chunk, stored as ``<book>/embeddings.npy``.

Rows are L2-normalised float32, row i = chunk id i, so a query's cosine similarity to every chunk is one
matrix-vector product. An embedder reads a bounded number of tokens (all-MiniLM-L6-v2: 256 word pieces
including [CLS]/[SEP]) and silently truncates anything longer; a chunk longer than that is instead embedded
as overlapping windows (cut by the embedder's own tokenizer), whose normalised embeddings are averaged and
re-normalised, so every word of every chunk counts.

Embedding a long book takes minutes on a CPU, so it is resumable: every ``save_every`` batches the rows
done so far are saved (``embeddings.partial.npy`` + ``embeddings.partial.json`` with the row count and the
stage fingerprint); a re-run with the same fingerprint continues after the last saved batch, in the same
batch order, and produces the same matrix as an uninterrupted run.
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..errors import ModelError, NotFoundError
from ..fileio import read_json, read_npy, write_json, write_npy
from ..progress import Progress, no_progress

EMBEDDINGS_FILE = "embeddings.npy"
PARTIAL_FILE = "embeddings.partial.npy"
PARTIAL_META = "embeddings.partial.json"
DENSE_VERSION = 1  # bump when the way chunks are turned into vectors changes (windowing, pooling)


def window_spans(n_tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges [start, end) of at most ``size`` tokens covering ``n_tokens``, as few windows as
    possible with at least ``overlap`` tokens shared by neighbours, evenly spaced (all of equal length)."""
    if size <= 0:
        raise ValueError("window size must be positive")
    if n_tokens <= size:
        return [(0, n_tokens)]
    overlap = max(0, min(overlap, size // 2))
    count = math.ceil((n_tokens - overlap) / (size - overlap))
    starts = [round(i * (n_tokens - size) / (count - 1)) for i in range(count)]
    return [(s, s + size) for s in starts]


class Embedder:
    """A sentence-transformers model plus the windowing that keeps it from truncating."""

    def __init__(self, name: str, device: str = "cpu", window_overlap: int = 32):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        from ..weights import embedder_source

        self.name = name
        self.source = embedder_source(name)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the weight-loading bar is noise in a CLI
        try:
            self.model = SentenceTransformer(self.source, device=device)
        except (OSError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:200]  # one line for the CLI
            raise ModelError(f"cannot load embedding model {name!r} from {self.source}: {reason}") from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.eval()
        self.device = str(self.model.device.type)
        self.tokenizer = self.model.tokenizer
        self.dim = int(self.model.get_embedding_dimension())
        prompts = getattr(self.model, "prompts", None) or {}
        self.document_prompt: str = prompts.get("document", "") or ""
        self.model_query_prompt: str = prompts.get("query", "") or ""
        max_seq = self.model.get_max_seq_length() or self.tokenizer.model_max_length
        if not max_seq or max_seq > 1_000_000:  # "no limit" placeholders: fall back to the position table
            max_seq = getattr(getattr(self.model[0], "auto_model", None), "config", None)
            max_seq = getattr(max_seq, "max_position_embeddings", 512)
        max_seq = int(max_seq)
        specials = len(self.tokenizer("", add_special_tokens=True)["input_ids"])
        self._capacity = max_seq - specials  # tokens of prompt + text one forward pass reads
        self.max_tokens = self._text_budget(self.document_prompt)  # text tokens one chunk window may hold
        if self.max_tokens < 8:
            raise ModelError(f"embedding model {name!r} reads only {max_seq} tokens; too few to use")
        self.window_overlap = window_overlap
        self._lock = threading.Lock()  # one forward pass at a time (the UI may search from threads)

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _text_budget(self, prompt: str) -> int:
        return self._capacity - (self._count(prompt) if prompt else 0)

    # --- windowing -----------------------------------------------------------
    def windows(self, text: str, max_tokens: Optional[int] = None) -> list[str]:
        """``text`` itself if it fits, else overlapping substrings that each fit."""
        return self.windows_many([text], max_tokens)[0]

    def windows_many(self, texts: Sequence[str], max_tokens: Optional[int] = None) -> list[list[str]]:
        limit = max_tokens or self.max_tokens
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        out = []
        for text, offsets in zip(texts, enc["offset_mapping"]):
            if len(offsets) <= limit:
                out.append([text])
                continue
            pieces = []
            for start, end in window_spans(len(offsets), limit, self.window_overlap):
                # Re-tokenising a substring can differ at its edges (a word piece becomes a word), so
                # shrink the window until its text really fits.
                while True:
                    piece = text[offsets[start][0]:offsets[end - 1][1]]
                    excess = self._count(piece) - limit
                    if excess <= 0 or end - start <= 1:
                        break
                    end = max(start + 1, end - excess)
                pieces.append(piece)
            out.append(pieces)
        return out

    # --- encoding ------------------------------------------------------------
    def encode(self, texts: Sequence[str], batch_size: int = 32, prompt: str = "") -> np.ndarray:
        """Normalised float32 embeddings of texts that fit the model (no windowing here)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(list(texts), batch_size=batch_size, prompt=prompt or None,
                                        convert_to_numpy=True, normalize_embeddings=True,
                                        show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """One normalised row per text; long texts are the re-normalised mean of their windows."""
        windows = self.windows_many(texts)
        flat = [w for ws in windows for w in ws]
        vectors = self.encode(flat, batch_size=batch_size, prompt=self.document_prompt)
        return _pool(vectors, [len(ws) for ws in windows])

    def embed_query(self, query: str, prefix: Optional[str] = None, threads: int = 0) -> np.ndarray:
        """The query's normalised vector. ``prefix`` (e.g. an instruction for Qwen3-Embedding) defaults
        to the model's own "query" prompt, which MiniLM does not have. ``threads`` > 0 runs the forward
        pass with that many torch threads (see ``Settings.query_threads``)."""
        prompt = prefix or self.model_query_prompt
        windows = self.windows(query, max_tokens=max(8, self._text_budget(prompt)))
        with _torch_threads(threads if self.device == "cpu" else 0):
            return _pool(self.encode(windows, prompt=prompt), [len(windows)])[0]


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run a block with ``threads`` torch threads (0: unchanged). A query is a few dozen tokens: a second
    thread gains almost nothing, while on a busy CPU every parallel op waits for the slower thread (measured
    here under load: 2 threads 490 ms, 1 thread 85-150 ms per MiniLM query). torch's setting is process-wide,
    so it is restored at once; setting it costs under a microsecond."""
    if threads <= 0:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    if previous == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _pool(vectors: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    out = np.empty((len(counts), vectors.shape[1]), dtype=np.float32)
    row = 0
    for i, n in enumerate(counts):
        block = vectors[row:row + n]
        row += n
        mean = block.mean(axis=0) if n > 1 else block[0]
        norm = float(np.linalg.norm(mean))
        out[i] = mean / norm if norm > 0 else mean
    return out


@lru_cache(maxsize=4)
def load_embedder(name: str, device: str = "cpu", threads: int = 0, window_overlap: int = 32) -> Embedder:
    """One embedder per (model, device) per process, so repeated queries do not reload it."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    return Embedder(name, device=device, window_overlap=window_overlap)


# --- building the matrix, resumably -----------------------------------------

def embed_chunks(texts: Sequence[str], embedder: Embedder, directory: Path, fingerprint: str,
                 batch_size: int = 32, save_every: int = 8,
                 progress: Progress = no_progress) -> dict[str, Any]:
    """Embed ``texts`` (row i = chunk id i) into ``directory/embeddings.npy``, resuming a run that was
    interrupted with the same ``fingerprint``. Returns counts describing the run."""
    directory = Path(directory)
    total = len(texts)
    batch_size = max(1, batch_size)
    windows = embedder.windows_many(texts)
    # Longest first: batches of similar length pad little, and the slowest batches come first so the
    # ETA errs on the long side. The order depends only on the texts, so a resumed run repeats it.
    lengths = np.array([sum(len(w) for w in ws) for ws in windows], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    matrix, done = _load_partial(directory, fingerprint, total, embedder.dim)
    resumed_from = done
    stage = "embedding"
    progress(stage, done, total)
    batches = 0
    while done < total:
        rows = order[done:done + batch_size]
        flat = [w for r in rows for w in windows[r]]
        vectors = embedder.encode(flat, batch_size=batch_size, prompt=embedder.document_prompt)
        matrix[rows] = _pool(vectors, [len(windows[r]) for r in rows])
        done += len(rows)
        batches += 1
        if done < total and batches % max(1, save_every) == 0:
            _save_partial(directory, fingerprint, matrix, done)
        progress(stage, done, total)
    write_npy(directory / EMBEDDINGS_FILE, matrix)
    for name in (PARTIAL_META, PARTIAL_FILE):
        (directory / name).unlink(missing_ok=True)
    return {"rows": total, "dim": embedder.dim, "resumed_from": resumed_from, "batches_embedded": batches,
            "windowed_chunks": int(sum(len(ws) > 1 for ws in windows)),
            "windows": int(sum(len(ws) for ws in windows))}


def _save_partial(directory: Path, fingerprint: str, matrix: np.ndarray, done: int) -> None:
    # The array first, then the record naming how many of its rows are valid: a crash between the two
    # leaves an older record that undercounts, never one that overcounts.
    write_npy(directory / PARTIAL_FILE, matrix)
    write_json(directory / PARTIAL_META, {"fingerprint": fingerprint, "done": done, "rows": int(matrix.shape[0]),
                                          "dim": int(matrix.shape[1])})


def _load_partial(directory: Path, fingerprint: str, rows: int, dim: int) -> tuple[np.ndarray, int]:
    meta_path, data_path = directory / PARTIAL_META, directory / PARTIAL_FILE
    if meta_path.is_file() and data_path.is_file():
        try:
            meta = read_json(meta_path)
            if (meta.get("fingerprint") == fingerprint and meta.get("rows") == rows
                    and meta.get("dim") == dim and 0 <= int(meta.get("done", -1)) <= rows):
                data = read_npy(data_path)
                if data.shape == (rows, dim) and data.dtype == np.float32:
                    return np.array(data), int(meta["done"])
        except (OSError, ValueError):
            pass  # unreadable leftovers: start over
    return np.zeros((rows, dim), dtype=np.float32), 0


# --- searching ---------------------------------------------------------------

class DenseIndex:
    """A book's embedding matrix (memory-mapped) plus the embedder that made it."""

    def __init__(self, path: Path, embedder: Embedder, query_prefix: str = "", query_threads: int = 0):
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"no embeddings at {path}")
        self.embeddings = read_npy(path, mmap=True)
        if self.embeddings.ndim != 2 or self.embeddings.shape[1] != embedder.dim:
            raise ModelError(f"{path} holds {self.embeddings.shape[-1]}-dimensional vectors but "
                             f"{embedder.name!r} makes {embedder.dim}-dimensional ones; ingest the book again")
        self.embedder = embedder
        self.query_prefix = query_prefix
        self.query_threads = query_threads

    def scores(self, query: str) -> np.ndarray:
        q = self.embedder.embed_query(query, prefix=self.query_prefix, threads=self.query_threads)
        return np.asarray(self.embeddings @ q, dtype=np.float32)

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` most similar (chunk id, cosine) pairs; ties go to the earlier chunk."""
        scores = self.scores(query)
        n = scores.shape[0]
        k = min(k, n)
        if k <= 0:
            return []
        part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        order = part[np.lexsort((part, -scores[part]))]
        return [(int(i), float(scores[i])) for i in order]
