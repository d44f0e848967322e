"""From a file on disk to one normalised text string (or a clear refusal).

Everything here runs before the store writes anything, so a bad upload never leaves a half-made book.
Decoding order:

1. UTF-32/UTF-16/UTF-8 by byte-order mark, BOM-less mostly-ASCII UTF-16 by its NUL pattern;
2. strict UTF-8;
3. charset-normalizer's detection: legacy CJK encodings (GB18030/GBK, Big5, Shift-JIS, EUC-KR,
   EUC-JP), BOM-less UTF-16 of non-Latin text and single-byte codepages of other scripts (cp1251,
   KOI8-R, ...), taken only when most letters of the decoded text are not Latin. The detector cannot
   tell cp1252 from cp1250 or cp775 on mostly-ASCII English (it names cp1250), so a Latin-script
   reading is never taken from it;
4. strict cp1252 (Windows "ANSI" text with curly quotes 0x93/0x94 is far more common than real Latin-1
   C1 use), then Latin-1 only when that yields no C1 control characters.

A file that looks like a CJK encoding but has bytes that do not decode is refused naming that encoding
(rather than stored as cp1252 mojibake). A few stray NUL bytes in an otherwise clean text are dropped
with a note; the stored text (``text.txt``, what every span refers to) is the text without them.
"""
from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

MB = 1024 * 1024

