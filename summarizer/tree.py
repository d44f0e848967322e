"""The summary tree: block (or session) summaries at level 0, higher levels summarising groups of the
level below, up to one root.

Every node records the chunk range ``[start, end)`` and character span ``[char_start, char_end)`` it
summarises and the ids of its children, so any summary expands back to its source chunks. Each level
covers every chunk exactly once, in order.

Shapes (block = fanin = 20): 0 chunks → no nodes and no root; 1–20 chunks → a single block, which is
also the root (a one-node tree needs no summary of its summary); 21 chunks → two blocks + a root;
401 chunks → 21 blocks → 2 level-1 nodes → 1 root.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

STATUSES = ("pending", "ok", "retried", "failed", "extractive")


@dataclass
class Node:
    id: str  # "L{level}-{index}", stable for the same chunks and shape settings
    level: int  # 0 = block (or conversation session window)
    start: int  # first chunk id
    end: int  # one past the last chunk id
    char_start: int
    char_end: int
    children: list[str] = field(default_factory=list)
    text: str = ""
    status: str = "pending"  # ok | retried | failed | extractive (pending only while building)
    error: Optional[str] = None  # why the LLM output was rejected (status failed / retried)
    # transcripts only: the session number and the events extracted from it, each
    # {"summary", "class", "line_indices", "utterance_ids", "chunk_ids"}
    session: Any = None
    events: Optional[list[dict[str, Any]]] = None

    @property
    def chunk_ids(self) -> range:
        return range(self.start, self.end)

    def to_json(self) -> dict[str, Any]:
        row = {"id": self.id, "level": self.level, "start": self.start, "end": self.end,
               "char_start": self.char_start, "char_end": self.char_end, "children": list(self.children),
               "text": self.text, "status": self.status}
        if self.error:
            row["error"] = self.error
        if self.session is not None:
            row["session"] = self.session
        if self.events is not None:
            row["events"] = self.events
        return row

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "Node":
        return cls(id=row["id"], level=row["level"], start=row["start"], end=row["end"],
                   char_start=row["char_start"], char_end=row["char_end"],
                   children=list(row.get("children") or []), text=row.get("text", ""),
                   status=row.get("status", "ok"), error=row.get("error"), session=row.get("session"),
                   events=row.get("events"))


@dataclass
class Tree:
    levels: list[list[Node]] = field(default_factory=list)  # levels[0] = blocks, levels[-1] = [root]
    meta: dict[str, Any] = field(default_factory=dict)  # mode, language, model, block, fanin, stats...

    @property
    def root(self) -> Optional[Node]:
        return self.levels[-1][0] if self.levels else None

    @property
    def n_chunks(self) -> int:
        return self.levels[0][-1].end if self.levels else 0

    def nodes(self) -> Iterator[Node]:
        for level in self.levels:
            yield from level

    def node(self, node_id: str) -> Node:
        for n in self.nodes():
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def blocks_for(self, chunk_id: int, level: int = 0) -> Optional[Node]:
        """The node of ``level`` whose range holds ``chunk_id``."""
        for n in self.levels[level] if level < len(self.levels) else []:
            if n.start <= chunk_id < n.end:
                return n
        return None

    def to_json(self) -> dict[str, Any]:
        root = self.root
        return {**self.meta, "root": root.id if root else None,
                "levels": [[n.id for n in level] for level in self.levels],
                "nodes": [n.to_json() for n in self.nodes()]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Tree":
        by_id = {row["id"]: Node.from_json(row) for row in data.get("nodes", [])}
        levels = [[by_id[i] for i in ids] for ids in data.get("levels", [])]
        meta = {k: v for k, v in data.items() if k not in ("root", "levels", "nodes")}
        return cls(levels=levels, meta=meta)


def _span(spans: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    return spans[start][0], spans[end - 1][1]


def level0_ranges(n_chunks: int, block: int) -> list[tuple[int, int]]:
    """Consecutive chunk ranges of ``block`` chunks (the last may be shorter)."""
    return [(s, min(s + block, n_chunks)) for s in range(0, n_chunks, block)]


def build_shape(spans: Sequence[tuple[int, int]], ranges: Sequence[tuple[int, int]], fanin: int,
                sessions: Optional[Sequence[Any]] = None) -> Tree:
    """An empty tree (no texts yet) over chunks with character ``spans``: level 0 from ``ranges``
    (which must cover ``0..len(spans)`` in order without gaps), then groups of ``fanin`` up to a root."""
    if fanin < 2:
        raise ValueError("fanin must be at least 2")
    if not spans:
        return Tree()
    expected = 0
    for s, e in ranges:
        if s != expected or e <= s:
            raise ValueError(f"level-0 ranges must tile the chunks in order; got {s}-{e} after {expected}")
        expected = e
    if expected != len(spans):
        raise ValueError(f"level-0 ranges end at chunk {expected}, the text has {len(spans)} chunks")
    level0 = []
    for i, (s, e) in enumerate(ranges):
        cs, ce = _span(spans, s, e)
        level0.append(Node(id=f"L0-{i}", level=0, start=s, end=e, char_start=cs, char_end=ce,
                           session=sessions[i] if sessions is not None else None))
    levels = [level0]
    while len(levels[-1]) > 1:
        below, lv = levels[-1], len(levels)
        above = []
        for i, g in enumerate(range(0, len(below), fanin)):
            group = below[g:g + fanin]
            above.append(Node(id=f"L{lv}-{i}", level=lv, start=group[0].start, end=group[-1].end,
                              char_start=group[0].char_start, char_end=group[-1].char_end,
                              children=[n.id for n in group]))
        levels.append(above)
    return Tree(levels=levels)


def plan_blocks(spans: Sequence[tuple[int, int]], block: int = 20, fanin: int = 20) -> Tree:
    """The tree shape for a narrative of ``len(spans)`` chunks."""
    if block < 1:
        raise ValueError("block must be at least 1")
    return build_shape(spans, level0_ranges(len(spans), block), fanin)
