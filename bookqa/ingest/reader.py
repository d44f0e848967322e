"""From a file on disk to one normalised text string (or a clear refusal).

Everything here runs before the store writes anything, so a bad upload never leaves a half-made book.
Decoding order: UTF-32/UTF-16/UTF-8 by byte-order mark, BOM-less UTF-16 by its NUL pattern, strict
UTF-8, strict cp1252, and Latin-1 only when that yields no C1 control characters (cp1252 is tried first
because Windows "ANSI" text with curly quotes 0x93/0x94 is far more common than real Latin-1 C1 use).
"""
from __future__ import annotations

import codecs
import re
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
_MAX_CONTROL_RATIO = 0.001


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


def read_text(path: Path, max_bytes: int) -> tuple[str, str]:
    """``(text, encoding)``: the file decoded, newlines normalised to ``\\n``.

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
    text, encoding = decode_bytes(data, str(path))
    text = normalise_newlines(text)
    if not text.strip():
        raise InputError(f"{path} is empty (only whitespace)")
    return text, encoding


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


def decode_bytes(data: bytes, name: str) -> tuple[str, str]:
    """``(text, encoding)`` or ``InputError``; ``name`` only labels the messages."""
    what = binary_kind(data)
    if what is not None:
        raise InputError(f"{name} is {what}, not a text file")

    text: str | None = None
    encoding = ""
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
        if b"\x00" in data:
            raise InputError(f"{name} contains NUL bytes: it looks like a binary file, not text")
        for codec in ("utf-8", "cp1252"):
            text = _strict(data, codec)
            if text is not None:
                encoding = codec
                break
        else:
            latin = data.decode("latin-1")
            if _C1_CONTROL.search(latin) is None:
                text, encoding = latin, "latin-1"
        if text is None:
            bad = _first_bad_byte(data)
            raise InputError(f"{name} is not UTF-8, UTF-16 or cp1252/Latin-1 text{bad}")

    if text.startswith("\ufeff"):
        text = text[1:]
    controls = len(_C0_CONTROL.findall(text))
    if "\x00" in text or controls > max(2, _MAX_CONTROL_RATIO * len(text)):
        raise InputError(f"{name} contains control characters ({controls:,} of {len(text):,} characters): "
                         "it looks like a binary file, not text")
    return text, encoding


def _first_bad_byte(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f" (byte 0x{data[exc.start]:02x} at offset {exc.start} is not valid UTF-8)"
    return ""
