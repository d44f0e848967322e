"""The QR configurations of an evaluation run, order-robust options included (rerank/orders.py).

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

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ...errors import ConfigError
from ...rerank.orders import ScorePass, pass_timings, prior_for, rank_in_orders, score_pass
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
            self.tag = r.pass_tag()
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
        computed = []

        def score(indices, order) -> ScorePass:
            ps, fresh = self._pass(ctx, [ids[i] for i in indices], list(order))
            computed.append(fresh)
            return ps

        ranked = rank_in_orders(score, len(ids), self.orders, self.refine, self.calibrate, self.prior)
        passes, scores = ranked.passes, ranked.scores
        parts = pass_timings(passes, self.calibrate)
        seconds = sum(p.seconds(self.calibrate) for p in passes) + ranked.combine_seconds
        if ranked.refined is not None:
            parts["refine"] = ranked.refined.seconds(self.calibrate)
            seconds += parts["refine"]
        best = sorted(range(len(ids)), key=lambda i: (-float(scores[i]), i))  # ties: earlier in the prompt
        timings = {"rerank": seconds, **{f"rerank.{k}": v for k, v in parts.items()},
                   "rerank.combine": ranked.combine_seconds}
        info = {"prompt_tokens": passes[0].prompt_tokens, "heads": len(ranker.heads.heads),
                "heads_source": ranker.heads.source, "dtype": ranker.dtype, "model": ranker.model_name,
                "calibrate": self.calibrate, "debias": "position" if self.position else "none",
                "prior_mode": self.prior.mode if self.prior is not None else None, "passes": len(passes),
                "refine": self.refine if self.refine > 1 else None,
                "passes_computed": sum(computed)}
        return ConfigResult([ids[i] for i in best], [float(scores[i]) for i in best], seconds, timings, info)


class ExtendedConfig(Config):
    """A stored one-order QR ranking (``base``) taken further the way QRRanker's options would: scored
    under ``orders`` orders in all (the stored one is the input order; the others — reversed, interleaved —
    are computed) and averaged, then the top ``refine`` scored again in a short reversed prompt
    (rank_in_orders). The stored pass is not run twice; the seconds are the base's plus the new prompts'.
    A base that is itself averaged over orders (``qr_trained_perm``) can only be refined (``orders=1``):
    refinement reads nothing of the first ranking but its scores, so that equals QRRanker with both options."""

    needs_candidates = True
    order_sensitive = True

    def __init__(self, name: str, base: str, make_ranker: Callable[[], Any], orders: int = 1, refine: int = 0):
        self.name = name
        self.base = base
        self.depends = (base,)
        self.make_ranker = make_ranker
        self.orders = max(1, int(orders))
        self.refine = int(refine)

    def setup(self) -> None:
        ranker = self.make_ranker()
        if int(getattr(ranker, "refine", 0)) > 1 or int(getattr(ranker, "permutations", 1)) > 1:
            raise ConfigError(f"{self.name} extends {self.base}'s one-order ranking, but the reranker already "
                              f"scores {ranker.permutations} order(s) and refines its top {ranker.refine}; run with "
                              "BOOKQA_RERANK_PERMUTATIONS=1 BOOKQA_RERANK_REFINE=0")

    def run(self, ctx: QuestionContext) -> ConfigResult:
        base = ctx.results[self.base]
        ids = ctx.prompt_ids
        by_id = dict(zip(base["chunk_ids"], base["scores"]))
        if len(ids) < 2 or set(by_id) != set(ids):
            return ConfigResult(list(base["chunk_ids"]), list(base["scores"]), float(base["seconds"]),
                                {"rerank": float(base["seconds"])}, {"base": self.base, "passes": 1, "refined": 0})
        ranker, texts = self.make_ranker(), [ctx.book.chunks[i].text for i in ids]
        full = list(range(len(ids)))
        # The stored scores are the input-order pass max-min normalised, which is all combining reads of it.
        stored = ScorePass(order=full, raw=np.array([float(by_id[i]) for i in ids]), null=None, timings={})

        def score(indices, order) -> ScorePass:
            if list(indices) == full and list(order) == full:
                return stored
            return score_pass(ranker, ctx.question, [texts[i] for i in indices], None, order, with_null=False)

        ranked = rank_in_orders(score, len(ids), self.orders, self.refine, calibrate=False)
        scores, passes = ranked.scores, ranked.passes
        parts = {"orders": sum(p.seconds(False) for p in passes[1:])}
        refined, tokens = 0, passes[-1].prompt_tokens
        orders = int((base.get("info") or {}).get("passes") or 1) + len(passes) - 1
        if ranked.refined is not None:
            parts["refine"], refined, tokens = (ranked.refined.seconds(False), len(ranked.refined.order),
                                                ranked.refined.prompt_tokens)
        best = sorted(range(len(ids)), key=lambda i: (-float(scores[i]), i))  # ties: earlier in the prompt
        seconds = float(base["seconds"]) + sum(parts.values())
        return ConfigResult([ids[i] for i in best], [float(scores[i]) for i in best], seconds,
                            {"rerank": seconds, **{f"rerank.{k}": v for k, v in parts.items() if v}},
                            {"base": self.base, "passes": orders, "refine": self.refine or None,
                             "refined": refined, "prompt_tokens": tokens})


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
