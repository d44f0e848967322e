"""Reading and decoding files, kind detection, and the clear refusals of bad input."""
from __future__ import annotations

import codecs
import json
import zipfile
from pathlib import Path

import pytest

from bookqa.errors import InputError
from bookqa.ingest import prepare_source

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
MB = 1024 * 1024
SAMPLE = "He said “hello” – it cost €5.\r\nSecond line.\rThird line.\n"
NORMALISED = "He said “hello” – it cost €5.\nSecond line.\nThird line.\n"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("data, encoding", [
    (SAMPLE.encode("utf-8"), "utf-8"),
    (codecs.BOM_UTF8 + SAMPLE.encode("utf-8"), "utf-8-sig"),
    (codecs.BOM_UTF16_LE + SAMPLE.encode("utf-16-le"), "utf-16"),
    (codecs.BOM_UTF16_BE + SAMPLE.encode("utf-16-be"), "utf-16"),
    (SAMPLE.encode("utf-16-le"), "utf-16-le"),  # no BOM: found by the NUL pattern
    (SAMPLE.encode("cp1252"), "cp1252"),  # curly quotes 0x93/0x94, en dash 0x96, euro 0x80
])
def test_decodes_and_normalises_newlines(tmp_path, data, encoding):
    source = prepare_source(_write(tmp_path, "book.txt", data), kind="novel", max_bytes=MB)
    assert source.encoding == encoding
    assert source.text == NORMALISED  # no BOM character, no \r
    assert source.kind == "novel"


def test_cp1252_curly_quotes_bytes(tmp_path):
    path = _write(tmp_path, "ansi.txt", b"\x93Quoted,\x94 she said. It\x92s fine.\r\n")
    source = prepare_source(path, None, MB)
    assert source.encoding == "cp1252"
    assert source.text == "“Quoted,” she said. It’s fine.\n"


def test_latin1_text_without_c1_decodes_as_cp1252_superset(tmp_path):
    path = _write(tmp_path, "latin.txt", "Café, naïve, façade.".encode("latin-1"))
    source = prepare_source(path, None, MB)
    assert source.text == "Café, naïve, façade."
    assert source.encoding == "cp1252"


def _assert_refused(path: Path, *fragments: str, max_bytes: int = MB, kind=None) -> str:
    with pytest.raises(InputError) as info:
        prepare_source(path, kind, max_bytes)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path):
    _assert_refused(tmp_path / "nope.txt", "nope.txt", "no such file")


def test_directory(tmp_path):
    _assert_refused(tmp_path, str(tmp_path), "directory")


def test_empty_and_whitespace_only(tmp_path):
    _assert_refused(_write(tmp_path, "empty.txt", b""), "empty.txt", "empty")
    _assert_refused(_write(tmp_path, "blank.txt", b" \r\n\t\n  \n"), "blank.txt", "empty")
    _assert_refused(_write(tmp_path, "blank16.txt", codecs.BOM_UTF16_LE + " \n ".encode("utf-16-le")),
                    "blank16.txt", "empty")


def test_over_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.txt"
    with open(path, "wb") as fh:  # sparse: no need to write 3 MB
        fh.truncate(3 * MB)

    def no_read(self):
        raise AssertionError("the file was read although it is over the limit")

    monkeypatch.setattr(Path, "read_bytes", no_read)
    message = _assert_refused(path, "big.txt", "3.0 MB", "2.0 MB", "BOOKQA_MAX_UPLOAD_MB", max_bytes=2 * MB)
    assert "limit" in message


def _png_bytes() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
            + chunk(b"IEND", b""))


def test_png_is_refused(tmp_path):
    _assert_refused(_write(tmp_path, "cover.txt", _png_bytes()), "cover.txt", "PNG image", "not a text file")


def test_zip_is_refused(tmp_path):
    path = tmp_path / "book.txt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("chapter1.txt", "It was a dark and stormy night. " * 50)
    _assert_refused(path, "book.txt", "zip archive")


