"""BM25 retrieval and its tokenizer, on chunk lists built directly (no ingest, no models)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bookqa.chunk import Chunk
from bookqa.retrieve import Bm25Retriever
from bookqa.retrieve.bm25 import META_FILE, Bm25Index, build_index
from bookqa.retrieve.textsplit import tokenize

SAMPLE = Path(__file__).resolve().parents[1] / "bookqa" / "data" / "sample" / "dying_detective.txt"
ZH = Path(__file__).parent / "fixtures" / "retrieve" / "lantern_zh.txt"
RARE = "the vermilion zeppelin moored above Tadcaster"


def paragraph_chunks(text: str, max_chars: int = 900) -> list[Chunk]:
    """Chunks of whole paragraphs with exact spans (a stand-in for the real chunker)."""
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
def english() -> list[Chunk]:
    text = SAMPLE.read_text(encoding="utf-8")
    chunks = paragraph_chunks(text)
    # Plant a phrase made of words that occur nowhere else in the story into one middle chunk.
    target = chunks[len(chunks) // 2]
    target.text = target.text + " He spoke of " + RARE + "."
    return chunks


def test_tokenizer_english_words_and_apostrophes():
    assert tokenize("Don’t call Mr. Holmes's bluff—CAFÉ, 1890!") == ["don't", "call", "mr", "holmes", "bluff",
                                                                     "cafe", "1890"]
    assert tokenize("snake_case rock'n'roll 'quoted'") == ["snake", "case", "rock'n'roll", "quoted"]
    # full-width forms fold to ASCII
    assert tokenize("ＨＯＬＭＥＳ") == ["holmes"]


def test_tokenizer_cjk_bigrams():
    doc = tokenize("灯笼铺里")
    assert doc[:3] == ["灯笼", "笼铺", "铺里"]
    assert set(doc[3:]) == {"灯", "笼", "铺", "里"}  # documents also index single characters
    assert tokenize("灯笼铺里", for_query=True) == ["灯笼", "笼铺", "铺里"]
    assert tokenize("梅", for_query=True) == ["梅"]
    assert tokenize("小梅 is 十岁", for_query=True) == ["小梅", "is", "十岁"]
    assert tokenize("Holmes在伦敦", for_query=True) == ["holmes", "在伦", "伦敦"]


def test_tokenizer_stopwords_optional():
    from bookqa.retrieve.textsplit import ENGLISH_STOPWORDS

    assert tokenize("the game is afoot", stopwords=ENGLISH_STOPWORDS) == ["game", "afoot"]
    assert tokenize("the game is afoot") == ["the", "game", "is", "afoot"]


def test_rare_phrase_is_rank_one(english, tmp_path):
    build_index([c.text for c in english], tmp_path / "bm25")
    retriever = Bm25Retriever(Bm25Index(tmp_path / "bm25"))
    results = retriever.search(RARE, k=10)
    target = len(english) // 2
    assert results[0].chunk_id == target
    assert results[0].rank == 1 and results[0].ranks == {"bm25": 1}
    # the planted words occur nowhere else, so nothing else matches a query made only of them
    assert [c.chunk_id for c in retriever.search("vermilion zeppelin Tadcaster", k=10)] == [target]
    scores = [c.score for c in results]
    assert scores == sorted(scores, reverse=True)


def test_common_word_query_still_ranks_by_bm25(english, tmp_path):
    build_index([c.text for c in english], tmp_path / "bm25")
    index = Bm25Index(tmp_path / "bm25")
    top = index.top("Culverton Smith", 5)
    assert len(top) == 5
    for cid, _ in top[:3]:
        assert "culverton" in english[cid].text.lower() or "smith" in english[cid].text.lower()


def test_chinese_query_finds_unspaced_chunk(tmp_path):
    text = ZH.read_text(encoding="utf-8")
    chunks = paragraph_chunks(text, max_chars=40)
    assert len(chunks) >= 6
    build_index([c.text for c in chunks], tmp_path / "bm25")
    index = Bm25Index(tmp_path / "bm25")
    expected = next(c.id for c in chunks if "白纸灯笼" in c.text)
    assert index.top("白纸灯笼上题诗", 3)[0][0] == expected
    expected = next(c.id for c in chunks if "县令" in c.text and "买下" in c.text)
    assert index.top("谁买下了所有的灯笼", 3)[0][0] == expected
    # a single-character query matches documents through their unigrams
    assert index.top("梅", 3)


def test_reloaded_index_returns_identical_results(english, tmp_path):
    build_index([c.text for c in english], tmp_path / "a")
    first = Bm25Index(tmp_path / "a")
    queries = [RARE, "Watson", "the oyster question", "Mrs. Hudson and the doctor", "灯笼"]
    before = [first.top(q, 20) for q in queries]
    again = Bm25Index(tmp_path / "a")
    assert [again.top(q, 20) for q in queries] == before
    # arrays are memory-mapped on load
    assert isinstance(again._bm25.scores["data"], np.memmap)
    # a rebuild of the same texts writes identical files (vocabulary order does not depend on the hash seed)
    build_index([c.text for c in english], tmp_path / "b")
    for path in sorted((tmp_path / "a").iterdir()):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name


def test_index_files_are_arrays_and_json_only(english, tmp_path):
    build_index([c.text for c in english], tmp_path / "bm25", meta={"chunks_fingerprint": "abc"})
    names = sorted(p.name for p in (tmp_path / "bm25").iterdir())
    assert all(n.endswith((".npy", ".json")) for n in names), names
    for path in (tmp_path / "bm25").glob("*.npy"):
        arr = np.load(path, allow_pickle=False)
        assert arr.dtype != object
    vocab = json.loads((tmp_path / "bm25" / "vocab.index.json").read_text(encoding="utf-8"))
    assert isinstance(vocab, dict) and vocab["zeppelin"] >= 0
    meta = json.loads((tmp_path / "bm25" / META_FILE).read_text())
    assert meta["documents"] == len(english) and meta["chunks_fingerprint"] == "abc"


def test_rebuild_replaces_directory_atomically(tmp_path):
    target = tmp_path / "bm25"
    build_index(["alpha beta", "gamma"], target)
    build_index(["delta", "epsilon zeta", "eta"], target)
    assert Bm25Index(target).num_docs == 3
    assert Bm25Index(target).top("alpha", 3) == []
    assert [p.name for p in tmp_path.iterdir()] == ["bm25"]  # no temp or old directories left behind


def test_degenerate_inputs(tmp_path):
    build_index(["***", "..."], tmp_path / "bm25")
    index = Bm25Index(tmp_path / "bm25")
    assert index.top("anything", 5) == []
    build_index(["some words here"], tmp_path / "bm25")
    index = Bm25Index(tmp_path / "bm25")
    assert index.top("!!!", 5) == []
    assert index.top("words", 5)[0][0] == 0
