"""End to end through ``Library(settings).ingest(path)``: stored chunks, text.txt round-trip,
re-ingest caching, chunk_tokens changes, and bad files leaving the library untouched.

Only the chunk stage is run (``stages=[ChunkStage()]``) so these tests stay fast whatever later stages
(BM25, dense, summaries) the default list grows.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bookqa.errors import InputError
from bookqa.library import Library
from bookqa.stages import ChunkStage

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
SAMPLE = Path(__file__).parent.parent / "bookqa" / "data" / "sample" / "dying_detective.txt"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _stored_text(book) -> str:
    # read the bytes: Path.read_text would hide a stray \r behind universal newlines
    return (book.dir / "text.txt").read_bytes().decode("utf-8")


def test_ingest_sample_book(settings):
    library = Library(settings)
    report = library.ingest(SAMPLE, stages=[ChunkStage()])
    book = report.book
    assert report.created and report.stages_run == ["chunks"]
    assert book.title == "The Adventure of the Dying Detective"
    assert book.kind == "novel"
    text = _stored_text(book)
    assert "\r" not in text
    assert text == SAMPLE.read_bytes().decode("utf-8").replace("\r\n", "\n")
    chunks = book.chunks
    assert len(chunks) > 20
    for chunk in chunks:
        assert text[chunk.start:chunk.end] == chunk.text
        assert chunk.tokens <= settings.chunk_tokens
    start, end = book.manifest["body_span"]
    assert chunks[0].start == start and chunks[-1].end == end
    assert book.manifest["source_encoding"] == "utf-8"
    assert book.stage("chunks")["chunks"] == len(chunks)


def test_reingest_runs_nothing_and_chunk_tokens_rebuilds(settings):
    path = FIXTURES / "gutenberg_mini.txt"
    first = Library(settings).ingest(path, stages=[ChunkStage()])
    again = Library(settings).ingest(path, stages=[ChunkStage()])
    assert not again.created and again.stages_run == [] and again.stages_skipped == ["chunks"]
    assert again.book.dir == first.book.dir
    before = [c.to_json() for c in first.book.chunks]

    smaller = Library(settings.replace(chunk_tokens=32)).ingest(path, stages=[ChunkStage()])
    assert not smaller.created and smaller.stages_run == ["chunks"]
    chunks = smaller.book.chunks
    assert len(chunks) > len(before)
    assert all(c.tokens <= 32 for c in chunks)
    text = _stored_text(smaller.book)
    assert all(text[c.start:c.end] == c.text for c in chunks)


def test_locomo_json_end_to_end(settings):
    report = Library(settings).ingest(FIXTURES / "locomo_tiny.json", stages=[ChunkStage()])
    book = report.book
    assert book.kind == "transcript" and book.title == "tiny-1"
    utterances = json.loads((book.dir / "utterances.json").read_text(encoding="utf-8"))
    assert [u["id"] for u in utterances][:2] == ["D1:1", "D1:2"]
    chunks = book.chunks
    assert [c.chapter for c in chunks] == ["Session 1", "Session 2"]
    assert chunks[0].meta == {"utterances": ["D1:1", "D1:2", "D1:3", "D1:4"], "session": 1,
                              "session_time": "4:15 pm on 2 March, 2024"}
    text = _stored_text(book)
    assert all(text[c.start:c.end] == c.text for c in chunks)


def _png(tmp_path: Path) -> Path:
    path = tmp_path / "upload.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return path


def test_bad_files_leave_library_untouched(settings, tmp_path):
    library = Library(settings)
    library.ingest(FIXTURES / "gutenberg_mini.txt", stages=[ChunkStage()])
    home = Path(settings.home)
    snapshot = _tree(home)
    wrong_shape = tmp_path / "wrong.json"
    wrong_shape.write_text(json.dumps({"dialogue": []}))
    several = tmp_path / "several.json"
    several.write_text(json.dumps(json.loads((FIXTURES / "locomo_tiny.json").read_text()) * 2))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    bad = [_png(tmp_path), wrong_shape, several, empty, tmp_path / "missing.txt", tmp_path]
    for path in bad:
        with pytest.raises(InputError):
            library.ingest(path, stages=[ChunkStage()])
    with pytest.raises(InputError, match="BOOKQA_MAX_UPLOAD_MB"):
        Library(settings.replace(max_upload_mb=0.001)).ingest(SAMPLE, stages=[ChunkStage()])
    assert _tree(home) == snapshot
    assert [b.title for b in library.books()] == ["The Lighthouse Keeper's Ledger"]