def test_pdf_is_refused(tmp_path):
    _assert_refused(_write(tmp_path, "paper.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), "paper.pdf", "PDF")


def test_nul_bytes_are_binary(tmp_path):
    data = bytes(range(256)) * 4  # NULs in no alternating pattern
    _assert_refused(_write(tmp_path, "blob.bin", data), "blob.bin", "binary")


def test_control_characters_are_binary(tmp_path):
    data = ("text " + "\x01\x02\x03\x04\x05" * 20).encode("ascii")
    _assert_refused(_write(tmp_path, "ctl.txt", data), "ctl.txt", "control characters")


def test_undecodable_bytes(tmp_path):
    # 0x81 and 0x8d are not cp1252 characters and would be C1 controls in Latin-1
    path = _write(tmp_path, "odd.txt", b"Plain start \x81\x8d\x90 and more text")
    _assert_refused(path, "odd.txt", "not UTF-8, UTF-16 or cp1252/Latin-1 text")


def test_unknown_kind(tmp_path):
    path = _write(tmp_path, "a.txt", b"Hello there.")
    _assert_refused(path, "unknown kind", "'poem'", kind="poem")


def test_kind_detection(tmp_path):
    assert prepare_source(FIXTURES / "transcript.txt", None, MB).kind == "transcript"
    assert prepare_source(FIXTURES / "locomo_tiny.json", None, MB).kind == "transcript"
    assert prepare_source(FIXTURES / "gutenberg_mini.txt", None, MB).kind == "novel"
    assert prepare_source(FIXTURES / "hamlet_act1.txt", None, MB).kind == "novel"
    assert prepare_source(FIXTURES / "chinese.txt", None, MB).kind == "novel"
    # an explicit kind wins over detection
    forced = prepare_source(FIXTURES / "transcript.txt", "novel", MB)
    assert forced.kind == "novel" and forced.utterances is None
    assert prepare_source(FIXTURES / "transcript.txt", "Transcript", MB).kind == "transcript"


def test_transcript_without_speakers_is_refused(tmp_path):
    path = _write(tmp_path, "prose.txt", b"Just a sentence.\nAnd another one.\n")
    _assert_refused(path, "prose.txt", "Speaker: text", kind="transcript")


def _locomo_sample(sample_id: str) -> dict:
    return {"sample_id": sample_id, "conversation": {
        "speaker_a": "A", "speaker_b": "B", "session_1_date_time": "9:00 am on 1 May, 2024",
        "session_1": [{"speaker": "A", "dia_id": "D1:1", "text": "Hi."}]}}


@pytest.mark.parametrize("payload, fragments", [
    ({"foo": 1}, ["expected a LoCoMo sample", "found an object with keys foo"]),
    ({"conversation": {"speaker_a": "A"}}, ["expected a LoCoMo sample", "speaker_a"]),
    ({"conversation": {"session_1": "hello"}}, ["'session_1' should be a list of turns"]),
    ({"conversation": {"session_1": [{"speaker": "A"}]}}, ["turn 1 of 'session_1'", "'text'"]),
    ([], ["empty list"]),
    ("just a string", ["found a str"]),
    ([_locomo_sample("a"), _locomo_sample("b"), _locomo_sample("c")],
     ["holds 3 conversations", "one conversation per book"]),
])
def test_locomo_wrong_shape(tmp_path, payload, fragments):
    path = _write(tmp_path, "conv.json", json.dumps(payload).encode())
    _assert_refused(path, "conv.json", *fragments)


def test_invalid_json(tmp_path):
    _assert_refused(_write(tmp_path, "broken.json", b'{"conversation": [1, 2'), "broken.json", "not valid JSON")


def test_single_sample_object_and_one_item_list_are_accepted(tmp_path):
    one = prepare_source(_write(tmp_path, "one.json", json.dumps(_locomo_sample("x")).encode()), None, MB)
    listed = prepare_source(_write(tmp_path, "list.json", json.dumps([_locomo_sample("x")]).encode()), None, MB)
    assert one.text == listed.text == "Session 1 — 9:00 am on 1 May, 2024\nA: Hi.\n"
    assert one.title == "x"
    assert one.utterances == listed.utterances


# --- legacy encodings, detected by content -------------------------------------------------------------

def _fixture_text(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


@pytest.mark.parametrize("fixture, codec, recorded", [
    ("chinese.txt", "gb18030", "gb18030"),
    ("chinese.txt", "gbk", "gb18030"),  # GBK is a subset of GB18030
    ("chinese_traditional.txt", "big5", "big5"),
    ("japanese.txt", "shift_jis", "cp932"),  # cp932 is Windows' Shift-JIS, a superset
    ("japanese.txt", "euc_jp", "euc_jis_2004"),
    ("korean.txt", "euc_kr", "cp949"),  # cp949 is Windows' EUC-KR, a superset
    ("russian.txt", "cp1251", "cp1251"),
    ("chinese.txt", "utf-16-le", "utf-16-le"),  # BOM-less UTF-16 without a tidy NUL pattern
    ("chinese.txt", "utf-16-be", "utf-16-be"),
    ("korean.txt", "utf-16-be", "utf-16-be"),
    ("japanese.txt", "utf-16-le", "utf-16-le"),
])
def test_legacy_encodings_are_detected_by_content(tmp_path, fixture, codec, recorded):
    text = _fixture_text(fixture)
    source = prepare_source(_write(tmp_path, "book.txt", text.encode(codec)), "novel", MB)
    assert source.encoding == recorded
    assert source.text == text and source.notes == []


@pytest.mark.parametrize("text", [
    # English with curly quotes, dashes and ellipses (the detector alone calls this cp1250)
    (FIXTURES / "hamlet_act1.txt").read_text(encoding="utf-8").replace("'", "’").replace("--", "–") + "… “End.”\n",
    # German and French: accented letters in mostly-ASCII words
    "Größe, Übermut und Ärger: Der Bär aß früh das Brötchen. „Schön“, sagte er – und ging.\n" * 5,
    "Le père Goriot, vieillard de soixante-neuf ans, s’était retiré chez Mme Vauquer. « Ça m’étonne », dit Élise.\n" * 5,
])
def test_western_cp1252_text_is_not_misdetected(tmp_path, text):
    source = prepare_source(_write(tmp_path, "ansi.txt", text.encode("cp1252")), "novel", MB)
    assert source.encoding == "cp1252"
    assert source.text == text


def test_stray_nul_bytes_are_dropped_with_a_note_and_spans_refer_to_the_stored_text(tmp_path):
    text = (FIXTURES / "gutenberg_mini.txt").read_bytes().decode("utf-8")
    data = text.encode("utf-8")
    dirty = data[:100] + b"\x00" + data[100:900] + b"\x00\x00" + data[900:]
    source = prepare_source(_write(tmp_path, "nul.txt", dirty), "novel", MB)
    assert source.text == text  # exactly the text without the NULs
    assert source.encoding == "utf-8"
    assert len(source.notes) == 1 and "dropped 3 stray NUL bytes" in source.notes[0]
    assert "byte 100" in source.notes[0]


def test_stray_nul_bytes_inside_a_legacy_cjk_text(tmp_path):
    text = _fixture_text("chinese.txt")
    data = text.encode("gb18030")
    dirty = data[:201] + b"\x00" + data[201:]  # inside a two-byte character
    source = prepare_source(_write(tmp_path, "nul-gb.txt", dirty), "novel", MB)
    assert source.encoding == "gb18030" and source.text == text
    assert "dropped 1 stray NUL byte " in source.notes[0]


def test_many_nul_bytes_are_still_binary(tmp_path):
    data = b"".join(b"word %d \x00\x00\x00 " % i for i in range(200))
    _assert_refused(_write(tmp_path, "nuls.txt", data), "nuls.txt", "NUL bytes", "binary")


def test_damaged_legacy_text_is_refused_naming_its_encoding(tmp_path):
    data = _fixture_text("chinese.txt").encode("gb18030")
    damaged = data[:300] + b"\x81\x20" + data[300:]  # a lead byte without its second byte
    message = _assert_refused(_write(tmp_path, "damaged.txt", damaged), "damaged.txt", "looks like GB18030 text",
                              "save it as UTF-8")
    assert "offset" in message


@pytest.mark.parametrize("payload, fragment", [
    ([1, 2, 3], "found a list of 3 items, one of them an int"),
    ([_locomo_sample("a"), "b"], "found a list of 2 items, one of them a str"),
    ([{"dialogue": []}, {"dialogue": []}], "found a list of 2 items, one of them an object with keys dialogue"),
])
def test_a_list_that_is_not_of_conversations_is_not_called_conversations(tmp_path, payload, fragment):
    message = _assert_refused(_write(tmp_path, "list.json", json.dumps(payload).encode()), "list.json",
                              "expected a LoCoMo sample", fragment)
    assert "conversations" not in message
