"""Cached-chunk QR: every chunk's keys and values computed once, a question runs only its own tokens.

A ``CachedQRRanker`` wraps a loaded ``QRRanker`` (same model, heads, adapter, aggregation, calibration
and question span) and scores candidates in the block layout of blocks.py:

1. **Encoding** (once per chunk): the shared prefix runs through layers 0..L (L = the deepest QR layer)
   once; each chunk block then runs after it, alone, at the positions right after the prefix, and the
   keys and values it appended are kept: in a book's memory-mapped store (kvstore.py), filled at ingest
   or lazily for the chunks questions draw, or, for texts that are not chunks of a book, in a bounded
   in-memory store keyed by the text.
2. **The question pass**: the prefix's and the candidates' stored keys/values are laid side by side as one
   cache; only the question block (late instruction, question, chat footer: a few dozen tokens) runs
   through layers 0..L, with the read-out capturing its rows in the QR heads exactly as the full prompt
   does. Scores are the same reduction (sum or max over a candidate's text tokens, mean over the question
   rows, sum over heads), and calibration runs the "N/A" question block over the same cache.

Every candidate sits at the same position range, so the candidates' order plays no part: one pass, no
orders to average, nothing to refine. What is lost against the full prompt is that candidates never
read each other, and that the heads were trained and detected on the full prompt.

A **question-side adapter** (``bookqa train --attention question``; adapter.py, ``applies_to: question``) is
trained for this pass alone: the chunks keep the base model's keys/values (so the store is the one the
plain cached pass uses) and only the question block runs through the adapted weights. The ranker then holds
two copies of layers 0..L: the base one that encodes, the adapted one that asks.

A **cascade** ranks by the cached pass and lets the full prompt re-rank the top few
(:meth:`CachedQRRanker.rank` with ``cascade_top``): most of the cached speed, the full prompt's judgement
where it matters.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..chunk import Chunk
from ..errors import ConfigError, ModelError
from ..progress import Progress, no_progress
from .base import Passage, RankedResults, Reranker, make_results, rank_inputs
from .blocks import BLOCK_FORMAT, chunk_block, prefix_ids, question_block
from .heads import MODEL_DIR_HEADS, load_heads
from .kvstore import KV_DTYPES, ChunkKVStore, KVShape
from .qr import NULL_QUERY, QRRanker, _crop_cache, heads_by_layer, question_scores
from .readout import cache_holding, decoder_of, new_cache, read_out, run_layers

QR_MODES = ("full", "cached", "cascade")
COMMIT_EVERY_S = 5.0  # a lazily or eagerly filled store records its built chunks at least this often


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def weights_identity(ranker: QRRanker, encoder=None) -> dict[str, Any]:
    """What the stored keys/values depend on in the weights. A directory is named by its config and its
    weight files' names and sizes, an adapter by its weights' digest; a model passed in loaded (no
    directory to name) by a digest of the parameters of the layers that are stored. ``encoder``: the
    base model that encodes the chunks when it is not the ranker's own (a question-side adapter): the
    identity is then the base model's, the one a ranker without an adapter gives."""
    with_adapter = encoder is None or encoder is ranker.model
    model = ranker.model if encoder is None else encoder
    if with_adapter or ranker.adapter is None:
        out: dict[str, Any] = {"model": ranker.config.model, "adapter": ranker.config.adapter}
    else:
        out = {"model": _registry_name(ranker.adapter.base_model), "adapter": "none"}
    source = Path(str(getattr(model.config, "_name_or_path", "") or ""))
    if source.is_dir() and (source / "config.json").exists():
        out["config"] = _file_digest(source / "config.json")
        out["weights"] = sorted((f.name, f.stat().st_size) for f in source.iterdir()
                                if f.suffix in (".safetensors", ".bin", ".pt"))
    elif str(source) and not source.exists():
        out["source"] = str(source)  # a hub id: its name (the hub is not asked for a revision)
    else:
        import torch

        h = hashlib.sha256()
        decoder = decoder_of(model)
        with torch.no_grad():
            for tensor in [decoder.embed_tokens.weight] + [p for layer in decoder.layers[:ranker.heads.deepest_layer + 1]
                                                           for p in layer.parameters()]:
                h.update(tensor.detach().float().contiguous().numpy().tobytes())
        out["parameters"] = h.hexdigest()[:16]
    if ranker.adapter is not None and with_adapter:
        for name in ("adapter.safetensors", "adapter_model.safetensors"):
            f = Path(ranker.adapter.path) / name
            if f.exists():
                out["adapter_weights"] = _file_digest(f)
    return out


