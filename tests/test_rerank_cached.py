"""Cached-chunk QR on tiny random models: the question pass over stored chunk keys/values equals the
read-out of the same tokens in one sequence, the store's fingerprint and resume, the int8 form."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from bookqa.chunk import Chunk
from bookqa.rerank import QRRanker
from bookqa.rerank.blocks import block_sequence, chunk_block, prefix_ids, question_block
from bookqa.rerank.cached import CachedQRRanker
from bookqa.rerank.kvstore import ChunkKVStore, book_caches, decode_rows, encode_rows
from bookqa.rerank.qr import heads_by_layer, question_scores
from bookqa.rerank.readout import read_out
from bookqa.settings import Settings

from test_rerank_tiny import tiny_model, tiny_tokenizer

HEADS = [(0, 1), (1, 2), (2, 0)]
TEXTS = ["Silas Thorne kept a letter from his sister in the house by the river.",
         "The captain saw a whale at night from the ship.",
         "Mara Quill walked the village road to the doctor.",
         "Ada Brook had a garden and a window on the sea."]
QUESTION = "Who kept a letter from his sister?"


def _ranker(kind: str, **kw) -> QRRanker:
    return QRRanker(model=(tiny_model(kind), tiny_tokenizer()), heads=HEADS, settings=Settings(), **kw)


def _reference(ranker: QRRanker, texts, positions, mask=None, question=QUESTION):
    """The read-out over one sequence [prefix][block 1]…[block n][question block] with the given position ids
    (and 4D mask): what the cached pass must reproduce."""
    tok, layout = ranker.tokenizer, ranker.layout
    ids = list(prefix_ids(tok, layout))
    spans = []
    for text in texts:
        block = chunk_block(tok, text, layout)
        spans.append((len(ids) + block.text_tokens[0], len(ids) + block.text_tokens[1]))
        ids += block.input_ids
    q = question_block(tok, question, layout)
    base = len(ids)
    ids += q.input_ids
    rows = list(range(base + q.question[0], base + q.question[1]))
    seg = torch.full((len(ids),), -1, dtype=torch.long)
    for i, (a, b) in enumerate(spans):
        seg[a:b] = i
    by_layer = heads_by_layer(HEADS)
    res = read_out(ranker.model, torch.tensor([ids]), by_layer, rows, segments=seg, n_segments=len(texts),
                   keep_mean=False, attention_mask=mask, position_ids=positions(ids, spans, base))
    return question_scores(res.row_sum, by_layer, HEADS, rows, [(rows[0], rows[-1] + 1)], len(texts))[0], ids


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "llama"])
def test_one_candidate_equals_the_consecutive_sequence(kind):
    ranker = _ranker(kind)
    cached = CachedQRRanker(ranker, kv_dtype="float32")
    ref, ids = _reference(ranker, TEXTS[:1], lambda ids, spans, base: torch.arange(len(ids))[None])
    kv, spans, block_positions, _ = cached._gather_memory(TEXTS[:1])
    got, _, info = cached.head_scores(QUESTION, kv, spans, block_positions)
    assert info["tokens_run"] < len(ids) / 2  # only the question block ran
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert np.abs(ref).sum() > 0


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "llama"])
def test_many_candidates_equal_the_block_masked_sequence(kind):
    """With several candidates the cached pass is the one sequence under the block mask (a chunk sees the
    prefix and itself) with every chunk at the positions right after the prefix: the sequence training
    runs (blocks.block_sequence)."""
    ranker = _ranker(kind)
    cached = CachedQRRanker(ranker, kv_dtype="float32")
    seq = block_sequence(ranker.tokenizer, QUESTION, TEXTS, ranker.layout)
    p = len(cached.prefix_ids)
    lengths = [len(chunk_block(ranker.tokenizer, t, ranker.layout).input_ids) for t in TEXTS]
    assert seq.position_ids[p:p + lengths[0]] == list(range(p, p + lengths[0]))
    assert seq.position_ids[p + lengths[0]] == p  # the second chunk starts where the first did
    assert seq.position_ids[-1] == p + max(lengths) + (seq.n_tokens - p - sum(lengths)) - 1
    by_layer = heads_by_layer(HEADS)
    rows = list(range(*seq.question))
    res = read_out(ranker.model, torch.tensor([seq.input_ids]), by_layer, rows,
                   segments=torch.from_numpy(seq.segment_map()), n_segments=len(TEXTS), keep_mean=False,
                   attention_mask=seq.attention_mask(), position_ids=torch.tensor([seq.position_ids]))
    ref = question_scores(res.row_sum, by_layer, HEADS, rows, [seq.question], len(TEXTS))[0]
    kv, spans, block_positions, _ = cached._gather_memory(TEXTS)
    got, _, _ = cached.head_scores(QUESTION, kv, spans, block_positions)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    # and the full prompt is a different computation (candidates read each other there)
    full, _ = _reference(ranker, TEXTS, lambda ids, spans, base: torch.arange(len(ids))[None])
    assert not np.allclose(full, ref, rtol=1e-3)


def test_order_of_candidates_does_not_change_scores():
    cached = CachedQRRanker(_ranker("qwen3"), kv_dtype="float32")
    a = cached.rank(QUESTION, TEXTS)
    b = cached.rank(QUESTION, TEXTS[::-1])
    by_text_a = {TEXTS[r.index]: r.score for r in a.results}
    by_text_b = {TEXTS[::-1][r.index]: r.score for r in b.results}
    for t in TEXTS:
        assert by_text_a[t] == pytest.approx(by_text_b[t], rel=1e-5, abs=1e-7)
    assert a.info["mode"] == "cached" and a.info["permutations"] == 1


def test_calibration_and_max_run_on_the_same_cache():
    ranker = _ranker("qwen2", calibrate=True, aggregate="max")
    cached = CachedQRRanker(ranker, kv_dtype="float32")
    kv, spans, bp, _ = cached._gather_memory(TEXTS)
    plain, null, _ = cached.head_scores(QUESTION, kv, spans, bp)
    null_alone, _, _ = cached.head_scores("N/A", kv, spans, bp, calibrate=False)
    np.testing.assert_allclose(null, null_alone, rtol=1e-4, atol=1e-6)
    res = cached.rank(QUESTION, TEXTS)
    expected = (plain - null).sum(axis=0)
    assert [r.index for r in res.results] == sorted(range(len(TEXTS)), key=lambda i: (-expected[i], i))


def test_cascade_puts_the_full_prompt_order_on_top():
    ranker = _ranker("qwen3", refine=0)
    cached = CachedQRRanker(ranker, kv_dtype="float32")
    res = cached.rank(QUESTION, TEXTS, cascade_top=3)
    alone = cached.rank(QUESTION, TEXTS)
    top3 = [alone.results[i].index for i in range(3)]
    full = ranker.rank(QUESTION, [TEXTS[i] for i in top3])
    assert [r.index for r in res.results[:3]] == [top3[r.index] for r in full.results]
    assert res.results[3].index == alone.results[3].index
    assert res.info["mode"] == "cascade" and res.info["cascade_top"] == 3


def test_int8_and_bfloat16_rows_round_trip():
    torch.manual_seed(0)
    rows = torch.randn(7, 3, 2, 2, 16)
    for kv_dtype, tol in (("float32", 0), ("float16", 2e-3), ("bfloat16", 1e-2), ("int8", 2e-2)):
        data, scale = encode_rows(rows, kv_dtype)
        back = decode_rows(data, scale, kv_dtype, torch.float32)
        rel = (back - rows).abs().max() / rows.abs().max()
        assert float(rel) <= tol, kv_dtype


def _chunks(texts):
    out, pos = [], 0
    for i, t in enumerate(texts):
        out.append(Chunk(id=i, start=pos, end=pos + len(t), tokens=len(t.split()), text=t))
        pos += len(t) + 1
    return out


def _sha(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


@pytest.mark.parametrize("kv_dtype", ["bfloat16", "int8"])
def test_book_store_ranks_like_memory_and_fills_lazily(tmp_path, kv_dtype):
    cached = CachedQRRanker(_ranker("qwen2"), kv_dtype=kv_dtype)
    chunks = _chunks(TEXTS * 3)
    store = cached.open_store(tmp_path, chunks)
    assert store.missing() == list(range(12))
    picked = [chunks[i] for i in (5, 0, 9)]
    res = cached.rank(QUESTION, picked, store=store, book_chunks=chunks)
    assert res.info["encoded"] == 3 and res.info["source"] == "book"
    assert store.missing() == [i for i in range(12) if i not in (0, 5, 9)]
    again = cached.rank(QUESTION, picked, store=store, book_chunks=chunks)
    assert again.info["encoded"] == 0
    assert [r.chunk_id for r in again.results] == [r.chunk_id for r in res.results]
    reopened = cached.open_store(tmp_path, chunks, create=False)
    assert reopened is not None and reopened.missing() == store.missing()
    listing = book_caches(tmp_path)
    assert listing[0]["built"] == 3 and listing[0]["chunks"] == 12 and listing[0]["disk_bytes"] > 0


def test_a_changed_model_adapter_template_or_chunking_never_reads_a_stale_cache(tmp_path):
    ranker = _ranker("qwen2")
    cached = CachedQRRanker(ranker, kv_dtype="float32")
    chunks = _chunks(TEXTS)
    store = cached.open_store(tmp_path, chunks)
    cached.fill(store, chunks)
    assert cached.open_store(tmp_path, chunks, create=False) is not None
    # another model (other weights)
    other = CachedQRRanker(QRRanker(model=(tiny_model("qwen2", seed=1), tiny_tokenizer()), heads=HEADS,
                                    settings=Settings()), kv_dtype="float32")
    assert other.open_store(tmp_path, chunks, create=False) is None
    # another adapter name, another template, other chunks, another stored dtype
    for changed in (dict(adapter="some-adapter"),):
        ranker2 = _ranker("qwen2")
        ranker2.config = ranker2.config.replace(**changed)
        assert CachedQRRanker(ranker2, kv_dtype="float32").open_store(tmp_path, chunks, create=False) is None
    import dataclasses

    ranker3 = _ranker("qwen2")
    ranker3.layout = dataclasses.replace(ranker3.layout, instruction="Find what answers it.")
    assert CachedQRRanker(ranker3, kv_dtype="float32").open_store(tmp_path, chunks, create=False) is None
    edited = _chunks(TEXTS[:-1] + ["A different last chunk."])
    assert cached.open_store(tmp_path, edited, create=False) is None
    assert CachedQRRanker(ranker, kv_dtype="int8").open_store(tmp_path, chunks, create=False) is None
    # a cache.json whose identity was altered is refused even under the right name
    meta_path = next((tmp_path / "qr_kv").iterdir()) / "cache.json"
    meta = meta_path.read_text().replace('"format": 1', '"format": 99')
    meta_path.write_text(meta)
    assert cached.open_store(tmp_path, chunks, create=False) is None


_BUILD = textwrap.dedent("""
    import os, sys, signal
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from bookqa.rerank import QRRanker
    from bookqa.rerank.cached import CachedQRRanker
    from bookqa.settings import Settings
    from test_rerank_tiny import tiny_model, tiny_tokenizer
    from test_rerank_cached import HEADS, TEXTS, _chunks
    import bookqa.rerank.cached as cached_mod
    cached_mod.COMMIT_EVERY_S = 0.0
    kill_after = int(sys.argv[2])
    cached = CachedQRRanker(QRRanker(model=(tiny_model("qwen3"), tiny_tokenizer()), heads=HEADS,
                                     settings=Settings()), kv_dtype="bfloat16")
    chunks = _chunks(TEXTS * 4)
    store = cached.open_store(sys.argv[1], chunks)
    def progress(stage, done, total):
        if kill_after and done == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    cached.fill(store, chunks, progress=progress)
