"""The bad-input corpus, through the real ``bookqa ingest`` command: every case ends with exit code 0 or
2, one clear line (no traceback), the message its table row expects, and no file of a book already in the
library changed (sha256 of every file in the home, before and after).

The table is ``tests/fixtures/bad_inputs/cases.json``: ``input`` is a file of that folder, or
``make:<name>`` for an input built here at run time (binary formats, encodings, odd sizes: no binary file
is committed). Accepted cases (exit 0) also name the encoding the manifest must record.
"""
from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import random
import re
import sqlite3
import zipfile
from pathlib import Path

import pytest

from bookqa.cli import main
from bookqa.library import Library
from bookqa.settings import Settings

CORPUS = Path(__file__).parent / "fixtures" / "bad_inputs"
INGEST = Path(__file__).parent / "fixtures" / "ingest"
CASES = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))


def _text(name: str) -> str:
    return (INGEST / name).read_bytes().decode("utf-8")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # an EPUB is a zip whose first entry is its mimetype
        zf.writestr("mimetype", "application/epub+zip")
        zf.writestr("OEBPS/chapter1.xhtml", "<p>It was a dark and stormy night.</p>" * 20)
    return buf.getvalue()


def _sqlite(tmp: Path) -> bytes:
    path = tmp / "db.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("create table books (title text)")
        db.execute("insert into books values ('Emma')")
    data = path.read_bytes()
    path.unlink()
    return data


def _damaged_gb18030() -> bytes:
    data = _text("chinese.txt").encode("gb18030")
    return data[:300] + b"\x81\x20" + data[300:]


def _stray_nuls() -> bytes:
    data = _text("hamlet_act1.txt").encode("utf-8")
    return data[:120] + b"\x00" + data[120:700] + b"\x00\x00" + data[700:]


MAKERS = {
    "empty": lambda tmp: b"",
    "blank_utf16": lambda tmp: codecs.BOM_UTF16_LE + " \n \n".encode("utf-16-le"),
    "png": lambda tmp: b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64)),
    "jpeg": lambda tmp: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64)),
    "gif": lambda tmp: b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + bytes(range(32)),
    "pdf": lambda tmp: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    "epub": lambda tmp: _zip(),
    "gzip": lambda tmp: gzip.compress(b"It was a dark and stormy night. " * 40),
    "elf": lambda tmp: b"\x7fELF\x02\x01\x01\x00" + bytes(120),
    "sqlite": _sqlite,
    "random": lambda tmp: random.Random(29).randbytes(4096),
    "nul_heavy": lambda tmp: b"".join(b"word %d \x00\x00\x00 " % i for i in range(300)),
    "controls": lambda tmp: ("Chapter one. " + "\x01\x02\x03\x04\x05" * 40).encode("ascii"),
    "undecodable": lambda tmp: b"Plain start \x81\x8d\x90 and more text that is otherwise plain.",
    "damaged_gb18030": lambda tmp: _damaged_gb18030(),
    "bad_after_bom": lambda tmp: codecs.BOM_UTF8 + b"Fine start, then \xff\xfe\xfd bad bytes.",
    "odd_utf16": lambda tmp: codecs.BOM_UTF16_LE + "An odd number of bytes.".encode("utf-16-le") + b"x",
    "big": lambda tmp: b"A small file, but the limit is smaller still. " * 10,
    "gb18030": lambda tmp: _text("chinese.txt").encode("gb18030"),
    "utf16le_chinese": lambda tmp: _text("chinese.txt").encode("utf-16-le"),
    "shift_jis": lambda tmp: _text("japanese.txt").encode("shift_jis"),
    "stray_nuls": lambda tmp: _stray_nuls(),
    "long_line": lambda tmp: " ".join(f"word{i} and another word" for i in range(700)).encode("utf-8"),
}


def _input(case: dict, tmp: Path) -> Path:
    source = case["input"]
    if not source.startswith("make:"):
        return CORPUS / source
    name = source[len("make:"):]
    if name == "missing":
        return tmp / "nowhere" / "missing.txt"
    if name == "directory":
        (tmp / "a-folder").mkdir()
        return tmp / "a-folder"
    suffix = ".json" if name.endswith("json") else ".txt"
    path = tmp / f"{name}{suffix}"
    path.write_bytes(MAKERS[name](tmp))
    return path


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A library that already holds one fully built book (every default stage)."""
    home = tmp_path_factory.mktemp("bad-inputs") / "home"
    Library(Settings.from_env(home=home)).ingest(INGEST / "gutenberg_mini.txt")
    return home


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 25 and len({c["case"] for c in CASES}) == len(CASES)
    assert all(c["exit"] in (0, 2) for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_bad_input(case, home, tmp_path, capsys):
    path = _input(case, tmp_path)
    before = _hashes(home)
    rc = main(["--home", str(home), "-q", "ingest", str(path), *case["args"]])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == case["exit"], err
    after = _hashes(home)
    if rc == 2:
        assert out == "" and err.startswith("bookqa: error: ") and err.count("\n") == 1, err
        assert re.search(case["message"], err.strip()), err
        assert case.get("absent", "\0") not in err
        assert after == before  # nothing written, nothing changed
        return
    assert {k: v for k, v in after.items() if k in before} == before  # the books already there are untouched
    assert out.startswith("added: ")
    assert re.search(case["message"], err), err
    book_dir = Path(re.search(r"stored in (.+)", out).group(1))
    manifest = json.loads((book_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["source_encoding"] == case["encoding"]
    assert all(st["status"] == "done" for st in manifest["stages"].values())
