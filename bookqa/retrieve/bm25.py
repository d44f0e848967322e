"""Lexical retrieval: a BM25 index (bm25s) over chunk texts, stored in ``<book>/bm25/``.

bm25s' save format is three .npy arrays (a sparse chunk x term score matrix, saved with
``allow_pickle=False``) plus JSON (vocabulary, parameters); we add ``bookqa.json`` naming the tokenizer and
what the index was built from. The directory is written next to its final place and renamed into it, so
an interrupted build never leaves a half-written index; loading memory-maps the arrays.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import NotFoundError
from ..fileio import read_json, write_json
from .textsplit import TOKENIZER_VERSION, stopword_set, tokenize

BM25_DIR = "bm25"
META_FILE = "bookqa.json"


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            # A directory cannot be renamed over a non-empty one: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def lucene_bm25(corpus_tokens: Sequence[Sequence[str]]):
    """An in-memory ``bm25s.BM25`` (Lucene variant, k1 1.5, b 0.75) over already tokenised documents.

    The vocabulary is sorted (bm25s would order it by set iteration, which changes with the hash seed) so
    that a saved index is byte-identical for identical input; scores do not depend on the order.
    """
    import bm25s

    vocab = {token: i for i, token in enumerate(sorted({t for doc in corpus_tokens for t in doc}))}
    corpus_ids = [[vocab[t] for t in doc] for doc in corpus_tokens]
    retriever = bm25s.BM25(method="lucene", k1=1.5, b=0.75, backend="numpy")
    retriever.index((corpus_ids, vocab), create_empty_token=False, show_progress=False)
    return retriever


def build_index(texts: Sequence[str], directory: Path, stopwords: bool = False,
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Index ``texts`` (row i = chunk id i) and save the index to ``directory`` atomically."""
    stop = stopword_set(stopwords)
    corpus_tokens = [tokenize(t, for_query=False, stopwords=stop) for t in texts]
    # bm25s needs at least one term; a book made only of punctuation still gets a (never matching) index.
    if not any(corpus_tokens):
        corpus_tokens = [["\x00"] for _ in corpus_tokens] or [["\x00"]]
    retriever = lucene_bm25(corpus_tokens)
    info = {"tokenizer_version": TOKENIZER_VERSION, "stopwords": bool(stopwords), "documents": len(texts),
            "vocabulary": len(retriever.vocab_dict), "postings": int(len(retriever.scores["data"]))}
    with atomic_dir(directory) as tmp:
        retriever.save(str(tmp), allow_pickle=False, show_progress=False)
        write_json(tmp / META_FILE, {**info, **(meta or {})})
    return info


class Bm25Index:
    """A loaded BM25 index: scores every chunk for a query, memory-mapped from disk."""

    def __init__(self, directory: Path):
        import bm25s

        directory = Path(directory)
        if not (directory / META_FILE).is_file():
            raise NotFoundError(f"no BM25 index in {directory}")
        self.meta = read_json(directory / META_FILE)
        self.stopwords = stopword_set(bool(self.meta.get("stopwords")))
        self.num_docs = int(self.meta["documents"])
        self._bm25 = bm25s.BM25.load(str(directory), mmap=True, load_vocab=True, show_progress=False)

    def query_ids(self, query: str) -> list[int]:
        """Vocabulary ids of the query's distinct tokens (unknown tokens cannot match and are dropped)."""
        vocab = self._bm25.vocab_dict
        seen: dict[int, None] = {}
        for token in tokenize(query, for_query=True, stopwords=self.stopwords):
            tid = vocab.get(token)
            if tid is not None:
                seen.setdefault(tid, None)
        return list(seen)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk (0 where no query term occurs)."""
        ids = self.query_ids(query)
        if not ids:
            return np.zeros(self.num_docs, dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float32)

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best (chunk id, score) pairs among chunks sharing a term with the query; ties go to
        the earlier chunk so results are deterministic."""
        scores = self.scores(query)
        hits = np.flatnonzero(scores > 0)
        if hits.size == 0 or k <= 0:
            return []
        order = np.lexsort((hits, -scores[hits]))[:k]
        return [(int(hits[i]), float(scores[hits[i]])) for i in order]
