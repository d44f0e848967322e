"""Order-robust QR scores: a per-position prior and permutation averaging (QRRanker options).

Why: attention of the heads favours the first candidates of the prompt whatever they say (untrained
Qwen2.5-Coder-0.5B heads on LoCoMo put the first candidate on top for most questions, see
docs/order-robust-qr.md). Two remedies, usable alone, together, and with null-query calibration (qr.py):

- **Position prior** (``debias="position"``). For each prompt position p of an n-candidate prompt, the
  mean normalised score an *irrelevant* candidate gets there: the non-gold candidates of seed items
  placed at random positions (estimated by ``bookqa heads prior``, see bookqa/lab/detection/prior.py;
  stored in the heads file under ``position_prior``, one entry per scoring setting). At ranking time a candidate's
  normalised score is corrected by the prior of its position: subtracted (mode ``subtract``) or divided
  by it (``divide``, the prior floored at ``DIVIDE_FLOOR``); the estimation picks the mode that ranks
  its held-out seed prompts better. A prior is stored at the candidate counts it was estimated at and
  applies to any count n through the relative position (p-1)/(n-1): the curve of the nearest estimated
  count (in log scale), linearly interpolated, so the first and last positions map exactly.
- **Permutation averaging** (``permutations=N``). The candidates are scored under N orders (input,
  reversed, interleaved halves, then seeded shuffles), each pass normalised so passes are comparable,
  mapped back to its candidates and averaged. Each extra order costs one more forward pass.
- **Refining the top** (``refine=M``). A cheaper second order: only the M best candidates of the first
  ranking are scored again, in one short prompt that shows them in the reverse of their input order, and
  their order is decided by the mean of the two rankings' normalised scores (the rest keep their place
  below them). A candidate that led only because it stood first in the prompt stands last in the second
  one. With M = 5 of 20 candidates the extra prompt is about a quarter of the first.

Normalisation is max-min per pass (as in QR training's loss): the best candidate 1, the worst 0. A single plain pass
(no prior, one order) keeps the raw attention sums QRRanker always returned.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..errors import ConfigError

DEBIAS = ("none", "position")
PRIOR_MODES = ("subtract", "divide")
DIVIDE_FLOOR = 0.05  # "divide" never divides by less: a position whose prior is ~0 would blow scores up
MAX_PERMUTATIONS = 32
# rerank_permutations=0, untrained heads (trained ones below): two orders (input + reversed) where a second
# prefill is cheap, one on CPU: the second order is the one option with an R@1 gain the data can show, but on
# a CPU it costs a whole extra pass for no change at R@3 (docs/order-robust-qr.md, "What was decided, and why").
AUTO_PERMUTATIONS = {"cpu": 1, "accelerator": 2}
# Heads that `bookqa train` fine-tuned (the shipped adapter, a trained checkpoint) get one order + refinement
# on every device: for them a second order gains nothing measurable over refining the top 5, costs a whole
# pass more and leaves the ranking more dependent on the input order (same document, "Since session 9").
AUTO_PERMUTATIONS_TRAINED = 1
# rerank_refine=-1: refine the top 5 when only one order is scored, the cheap way to take the position out of
# one order (about a quarter of a pass more, recall unchanged); after two orders it undoes their R@1 gain, so
# it is off there (same document, "Refining the top 5").
AUTO_REFINE = 5


def trained_heads(heads) -> bool:
    """Whether ``bookqa train`` fine-tuned the model for these heads (their file records the training)."""
    return bool((getattr(heads, "detection", None) or {}).get("trained"))


def resolve_permutations(value: int, device: str, trained: bool = False) -> int:
    """Orders to score for a ``rerank_permutations`` value on a torch device ("cpu", "cuda:0", "mps"), with
    heads that were trained (``trained_heads``) or not."""
    value = int(value)
    if value != 0:
        return value
    if trained:
        return AUTO_PERMUTATIONS_TRAINED
    return AUTO_PERMUTATIONS["cpu" if str(device).startswith("cpu") else "accelerator"]


def resolve_refine(value: int, permutations: int) -> int:
    """Candidates to refine for a ``rerank_refine`` value (-1 auto) once the number of orders is known."""
    value = int(value)
    if value != -1:
        return value
    return AUTO_REFINE if int(permutations) == 1 else 0


def check_options(debias: str, permutations: int, refine: int = 0) -> None:
    if debias not in DEBIAS:
        raise ConfigError(f"rerank_debias must be one of {', '.join(DEBIAS)}, got {debias!r}")
    if not 1 <= int(permutations) <= MAX_PERMUTATIONS:
        raise ConfigError(f"rerank_permutations must be 1..{MAX_PERMUTATIONS}, got {permutations}")
    if int(refine) < 0 or int(refine) == 1:
        raise ConfigError(f"rerank_refine must be 0 (off) or at least 2 candidates, got {refine}")


# --- orders and normalisation ---------------------------------------------------------------------

def maxmin(scores: Sequence[float]) -> np.ndarray:
    """(s - min) / (max - min); all zeros when every score is the same."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s.copy()
    lo, hi = float(s.min()), float(s.max())
    span = hi - lo
    if not span > 1e-12 * max(1.0, abs(hi), abs(lo)):
        return np.zeros_like(s)
    return (s - lo) / span