# Leading bytes of common binary formats people upload by mistake, with a name for the message.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF-", "a PDF document (convert it to plain text first)"),
    (b"PK\x03\x04", "a zip archive (also .docx/.epub/.odt; extract or convert it to plain text first)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh91AY&SY", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office document (save it as plain text first)"),
    (b"{\\rtf", "an RTF document (save it as plain text first)"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"MZ\x90\x00", "a Windows executable"),
    (b"\xca\xfe\xba\xbe", "a compiled binary"),
    (b"\x00asm", "a WebAssembly binary"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg media file"),
    (b"fLaC", "a FLAC audio file"),
)

# Text keeps tab, newline, vertical tab, form feed and carriage return; other C0 controls, DEL and
# the C1 range mean the bytes were not text (or were decoded with the wrong codec).
_C0_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_C1_CONTROL = re.compile(r"[\x80-\x9f]")
_C0_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
_MAX_CONTROL_RATIO = 0.001
# A few NUL bytes in a text (a crashed editor, a bad copy) are dropped; more than this share of the
# characters means a binary file.
_MAX_NUL_RATIO = 0.01
# Scripts are judged on the letters of the text's start: a majority of non-Latin letters is needed
# before a detected encoding is believed.
_LETTER = re.compile(r"[^\W\d_]")
_SAMPLE_CHARS = 200_000
_LATIN_MAJORITY = 0.5
# The CJK encodings a refusal may name when a file reads as one of them but for a few bad bytes.
_NAMED_CJK = {"gb18030": "GB18030", "big5": "Big5", "cp932": "Shift-JIS", "cp949": "EUC-KR", "euc_jp": "EUC-JP"}
_MAX_DAMAGED_RATIO = 0.01


def check_file(path: Path, max_bytes: int) -> int:
    """The file's size, after refusing what is not a readable, non-empty file within the limit."""
    name = str(path)
    if not path.exists():
        raise InputError(f"{name}: no such file")
    if path.is_dir():
        raise InputError(f"{name} is a directory; name a text file (.txt) or a LoCoMo .json file")
    if not path.is_file():
        raise InputError(f"{name} is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{name} is empty")
    if size > max_bytes:
        raise InputError(
            f"{name} is {size / MB:.1f} MB, over the upload limit of {max_bytes / MB:.1f} MB "
            f"(raise it with the setting BOOKQA_MAX_UPLOAD_MB)")
    return size


@dataclass
class Decoded:
    """A file's bytes as text: what was stored, how it was read, and what was changed on the way."""

    text: str
    encoding: str  # a Python codec name: "utf-8", "utf-16-le", "cp1252", "gb18030", "cp932", ...
    notes: list[str] = field(default_factory=list)  # one line each, for the user (e.g. dropped NUL bytes)


def read_text(path: Path, max_bytes: int) -> Decoded:
    """The file decoded, newlines normalised to ``\\n``.

    Raises ``InputError`` (naming the file) for anything that is not usable text.
    """
    check_file(path, max_bytes)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # grew between stat and read
        raise InputError(f"{path} is over the upload limit of {max_bytes / MB:.1f} MB "
                         "(raise it with the setting BOOKQA_MAX_UPLOAD_MB)")
    decoded = decode_bytes(data, str(path))
    decoded.text = normalise_newlines(decoded.text)
    if not decoded.text.strip():
        raise InputError(f"{path} is empty (only whitespace)")
    return decoded


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def binary_kind(data: bytes) -> str | None:
    """A name for the binary format ``data`` starts with, or None."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return {b"WEBP": "a WebP image", b"WAVE": "a WAV audio file", b"AVI ": "an AVI video"}[data[8:12]]
    if len(data) > 262 and data[257:262] == b"ustar":
        return "a tar archive"
    if data[4:12] in (b"ftypisom", b"ftypmp42", b"ftypM4A ", b"ftypqt  ", b"ftypheic"):
        return "an MP4/QuickTime media file"
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when the NUL bytes sit in alternate positions, as in mostly-ASCII
    UTF-16 text; None otherwise."""
    sample = data[:8192]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_nul = even.count(0) / max(len(even), 1)
    odd_nul = odd.count(0) / max(len(odd), 1)
    if odd_nul > 0.4 and even_nul < 0.05:
        return "utf-16-le"
    if even_nul > 0.4 and odd_nul < 0.05:
        return "utf-16-be"
    return None


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None


def decode_bytes(data: bytes, name: str) -> Decoded:
    """The decoded text or ``InputError``; ``name`` only labels the messages."""
    what = binary_kind(data)
    if what is not None:
        raise InputError(f"{name} is {what}, not a text file")

    stripped = 0  # NUL bytes removed before decoding (the detector read the text without them)
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        encoding = "utf-32"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    else:
        encoding = _utf16_without_bom(data) or ""
    if encoding:
        text = _strict(data, encoding)
        if text is None:
            raise InputError(f"{name} starts like {encoding.upper()} text but does not decode as "
                             f"{encoding}: it is not UTF-8, UTF-16 or cp1252/Latin-1 text")
    else:
        text, encoding, stripped = _decode_unmarked(data, name)

    if text.startswith("\ufeff"):
        text = text[1:]
    notes: list[str] = []
    nuls = text.count("\x00")
    if nuls > _MAX_NUL_RATIO * len(text):
        raise InputError(f"{name} contains NUL bytes: it looks like a binary file, not text")
    if nuls or stripped:
        if encoding.startswith(("utf-16", "utf-32")):
            where = f"character {text.find(chr(0)):,}"
        else:
            where = f"byte {data.find(bytes(1)):,}"
        text = text.replace("\x00", "")
        count = nuls + stripped
        notes.append(f"{name}: dropped {count} stray NUL byte{'s' if count != 1 else ''} (the first at {where}); "
                     f"the stored text and every span leave {'them' if count != 1 else 'it'} out")
    controls = len(_C0_CONTROL.findall(text))
    if controls > max(2, _MAX_CONTROL_RATIO * len(text)):
        raise InputError(f"{name} contains control characters ({controls:,} of {len(text):,} characters): "
                         "it looks like a binary file, not text")
    return Decoded(text, encoding, notes)


def _decode_unmarked(data: bytes, name: str) -> tuple[str, str, int]:
    """``(text, encoding, NUL bytes stripped before decoding)`` for bytes without a byte-order mark."""
    nuls = data.count(0)
    if nuls > _MAX_NUL_RATIO * len(data):
        # BOM-less UTF-16 of non-Latin text has a NUL in every ASCII character, but no tidy pattern
        found = _detect(data)
        if found is not None:
            return (*found, 0)
        raise InputError(f"{name} contains NUL bytes: it looks like a binary file, not text")
    clean = data.replace(b"\x00", b"") if nuls else data
    text = _strict(data, "utf-8")
    if text is not None:
        return text, "utf-8", 0
    # the detector may be thrown by stray NULs: it reads the bytes with them, then without them
    for candidate in (data, clean) if nuls else (data,):
        found = _detect(candidate)
        if found is not None:
            return (*found, nuls if candidate is clean else 0)
    if _too_many_controls(clean):
        raise InputError(f"{name} contains control characters: it looks like a binary file, not text")
    damaged = _damaged_cjk(clean)
    if damaged is not None:
        label, offset, byte = damaged
        raise InputError(f"{name} looks like {label} text, but byte 0x{byte:02x} at offset {offset:,} does not "
                         f"decode as {label} (a damaged or mixed-encoding file); save it as UTF-8 and add it again")
    western = _strict(data, "cp1252")
    if western is not None:
        return western, "cp1252", 0
    latin = data.decode("latin-1")
    if _C1_CONTROL.search(latin) is None:
        return latin, "latin-1", 0
    raise InputError(f"{name} is not UTF-8, UTF-16 or cp1252/Latin-1 text, nor a legacy encoding the "
                     f"detector recognises (GB18030, Big5, Shift-JIS, EUC-KR, ...){_first_bad_byte(data)}")


def _letters(text: str) -> list[str]:
    return _LETTER.findall(text[:_SAMPLE_CHARS])


def _non_latin_share(text: str) -> float:
    """The share of letters outside the Latin script (CJK, kana, Hangul, Cyrillic, Greek, ...)."""
    letters = _letters(text)
    if not letters:
        return 0.0
    latin = sum(1 for c in letters if c < "\x80" or unicodedata.name(c, "").startswith("LATIN"))
    return 1 - latin / len(letters)


def _detect(data: bytes) -> tuple[str, str] | None:
    """``(text, codec)`` when charset-normalizer finds an encoding that decodes ``data`` strictly into
    mostly non-Latin text; None otherwise (Latin-script text keeps the cp1252/Latin-1 reading)."""
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        return None
    encoding = codecs.lookup(best.encoding).name
    text = _strict(data, encoding)
    if text is None or _non_latin_share(text) < _LATIN_MAJORITY:
        return None
    return text, encoding


def _too_many_controls(data: bytes) -> bool:
    return len(_C0_CONTROL_BYTES.findall(data)) > max(2, _MAX_CONTROL_RATIO * len(data))


def _damaged_cjk(data: bytes) -> tuple[str, int, int] | None:
    """``(encoding label, offset, byte)`` when ``data`` reads as text in one of the CJK encodings the
    detector would have named but for a few bytes that do not decode; None otherwise. Only names the
    refusal: a damaged file is never decoded with replacement characters."""
    best: tuple[int, str] | None = None
    for codec in _NAMED_CJK:
        text = data.decode(codec, errors="replace")
        bad = text.count("\ufffd")
        if bad <= _MAX_DAMAGED_RATIO * len(text) and _non_latin_share(text) >= _LATIN_MAJORITY:
            if best is None or bad < best[0]:
                best = (bad, codec)
    if best is None:
        return None
    try:
        data.decode(best[1])
    except UnicodeDecodeError as exc:
        return _NAMED_CJK[best[1]], exc.start, data[exc.start]
    return None


def _first_bad_byte(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f" (byte 0x{data[exc.start]:02x} at offset {exc.start} is not valid UTF-8)"
    return ""
