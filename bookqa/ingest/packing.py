"""Packing units (sentences, or transcript utterances) into chunks of at most ``budget`` tokens.

1. Each unit is counted once with ``encode_batch``; a unit that alone is over the budget is cut at
   whitespace (or between CJK characters) using its token offsets, so every piece fits.
2. Units are packed greedily; a unit flagged ``break_before`` (a chapter heading, a new session)
   always opens a new chunk. Tokens of a chunk are estimated as the sum of its units plus one token
   per line break between them.
3. Every chunk's text is then counted exactly with one ``encode_batch``; a chunk over the budget (the
   estimate can be off by a token where pieces merge differently) hands its last unit on to the next
   chunk, and only changed chunks are counted again, until every chunk fits.

Chunks never overlap, cover every unit once, in order, and keep offsets into the full text.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ..chunk import Chunk
from ..progress import Progress, no_progress
from ..text import strip_span

ENCODE_BATCH = 2048


@dataclass
class Units:
    """Parallel lists describing the units to pack, in text order."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    breaks: list[bool] = field(default_factory=list)  # a new chunk must start at this unit
    sticky: list[bool] = field(default_factory=list)  # no chunk may end after this unit (a speaker line)
    tags: list[Any] = field(default_factory=list)  # per-unit payload (e.g. an utterance id), kept by pieces

    def add(self, start: int, end: int, brk: bool = False, tag: Any = None, sticky: bool = False) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.breaks.append(brk)
        self.sticky.append(sticky)
        self.tags.append(tag)

    def __len__(self) -> int:
        return len(self.starts)


def count_tokens(tokenizer, texts: Sequence[str], progress: Progress = no_progress,
                 stage: Optional[str] = None) -> list[int]:
    """Token counts (no special tokens) of ``texts``, in batches to bound memory."""
    counts: list[int] = []
    total = len(texts)
    for i in range(0, total, ENCODE_BATCH):
        batch = tokenizer.encode_batch(list(texts[i:i + ENCODE_BATCH]), add_special_tokens=False)
        counts.extend(len(e.ids) for e in batch)
        if stage:
            progress(stage, min(i + ENCODE_BATCH, total), total)
    return counts


def _cut_point(seg: str, lo: int, limit: int) -> int:
    """Where to end a piece of ``seg`` that starts at ``lo`` and may reach ``limit`` (exclusive):
    a line break in the second half, else the last whitespace, else the token boundary ``limit``
    itself (in unspaced Chinese that falls between two characters)."""
    half = lo + (limit - lo) // 2
    nl = seg.rfind("\n", half, limit + 1)
    if nl > lo:
        return nl
    for i in range(min(limit, len(seg) - 1), lo, -1):
        if seg[i].isspace():
            return i
    return limit


