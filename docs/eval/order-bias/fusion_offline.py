"""Would fusing QR with a first stage meet issue 11's targets? Read from the stored rows, no forward pass.

For each QR option stored in an order-bias results file, this prints the option alone and its reciprocal
rank fusion (bookqa's own, equal weights, k = 60) with the hybrid order (= the prompt order, what
``qr_fused`` does) and with BM25's order of the same candidates, in the original and in the shuffled
prompt order: R@1/3/5, top-1 @pos 1 (original and shuffled), shuffled R@3 (Δ) and R@1 against BM25 with
a paired 95% bootstrap interval. Equal weights only: a weight tuned on these questions would be tuned
on the test set.

    .venv/bin/python docs/eval/order-bias/fusion_offline.py docs/eval/order-bias/locomo/locomo.jsonl qr,qr_refine,qr_perm
"""
from __future__ import annotations

import json
import sys

import numpy as np

from bookqa.lab.evaluate.bias import top1_position
from bookqa.lab.evaluate.metrics import bootstrap_ci, recall_at_k
from bookqa.retrieve.fusion import reciprocal_rank_fusion


def fuse(reranked: list[int], first_stage: list[int]) -> list[int]:
    rankings = {"qr": [(c, 0.0) for c in reranked], "first": [(c, 0.0) for c in first_stage]}
    return [c.chunk_id for c in reciprocal_rank_fusion(rankings)]


def main(path: str, options: list[str]) -> None:
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    rows = [r for r in rows if r["gold"]["chunk_ids"] and all(o in r["configs"] for o in options)]
    print(f"{path}: {len(rows)} questions with gold and every option\n")
    print("| ranking | R@1 | R@3 | R@5 | top-1 @pos 1 | shuffled: top-1 @pos 1 | shuffled R@3 (Δ) | ΔR@1 vs bm25 |")
    print("|---|---|---|---|---|---|---|---|")

    def first_stage(row: dict, name: str) -> list[int]:
        """The candidates in a first stage's order: hybrid's is the candidate list itself (the prompt's
        original order); BM25's is its own top-K cut to the candidates (the others follow unranked)."""
        candidates = [c["chunk_id"] for c in row["candidates"]["items"]]
        if name == "hybrid":
            return candidates
        ranked = [c for c in row["configs"][name]["chunk_ids"] if c in set(candidates)]
        rest = set(candidates) - set(ranked)
        return ranked + [c for c in candidates if c in rest]

    bm25_r1 = [recall_at_k(first_stage(r, "bm25"), r["gold"]["chunk_ids"], 1) for r in rows]

    def line(label: str, rank) -> None:
        rec = {1: [], 3: [], 5: []}
        top1, shuffled_top1, shuffled_r3 = [], [], []
        for r in rows:
            gold = r["gold"]["chunk_ids"]
            shown = [c["chunk_id"] for c in r["candidates"]["items"]]
            ids = rank(r, r["configs"])
            for k in rec:
                rec[k].append(recall_at_k(ids, gold, k))
            top1.append(top1_position(shown, ids) == 1)
            shuffled = r.get("shuffled")  # its "order" is the candidates' chunk ids as the prompt showed them
            ids_s = rank(r, shuffled["configs"]) if shuffled else None
            if ids_s is not None:
                shuffled_top1.append(top1_position(shuffled["order"], ids_s) == 1)
                shuffled_r3.append(recall_at_k(ids_s, gold, 3))
        pct = lambda v: f"{100 * np.mean(v):.1f}" if v else "–"
        diff = bootstrap_ci(np.subtract(rec[1], bm25_r1))
        d3 = f"{pct(shuffled_r3)} ({100 * (np.mean(shuffled_r3) - np.mean(rec[3])):+.1f})" if shuffled_r3 else "–"
        print(f"| {label} | {pct(rec[1])} | {pct(rec[3])} | {pct(rec[5])} | {pct(top1)} | {pct(shuffled_top1)} | {d3} | "
              f"{100 * diff['mean']:+.1f} [{100 * diff['lo']:+.1f}, {100 * diff['hi']:+.1f}] |")

    line("bm25", lambda r, c: first_stage(r, "bm25"))
    for option in options:
        line(option, lambda r, c, o=option: c[o]["chunk_ids"] if o in c else None)
        for name in ("hybrid", "bm25"):
            line(f"{option} + {name}", lambda r, c, o=option, n=name:
                 fuse(c[o]["chunk_ids"], first_stage(r, n)) if o in c else None)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2].split(","))
