"""Dense retrieval with the embedded all-MiniLM-L6-v2: windowing of long chunks, resumable embedding,
query prefixes, and hybrid (BM25 + dense) search on chunk lists built directly."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bookqa.chunk import Chunk
from bookqa.retrieve import Bm25Retriever, DenseRetriever, HybridRetriever
from bookqa.retrieve.bm25 import Bm25Index, build_index
from bookqa.retrieve.dense import (EMBEDDINGS_FILE, PARTIAL_FILE, PARTIAL_META, DenseIndex, embed_chunks,
                                   load_embedder, window_spans)

SAMPLE = Path(__file__).resolve().parents[1] / "bookqa" / "data" / "sample" / "dying_detective.txt"
ZH = Path(__file__).parent / "fixtures" / "retrieve" / "lantern_zh.txt"
RARE = "the vermilion zeppelin moored above Tadcaster"


def paragraph_chunks(text: str, max_chars: int = 900) -> list[Chunk]:
    chunks: list[Chunk] = []
    start = end = None
    for m in re.finditer(r"\S(?:.*\S)?(?:\n\S.*)*", text):
        if start is not None and m.end() - start > max_chars:
            chunks.append(Chunk(len(chunks), start, end, 0, text[start:end]))
            start = None
        if start is None:
            start = m.start()
        end = m.end()
    if start is not None:
        chunks.append(Chunk(len(chunks), start, end, 0, text[start:end]))
    return chunks


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("all-minilm-l6-v2", "cpu")


@pytest.fixture(scope="module")
def story() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def test_window_spans_cover_evenly():
    assert window_spans(100, 254, 32) == [(0, 100)]
    assert window_spans(254, 254, 32) == [(0, 254)]
    spans = window_spans(600, 254, 32)
    assert spans[0][0] == 0 and spans[-1][1] == 600
    assert all(e - s == 254 for s, e in spans)
    assert all(a[1] - b[0] >= 32 for a, b in zip(spans, spans[1:]))  # neighbours overlap
    assert len(spans) == 3
    assert len(window_spans(1000, 100, 0)) == 10


def test_embedder_reads_256_word_pieces(embedder):
    assert embedder.dim == 384
    assert embedder.max_tokens == 254  # 256 minus [CLS] and [SEP]
    assert embedder.document_prompt == "" and embedder.model_query_prompt == ""


def test_long_chunk_is_windowed_not_truncated(embedder, story):
    ids = embedder.tokenizer(story, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = ids["offset_mapping"]
    text = story[offsets[3000][0]:offsets[3599][1]]  # a 600-word-piece chunk
    assert embedder._count(text) >= 590
    windows = embedder.windows(text)
    assert len(windows) == 3
    assert all(embedder._count(w) <= embedder.max_tokens for w in windows)
    assert text.startswith(windows[0]) and text.endswith(windows[-1])
    assert all(w in text for w in windows)

    vector = embedder.embed_documents([text])[0]
    assert vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    per_window = embedder.model.encode(windows, normalize_embeddings=True, convert_to_numpy=True)
    mean = per_window.mean(axis=0)
    assert np.allclose(vector, mean / np.linalg.norm(mean), atol=1e-6)
    # what sentence-transformers alone would give: the first 254 word pieces only
    truncated = embedder.model.encode([text], normalize_embeddings=True, convert_to_numpy=True)[0]
    assert np.allclose(truncated, per_window[0], atol=1e-5)
    assert float(vector @ truncated) < 0.99


def test_short_chunks_embed_as_themselves(embedder):
    texts = ["Holmes lay dying in Baker Street.", "Watson hurried to his friend's side."]
    assert np.allclose(embedder.embed_documents(texts),
                       embedder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True), atol=1e-6)


def test_query_prefix_is_prepended(embedder):
    plain = embedder.embed_query("who poisoned the detective?")
    prefixed = embedder.embed_query("who poisoned the detective?", prefix="query: ")
    assert not np.allclose(plain, prefixed, atol=1e-3)
    manual = embedder.model.encode(["query: who poisoned the detective?"], normalize_embeddings=True)[0]
    assert np.allclose(prefixed, manual, atol=1e-6)


class Interrupt(Exception):
    pass


def _kill_after(rows: int):
    def progress(stage, done, total):
        if done >= rows:
            raise Interrupt()
    return progress


@pytest.fixture(scope="module")
def twelve(embedder, story, tmp_path_factory):
    """Twelve short chunks and their matrix from an uninterrupted run (batches of 2)."""
    texts = [c.text for c in paragraph_chunks(story[5000:9000], max_chars=200)][:12]
    assert len(texts) == 12
    out = tmp_path_factory.mktemp("full")
    info = embed_chunks(texts, embedder, out, "fp1", batch_size=2, save_every=1)
    assert info["resumed_from"] == 0 and info["batches_embedded"] == 6
    return texts, np.load(out / EMBEDDINGS_FILE)


def test_uninterrupted_matrix(embedder, twelve):
    texts, expected = twelve
    assert expected.shape == (12, 384) and expected.dtype == np.float32
    assert np.allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-5)
    assert np.allclose(expected, embedder.embed_documents(texts), atol=1e-5)


def test_embedding_resumes_after_interruption(embedder, twelve, tmp_path):
    texts, expected = twelve
    with pytest.raises(Interrupt):
        embed_chunks(texts, embedder, tmp_path, "fp1", batch_size=2, save_every=1, progress=_kill_after(6))
    assert not (tmp_path / EMBEDDINGS_FILE).exists()
    assert json.loads((tmp_path / PARTIAL_META).read_text())["done"] == 6

    calls = []
    info = embed_chunks(texts, embedder, tmp_path, "fp1", batch_size=2, save_every=1,
                        progress=lambda s, d, t: calls.append(d))
    assert info["resumed_from"] == 6 and info["batches_embedded"] == 3  # only the remaining batches
    assert calls == [6, 8, 10, 12]
    assert np.allclose(np.load(tmp_path / EMBEDDINGS_FILE), expected, atol=1e-6)
    assert not (tmp_path / PARTIAL_FILE).exists() and not (tmp_path / PARTIAL_META).exists()


@pytest.mark.real_model
def test_resume_uses_last_checkpoint_and_ignores_stale_partials(embedder, twelve, tmp_path):
    texts, expected = twelve
    # checkpoints every 2 batches: killed after batch 3, the last checkpoint holds 2 batches (4 rows)
    with pytest.raises(Interrupt):
        embed_chunks(texts, embedder, tmp_path, "fp1", batch_size=2, save_every=2, progress=_kill_after(6))
    info = embed_chunks(texts, embedder, tmp_path, "fp1", batch_size=2, save_every=2)
    assert info["resumed_from"] == 4 and info["batches_embedded"] == 4
    assert np.allclose(np.load(tmp_path / EMBEDDINGS_FILE), expected, atol=1e-6)

    # a partial left by different chunks (another fingerprint) is not reused
    with pytest.raises(Interrupt):
        embed_chunks(texts, embedder, tmp_path, "old-chunks", batch_size=2, save_every=1, progress=_kill_after(2))
    info = embed_chunks(texts, embedder, tmp_path, "fp1", batch_size=2, save_every=1)
    assert info["resumed_from"] == 0
    assert np.allclose(np.load(tmp_path / EMBEDDINGS_FILE), expected, atol=1e-6)


@pytest.fixture(scope="module")
def english_hybrid(embedder, story, tmp_path_factory):
    chunks = paragraph_chunks(story)
    target = len(chunks) // 2
    chunks[target].text += " He spoke of " + RARE + "."
    work = tmp_path_factory.mktemp("english")
    texts = [c.text for c in chunks]
    build_index(texts, work / "bm25")
    embed_chunks(texts, embedder, work, "fp", batch_size=16)
    bm25 = Bm25Retriever(Bm25Index(work / "bm25"))
    dense = DenseRetriever(DenseIndex(work / EMBEDDINGS_FILE, embedder))
    return chunks, target, bm25, dense, HybridRetriever({"bm25": bm25, "dense": dense})


@pytest.mark.real_model
def test_hybrid_finds_rare_phrase_first(english_hybrid):
    chunks, target, bm25, dense, hybrid = english_hybrid
    assert bm25.search(RARE, 10)[0].chunk_id == target
    top = hybrid.search(RARE, 10)
    assert top[0].chunk_id == target
    assert top[0].ranks["bm25"] == 1 and "dense" in top[0].ranks
    assert len(top) == 10 and [c.rank for c in top] == list(range(1, 11))


@pytest.mark.real_model
def test_dense_finds_paraphrase(english_hybrid):
    chunks, target, bm25, dense, hybrid = english_hybrid
    # no word of the query is needed verbatim: the story's oysters scene
    hits = dense.search("shellfish multiplying and covering the bottom of the ocean", 3)
    assert any("oyster" in chunks[c.chunk_id].text.lower() for c in hits)
    assert all(-1.0 <= c.score <= 1.0 for c in hits)


@pytest.mark.real_model
def test_hybrid_finds_chinese_chunk(embedder, tmp_path):
    text = ZH.read_text(encoding="utf-8")
    chunks = paragraph_chunks(text, max_chars=40)
    texts = [c.text for c in chunks]
    build_index(texts, tmp_path / "bm25")
    embed_chunks(texts, embedder, tmp_path, "fp")
    hybrid = HybridRetriever({"bm25": Bm25Retriever(Bm25Index(tmp_path / "bm25")),
                              "dense": DenseRetriever(DenseIndex(tmp_path / EMBEDDINGS_FILE, embedder))})
    expected = next(c.id for c in chunks if "白纸灯笼" in c.text)
    assert hybrid.search("书生在白纸灯笼上题了一首诗", 5)[0].chunk_id == expected


def test_query_threads_change_nothing_but_speed(embedder):
    import torch

    before = torch.get_num_threads()
    plain = embedder.embed_query("Holmes refused to let Watson near him")
    single = embedder.embed_query("Holmes refused to let Watson near him", threads=1)
    assert np.allclose(plain, single, atol=1e-5)
    assert torch.get_num_threads() == before  # the process-wide setting is restored