""")


def test_an_interrupted_build_resumes_to_identical_files(tmp_path):
    tests = str(Path(__file__).parent)
    script = tmp_path / "build.py"
    script.write_text(_BUILD.format(tests=tests))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    subprocess.run([sys.executable, str(script), str(whole), "0"], check=True, env=env)
    killed = subprocess.run([sys.executable, str(script), str(resumed), "7"], env=env)
    assert killed.returncode == -9
    directory = next((resumed / "qr_kv").iterdir())
    built = np.load(directory / "built.npy")
    assert 0 < built.sum() < len(built)  # it stopped part way, with the finished chunks recorded
    subprocess.run([sys.executable, str(script), str(resumed), "0"], check=True, env=env)
    a, b = next((whole / "qr_kv").iterdir()), next((resumed / "qr_kv").iterdir())
    assert a.name == b.name
    assert _sha(a) == _sha(b)


# --- the cached path inside ask, ingest and the CLI (tiny reranker, scripted generator) ---------------

SAMPLE = Path(__file__).resolve().parent.parent / "bookqa" / "data" / "sample" / "dying_detective.txt"


class Scripted:
    model_id = "scripted"

    def stream(self, messages, max_tokens, temperature=0.0):
        yield "Holmes pretended to be dying [1]."


@pytest.fixture
def tiny_cached(monkeypatch):
    import bookqa.generate
    import bookqa.pipeline
    import bookqa.rerank.shared

    ranker = _ranker("qwen2", refine=0)
    cached = CachedQRRanker(ranker, kv_dtype="bfloat16")
    monkeypatch.setattr(bookqa.pipeline, "get_reranker", lambda settings, progress=None: ranker)
    monkeypatch.setattr(bookqa.pipeline, "get_cached_reranker", lambda settings, progress=None: cached)
    monkeypatch.setattr(bookqa.rerank.shared, "get_cached_reranker", lambda settings, progress=None: cached)
    monkeypatch.setattr(bookqa.generate, "get_generator", lambda settings, progress=None: Scripted())
    return cached


def _settings(tmp_path, **kw):
    # the scripted generator only streams: it cannot judge citations (checked citations: test_answer.py)
    return Settings.from_env(home=tmp_path / "home", summaries="none", top_k=4, citation_check="off", **kw)


def test_ask_in_cached_mode_fills_the_book_cache_lazily(tmp_path, tiny_cached):
    from bookqa.library import Library
    from bookqa.pipeline import ask

    settings = _settings(tmp_path, qr_mode="cached")
    book = Library(settings).ingest(SAMPLE).book
    first = ask(book, "What did Holmes pretend to suffer from?", settings)
    assert first.info["qr_mode"] == "cached" and "rerank_encode" in first.timings
    store = tiny_cached.open_store(book.dir, book.chunks, create=False)
    assert len(store.missing()) == len(book.chunks) - 4
    again = ask(book, "What did Holmes pretend to suffer from?", settings)
    assert "rerank_encode" not in again.timings
    assert [r.chunk_id for r in again.ranked] == [r.chunk_id for r in first.ranked]
    cascade = ask(book, "What did Holmes pretend to suffer from?", settings.replace(qr_mode="cascade", qr_cascade_top=2))
    assert cascade.info["qr_mode"] == "cascade" and "rerank_cascade" in cascade.timings


def test_a_book_without_a_cache_still_answers_with_the_full_prompt(tmp_path, tiny_cached):
    from bookqa.library import Library
    from bookqa.pipeline import ask

    settings = _settings(tmp_path, qr_mode="cached", qr_cache="off")
    book = Library(settings).ingest(SAMPLE).book
    result = ask(book, "What did Holmes pretend to suffer from?", settings)
    assert result.info["qr_mode"] == "full"
    assert any("no complete QR cache" in w for w in result.warnings)
    assert result.answer and not (book.dir / "qr_kv").exists()


def test_ingest_with_qr_cache_builds_every_chunk_and_books_lists_it(tmp_path, tiny_cached, capsys, monkeypatch):
    from bookqa.cli import main
    from bookqa.library import Library
    from bookqa.pipeline import ask

    monkeypatch.setenv("BOOKQA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BOOKQA_SUMMARIES", "none")
    assert main(["-q", "ingest", str(SAMPLE), "--qr-cache"]) == 0
    out = capsys.readouterr().out
    assert "qr_cache" in out
    settings = _settings(tmp_path, qr_mode="cached", qr_cache="off")
    book = Library(settings).books()[0]
    store = tiny_cached.open_store(book.dir, book.chunks, create=False)
    assert store is not None and store.complete
    assert main(["books"]) == 0
    listing = capsys.readouterr().out
    assert f"QR cache {len(book.chunks)} of {len(book.chunks)} chunks" in listing
    result = ask(book, "Who is Culverton Smith?", settings)
    assert result.info["qr_mode"] == "cached" and "rerank_encode" not in result.timings
    # ingesting again leaves the finished cache alone
    assert main(["-q", "ingest", str(SAMPLE), "--qr-cache"]) == 0
    assert "up to date: chunks, bm25, dense, summaries, qr_cache" in capsys.readouterr().out
