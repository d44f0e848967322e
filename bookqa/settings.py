"""The product's settings: what ``ingest``, ``ask``, the web UI and the API read.

Every knob has a default here, can be overridden by a ``BOOKQA_*`` environment variable, and by CLI
flags (which call :meth:`Settings.replace`). The research bench keeps its own settings objects
(``bookqa.lab.settings``: evaluation baselines, training) built on the same ``EnvSettings`` base, so a
book's manifest records only what made the book. Nothing else reads the environment for configuration:
these classes are the complete list (the README's tables are generated from them).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _default_home() -> Path:
    return Path(os.path.expanduser("~/.cache/bookqa"))


class EnvSettings:
    """Frozen dataclass settings whose fields are read from ``BOOKQA_<FIELD>`` variables."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any):
        """Defaults, then ``BOOKQA_<FIELD>`` variables, then explicit overrides (non-None only)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"BOOKQA_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw, source=f"BOOKQA_{f.name.upper()}")
        for key, value in overrides.items():
            if value is None:
                continue
            if key not in {f.name for f in fields(cls)}:
                raise ConfigError(f"unknown setting {key!r}")
            values[key] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any):
        """A copy with the non-None ``changes`` applied (CLI flags left unset stay as they are)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        """Refuse values no component could use (ConfigError)."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (str(v) if isinstance(v, Path) else v) for f, v in
                ((f, getattr(self, f.name)) for f in fields(self))}


@dataclass(frozen=True)
class Settings(EnvSettings):
    # Where books, converted models and caches live.
    home: Path = field(default_factory=_default_home)
    # Where assembled/converted model weights are cached; empty = <home>/models. Kept separate so tests
    # can use a throw-away home while sharing the (slow to build) model cache.
    model_cache: str = ""
    # --- ingestion ---
    chunk_tokens: int = 200  # token budget per chunk, counted with the reranker's tokenizer
    max_upload_mb: float = 50.0  # files above this are refused before they are read
    # --- models (registry name, Hugging Face id, local directory or .gguf path) ---
    reranker_model: str = "qwen2.5-coder-0.5b"  # QR reranker (causal LM): registry name, hub id, directory or .gguf
    reranker_heads: str = ""  # heads file; empty = the one shipped for reranker_model
    # auto: the embedded reranker gets its shipped adapter (ranked better than the plain heads on LoCoMo and
    # NarrativeQA, docs/order-robust-qr.md); a model without one, or a heads file, is used as it is.
    reranker_adapter: str = "auto"  # trained QR heads (LoRA adapter) merged into reranker_model: auto (the one shipped for that model, unless a heads file is set) | none | a shipped adapter's name | an adapter directory
    # QR reranker scoring (bookqa/rerank/qr.py): which prompt tokens are the query rows (question = the
    # question text only; query = late instruction + question + chat suffix, as QRHead; auto = what the
    # heads file was detected with, else question), whether to subtract the "N/A" null-query attention,
    # and sum or max over a candidate's tokens.
    rerank_question_span: str = "auto"  # query rows: question | query | auto (what the heads were detected with)
    rerank_calibrate: bool = False  # subtract the "N/A" null-query attention (QRHead calibration)
    rerank_aggregate: str = "sum"  # sum | max over a candidate's tokens
    embed_model: str = "all-minilm-l6-v2"  # sentence-transformers embedder: registry name, hub id or directory
    generator: str = "local"  # local (llama.cpp) | remote (OpenAI-compatible HTTP)
    # The 1.5B writes much better answers than the 0.5B (the reranker's model) within the time budget
    # (docs/eval/answers); the 0.5B stays one setting away for smaller machines.
    generator_model: str = "qwen2.5-coder-1.5b"  # GGUF for local; model name for remote
    base_url: str = "http://127.0.0.1:8000/v1"  # remote generator
    api_key_env: str = "OPENAI_API_KEY"  # name of the variable holding the remote API key
    request_timeout_s: float = 120.0  # remote generator: seconds before a request is abandoned
    generator_n_ctx: int = 8192  # llama.cpp context of the local generator (prompt + answer tokens)
    # local generator: penalise tokens repeated within the last 64 (llama.cpp's and its server's default;
    # at 1.0 the 0.5B model loops on long summary prompts, e.g. "The man was a priest of Mitra..." x7)
    generator_repeat_penalty: float = 1.1
    # --- compute ---
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    threads: int = 0  # 0 = torch / llama.cpp default
    # --- retrieval and answering ---
    top_k: int = 50  # first-stage candidates handed to the reranker
    # first-stage retrieval (bookqa/retrieve): BM25 + dense, fused by reciprocal rank
    rrf_k: int = 60  # RRF constant: fused score = sum of weight / (rrf_k + rank)
    bm25_weight: float = 1.0  # RRF weight of the BM25 ranking
    dense_weight: float = 1.0  # RRF weight of the dense (embedding) ranking
    fusion_depth: int = 100  # how deep each retriever's list goes into the fusion (at least top_k)
    bm25_stopwords: bool = False  # drop common English function words from the BM25 index and queries
    embed_query_prefix: str = ""  # prepended to queries (e.g. Qwen3-Embedding's "Instruct: ...\nQuery: ")
    embed_batch_size: int = 32  # chunks per embedding batch
    embed_save_every: int = 8  # batches between resumable checkpoints while embedding
    embed_window_overlap: int = 32  # tokens shared by the windows of a chunk longer than the embedder reads
    query_threads: int = 1  # torch threads while embedding a query (0 = unchanged); see retrieve/dense.py
    top_n: int = 3  # reranked chunks handed to the generator
    evidence_order: str = "document"  # order of the passages in the answer prompt: document (as in the book) | rank (the reranker's best first) | auto (document for a transcript, whose order is time; rank for other books)
    evidence_keep: float = 1.0  # share of each passage the generator reads: below 1 keeps the sentences the QR heads attend to most (focus.py), 1 the whole passage
    answer_max_tokens: int = 256  # longest answer the generator may write
    citation_check: str = "auto"  # whether each citation's passage is checked to support its sentence (citecheck.py): off | judge (the generator answers yes/no) | embedder (sentence similarity) | both (the two must agree) | auto (both, or embedder alone when the generator is too small to judge)
    answer_style: str = "short"  # prose (one to three cited sentences, for people) | short (the answer phrase alone, as evaluation references are written; still cited)
    refusal_example: bool = False  # the answer prompt also shows a worked "not in the passages" answer
    prefix_tokens: int = 512  # summary prefix budget
    summaries: str = "extractive"  # llm | extractive | none
    summary_block: int = 20  # chunks per block summary
    summary_fanin: int = 20  # summaries per higher-level summary
    summary_workers: int = 1  # concurrent summary calls (raise for a remote server that batches)
    # --- web UI (bookqa ui) ---
    ui_host: str = "127.0.0.1"  # a non-loopback address also needs `bookqa ui --allow-remote`
    ui_port: int = 7860  # port of bookqa ui
    ui_auth_env: str = "BOOKQA_UI_AUTH"  # name of the variable holding "user:password" (kept out of manifests)
    ui_ask_concurrency: int = 2  # questions answered at once (the reranker and generator serialise inside)
    # --- HTTP API (bookqa serve) ---
    serve_host: str = "127.0.0.1"  # a non-loopback address also needs `bookqa serve --allow-remote` and a token
    serve_port: int = 8400  # port of bookqa serve
    serve_token_env: str = "BOOKQA_SERVE_TOKEN"  # name of the variable holding the API's bearer token (kept out of manifests)
    serve_queue: int = 16  # model requests waiting or running at once; more get 503 + Retry-After
    serve_max_request_mb: float = 8.0  # largest JSON request body (uploads: max_upload_mb)
    serve_doc_tokens: int = 512  # rerank: tokens kept of each document unless the request's max_tokens_per_doc says otherwise (/rerank refuses longer texts unless truncate)
    serve_max_prompt_tokens: int = 16384  # rerank: longest reranking prompt (query + every document); longer requests get 413
    serve_max_documents: int = 1000  # rerank: most documents in one request
    # --- order-robust QR scores (rerank/orders.py; the prior comes from `bookqa heads prior`) ---
    rerank_debias: str = "none"  # none | position: correct each candidate's normalised score by its prompt position's prior
    rerank_permutations: int = 0  # candidate orders scored and averaged: 0 auto (2 on a GPU with untrained heads; 1 on CPU or with trained heads: docs/order-robust-qr.md), 1 input, 2 + reversed, 3 + interleaved, more + shuffles
    rerank_refine: int = -1  # QR: score the top N of the first ranking again in a short prompt in reversed order and average: -1 auto (5 when one order is scored, i.e. on CPU or with trained heads; off with two or more), 0 off (docs/order-robust-qr.md)
    # --- cached-chunk QR (bookqa/rerank/cached.py): chunk keys/values stored per book, a question runs only
    # its own tokens; "cascade" lets the full prompt re-rank the cached pass's top qr_cascade_top ---
    qr_mode: str = "full"  # full (one prompt over the candidates) | cached (over stored chunk keys/values) | cascade (cached over all candidates, full prompt over the top qr_cascade_top; measured below cached on LoCoMo)
    qr_cache: str = "lazy"  # when chunk keys/values are computed: lazy (for the candidates a question draws, kept for the next) | book (every chunk at ingest) | off (only a cache that exists is used, else the full prompt)
    qr_cache_dtype: str = "bfloat16"  # stored keys/values: bfloat16 | float16 | float32 | int8 (half the bytes)
    qr_cascade_top: int = 10  # cascade: candidates the full prompt re-ranks
    qr_cached_adapter: str = "auto"  # the cached pass's own adapter (bookqa train --attention question: it acts on the question only, the chunks keep the base model's keys/values): none | auto (the shipped one for the reranker model) | a shipped adapter's name | an adapter directory

    def validate(self) -> None:
        from .rerank.config import QRRankerConfig

        QRRankerConfig.from_settings(self)  # the reranking options are checked where they are defined
        if self.chunk_tokens < 16:
            raise ConfigError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if self.max_upload_mb <= 0:
            raise ConfigError("max_upload_mb must be positive")
        if self.generator not in ("local", "remote"):
            raise ConfigError(f"generator must be 'local' or 'remote', got {self.generator!r}")
        if self.citation_check not in ("off", "judge", "embedder", "both", "auto"):
            raise ConfigError(f"citation_check must be off, judge, embedder, both or auto, got {self.citation_check!r}")
        from .answer import ANSWER_STYLES, EVIDENCE_ORDERS  # defined where the prompt is built

        if self.evidence_order not in EVIDENCE_ORDERS:
            raise ConfigError(f"evidence_order must be one of {', '.join(EVIDENCE_ORDERS)}, got {self.evidence_order!r}")
        from .focus import check_keep

        check_keep(self.evidence_keep)
        if self.answer_style not in ANSWER_STYLES:
            raise ConfigError(f"answer_style must be {' or '.join(ANSWER_STYLES)}, got {self.answer_style!r}")
        if self.summaries not in ("llm", "extractive", "none"):
            raise ConfigError(f"summaries must be llm, extractive or none, got {self.summaries!r}")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"unknown dtype {self.dtype!r}")
        for name in ("top_k", "top_n", "summary_block", "summary_fanin", "fusion_depth", "embed_batch_size",
                     "embed_save_every", "summary_workers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.rrf_k < 0 or self.embed_window_overlap < 0 or self.query_threads < 0:
            raise ConfigError("rrf_k, embed_window_overlap and query_threads must not be negative")
        if self.bm25_weight < 0 or self.dense_weight < 0 or self.bm25_weight + self.dense_weight == 0:
            raise ConfigError("bm25_weight and dense_weight must not be negative, nor both zero")
        if self.generator_repeat_penalty <= 0:
            raise ConfigError("generator_repeat_penalty must be positive (1.0 = off)")
        if self.generator_n_ctx < 512:
            raise ConfigError(f"generator_n_ctx must be at least 512, got {self.generator_n_ctx}")
        if self.summary_fanin < 2:
            raise ConfigError("summary_fanin must be at least 2")
        if not 0 < self.ui_port < 65536:
            raise ConfigError(f"ui_port must be 1..65535, got {self.ui_port}")
        if self.ui_ask_concurrency < 1:
            raise ConfigError("ui_ask_concurrency must be at least 1")
        if not 0 < self.serve_port < 65536:
            raise ConfigError(f"serve_port must be 1..65535, got {self.serve_port}")
        for name in ("serve_queue", "serve_doc_tokens", "serve_max_prompt_tokens", "serve_max_documents"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if self.serve_max_request_mb <= 0:
            raise ConfigError("serve_max_request_mb must be positive")
        if self.qr_mode not in ("full", "cached", "cascade"):
            raise ConfigError(f"qr_mode must be full, cached or cascade, got {self.qr_mode!r}")
        if self.qr_cache not in ("lazy", "book", "off"):
            raise ConfigError(f"qr_cache must be lazy, book or off, got {self.qr_cache!r}")
        if self.qr_cache_dtype not in ("bfloat16", "float16", "float32", "int8"):
            raise ConfigError(f"qr_cache_dtype must be bfloat16, float16, float32 or int8, got {self.qr_cache_dtype!r}")
        if self.qr_cascade_top < 2:
            raise ConfigError(f"qr_cascade_top must be at least 2, got {self.qr_cascade_top}")

    # Derived locations -------------------------------------------------
    @property
    def books_dir(self) -> Path:
        return Path(self.home) / "books"

    @property
    def models_dir(self) -> Path:
        return Path(os.path.expanduser(self.model_cache)) if self.model_cache else Path(self.home) / "models"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def ingest_dict(self) -> dict[str, Any]:
        """The settings a book's files depend on (recorded in its manifest)."""
        return {name: value for name, value in self.as_dict().items() if name in INGEST_FIELDS}


