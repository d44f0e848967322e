"""Estimating a head set's per-position prior (``bookqa heads prior``; applied by rerank/orders.py).

For each seed item and each requested candidate count n, one prompt: the item's gold candidates and
non-gold candidates, topped up to n with non-gold candidates of *other* documents of the same source
(irrelevant to this question, but in the same style), in a seeded random order. One forward pass per
prompt gives both the plain and the null-calibrated scores (the null suffix reuses the prefix cache).
Each pass is max-min normalised; the prior at position p is the mean normalised score of the non-gold
candidates shown at p (positions no non-gold candidate reached are interpolated from their
neighbours). Random placement averages the candidates' content out, leaving what the position alone
earns.

The prompts are split in two folds by a hash of the item id; each fold is ranked with the prior of
the other (no prompt helps correct itself), with no correction, subtraction and division. The mode
with the better held-out Hit@1 (then MRR) is stored; the report keeps all three.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import random
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ...errors import ConfigError, InputError
from ...progress import Progress, no_progress
from ...rerank.orders import PRIOR_MODES, PositionPrior, maxmin, score_pass

MODES = ("none",) + PRIOR_MODES


@dataclass
class PriorPrompt:
    item_id: str
    source: str
    question: str
    texts: list[str]
    gold: list[int]  # prompt positions (0-based) of the item's gold candidates

    @property
    def n(self) -> int:
        return len(self.texts)


@dataclass
class Observation:
    """One scored prompt: normalised scores in prompt order and where the gold candidates were."""

    item_id: str
    z: np.ndarray
    gold: list[int]


def _fold(item_id: str) -> int:
    return int(hashlib.sha1(item_id.encode("utf-8")).hexdigest(), 16) % 2


def prior_prompts(items: Sequence[Any], counts: Sequence[int], seed: int = 0) -> list[PriorPrompt]:
    """The estimation prompts: per item and count n, its gold + non-gold candidates (a seeded sample of
    the non-gold when it has more than n), topped up with other documents' non-gold candidates of the
    same source (other sources when those run out), shuffled."""
    fillers: dict[str, list[tuple[str, str]]] = {}
    seen: set[str] = set()
    for it in items:
        for i, text in enumerate(it.candidates):
            if i not in it.gold and text not in seen:
                seen.add(text)
                fillers.setdefault(it.source, []).append((it.doc_id or it.id, text))
    prompts: list[PriorPrompt] = []
    for it in items:
        gold_idx = set(it.gold)
        gold = [it.candidates[g] for g in sorted(gold_idx)]
        own = [c for i, c in enumerate(it.candidates) if i not in gold_idx]
        doc = it.doc_id or it.id
        for n in counts:
            rng = random.Random(f"bookqa-prior:{seed}:{it.id}:{n}")
            if len(gold) >= n:
                continue  # no room for an irrelevant candidate
            if n <= len(gold) + len(own):
                negatives = rng.sample(own, n - len(gold))
            else:
                taken = set(it.candidates)
                same = [t for d, t in fillers.get(it.source, []) if d != doc and t not in taken]
                other = [t for src, rows in sorted(fillers.items()) if src != it.source for d, t in rows
                         if t not in taken]
                need = n - len(gold) - len(own)
                extra = rng.sample(same, min(need, len(same)))
                if len(extra) < need:
                    extra += rng.sample(other, min(need - len(extra), len(other)))
                negatives = own + extra
            texts = gold + negatives
            order = list(range(len(texts)))
            rng.shuffle(order)
            shown = [texts[i] for i in order]
            gold_pos = [p for p, i in enumerate(order) if i < len(gold)]
            prompts.append(PriorPrompt(item_id=it.id, source=it.source, question=it.question, texts=shown,
                                       gold=gold_pos))
    return prompts


def curves(observations: Sequence[Observation]) -> tuple[dict[int, list[float]], dict[int, int]]:
    """Per candidate count: the mean normalised score of the non-gold candidates at each position, and
    the number of prompts behind it."""
    sums: dict[int, np.ndarray] = {}
    seen: dict[int, np.ndarray] = {}
    prompts: dict[int, int] = {}
    for ob in observations:
        n = len(ob.z)
        if n < 1:
            continue
        sums.setdefault(n, np.zeros(n))
        seen.setdefault(n, np.zeros(n))
        mask = np.ones(n, dtype=bool)
        mask[list(ob.gold)] = False
        sums[n][mask] += ob.z[mask]
        seen[n][mask] += 1
        prompts[n] = prompts.get(n, 0) + 1
    out: dict[int, list[float]] = {}
    for n in sums:
        have = seen[n] > 0
        if not have.any():
            continue
        mean = np.zeros(n)
        mean[have] = sums[n][have] / seen[n][have]
        if not have.all():  # fill positions no non-gold candidate reached from their neighbours
            pos = np.arange(n)
            mean[~have] = np.interp(pos[~have], pos[have], mean[have])
        out[n] = mean.tolist()
    return out, {n: prompts[n] for n in out}


def _rank_stats(scores: np.ndarray, gold: Sequence[int]) -> tuple[float, float, float]:
    """(hit@1, reciprocal rank of the best gold, top-1 at position 1) with ties to the earlier position
    (as QRRanker's sort)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    gold = set(gold)
    first_gold = next(r for r, i in enumerate(order) if i in gold)
    return float(order[0] in gold), 1.0 / (first_gold + 1), float(order[0] == 0)


def evaluate_modes(observations: Sequence[Observation]) -> dict[str, Any]:
    """Two-fold cross-fitted Hit@1 / MRR / top-1-at-position-1 of no correction, subtraction, division."""
    totals = {m: np.zeros(3) for m in MODES}
    n = 0
    for fold in (0, 1):
        train = [o for o in observations if _fold(o.item_id) != fold]
        test = [o for o in observations if _fold(o.item_id) == fold and o.gold]
        fitted, _ = curves(train)
        if not fitted or not test:
            continue
        priors = {m: PositionPrior(curves=fitted, mode=m) for m in PRIOR_MODES}
        for ob in test:
            n += 1
            for m in MODES:
                s = ob.z if m == "none" else priors[m].apply(ob.z)
                totals[m] += _rank_stats(s, ob.gold)
    if n == 0:
        return {"n": 0}
    out: dict[str, Any] = {"n": n, "folds": 2}
    for m in MODES:
        hit, mrr, pos1 = totals[m] / n
        out[m] = {"hit@1": round(float(hit), 4), "mrr": round(float(mrr), 4), "top1_at_position_1": round(float(pos1), 4)}
    return out


def choose_mode(evaluation: dict[str, Any]) -> str:
    """The correction with the better held-out Hit@1, then MRR; subtraction on a tie or no evaluation."""
    if not evaluation.get("n"):
        return "subtract"
    return max(PRIOR_MODES, key=lambda m: (evaluation[m]["hit@1"], evaluation[m]["mrr"], m == "subtract"))


def estimate_priors(ranker, items: Sequence[Any], counts: Sequence[int], seed: int = 0, mode: str = "auto",
                    source: Optional[dict[str, Any]] = None,
                    progress: Progress = no_progress) -> list[PositionPrior]:
    """Priors of ``ranker``'s heads for plain and for calibrated scoring, from one pass per prompt."""
    if mode not in ("auto",) + PRIOR_MODES:
        raise ConfigError(f"prior mode must be auto, subtract or divide, got {mode!r}")
    counts = sorted({int(c) for c in counts})
    if not counts or counts[0] < 2:
        raise ConfigError("candidate counts for the prior must be at least 2")
    prompts = prior_prompts(items, counts, seed)
    if not prompts:
        raise InputError("no estimation prompt could be built from these seed items")
    obs: dict[bool, list[Observation]] = {False: [], True: []}
    seconds: list[float] = []
    progress("position prior", 0, len(prompts))
    for i, pr in enumerate(prompts):
        t = time.perf_counter()
        ps = score_pass(ranker, pr.question, pr.texts, None, list(range(pr.n)), with_null=True)
        seconds.append(time.perf_counter() - t)
        for calibrate in (False, True):
            obs[calibrate].append(Observation(pr.item_id, maxmin(ps.totals(calibrate)), pr.gold))
        progress("position prior", i + 1, len(prompts))
    made = (source or {}) | {"items": len(items), "prompts": len(prompts), "seed": seed, "counts": counts,
                             "date": _dt.date.today().isoformat(), "dtype": ranker.dtype,
                             "seconds_per_prompt": round(float(np.mean(seconds)), 3),
                             "sources": sorted({pr.source for pr in prompts})}
    priors = []
    for calibrate in (False, True):
        fitted, per_count = curves(obs[calibrate])
        evaluation = evaluate_modes(obs[calibrate])
        chosen = choose_mode(evaluation) if mode == "auto" else mode
        evaluation["chosen"] = chosen
        priors.append(PositionPrior(curves=fitted, mode=chosen, prompts=per_count, evaluation=evaluation,
                                    scoring={"calibrate": calibrate, "aggregate": ranker.aggregate,
                                             "question_span": ranker.layout.question_span},
                                    source=dict(made)))
    return priors
