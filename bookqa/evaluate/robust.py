"""The QR configurations of an evaluation run, order-robust options included (rerank/debias.py).

``qr``               the reranker as configured (its calibration / debiasing / permutation settings)
``qr_cal``           null-query calibration ("N/A" question; the prefix KV cache is reused)
``qr_pos``           per-position prior (the heads file's ``position_prior``, `bookqa heads prior`)
``qr_perm``          permutation averaging over ``rerank_permutations`` orders (3 when that is 0 or 1:
                     input, reversed, interleaved)
``qr_cal_pos``, ``qr_pos_perm``, ``qr_cal_perm``, ``qr_cal_pos_perm``   the combinations
``qr_refine``        one order, then the top ``rerank_refine`` (5 when that is -1 or 0) candidates scored again
                     in a short prompt in reversed order (its pass is stored like the others)
``qr_perm_refine``   permutation averaging, then the same refinement of its top candidates

All of them read one set of forward passes per question: one per distinct order in which the
candidates are shown, each with the null-question suffix when any configuration of the run calibrates
(the suffix reuses the prefix cache, so it adds only the question's tokens). The passes are stored in
the question's row (``passes``: per-candidate score sums and the seconds each part took), so a
configuration added to a finished run later (e.g. once a prior exists) reuses them. A configuration's
``seconds`` are what it would cost a user on its own: prompt and forward of every pass it reads, the
null suffix only if it calibrates, and the combination.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ..rerank.debias import (ScorePass, apply_refine, candidate_orders, combine, pass_timings, prior_for,
                             refine_order, score_pass)
from .configs import PERMUTATIONS_DEFAULT, REFINE_DEFAULT, Config, ConfigResult, QuestionContext

# name -> (calibrate, position prior, permutation averaging)
VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "qr_cal": (True, False, False),
    "qr_pos": (False, True, False),
    "qr_perm": (False, False, True),
    "qr_cal_pos": (True, True, False),
    "qr_pos_perm": (False, True, True),
    "qr_cal_perm": (True, False, True),
    "qr_cal_pos_perm": (True, True, True),
}


@dataclass
class PassPlan:
    """What the QR configurations of one run share: whether passes include the null suffix."""

    with_null: bool = False


class QRVariantConfig(Config):
    needs_candidates = True
    order_sensitive = True

    def __init__(self, name: str, make_ranker: Callable[[], Any], plan: PassPlan, calibrate: Optional[bool] = None,
                 position: Optional[bool] = None, permute: Optional[bool] = None,
                 permutations: int = PERMUTATIONS_DEFAULT,
                 refine: Optional[int] = None):
        """``calibrate`` / ``position`` / ``permute`` / ``refine`` None: follow the ranker's own settings."""
        self.name = name
        self.make_ranker = make_ranker
        self.plan = plan
        self._options = (calibrate, position, permute, refine)
        self.permutations = max(2, int(permutations))
        self._ranker = None

    @property
    def ranker(self):
        if self._ranker is None:
            r = self._ranker = self.make_ranker()
            calibrate, position, permute, refine = self._options
            self.refine = int(getattr(r, "refine", 0)) if refine is None else int(refine)
            self.calibrate = r.calibrate if calibrate is None else calibrate
            self.position = (r.debias == "position") if position is None else position
            self.orders = r.permutations if permute is None else (self.permutations if permute else 1)
            self.prior = prior_for(r, self.calibrate) if self.position else None
            self.plan.with_null |= self.calibrate
            self.tag = _ranker_tag(r)
        return self._ranker

    def setup(self) -> None:
        _ = self.ranker

    def _pass(self, ctx: QuestionContext, ids: list[int], order: list[int]) -> tuple[ScorePass, bool]:
        """The pass showing ``ids`` in ``order``: from the row when stored (with the null part if needed),
        else computed and stored. Returns it by candidate index, and whether it was computed now."""
        shown = [ids[i] for i in order]
        key = f"{self.tag}:" + ",".join(map(str, shown))
        need_null = self.plan.with_null or self.calibrate
        stored = ctx.passes.get(key)
        fresh = stored is None or (need_null and stored.get("null") is None)
        if fresh:
            chunks = ctx.book.chunks
            ps = score_pass(self.ranker, ctx.question, [chunks[i].text for i in shown], None,
                            list(range(len(shown))), with_null=need_null)
            stored = {"raw": ps.raw.tolist(), "null": None if ps.null is None else ps.null.tolist(),
                      "timings": {k: round(v, 4) for k, v in ps.timings.items()}, "prompt_tokens": ps.prompt_tokens}
            ctx.passes[key] = stored
        raw = np.empty(len(ids))
        raw[order] = stored["raw"]  # the prompt's position p shows candidate order[p]
        null = None
        if stored.get("null") is not None:
            null = np.empty(len(ids))
            null[order] = stored["null"]
        return ScorePass(order=list(order), raw=raw, null=null, timings=dict(stored["timings"]),
                         prompt_tokens=int(stored.get("prompt_tokens", 0))), fresh

    def run(self, ctx: QuestionContext) -> ConfigResult:
        ranker = self.ranker
        ids = ctx.prompt_ids
        if not ids:
            return ConfigResult([], [], 0.0)
        got = [self._pass(ctx, ids, order) for order in candidate_orders(len(ids), self.orders)]
        passes = [p for p, _ in got]
        t = time.perf_counter()
        scores = combine(passes, self.calibrate, self.prior)
        combine_seconds = time.perf_counter() - t
        parts = pass_timings(passes, self.calibrate)
        seconds = sum(p.seconds(self.calibrate) for p in passes) + combine_seconds
        if self.refine > 1 and len(ids) > 1:
            shown = refine_order(scores, list(range(len(ids))), self.refine)
            extra, fresh = self._pass(ctx, [ids[i] for i in shown], list(range(len(shown))))
            got.append((extra, fresh))
            scores = apply_refine(scores, shown, combine([extra], self.calibrate, self.prior))
            parts["refine"] = extra.seconds(self.calibrate)
            seconds += parts["refine"]
        best = sorted(range(len(ids)), key=lambda i: (-float(scores[i]), i))  # ties: earlier in the prompt
        timings = {"rerank": seconds, **{f"rerank.{k}": v for k, v in parts.items()},
                   "rerank.combine": combine_seconds}
        info = {"prompt_tokens": passes[0].prompt_tokens, "heads": len(ranker.heads.heads),
                "heads_source": ranker.heads.source, "dtype": ranker.dtype, "model": ranker.model_name,
                "calibrate": self.calibrate, "debias": "position" if self.position else "none",
                "prior_mode": self.prior.mode if self.prior is not None else None, "passes": len(passes),
                "refine": self.refine if self.refine > 1 else None,
                "passes_computed": sum(fresh for _, fresh in got)}
        return ConfigResult([ids[i] for i in best], [float(scores[i]) for i in best], seconds, timings, info)


def _ranker_tag(ranker) -> str:
    """A short key for what decides a pass's scores (model, heads, scoring, dtype): stored passes of
    another reranker setup are never reused."""
    what = {"model": ranker.model_name, "heads": [list(h) for h in ranker.heads.heads],
            "aggregate": ranker.aggregate, "layout": ranker.layout.to_json(), "dtype": ranker.dtype}
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()[:10]


def make_variant(name: str, make_ranker: Callable[[], Any], plan: PassPlan, permutations: int,
                 refine: int = 0) -> QRVariantConfig:
    if name == "qr":
        return QRVariantConfig("qr", make_ranker, plan)
    if name in ("qr_refine", "qr_perm_refine"):
        return QRVariantConfig(name, make_ranker, plan, calibrate=False, position=False,
                               permute=name == "qr_perm_refine", refine=refine if refine > 1 else REFINE_DEFAULT,
                               permutations=permutations if permutations > 1 else PERMUTATIONS_DEFAULT)
    calibrate, position, permute = VARIANTS[name]
    return QRVariantConfig(name, make_ranker, plan, calibrate=calibrate, position=position, permute=permute,
                           permutations=permutations if permutations > 1 else PERMUTATIONS_DEFAULT)
