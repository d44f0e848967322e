"""The book store and the library CLI: ids, name resolution, path safety, clean one-line errors."""
from __future__ import annotations

import json
import shutil

import pytest

from bookqa.cli import main
from bookqa.errors import AmbiguousNameError, NotFoundError
from bookqa.library import Library
from bookqa.store import Book, make_book_id, slugify


def test_slug_and_ids_cannot_escape_the_store():
    for title in ["../../etc/passwd", "/abs/path", "a/b\\c", "..", "", "   ", "C:\\Windows", "\x00evil"]:
        slug = slugify(title)
        assert slug and "/" not in slug and "\\" not in slug and "." not in slug
    assert slugify("Le Père Goriot!") == "le-pere-goriot"
    assert slugify("红楼梦") == "book"
    assert make_book_id("../x", "ab" * 32) == "x-" + "ab" * 6


def _fake_book(root, book_id, title):
    d = root / book_id
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"book_id": book_id, "title": title, "stages": {}}))
    return Book(d)


def test_resolve_by_id_prefix_title(settings):
    lib = Library(settings)
    with pytest.raises(NotFoundError, match="empty"):
        lib.resolve("x")
    _fake_book(settings.books_dir, "emma-aaaa11112222", "Emma")
    _fake_book(settings.books_dir, "emma-bbbb33334444", "Emma (annotated)")
    _fake_book(settings.books_dir, "moby-dick-cccc55556666", "Moby Dick")
    assert lib.resolve("moby-dick-cccc55556666").title == "Moby Dick"
    assert lib.resolve("moby").id == "moby-dick-cccc55556666"
    assert lib.resolve("EMMA").id == "emma-aaaa11112222"  # exact title wins over the ambiguous prefix
    with pytest.raises(AmbiguousNameError, match="2 books"):
        lib.resolve("emma-")
    with pytest.raises(NotFoundError, match="no book matches 'zola'; list the books with: bookqa books") as info:
        lib.resolve("zola")
    assert "Moby" not in str(info.value) and "Emma" not in str(info.value)  # other books are not listed
    assert [b.title for b in lib.books()] == ["Emma", "Emma (annotated)", "Moby Dick"]


SAMPLE_TEXT = ("CHAPTER I.\n\nIt was a bright cold day in April. The clocks were striking thirteen. "
               "Mr. Smith walked home slowly.\n\nCHAPTER II.\n\nThe next morning brought rain. Nobody spoke.\n")


def test_cli_ingest_books_show_rm(settings, tmp_path, capsys, qwen_tokenizer):
    src = tmp_path / "tiny.txt"
    src.write_text(SAMPLE_TEXT)
    home = ["--home", str(settings.home), "-q"]
    assert main(home + ["ingest", str(src), "--title", "Tiny Tale"]) == 0
    out = capsys.readouterr().out
    assert "added:" in out and "Tiny Tale" in out
    assert main(home + ["ingest", str(src), "--title", "Tiny Tale"]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert main(home + ["books"]) == 0
    assert "Tiny Tale" in capsys.readouterr().out
    assert main(home + ["show", "tiny tale", "--chunk", "0"]) == 0
    shown = capsys.readouterr().out
    assert "CHAPTER I" in shown and "bright cold day" in shown
    assert main(home + ["show", "tiny"]) == 0
    assert "stage chunks: done" in capsys.readouterr().out
    assert main(home + ["rm", "Tiny Tale"]) == 0
    assert main(home + ["books"]) == 0
    assert "no books" in capsys.readouterr().out


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing.txt", "not found|does not exist|no such"),
    (lambda p: p, "directory"),
    (lambda p: (p / "empty.txt").write_text("") and p / "empty.txt" or p / "empty.txt", "empty"),
    (lambda p: (p / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200) and p / "img.png", "binary|image|PNG"),
])
def test_cli_bad_input_is_one_line_error(settings, tmp_path, capsys, make, match):
    import re

    path = make(tmp_path)
    rc = main(["--home", str(settings.home), "-q", "ingest", str(path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("bookqa: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(match, err, re.I)


def test_cli_unknown_book_names_no_other_book(settings, capsys):
    # the titles of the library are not listed (on a shared server they are other people's books)
    _fake_book(settings.books_dir, "emma-aaaa11112222", "Emma")
    rc = main(["--home", str(settings.home), "show", "Persuasion"])
    err = capsys.readouterr().err
    assert rc == 2 and "Emma" not in err and "emma-aaaa" not in err
    assert "no book matches 'Persuasion'; list the books with: bookqa books" in err


def test_bad_setting_is_one_line_error(settings, capsys, monkeypatch):
    monkeypatch.setenv("BOOKQA_CHUNK_TOKENS", "lots")
    assert main(["books"]) == 2
    assert "BOOKQA_CHUNK_TOKENS" in capsys.readouterr().err