def interleaved(n: int) -> list[int]:
    """The second half and the first half alternating ([h, 0, h+1, 1, ...], h = ceil(n/2)): the middle
    candidates, which the input and reversed orders both leave in the middle, come first."""
    h = (n + 1) // 2
    out: list[int] = []
    for i in range(h):
        if h + i < n:
            out.append(h + i)
        out.append(i)
    return out


def candidate_orders(n: int, passes: int, seed: int = 0) -> list[list[int]]:
    """Up to ``passes`` distinct orders of n candidates; ``order[p]`` is the index of the candidate shown
    at prompt position p. Input order first, then reversed, interleaved, then seeded shuffles. Fewer
    come back when n is too small to have that many distinct orders."""
    if passes < 1:
        raise ConfigError(f"at least one order is needed, got {passes}")
    base = list(range(n))
    out: list[list[int]] = []
    for order in (base, base[::-1], interleaved(n)):
        if len(out) >= passes:
            break
        if order not in out:
            out.append(order)
    rng = random.Random(f"bookqa-orders:{seed}:{n}")
    attempts = 0
    while len(out) < passes and attempts < 50 * passes:
        order = base[:]
        rng.shuffle(order)
        if order not in out:
            out.append(order)
        attempts += 1
    return out


# --- the position prior ---------------------------------------------------------------------------

@dataclass
class PositionPrior:
    """Mean normalised score of an irrelevant candidate at each prompt position, per candidate count."""

    curves: dict[int, list[float]]  # candidate count n -> value at positions 1..n
    mode: str = "subtract"  # subtract | divide
    scoring: dict[str, Any] = field(default_factory=dict)  # calibrate, aggregate, question_span
    prompts: dict[int, int] = field(default_factory=dict)  # candidate count -> prompts it was estimated on
    evaluation: dict[str, Any] = field(default_factory=dict)  # held-out comparison of the modes
    source: dict[str, Any] = field(default_factory=dict)  # data, seed, date, dtype, seconds

    def __post_init__(self):
        if self.mode not in PRIOR_MODES:
            raise ConfigError(f"position prior mode must be one of {', '.join(PRIOR_MODES)}, got {self.mode!r}")
        self.curves = {int(n): [float(v) for v in c] for n, c in self.curves.items()}
        if not self.curves or any(len(c) != n or n < 1 for n, c in self.curves.items()):
            raise ConfigError("a position prior needs, for each candidate count n, n values")

    def curve(self, n: int) -> np.ndarray:
        """The prior of each position of an n-candidate prompt."""
        if n <= 0:
            return np.zeros(0)
        best = min(self.curves, key=lambda c: (abs(math.log(c / n)), -c))
        ys = np.asarray(self.curves[best], dtype=np.float64)
        if best == n:
            return ys.copy()
        if n == 1 or best == 1:
            return np.full(n, ys[0])
        return np.interp(np.linspace(0.0, 1.0, n), np.linspace(0.0, 1.0, best), ys)

    def apply(self, normalised: Sequence[float]) -> np.ndarray:
        """Correct normalised scores given in prompt order (position 1 first)."""
        z = np.asarray(normalised, dtype=np.float64)
        prior = self.curve(len(z))
        if self.mode == "subtract":
            return z - prior
        return z / np.maximum(prior, DIVIDE_FLOOR)

    def matches(self, calibrate: bool, aggregate: str, question_span: str) -> bool:
        s = self.scoring
        return (bool(s.get("calibrate")) == bool(calibrate) and s.get("aggregate", "sum") == aggregate
                and s.get("question_span", "question") == question_span)

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "scoring": self.scoring, "normalise": "maxmin",
                "curves": {str(n): [round(v, 6) for v in c] for n, c in sorted(self.curves.items())},
                "prompts": {str(n): int(v) for n, v in sorted(self.prompts.items())},
                "evaluation": self.evaluation, "source": self.source}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "PositionPrior":
        if row.get("normalise", "maxmin") != "maxmin":
            raise ConfigError(f"unknown position prior normalisation {row.get('normalise')!r}")
        try:
            return cls(curves={int(n): c for n, c in row["curves"].items()}, mode=row.get("mode", "subtract"),
                       scoring=dict(row.get("scoring") or {}),
                       prompts={int(n): int(v) for n, v in (row.get("prompts") or {}).items()},
                       evaluation=dict(row.get("evaluation") or {}), source=dict(row.get("source") or {}))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError("a position prior entry of the heads file is malformed") from None


