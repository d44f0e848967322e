"""A damaged book is quarantined, not fatal: listing, showing and asking about the other books keep
working, the damaged one is named with its reason and repair command, ``bookqa doctor`` finds it by its
recorded checksums, and ingesting the same file again repairs exactly what is damaged.

Books are built with the chunk and BM25 stages only (no model weights beyond the tokenizer), so these
tests stay fast; the checks are the same for every stage that declares its outputs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bookqa.cli import main
from bookqa.errors import BrokenBookError
from bookqa.library import Library
from bookqa.retrieve.stages import Bm25Stage
from bookqa.stages import ChunkStage

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
NOVEL, PLAY = FIXTURES / "gutenberg_mini.txt", FIXTURES / "hamlet_act1.txt"


def _stages():
    return [ChunkStage(), Bm25Stage()]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(settings, capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["--home", str(settings.home), "-q", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def _one_line_error(err: str) -> str:
    assert err.startswith("bookqa: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def two_books(settings):
    library = Library(settings)
    novel = library.ingest(NOVEL, stages=_stages()).book
    play = library.ingest(PLAY, stages=_stages()).book
    return library, novel, play


def test_manifest_records_checksums_of_every_file(two_books):
    _, novel, _ = two_books
    manifest = json.loads((novel.dir / "manifest.json").read_text(encoding="utf-8"))
    recorded = {**manifest["files"], **manifest["stages"]["chunks"]["files"], **manifest["stages"]["bm25"]["files"]}
    assert {"text.txt", "chunks.jsonl", "bm25/bookqa.json"} <= set(recorded)
    for name, record in recorded.items():
        data = (novel.dir / name).read_bytes()
        assert record == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_truncated_manifest_breaks_only_its_own_book(settings, capsys, two_books):
    library, novel, play = two_books
    manifest = play.dir / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])

    assert [b.id for b in library.books()] == [novel.id]
    [broken] = library.broken()
    assert broken.id == play.id and "manifest.json is not valid JSON" in broken.reason
    assert broken.repair.startswith("bookqa ingest ")
    assert library.resolve(novel.id).title == novel.title
    with pytest.raises(BrokenBookError, match="is damaged: manifest.json .*repair it with: bookqa ingest"):
        library.resolve(play.id)

    rc, out, _ = _cli(settings, capsys, "books")
    assert rc == 0 and novel.title in out and f"{play.id}\t" in out and "DAMAGED" in out
    rc, out, _ = _cli(settings, capsys, "show", novel.id)
    assert rc == 0 and "stage chunks: done" in out
    rc, out, _ = _cli(settings, capsys, "search", novel.id, "lighthouse ledger", "--method", "bm25")
    assert rc == 0 and "candidates by bm25" in out
    rc, out, err = _cli(settings, capsys, "ask", play.id, "Who is on the platform?")
    assert rc == 2 and out == "" and "repair it with: bookqa ingest" in _one_line_error(err)
    rc, out, err = _cli(settings, capsys, "doctor")
    assert rc == 2 and f"ok\t{novel.id}" in out and f"DAMAGED\t{play.id}" in out

    report = library.ingest(PLAY, stages=_stages())  # the repair the message names
    assert report.book.dir == play.dir and report.repaired and "manifest.json" in report.repaired[0]
    assert sorted(b.id for b in library.books()) == sorted([novel.id, play.id]) and not library.broken()
    assert _cli(settings, capsys, "doctor")[0] == 0


def test_truncated_chunks_are_repaired_without_redoing_intact_stages(settings, capsys, two_books):
    library, novel, play = two_books
    chunks = novel.dir / "chunks.jsonl"
    good = chunks.read_bytes()
    others_before = _hashes(play.dir)
    bm25_before = {k: v for k, v in _hashes(novel.dir).items() if k.startswith("bm25/")}
    chunks.write_bytes(good[: len(good) // 2])

    [broken] = library.broken()
    assert broken.id == novel.id and "chunks.jsonl is" in broken.reason and "truncated" in broken.reason
    assert [b.id for b in library.books()] == [play.id]

    report = library.ingest(NOVEL, stages=_stages())
    assert report.stages_run == ["chunks"] and report.stages_skipped == ["bm25"]
    assert len(report.repaired) == 1 and report.repaired[0].startswith("chunks (chunks.jsonl is")
    assert chunks.read_bytes() == good
    assert {k: v for k, v in _hashes(novel.dir).items() if k.startswith("bm25/")} == bm25_before
    assert _hashes(play.dir) == others_before
    assert not library.broken()


def test_a_changed_stage_file_is_found_by_checksum_and_rebuilt_alone(settings, capsys, two_books):
    library, novel, _ = two_books
    index = sorted((novel.dir / "bm25").glob("*.npy"))[0]
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF  # same size: a listing's stat cannot see it, the checksum can
    index.write_bytes(bytes(data))

    assert novel.id in [b.id for b in library.books()]  # still listed: a stat cannot tell
    rc, out, _ = _cli(settings, capsys, "doctor")
    assert rc == 2 and f"bm25/{index.name} does not match its checksum" in out
    with pytest.raises(BrokenBookError, match="does not match its checksum"):
        library.resolve(novel.id).require_intact()  # what ask runs first

    report = library.ingest(NOVEL, stages=_stages())
    assert report.stages_run == ["bm25"] and report.stages_skipped == ["chunks"]
    assert _cli(settings, capsys, "doctor")[0] == 0


def test_a_damaged_text_is_rewritten_from_the_source(settings, capsys, two_books):
    library, novel, _ = two_books
    text = novel.dir / "text.txt"
    good = text.read_bytes()
    text.write_bytes(b"x" * len(good))
    rc, _, _ = _cli(settings, capsys, "doctor")
    assert rc == 2
    report = library.ingest(NOVEL, stages=_stages())
    assert report.repaired and report.repaired[0].startswith("text.txt (")
    assert report.stages_run == [] and report.stages_skipped == ["chunks", "bm25"]  # they were intact
    assert text.read_bytes() == good
    assert _cli(settings, capsys, "doctor")[0] == 0


def _forget_checksums(book) -> None:
    """Make the book look like one ingested before checksums were recorded."""
    path = book.dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.pop("files", None)
    for stage in manifest["stages"].values():
        stage.pop("files", None)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def test_books_without_checksums_load_and_are_checked_by_reading_them(settings, capsys, two_books):
    library, novel, play = two_books
    _forget_checksums(novel)
    assert sorted(b.id for b in library.books()) == sorted([novel.id, play.id])
    rc, out, _ = _cli(settings, capsys, "doctor")
    assert rc == 0 and "without checksums read back fine" in out

    chunks = novel.dir / "chunks.jsonl"
    lines = chunks.read_bytes().splitlines(keepends=True)
    chunks.write_bytes(b"".join(lines[:-1]))  # cut at a line end: still valid JSON lines
    rc, out, _ = _cli(settings, capsys, "doctor")
    assert rc == 2 and f"chunks.jsonl holds {len(lines) - 1} chunks, not the {len(lines)}" in out

    report = library.ingest(NOVEL, stages=_stages())
    assert report.stages_run == ["chunks"] and report.stages_skipped == ["bm25"]
    manifest = json.loads((novel.dir / "manifest.json").read_text(encoding="utf-8"))
    assert "text.txt" in manifest["files"] and "bm25/bookqa.json" in manifest["stages"]["bm25"]["files"]
    rc, out, _ = _cli(settings, capsys, "doctor")
    assert rc == 0 and "without checksums" not in out


def test_a_damaged_book_can_be_removed(settings, capsys, two_books):
    library, novel, play = two_books
    (play.dir / "manifest.json").write_text("{", encoding="utf-8")
    rc, out, _ = _cli(settings, capsys, "rm", play.id)
    assert rc == 0 and out.startswith(f"removed {play.id}")
    assert not play.dir.exists() and [b.id for b in library.books()] == [novel.id]


def test_ask_checks_the_question_and_the_book_before_printing_anything(settings, capsys, two_books):
    _, novel, _ = two_books
    rc, out, err = _cli(settings, capsys, "ask", novel.id, "why? " * 2001)
    assert rc == 2 and out == "" and "characters long" in _one_line_error(err)
    rc, out, err = _cli(settings, capsys, "ask", novel.id, "   ")
    assert rc == 2 and out == "" and "the question is empty" in _one_line_error(err)
    rc, out, err = _cli(settings, capsys, "ask", "no-such-book", "Who kept the ledger?")
    assert rc == 2 and out == ""
    assert "list the books with: bookqa books" in _one_line_error(err) and novel.title not in err