# What a book's stored files are made from: the chunker, the indexes and the summaries (a book's manifest
# records these, not the settings of asking, serving or the web UI).
INGEST_FIELDS = ("chunk_tokens", "max_upload_mb", "reranker_model", "embed_model", "embed_batch_size",
                 "embed_save_every", "embed_window_overlap", "bm25_stopwords", "summaries", "summary_block",
                 "summary_fanin", "summary_workers", "generator", "generator_model", "device", "dtype", "threads")


def _coerce(f: dataclasses.Field, raw: str, source: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(os.path.expanduser(raw))
        if kind == "bool":
            return raw.strip().lower() in ("1", "true", "yes", "on")
    except ValueError:
        raise ConfigError(f"{source}={raw!r} is not a valid {kind}") from None
    return raw


def describe(cls: type = None) -> list[tuple[str, str, str]]:
    """(environment variable, default, meaning) for every field of a settings class (default: the
    product's ``Settings``), read from the comments in its source so the README tables cannot drift from
    the code (``python -m bookqa.settings``; the research bench's: ``python -m bookqa.lab.settings``)."""
    import inspect
    import re

    cls = cls or Settings
    lines = inspect.getsource(cls).splitlines()
    notes: dict[str, str] = {}
    pending: list[str] = []
    for line in lines:
        m = re.match(r"\s{4}(\w+): [^=]+=\s*(.+?)(?:\s+#\s*(.*))?$", line)
        if m and not line.strip().startswith("#"):
            notes[m.group(1)] = (m.group(3) or " ".join(pending)).strip()
            pending = []
        elif line.strip().startswith("# ---"):
            pending = []
        elif line.strip().startswith("#"):
            pending.append(line.strip().lstrip("#").strip())
        else:
            pending = []
    out = []
    for name, f in cls.__dataclass_fields__.items():
        default = f.default if f.default is not dataclasses.MISSING else "~/.cache/bookqa"
        out.append((f"BOOKQA_{name.upper()}", repr(default) if isinstance(default, str) else str(default),
                    notes.get(name, "")))
    return out


def settings_table(cls: type = None) -> str:
    """The README's Markdown table of a settings class."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{var}` | `{default}` | {note.replace('|', '/')} |" for var, default, note in describe(cls)]
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - prints the README's settings table
    print(settings_table())