def _registry_name(model: str) -> str:
    from ..weights import lookup

    registered = lookup(model)
    return registered.name if registered is not None else model


def chunks_identity(chunks: Sequence[Chunk]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(json.dumps([c.id, c.text], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()[:16]


def appended_rows(model, ids: Sequence[int], cache, deepest: int):
    """Run ``ids`` through layers 0..``deepest`` after what ``cache`` holds (no gradients); the keys and
    values they appended, (layers, 2, kv_heads, tokens, head_dim)."""
    import torch

    past = cache.get_seq_length()
    with torch.inference_mode():
        run_layers(decoder_of(model), torch.tensor([list(ids)], dtype=torch.long), deepest, cache=cache)
        return torch.stack([torch.stack([cache.layers[i].keys[0, :, past:], cache.layers[i].values[0, :, past:]])
                            for i in range(deepest + 1)])


class MemoryKVStore:
    """Keys/values of texts that are not chunks of a book (the rerank API's documents), keyed by the
    text, least recently used dropped beyond ``max_tokens``."""

    def __init__(self, max_tokens: int = 200_000):
        self.max_tokens = max_tokens
        self._rows: OrderedDict[str, tuple[Any, tuple[int, int]]] = OrderedDict()
        self._tokens = 0
        self._lock = threading.Lock()

    def get(self, text: str):
        with self._lock:
            hit = self._rows.get(text)
            if hit is not None:
                self._rows.move_to_end(text)
            return hit

    def put(self, text: str, rows, span: tuple[int, int]) -> None:
        with self._lock:
            if text in self._rows:
                return
            self._rows[text] = (rows, span)
            self._tokens += rows.shape[0]
            while self._tokens > self.max_tokens and len(self._rows) > 1:
                _, (old, _) = self._rows.popitem(last=False)
                self._tokens -= old.shape[0]


class CachedQRRanker(Reranker):
    """QR scores over independently encoded chunks (see module docstring)."""

    name = "qr_cached"

    def __init__(self, ranker: QRRanker, kv_dtype: str = "bfloat16", memory_tokens: int = 200_000,
                 question_adapter=None):
        if kv_dtype not in KV_DTYPES:
            raise ModelError(f"qr_cache_dtype must be one of {', '.join(KV_DTYPES)}, got {kv_dtype!r}")
        self.ranker = ranker
        self.kv_dtype = kv_dtype
        self.model, self.tokenizer, self.layout = ranker.model, ranker.tokenizer, ranker.layout
        self.heads = ranker.heads
        self.deepest = ranker.heads.deepest_layer
        self.encoder = ranker.model  # what encodes the prefix and the chunks
        self.question_adapter = self._setup_question_adapter(question_adapter)
        decoder = decoder_of(self.model)
        cfg = decoder.config
        layer_types = list(getattr(cfg, "layer_types", None) or [])
        if "sliding_attention" in layer_types[:self.deepest + 1]:
            raise ModelError("cached-chunk QR does not support sliding-window attention layers")
        attn = decoder.layers[0].self_attn
        head_dim = int(getattr(attn, "head_dim", 0) or cfg.hidden_size // cfg.num_attention_heads)
        self.shape = KVShape(layers=self.deepest + 1, kv_heads=int(cfg.num_key_value_heads), head_dim=head_dim)
        self.prefix_ids = prefix_ids(self.tokenizer, self.layout)
        self.memory = MemoryKVStore(memory_tokens)
        self._prefix_rows = None
        self._identity: Optional[dict[str, Any]] = None
        self._lock = ranker._lock  # one model, one forward at a time

    def _setup_question_adapter(self, adapter):
        """Load the question pass's adapted weights (and, when the ranker's own weights carry an adapter, a base
        copy to encode the chunks); the adapter in use, or None."""
        ranker = self.ranker
        own = ranker.adapter if ranker.adapter is not None and ranker.adapter.applies_to == "question" else None
        if adapter is not None and adapter.applies_to != "question":
            raise ConfigError(f"the adapter {adapter.path} acts on every token; the cached pass's own adapter "
                              f"must be trained with bookqa train --attention question")
        if own is not None and adapter is not None and Path(adapter.path) != Path(own.path):
            raise ConfigError(f"two question-side adapters: {own.path} (the reranker model) and {adapter.path}")
        adapter = adapter or own
        if adapter is None:
            return None
        if ranker.source is None:
            raise ConfigError("a question-side adapter needs a reranker loaded from its weights, not one passed in")
        heads_file = Path(adapter.path) / MODEL_DIR_HEADS
        if heads_file.is_file() and [tuple(h) for h in load_heads(heads_file).heads] != [tuple(h) for h in self.heads.heads]:
            raise ConfigError(f"the adapter {adapter.path} was trained for other QR heads than the reranker's")
        from .qr import load_model

        load = dict(device=ranker.device, dtype=ranker.dtype, keep_layers=self.deepest + 1)
        if ranker.adapter is not None:
            self.encoder = load_model(ranker.source, **load)  # the chunks are the base model's
        if own is None:
            self.model = load_model(ranker.source, adapter=adapter, **load)
        return adapter

    @property
    def torch_dtype(self):
        return next(self.model.parameters()).dtype

    # --- identity -------------------------------------------------------------------------------
    def identity(self, chunks_key: str = "") -> dict[str, Any]:
        """Everything a store's keys/values depend on: weights, dtype, stored layers, the block format,
        the layout's text (the question span plays no part), the prefix's tokens and the chunks."""
        if self._identity is None:
            layout = {k: v for k, v in self.layout.to_json().items() if k != "question_span"}
            self._identity = {"format": BLOCK_FORMAT, "weights": weights_identity(self.ranker, self.encoder),
                              "dtype": str(self.torch_dtype).removeprefix("torch."), "layers": self.shape.layers,
                              "layout": layout, "prefix_ids": list(self.prefix_ids), "kv_dtype": self.kv_dtype}
        return {**self._identity, "model": self._identity["weights"]["model"], "chunks": chunks_key}

    # --- encoding -------------------------------------------------------------------------------
    def _forward_rows(self, ids: Sequence[int], cache) -> Any:
        """Run ``ids`` after what ``cache`` holds; return the rows they appended,
        (tokens, layers, 2, kv_heads, head_dim)."""
        # (layers, 2, kvh, n, d) → (n, layers, 2, kvh, d)
        return appended_rows(self.encoder, ids, cache, self.deepest).permute(3, 0, 1, 2, 4).contiguous()

    def prefix_rows(self):
        """The shared prefix's keys/values, (layers, 2, kv_heads, p, head_dim) in float32 (computed once)."""
        if self._prefix_rows is None:
            with self._lock:
                if self._prefix_rows is None:
                    rows = self._forward_rows(self.prefix_ids, new_cache(self.model))
                    self._prefix_rows = rows.permute(1, 2, 3, 0, 4).float().contiguous()
        return self._prefix_rows

    def encode_block(self, text: str):
        """One chunk block's rows (tokens, layers, 2, kv_heads, head_dim) in the model's dtype, and the token
        range of the chunk's text within the block."""
        block = chunk_block(self.tokenizer, text, self.layout)
        prefix = self.prefix_rows().to(self.torch_dtype)
        with self._lock:
            rows = self._forward_rows(block.input_ids, cache_holding(self.model, prefix))
        return rows, block.text_tokens

    # --- a book's store -------------------------------------------------------------------------
    def open_store(self, book_dir: Path, chunks: Sequence[Chunk], create: bool = True) -> Optional[ChunkKVStore]:
        """The book's store for this ranker and these chunks: opened if it exists, else made (every chunk
        unfilled) when ``create``, else None."""
        identity = self.identity(chunks_identity(chunks))
        store = ChunkKVStore.open(book_dir, identity)
        if store is not None or not create:
            return store
        blocks = [chunk_block(self.tokenizer, c.text, self.layout) for c in chunks]
        return ChunkKVStore.create(book_dir, identity, self.shape, self.kv_dtype,
                                   lengths=[len(b.input_ids) for b in blocks], text_spans=[b.text_tokens for b in blocks],
                                   prefix=self.prefix_rows().numpy(), prefix_tokens=len(self.prefix_ids))

    def fill(self, store: ChunkKVStore, chunks: Sequence[Chunk], ids: Optional[Sequence[int]] = None,
             progress: Progress = no_progress, stage: str = "encoding chunks for QR") -> dict[str, Any]:
        """Encode the chunks of ``ids`` (default: all) that the store lacks, committing as it goes."""
        todo = store.missing(ids)
        t0 = last = time.perf_counter()
        progress(stage, 0, len(todo))
        for done, cid in enumerate(todo, 1):
            rows, span = self.encode_block(chunks[cid].text)
            if tuple(int(x) for x in store.text_spans[cid]) != tuple(span):
                raise ModelError(f"chunk {cid} tokenises differently from when its cache was made")
            store.write(cid, rows)
            now = time.perf_counter()
            if now - last >= COMMIT_EVERY_S:
                store.commit()
                last = now
            progress(stage, done, len(todo))
        store.commit()
        return {"encoded": len(todo), "seconds": time.perf_counter() - t0}

    # --- scoring --------------------------------------------------------------------------------
    def _gather_memory(self, texts: Sequence[str]):
        import torch

        prefix = self.prefix_rows().to(self.torch_dtype)
        pieces, spans, pos, encoded = [], [], prefix.shape[3], 0
        for text in texts:
            hit = self.memory.get(text)
            if hit is None:
                hit = self.encode_block(text)
                self.memory.put(text, *hit)
                encoded += 1
            rows, (a, b) = hit
            pieces.append(rows.permute(1, 2, 3, 0, 4))
            spans.append((pos + a, pos + b))
            pos += rows.shape[0]
        lengths = [p.shape[3] for p in pieces]
        return torch.cat([prefix] + pieces, dim=3), spans, max(lengths), encoded

    def head_scores(self, query: str, kv, spans: Sequence[tuple[int, int]], block_positions: int,
                    calibrate: Optional[bool] = None) -> tuple[np.ndarray, Optional[np.ndarray], dict[str, Any]]:
        """Per-head scores (heads, n) of the candidates whose text tokens are ``spans`` in ``kv``
        (layers, 2, kv_heads, S, head_dim: prefix then candidate blocks), the null question's (or None), and
        run information."""
        import torch

        calibrate = self.ranker.calibrate if calibrate is None else calibrate
        heads = list(self.heads.heads)
        by_layer = heads_by_layer(heads)
        n = len(spans)
        total = kv.shape[3]
        first_position = len(self.prefix_ids) + int(block_positions)
        seg_base = torch.full((total,), -1, dtype=torch.long)
        for i, (a, b) in enumerate(spans):
            seg_base[a:b] = i
        t0 = time.perf_counter()
        cache = cache_holding(self.model, kv)
        t_cache = time.perf_counter() - t0
        out, info = {}, {"cached_tokens": int(total), "timings": {"cache": t_cache}}
        for which, question in (("scores", query), ("null", NULL_QUERY)):
            if which == "null" and not calibrate:
                break
            block = question_block(self.tokenizer, question, self.layout)
            rows = [total + t for t in range(*block.question)]
            seg = torch.cat([seg_base, torch.full((len(block.input_ids),), -1, dtype=torch.long)])
            ids = torch.tensor([block.input_ids], dtype=torch.long)
            res = read_out(self.model, ids, by_layer, rows, cache=cache, segments=seg, n_segments=n,
                           want_max=self.ranker.aggregate == "max", keep_mean=False, first_position=first_position)
            per_row = res.row_max if self.ranker.aggregate == "max" else res.row_sum
            span = (total + block.question[0], total + block.question[1])
            out[which] = question_scores(per_row, by_layer, heads, rows, [span], n)[0]
            info["timings"]["forward" if which == "scores" else "calibrate"] = res.seconds
            if which == "scores":
                info["question_tokens"] = block.question[1] - block.question[0]
                info["tokens_run"] = res.tokens_run
                info["layers_run"] = res.layers_run
                _crop_cache(cache, total)
        return out["scores"], out.get("null"), info

    def rank(self, query: str, chunks: Sequence[Passage], prefix: Optional[str] = None, *,
             store: Optional[ChunkKVStore] = None, book_chunks: Optional[Sequence[Chunk]] = None,
             cascade_top: int = 0, progress: Progress = no_progress) -> RankedResults:
        """Rank ``chunks`` by the cached pass. With a book's ``store`` (and ``book_chunks``, the book's
        chunks, to encode the candidates it lacks) the candidates' keys/values come from it; otherwise
        from the in-memory store. ``prefix`` (summaries) has no place in the cached layout and is not shown
        to the cached pass; with ``cascade_top`` of at least 2 the full prompt (with the prefix) re-ranks
        the top ``cascade_top`` and they keep that order above the rest."""
        texts, ids = rank_inputs(query, chunks)
        if not texts:
            return make_results(query, [], [], info={"reranker": self.name})
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        encoded = 0
        use_store = store is not None and all(isinstance(c, Chunk) for c in chunks)
        if use_store:
            missing = store.missing(ids)
            if missing:
                if book_chunks is None:
                    raise ModelError(f"{len(missing)} candidates are not in the QR cache and no chunks were given")
                t = time.perf_counter()
                self.fill(store, book_chunks, missing, progress, stage="encoding candidates for QR")
                timings["encode"] = time.perf_counter() - t
                encoded = len(missing)
            t = time.perf_counter()
            kv, spans = store.read(ids, self.torch_dtype)
            block_positions = int(max(store.lengths[i] for i in ids))
            timings["read"] = time.perf_counter() - t
        else:
            t = time.perf_counter()
            kv, spans, block_positions, encoded = self._gather_memory(texts)
            timings["encode" if encoded else "read"] = time.perf_counter() - t
        with self._lock:
            per_head, null, info = self.head_scores(query, kv, spans, block_positions)
        for key, value in info.pop("timings").items():
            timings[key] = value
        plain = per_head.sum(axis=0)
        scores = plain - null.sum(axis=0) if null is not None else plain
        run = {"prompt_tokens": int(info["cached_tokens"]) + int(info["tokens_run"]),
               "question_tokens": info["question_tokens"], "layers_run": info["layers_run"],
               "tokens_run": info["tokens_run"], "cached_tokens": info["cached_tokens"], "encoded": encoded,
               "source": "book" if use_store else "memory", "kv_dtype": self.kv_dtype}
        if cascade_top and cascade_top > 1 and len(texts) > 1:
            from .orders import maxmin

            top = sorted(range(len(texts)), key=lambda i: (-float(scores[i]), i))[:cascade_top]
            t = time.perf_counter()
            full = self.ranker.rank(query, [chunks[i] for i in top], prefix=prefix)
            timings["cascade"] = time.perf_counter() - t
            # The full prompt decides the order of the top; the rest keep the cached order below them.
            scores = maxmin(scores)
            for r in full.results:
                scores[top[r.index]] = 1.0 + (len(top) - r.rank + 1) / len(top)
            run["cascade_top"] = len(top)
            run["cascade_info"] = {k: full.info.get(k) for k in ("prompt_tokens", "passes", "refined")}
        timings["total"] = time.perf_counter() - t0
        info_out = {**run, **self.describe(), "mode": "cascade" if run.get("cascade_top") else "cached"}
        return make_results(query, [float(s) for s in scores], ids, timings=timings, info=info_out)

    def describe(self) -> dict[str, Any]:
        d = self.ranker.describe()
        d.update({"reranker": self.name, "permutations": 1, "refine": 0, "kv_dtype": self.kv_dtype})
        if self.question_adapter is not None:
            from .qr import adapter_label

            d["question_adapter"] = adapter_label(self.question_adapter)
        return d