def find_prior(heads, calibrate: bool, aggregate: str, question_span: str) -> Optional[PositionPrior]:
    """The prior of a head set estimated with this scoring, or None."""
    for row in heads.position_prior or []:
        prior = PositionPrior.from_json(row)
        if prior.matches(calibrate, aggregate, question_span):
            return prior
    return None


def prior_for(ranker, calibrate: bool) -> PositionPrior:
    """The prior for ``ranker``'s heads and scoring (with calibration on or off), or a clear error."""
    prior = find_prior(ranker.heads, calibrate, ranker.aggregate, ranker.layout.question_span)
    if prior is None:
        raise ConfigError(
            f"the QR heads ({ranker.heads.source or 'given'}) have no position prior for calibrate="
            f"{str(bool(calibrate)).lower()}, aggregate={ranker.aggregate}, question span "
            f"{ranker.layout.question_span}; estimate one with `bookqa heads prior --data SEED.jsonl` "
            f"(seed files come from `bookqa heads build-seeds`) or set rerank_debias=none")
    return prior


def with_prior(heads, priors: Sequence[PositionPrior]):
    """A copy of a head set holding ``priors``, replacing entries estimated with the same scoring."""
    import dataclasses

    keep = [row for row in heads.position_prior or []
            if not any(PositionPrior.from_json(row).matches(p.scoring.get("calibrate"), p.scoring.get("aggregate"),
                                                            p.scoring.get("question_span")) for p in priors)]
    return dataclasses.replace(heads, position_prior=keep + [p.to_json() for p in priors])


# --- scoring passes and combining them ------------------------------------------------------------

@dataclass
class ScorePass:
    """One forward pass over the candidates shown in ``order``; arrays are by candidate index."""

    order: list[int]  # order[p] = index of the candidate at prompt position p
    raw: np.ndarray  # (n,) score summed over the heads, without calibration
    null: Optional[np.ndarray]  # (n,) the null question's score (None: calibration not run)
    timings: dict[str, float]  # seconds: prompt, forward, calibrate (when run)
    prompt_tokens: int = 0
    per_head: Optional[np.ndarray] = None  # (heads, n) without calibration
    null_per_head: Optional[np.ndarray] = None
    layers_run: int = 0  # decoder layers the forward ran (it stops after the deepest QR layer)
    question_tokens: int = 0

    def totals(self, calibrate: bool) -> np.ndarray:
        if not calibrate:
            return self.raw
        if self.null is None:
            raise ConfigError("calibrated scores need the null question's pass")
        return self.raw - self.null

    def seconds(self, calibrate: bool) -> float:
        """What this pass costs a user: building the prompt, the forward, and the null suffix if used."""
        return (self.timings.get("prompt", 0.0) + self.timings.get("forward", 0.0)
                + (self.timings.get("calibrate", 0.0) if calibrate else 0.0))


def score_pass(ranker, query: str, texts: Sequence[str], prefix: Optional[str], order: Sequence[int],
               with_null: bool) -> ScorePass:
    """Score ``texts`` shown in ``order`` with one forward of ``ranker`` (plus the cached-prefix null
    suffix when ``with_null``), mapped back to candidate indices."""
    order = list(order)
    shown = [texts[i] for i in order]
    scores, info = ranker.head_scores(query, shown, prefix, calibrate=with_null, keep_null=True)
    per_head = np.empty_like(scores)
    per_head[:, order] = scores  # column p of the prompt is candidate order[p]
    null_per_head = None
    if with_null:
        null_per_head = np.empty_like(scores)
        null_per_head[:, order] = info["null_scores"]
    t = info["timings"]
    timings = {"prompt": float(t["prompt"]), "forward": float(t["forward"])}
    if with_null:
        timings["calibrate"] = float(t["calibrate"])
    return ScorePass(order=order, raw=per_head.sum(axis=0),
                     null=None if null_per_head is None else null_per_head.sum(axis=0), timings=timings,
                     prompt_tokens=int(info["prompt_tokens"]), per_head=per_head, null_per_head=null_per_head,
                     layers_run=int(info.get("layers_run", 0)), question_tokens=int(info.get("question_tokens", 0)))


