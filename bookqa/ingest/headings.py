"""Chapter and section headings of a novel or play.

A heading is a whole line: ``CHAPTER I.``, ``Chapter 12``, ``CHAPTER XIV. IN WHICH ...``, ``BOOK ONE:
1805``, ``PART II``, ``ACT III``, ``SCENE 2. A room in the castle.``, ``Prologue``, a Roman numeral alone
between blank lines, or Chinese ``第一章 ...`` / ``第十二回 ...``. To keep prose lines that merely start
with "Part two of ..." out, a heading with trailing words must stand apart from the prose (a blank line
before or after it) or be all capitals; a bare heading ("Chapter 12") is accepted anywhere.

A one-line title paragraph right after a heading ("CHAPTER I" / blank / "In Chancery") is folded into
the label, giving "CHAPTER I. In Chancery".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_CARDINALS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety")
_ORDINALS = (
    "first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|"
    "fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|last|final")
_NUMBER_WORDS = f"{_CARDINALS}|{_ORDINALS}"
_NUMBER = (rf"(?:[IVXLCDM]+|\d+|(?:{_NUMBER_WORDS})(?:[- ](?:{_NUMBER_WORDS}))?"
           rf"|the[ \t]+(?:{_NUMBER_WORDS}))")
_KEYWORDS = "chapter|book|part|act|scene|volume|stave|canto|section|letter|chap\\.?"
# keyword + number, then nothing, or punctuation / a title.
_KEYWORD_HEADING = re.compile(
    rf"^(?P<head>(?:{_KEYWORDS})[ \t]+{_NUMBER})(?P<rest>[.:]?)(?P<title>(?:[ \t]*[.:\-—–][ \t]*|[ \t]+)\S.*)?$",
    re.IGNORECASE)
# "FIRST PART", "SECOND EPILOGUE: 1813 - 20"
_ORDINAL_HEADING = re.compile(
    rf"^(?P<head>(?:{_ORDINALS})[ \t]+(?:part|book|epilogue|act|volume))(?P<rest>[.:]?)"
    r"(?P<title>(?:[ \t]*[.:\-—–][ \t]*|[ \t]+)\S.*)?$",
    re.IGNORECASE)
_NAMED_HEADING = re.compile(
    r"^(?P<head>prologue|epilogue|preface|introduction|foreword|afterword|conclusion|postscript|"
    r"induction|interlude|l'envoi|finis)(?P<rest>[.:]?)(?P<title>(?:[ \t]*[.:\-—–][ \t]*|[ \t]+)\S.*)?$",
    re.IGNORECASE)
_ROMAN_ALONE = re.compile(r"^(?P<head>[IVXLCDM]{1,8})(?P<rest>\.?)$")
_CJK_NUMBER = "[一二三四五六七八九十百千零〇两壹贰叁肆伍陆柒捌玖拾0-9０-９]+"
_CJK_HEADING = re.compile(
    rf"^(?P<head>第{_CJK_NUMBER}[章回节節卷部集篇幕场場折]|序章|序幕|楔子|引子|尾声|尾聲|后记|後記|终章|終章|番外)"
    r"(?P<rest>)(?P<title>[ \t\u3000:：.、\-—]*\S.*)?$")
_MAX_TITLE_WORDS = 8
_MAX_LABEL = 80


@dataclass(frozen=True)
class Heading:
    start: int  # offsets of the heading line (stripped) in the text
    end: int
    label: str  # short clean string used as Chunk.chapter


def _clean(label: str) -> str:
    label = re.sub(r"\s+", " ", label).strip()
    if len(label) > _MAX_LABEL:
        label = label[:_MAX_LABEL - 1].rstrip() + "…"
    return label


def _match_heading(line: str, isolated_before: bool, isolated_after: bool) -> Optional[bool]:
    """None when ``line`` is not a heading; else whether it is bare (no title of its own)."""
    if len(line) > 100:
        return None
    m = _CJK_HEADING.match(line)
    if m is not None:
        return (not (m.group("title") or "").strip()) if len(line) <= 40 else None
    m = _ROMAN_ALONE.match(line)
    if m is not None:
        return True if isolated_before and isolated_after else None
    if not line[0].isupper():
        return None  # "preface--is largely made use of ..." is prose
    for pattern in (_KEYWORD_HEADING, _ORDINAL_HEADING, _NAMED_HEADING):
        m = pattern.match(line)
        if m is None:
            continue
        title = (m.group("title") or "").strip()
        if not title:
            return True  # bare "Chapter 12", "ACT III.", "Prologue"
        keyword = m.group("head").split()[0]
        if re.search(rf"\b{re.escape(keyword)}\b", title, re.IGNORECASE):
            return None  # a table-of-contents row: "CHAPTER I CHAPTER II CHAPTER III"
        letters = [c for c in line if c.isalpha()]
        all_caps = bool(letters) and all(c.isupper() for c in letters)
        if not (isolated_before or isolated_after or all_caps):
            return None
        # "Chapter 12 of the report says ..." has a lower-case word right after the number.
        if not all_caps and title[:1].islower() and not m.group("rest") and not re.match(r"[.:\-—–]", title):
            return None
        return False
    return None


def _title_like(line: str) -> bool:
    """A short title line such as "In Chancery" (not dialogue, not a sentence)."""
    if not line or len(line) > 60 or len(line.split()) > _MAX_TITLE_WORDS:
        return False
    if not (line[0].isupper() or line[0].isdigit()):
        return False
    if line[-1] in ".?!,;:" or ". " in line or any(q in line for q in "\"“”‘’「」『』"):
        return False
    return True


def find_headings(text: str, start: int = 0, end: int | None = None) -> list[Heading]:
    """Headings inside ``text[start:end]``, in order, with offsets into ``text``."""
    end = len(text) if end is None else end
    region = text[start:end]
    lines = region.split("\n")
    offsets = []
    pos = start
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    stripped = [line.strip() for line in lines]
    n = len(lines)
    found: list[Heading] = []
    for i, line in enumerate(stripped):
        if not line or len(line) > 100:
            continue
        first = line[0]
        # cheap pre-filter: every heading starts with a letter of the keyword sets, a digit or 第/序/...
        if not (first.isalpha() or first.isdigit()):
            continue
        before = i == 0 or not stripped[i - 1]
        after = i == n - 1 or not stripped[i + 1]
        bare = _match_heading(line, before, after)
        if bare is None:
            continue
        lead = len(lines[i]) - len(lines[i].lstrip())
        h_start = offsets[i] + lead
        label = line
        # fold a following one-line title paragraph into the label
        j = i + 1
        while j < n and not stripped[j]:
            j += 1
        if (bare and after and j < n and (j == n - 1 or not stripped[j + 1]) and _title_like(stripped[j])
                and _match_heading(stripped[j], True, True) is None):
            label = f"{line.rstrip('.:')}. {stripped[j]}"
        found.append(Heading(h_start, h_start + len(line), _clean(label)))
    return found
