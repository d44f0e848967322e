"""Order-bias statistics of a run: where each configuration's top-1 candidate sat in the prompt, and its
recall when the same candidates are shown in a seeded shuffled order (``bookqa eval --shuffle-check``).

A reranker that mostly returns its input order puts the prompt's first candidate on top whatever it
says: its top-1-at-position-1 rate is high in the original order, and in the shuffled order (where
position 1 holds a random candidate) its rate stays high while its recall falls. Only configurations
whose ranking holds exactly the question's candidates are counted (rerankers, fusions and the
candidates' own first-stage order, whose top-1 is position 1 by construction).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from .metrics import bootstrap_ci, recalls

BINS = (("1", 1, 1), ("2", 2, 2), ("3", 3, 3), ("4-5", 4, 5), ("6-10", 6, 10), ("11-20", 11, 20), ("21+", 21, None))
SHUFFLED_KEYS = ("R@1", "R@3", "R@5")


def top1_position(prompt_ids: Sequence[int], ranked: Sequence[int]) -> Optional[int]:
    """1-based prompt position of the top-ranked candidate; None when ``ranked`` is not a re-ordering of
    exactly the prompt's candidates."""
    if not ranked or len(ranked) != len(prompt_ids) or set(ranked) != set(prompt_ids):
        return None
    return list(prompt_ids).index(ranked[0]) + 1


def position_stats(positions: Sequence[int]) -> dict[str, Any]:
    n = len(positions)
    if not n:
        return {"n": 0, "top1_at_1": None, "mean_position": None, "positions": {}, "bins": {}}
    counts: dict[str, int] = {}
    for p in positions:
        counts[str(p)] = counts.get(str(p), 0) + 1
    bins = {label: sum(1 for p in positions if p >= lo and (hi is None or p <= hi)) for label, lo, hi in BINS}
    return {"n": n, "top1_at_1": counts.get("1", 0) / n, "mean_position": sum(positions) / n,
            "positions": dict(sorted(counts.items(), key=lambda kv: int(kv[0]))), "bins": bins}


def bias_summary(rows: Sequence[dict[str, Any]], names: Sequence[str], n_boot: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """Per configuration: the top-1 prompt-position distribution in the original order and, for rows with a
    shuffled-order result, the same in the shuffled order and Recall@1/3/5 next to the original order's
    on the same questions."""
    out: dict[str, Any] = {}
    for name in names:
        positions, shuffled_positions, orig, shuf = [], [], [], []
        for r in rows:
            cands = [c["chunk_id"] for c in r.get("candidates", {}).get("items", [])]
            res = r.get("configs", {}).get(name)
            if not cands or res is None:
                continue
            pos = top1_position(cands, res["chunk_ids"])
            if pos is None:
                continue
            positions.append(pos)
            sh = r.get("shuffled") or {}
            sres = sh.get("configs", {}).get(name)
            gold = r.get("gold", {}).get("chunk_ids")
            if sres is None or not gold:
                continue
            spos = top1_position(sh["order"], sres["chunk_ids"])
            if spos is not None:
                shuffled_positions.append(spos)
            orig.append(recalls(res["chunk_ids"], gold))
            shuf.append(recalls(sres["chunk_ids"], gold))
        if not positions:
            continue
        entry: dict[str, Any] = {"original": position_stats(positions)}
        if shuf:
            entry["shuffled"] = {
                **position_stats(shuffled_positions),
                "recall": {k: bootstrap_ci([s[k] for s in shuf], n_boot=n_boot, seed=seed) for k in SHUFFLED_KEYS},
                "recall_original": {k: sum(o[k] for o in orig) / len(orig) for k in SHUFFLED_KEYS},
                "delta": {k: (sum(s[k] for s in shuf) - sum(o[k] for o in orig)) / len(shuf) for k in SHUFFLED_KEYS},
            }
        out[name] = entry
    return out


def gold_at_first(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How often the prompt's first candidate is a gold chunk, in the original order and in the shuffled
    one, over questions with gold. A reranker whose top-1 is always gold shows a top-1-at-position-1 rate
    of up to this much with no bias at all, so it is the yardstick for that rate: in the original
    (first-stage) order it is high whenever the first stage is good; in the shuffled order it is about
    (gold chunks) / K."""
    original, shuffled = [], []
    for r in rows:
        gold = set(r.get("gold", {}).get("chunk_ids") or [])
        cands = [c["chunk_id"] for c in r.get("candidates", {}).get("items", [])]
        if not gold or not cands:
            continue
        original.append(cands[0] in gold)
        order = (r.get("shuffled") or {}).get("order")
        if order:
            shuffled.append(order[0] in gold)
    rate = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"n": len(original), "original": rate(original), "shuffled_n": len(shuffled), "shuffled": rate(shuffled)}