def combine(passes: Sequence[ScorePass], calibrate: bool, prior: Optional[PositionPrior] = None) -> np.ndarray:
    """Per-candidate scores from one or more passes: each pass normalised in prompt order, corrected by
    the prior of each position, mapped back to its candidates, averaged. One pass without a prior:
    its raw (or calibrated) sums unchanged."""
    if not passes:
        raise ConfigError("no scoring pass to combine")
    if len(passes) == 1 and prior is None:
        return np.asarray(passes[0].totals(calibrate), dtype=np.float64).copy()
    n = len(passes[0].order)
    acc = np.zeros(n, dtype=np.float64)
    for ps in passes:
        in_prompt = np.asarray(ps.totals(calibrate), dtype=np.float64)[ps.order]
        z = maxmin(in_prompt)
        if prior is not None:
            z = prior.apply(z)
        back = np.empty(n, dtype=np.float64)
        back[ps.order] = z
        acc += back
    return acc / len(passes)


def pass_timings(passes: Sequence[ScorePass], calibrate: bool) -> dict[str, float]:
    """Seconds summed over passes, and how much of it the orders beyond the first cost."""
    out = {"prompt": sum(p.timings.get("prompt", 0.0) for p in passes),
           "forward": sum(p.timings.get("forward", 0.0) for p in passes)}
    if calibrate:
        out["calibrate"] = sum(p.timings.get("calibrate", 0.0) for p in passes)
    if len(passes) > 1:
        out["permutation"] = sum(p.seconds(calibrate) for p in passes[1:])
    return out


def refine_order(scores: Sequence[float], input_order: Sequence[int], m: int) -> list[int]:
    """The candidates to refine and the order to show them in: the ``m`` best by ``scores`` (ties: earlier
    in the input), in the reverse of their positions in ``input_order``."""
    s = np.asarray(scores, dtype=np.float64)
    top = sorted(range(len(s)), key=lambda i: (-float(s[i]), i))[:max(0, int(m))]
    position = {c: p for p, c in enumerate(input_order)}
    return sorted(top, key=lambda i: -position[i])


def apply_refine(scores: Sequence[float], shown: Sequence[int], refined: Sequence[float]) -> np.ndarray:
    """Final scores: the refined candidates ``shown`` (indices) score 1 + the mean of their max-min
    normalised first-ranking and refine-pass scores, so they stay above every other candidate, which
    keeps its max-min normalised first-ranking score in [0, 1]."""
    s = np.asarray(scores, dtype=np.float64)
    out = maxmin(s)
    shown = list(shown)
    if shown:
        out[shown] = 1.0 + (maxmin(s[shown]) + maxmin(np.asarray(refined, dtype=np.float64))) / 2.0
    return out


# --- the order-robust ranking ---------------------------------------------------------------------

# score(indices, order): one forward over the candidates ``indices`` (positions in the caller's candidate
# list) shown in ``order`` (order[p] = the index into ``indices`` of the candidate at prompt position p),
# as a ScorePass whose arrays are by index into ``indices``. QRRanker runs the model; an evaluation reads
# passes it stored earlier and runs only those it lacks.
PassProvider = Callable[[Sequence[int], Sequence[int]], ScorePass]


@dataclass
class OrderedScores:
    """What rank_in_orders computed: final scores by candidate, the passes it read, and the refinement."""

    scores: np.ndarray
    passes: list[ScorePass]  # one per candidate order, the input order first
    refined: Optional[ScorePass] = None  # the short pass over the top candidates (refinement on)
    shown: list[int] = field(default_factory=list)  # the refined candidates, in the order they were shown
    combine_seconds: float = 0.0


def rank_in_orders(score: PassProvider, n: int, orders: int, refine: int, calibrate: bool,
                   prior: Optional[PositionPrior] = None) -> OrderedScores:
    """The order-robust QR ranking of n candidates: scored under ``orders`` candidate orders (input,
    reversed, interleaved, shuffles; candidate_orders) and combined (each pass normalised in prompt order,
    corrected by ``prior``, averaged; one pass without a prior keeps its raw sums), then, with ``refine``
    of at least 2, the top ``refine`` scored once more in a short prompt in reversed order and merged
    (refine_order, apply_refine). This is the one implementation: QRRanker.rank and every QR
    configuration of an evaluation call it with their own ``score``."""
    full = list(range(n))
    passes = [score(full, order) for order in candidate_orders(n, orders)]
    t0 = time.perf_counter()
    scores = combine(passes, calibrate, prior)
    out = OrderedScores(scores=scores, passes=passes, combine_seconds=time.perf_counter() - t0)
    if refine > 1 and n > 1:
        out.shown = refine_order(scores, passes[0].order, refine)
        out.refined = score(out.shown, list(range(len(out.shown))))
        out.scores = apply_refine(scores, out.shown, combine([out.refined], calibrate, prior))
    return out
