"""The bm25 and dense ingest stages through ``Library.ingest``, ``Book.search`` and ``bookqa search``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bookqa.errors import ConfigError, InputError, NotFoundError
from bookqa.library import Library
from bookqa.retrieve import Candidate, clear_cache, search
from bookqa.retrieve.dense import EMBEDDINGS_FILE, PARTIAL_META
from bookqa.settings import Settings
from bookqa.stages import ChunkStage, default_stages
from bookqa.store import Book

SAMPLE = Path(__file__).resolve().parents[1] / "bookqa" / "data" / "sample" / "dying_detective.txt"
ZH = Path(__file__).parent / "fixtures" / "retrieve" / "lantern_zh.txt"
RARE = "the vermilion zeppelin moored above Tadcaster"


def _settings(home: Path, **overrides) -> Settings:
    env = {"BOOKQA_HOME": str(home), "BOOKQA_MODEL_CACHE": os.environ["BOOKQA_MODEL_CACHE"]}
    return Settings.from_env(env=env, **overrides)


def _excerpt(path: Path) -> Path:
    """The first part of the sample story, with a rare phrase planted in its middle."""
    story = SAMPLE.read_text(encoding="utf-8")
    body = story[story.index("Mrs. Hudson"):][:14000]
    cut = body.index("\n\n", len(body) // 2)
    path.write_text(body[:cut] + " He spoke of " + RARE + "." + body[cut:], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    root = tmp_path_factory.mktemp("english")
    settings = _settings(root / "home", embed_batch_size=8)
    report = Library(settings).ingest(_excerpt(root / "dying.txt"), title="Dying Detective excerpt")
    return settings, report, root


def test_default_stages_follow_chunking():
    assert [s.name for s in default_stages(Settings())][:3] == ["chunks", "bm25", "dense"]


def test_ingest_builds_both_indexes(english):
    settings, report, _ = english
    book = report.book
    assert {"chunks", "bm25", "dense"} <= set(report.stages_run)
    assert (book.dir / "bm25" / "vocab.index.json").is_file()
    emb = np.load(book.dir / EMBEDDINGS_FILE)
    assert emb.shape == (len(book.chunks), 384) and emb.dtype == np.float32
    assert not (book.dir / PARTIAL_META).exists()
    assert book.stage("dense")["model"] == "all-minilm-l6-v2"
    assert book.stage("bm25")["status"] == "done"


def test_reingest_is_cached(english):
    settings, report, root = english
    again = Library(settings).ingest(root / "dying.txt", title="Dying Detective excerpt")
    assert again.book.id == report.book.id
    assert "bm25" in again.stages_skipped and "dense" in again.stages_skipped
    assert "bm25" not in again.stages_run and "dense" not in again.stages_run


def test_fingerprints_follow_what_each_stage_reads(english):
    from bookqa.retrieve.stages import Bm25Stage, DenseStage

    settings, report, _ = english
    book = Book(report.book.dir)
    bm25, dense = Bm25Stage(), DenseStage()
    assert book.stage_done("bm25", bm25.fingerprint(book, settings))
    assert book.stage_done("dense", dense.fingerprint(book, settings))
    # an embedder setting changes only the dense fingerprint; a BM25 setting only the bm25 one
    other_model = settings.replace(embed_window_overlap=16)
    assert bm25.fingerprint(book, other_model) == bm25.fingerprint(book, settings)
    assert dense.fingerprint(book, other_model) != dense.fingerprint(book, settings)
    stop = settings.replace(bm25_stopwords=True)
    assert bm25.fingerprint(book, stop) != bm25.fingerprint(book, settings)
    assert dense.fingerprint(book, stop) == dense.fingerprint(book, settings)
    # query-side settings do not invalidate any index
    query_side = settings.replace(rrf_k=10, dense_weight=2.0, embed_query_prefix="q: ", top_k=5)
    assert bm25.fingerprint(book, query_side) == bm25.fingerprint(book, settings)
    assert dense.fingerprint(book, query_side) == dense.fingerprint(book, settings)
    run, skipped = Library(other_model).build(book, stages=[ChunkStage(), bm25])
    assert run == [] and skipped == ["chunks", "bm25"]
    # both depend on the chunks: a different chunking changes both fingerprints
    rechunked = Book(report.book.dir)
    rechunked._manifest = {**book.manifest, "stages": {**book.manifest["stages"],
                                                        "chunks": {"fingerprint": "other"}}}
    assert bm25.fingerprint(rechunked, settings) != bm25.fingerprint(book, settings)
    assert dense.fingerprint(rechunked, settings) != dense.fingerprint(book, settings)


def test_search_finds_rare_phrase_first(english):
    settings, report, _ = english
    book = Book(report.book.dir)
    for method in ("bm25", "hybrid"):
        hits = search(book, RARE, k=5, method=method, settings=settings)
        assert isinstance(hits[0], Candidate)
        assert RARE in book.chunk(hits[0].chunk_id).text, method
        assert hits[0].rank == 1
    hybrid = search(book, RARE, settings=settings)
    assert len(hybrid) == min(settings.top_k, len(book.chunks))
    assert hybrid[0].ranks["bm25"] == 1 and "dense" in hybrid[0].ranks
    dense = search(book, "a detective pretending to be sick with a tropical disease", k=3, method="dense",
                        settings=settings)
    assert len(dense) == 3 and set(dense[0].ranks) == {"dense"}


def test_reloaded_indexes_give_identical_results(english):
    settings, report, _ = english
    queries = [RARE, "Mrs. Hudson asked Watson to come", "Culverton Smith of Sumatra"]
    first = [[(c.chunk_id, c.score, c.ranks) for c in search(Book(report.book.dir), q, k=10, settings=settings)]
             for q in queries]
    clear_cache()  # forget the loaded indexes: the next search reads them from disk again
    again = [[(c.chunk_id, c.score, c.ranks) for c in search(Book(report.book.dir), q, k=10, settings=settings)]
             for q in queries]
    assert again == first


def test_search_errors(english, tmp_path):
    settings, report, _ = english
    book = Book(report.book.dir)
    with pytest.raises(InputError):
        search(book, "   ", settings=settings)
    with pytest.raises(ConfigError):
        search(book, "Holmes", method="splade", settings=settings)
    with pytest.raises(ConfigError):
        search(book, "Holmes", k=0, settings=settings)
    # a book built without the dense stage says so instead of failing obscurely
    lean = _settings(tmp_path / "home")
    path = tmp_path / "tiny.txt"
    path.write_text("Holmes smoked. Watson waited by the fire for a long while.\n", encoding="utf-8")
    from bookqa.retrieve.stages import Bm25Stage

    small = Library(lean).ingest(path, stages=[ChunkStage(), Bm25Stage()]).book
    assert search(small, "Watson", method="bm25", settings=lean)[0].chunk_id == 0
    with pytest.raises(NotFoundError, match="dense"):
        search(small, "Watson", method="dense", settings=lean)


def test_chinese_book(tmp_path):
    settings = _settings(tmp_path / "home", chunk_tokens=48)
    book = Library(settings).ingest(ZH).book
    assert len(book.chunks) >= 4
    for method in ("bm25", "hybrid"):
        hit = search(book, "白纸灯笼上题了一首诗", k=3, method=method, settings=settings)[0]
        assert "白纸灯笼" in book.chunk(hit.chunk_id).text, method


class Interrupt(Exception):
    pass


@pytest.mark.real_model
def test_interrupted_dense_stage_resumes(tmp_path):
    settings = _settings(tmp_path / "home", embed_batch_size=4, embed_save_every=1)
    path = _excerpt(tmp_path / "dying.txt")

    def progress(stage, done, total):
        if stage == "embedding" and done >= 8:
            raise Interrupt()

    with pytest.raises(Interrupt):
        Library(settings).ingest(path, progress=progress)
    book_dir = next(d for d in (tmp_path / "home" / "books").iterdir() if not d.name.startswith("."))  # not .locks
    assert Book(book_dir).stage("dense")["status"] == "running"
    assert (book_dir / PARTIAL_META).exists() and not (book_dir / EMBEDDINGS_FILE).exists()

    report = Library(settings).ingest(path)
    assert "dense" in report.stages_run and {"chunks", "bm25"} <= set(report.stages_skipped)
    assert report.book.stage("dense")["resumed_from"] == 8
    resumed = np.load(book_dir / EMBEDDINGS_FILE)

    fresh = _settings(tmp_path / "fresh", embed_batch_size=4, embed_save_every=1)
    clean = Library(fresh).ingest(path).book
    assert np.allclose(np.load(clean.dir / EMBEDDINGS_FILE), resumed, atol=1e-6)


def test_cli_search(english, capsys):
    from bookqa.cli import main

    settings, report, _ = english
    code = main(["--home", str(settings.home), "-q", "search", report.book.id[:12], RARE, "-k", "3"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert "3 candidates by hybrid" in lines[0]
    assert lines[1].lstrip().startswith("1. ") and "bm25=1" in lines[1] and "chunk " in lines[1]
    code = main(["--home", str(settings.home), "search", report.book.id, "Watson", "--method", "bm25", "-k", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "2 candidates by bm25" in out and "dense=" not in out
    assert main(["--home", str(settings.home), "search", "no-such-book", "Watson"]) == 2