def split_span(text: str, start: int, end: int, tokenizer, budget: int,
               first_budget: Optional[int] = None) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` (over budget) into stripped pieces of at most ``budget`` tokens (the
    first piece at most ``first_budget``, leaving room for a speaker line before it)."""
    first_budget = budget if first_budget is None else min(first_budget, budget)
    seg = text[start:end]
    token_ends = [o[1] for o in tokenizer.encode(seg, add_special_tokens=False).offsets]
    n = len(token_ends)
    pieces: list[tuple[int, int]] = []
    lo = 0
    while True:
        first = bisect.bisect_right(token_ends, lo)  # tokens ending at or before ``lo`` are used up
        room = budget if pieces else first_budget
        if n - first <= room:
            cut = len(seg)
        else:
            limit = token_ends[first + room - 1]  # > lo, since token_ends[first] > lo
            cut = _cut_point(seg, lo, limit)
            if cut <= lo:
                cut = limit
        s, e = strip_span(text, start + lo, start + cut)
        if s < e:
            pieces.append((s, e))
        if cut >= len(seg):
            break
        lo = cut
    # A piece counted on its own can tokenise a little differently than inside the whole span.
    fixed: list[tuple[int, int]] = []
    for j, ((s, e), c) in enumerate(zip(pieces, count_tokens(tokenizer, [text[s:e] for s, e in pieces]))):
        room = budget if j else first_budget
        if c <= room:
            fixed.append((s, e))
        else:
            fixed.extend(split_span(text, s, e, tokenizer, max(1, room - (c - room))))
    return fixed


def _gap_tokens(text: str, end: int, start: int) -> int:
    """Estimated tokens of the text between two units: a single space merges into the next word."""
    return 0 if text[end:start] == " " else 1


def _greedy(text: str, units: Units, counts: list[int], budget: int) -> list[int]:
    """Start unit index of each chunk."""
    cuts = []
    current = 0
    for k in range(len(units)):
        if not cuts:
            cuts.append(k)
            current = counts[k]
            continue
        add = _gap_tokens(text, units.ends[k - 1], units.starts[k]) + counts[k]
        if units.breaks[k]:
            cuts.append(k)
            current = counts[k]
        elif current + add > budget:
            if units.sticky[k - 1] and k - 1 > cuts[-1]:
                # the speaker line moves on with its speech
                cuts.append(k - 1)
                current = counts[k - 1] + add
            else:
                cuts.append(k)
                current = counts[k]
        else:
            current += add
    return cuts


def pack(text: str, units: Units, tokenizer, budget: int, progress: Progress = no_progress,
         stage: str = "chunking") -> list[tuple[int, int, int]]:
    """``(first_unit, end_unit, tokens)`` per chunk (``end_unit`` exclusive), every chunk within budget.

    ``units`` is changed in place: units over the budget are replaced by their pieces.
    """
    if len(units) == 0:
        return []
    counts = count_tokens(tokenizer, [text[s:e] for s, e in zip(units.starts, units.ends)],
                          progress, f"{stage}: counting tokens")
    if max(counts) > budget:
        _split_long_units(text, units, counts, tokenizer, budget)
    n = len(units)
    cuts = _greedy(text, units, counts, budget)
    exact: dict[int, int] = {}  # chunk start unit -> exact token count of its text
    cut_set = set(cuts)
    todo = list(cuts)
    while todo:
        bounds = {c: _next_cut(cuts, c, n) for c in todo}
        lens = count_tokens(tokenizer, [text[units.starts[c]:units.ends[bounds[c] - 1]] for c in todo])
        exact.update(zip(todo, lens))
        changed: set[int] = set()
        for c in todo:
            b = bounds[c]
            # skip chunks that fit, chunks whose start moved this round (re-counted next round), and
            # single units (their count is exact and within budget after splitting)
            if c not in cut_set or exact[c] <= budget or b - c < 2:
                continue
            moved = b - 2 if units.sticky[b - 2] and b - 2 > c else b - 1  # keep a speaker with its speech
            i = bisect.bisect_left(cuts, b)
            if b < n and i < len(cuts) and cuts[i] == b and not units.breaks[b]:
                cuts[i] = moved  # the next chunk takes over the last unit(s)
                cut_set.discard(b)
                exact.pop(b, None)
            else:
                cuts.insert(i, moved)  # they open a chunk of their own (before a forced break)
            cut_set.add(moved)
            changed.update((c, moved))
        todo = sorted(c for c in changed if c in cut_set)
    progress(f"{stage}: fitting chunks", 1, 1)
    out = []
    for i, c in enumerate(cuts):
        b = cuts[i + 1] if i + 1 < len(cuts) else n
        out.append((c, b, exact[c]))
    return out


def _next_cut(cuts: list[int], c: int, n: int) -> int:
    i = bisect.bisect_right(cuts, c)
    return cuts[i] if i < len(cuts) else n


def _split_long_units(text: str, units: Units, counts: list[int], tokenizer, budget: int) -> None:
    new = Units()
    new_counts: list[int] = []
    for k in range(len(units)):
        s, e = units.starts[k], units.ends[k]
        if counts[k] <= budget:
            new.add(s, e, units.breaks[k], units.tags[k], units.sticky[k])
            new_counts.append(counts[k])
            continue
        # after a speaker line, leave room for it in the first piece (when that costs little)
        first_budget = budget
        if k > 0 and units.sticky[k - 1] and counts[k - 1] + 1 <= budget // 2:
            first_budget = budget - counts[k - 1] - 1
        pieces = split_span(text, s, e, tokenizer, budget, first_budget)
        piece_counts = count_tokens(tokenizer, [text[a:b] for a, b in pieces])
        last = len(pieces) - 1
        for j, ((a, b), c) in enumerate(zip(pieces, piece_counts)):
            new.add(a, b, units.breaks[k] and j == 0, units.tags[k], units.sticky[k] and j == last)
            new_counts.append(c)
    units.starts, units.ends, units.breaks = new.starts, new.ends, new.breaks
    units.sticky, units.tags = new.sticky, new.tags
    counts[:] = new_counts


def make_chunks(text: str, units: Units, packed: list[tuple[int, int, int]],
                describe: Callable[[int, int], tuple[Optional[str], dict[str, Any]]]) -> list[Chunk]:
    """Chunk objects; ``describe(first_unit, end_unit)`` gives each chunk's chapter and meta."""
    chunks = []
    for i, (a, b, tokens) in enumerate(packed):
        start, end = units.starts[a], units.ends[b - 1]
        chapter, meta = describe(a, b)
        chunks.append(Chunk(id=i, start=start, end=end, tokens=tokens, text=text[start:end],
                            chapter=chapter, meta=meta))
    return chunks
