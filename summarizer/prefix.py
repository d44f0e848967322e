"""Choosing summaries for the reranker's prefix: given the candidate chunks (the
first-stage top-50), pick the summaries that cover most of them, within a token budget.

Greedy max coverage in two phases: first level-0 units (block summaries, or the events of a session,
where an event covers the chunks holding its evidence lines), then higher levels, each taken only when
it covers candidates nothing chosen so far covers. A unit that does not fit the remaining budget is
skipped whole (nothing is cut mid-summary), and the budget is checked on the assembled text, so it is
never exceeded. The output keeps narrative order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from .tree import Tree


@dataclass
class Prefix:
    text: str = ""
    used: list[str] = field(default_factory=list)  # node ids ("L0-3") or event ids ("L0-3/e1")
    tokens: int = 0


@dataclass
class _Unit:
    id: str
    level: int
    order: tuple[int, int, int]  # narrative position: (char_start, -level, event index)
    text: str
    covers: frozenset[int]


def _units(tree: Tree) -> tuple[list[_Unit], list[_Unit]]:
    first, higher = [], []
    for level in tree.levels:
        for node in level:
            if node.level == 0 and node.events:
                for i, ev in enumerate(node.events, 1):
                    if ev.get("summary"):
                        first.append(_Unit(f"{node.id}/e{i}", 0, (node.char_start, 0, i), ev["summary"],
                                           frozenset(ev.get("chunk_ids") or ())))
                continue
            if not node.text.strip():
                continue
            unit = _Unit(node.id, node.level, (node.char_start, -node.level, 0), node.text,
                         frozenset(node.chunk_ids))
            (first if node.level == 0 else higher).append(unit)
    return first, higher


def assemble(texts: Iterable[str]) -> str:
    return "\n".join(t.strip() for t in texts)


def select_prefix(tree: Optional[Tree], chunk_ids: Iterable[int], count: Callable[[str], int],
                  budget: int = 512) -> Prefix:
    """The summaries covering most of ``chunk_ids`` within ``budget`` tokens (counted with ``count``)."""
    wanted = set(int(c) for c in chunk_ids)
    if tree is None or not tree.levels or not wanted or budget <= 0:
        return Prefix()
    first, higher = _units(tree)
    chosen: list[_Unit] = []
    covered: set[int] = set()
    tokens = 0
    for phase in (first, sorted(higher, key=lambda u: u.level)):
        pool = list(phase)
        while pool:
            gains = [(len((u.covers & wanted) - covered), u) for u in pool]
            gains = [(g, u) for g, u in gains if g > 0]
            if not gains:
                break
            # most new candidates first; then the more specific (lower) level; then narrative order
            _, best = min(gains, key=lambda gu: (-gu[0], gu[1].level, gu[1].order))
            pool.remove(best)
            trial = sorted(chosen + [best], key=lambda u: u.order)
            n = count(assemble(u.text for u in trial))
            if n <= budget:
                chosen, tokens = trial, n
                covered |= best.covers & wanted
        if covered >= wanted:
            break
    return Prefix(text=assemble(u.text for u in chosen), used=[u.id for u in chosen], tokens=tokens)
