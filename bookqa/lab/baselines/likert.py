"""A groupwise generative baseline in the GroupRank style: the generator reads the question and a group
of numbered passages and scores each on a Likert scale (0–10 by default, ``likert_scale``) in one JSON
answer, ``{"1": 7, "2": 0, ...}``. Groups are consecutive slices of the first-stage order; a candidate's
score is the number it was given, so scores are coarse (a handful of levels) and ties are common: ties
are broken by first-stage rank.

Answers are parsed leniently: code fences, text around the object, a missing closing brace, quoted
numbers and ``"passage 3"`` / ``"[3]"`` keys are all read; ids out of range are ignored and scores off
the scale are clamped (a *repair*); a passage the answer does not score gets the lowest score (counted
in ``scores_missing``, and a repair). An answer that scores no passage is a *parse failure*: the whole
group gets the lowest score. An answer giving the whole group one score is counted in
``calls_unchanged`` (it ranks nothing). The prompt shows no example scores: the embedded 0.5B model
copies the numbers of an example into its answer. The generator stops at the first ``}``, which ends the object, so it is
not paid for text after it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ...errors import ConfigError
from ...settings import Settings
from .generative import CallLog, GenerativeReranker

TOKENS_PER_SCORE = 8  # '"12": 10, ' is about 8 tokens with digit-wise vocabularies
ANSWER_SLACK = 16
_PAIR = re.compile(r'["\']?\s*(?:passage\s*)?\[?\s*(\d+)\s*\]?\s*["\']?\s*[:=]\s*["\']?\s*(-?\d+(?:\.\d+)?)',
                   re.IGNORECASE)


def parse_scale(spec: str) -> tuple[int, int]:
    """``"0-10"`` -> (0, 10)."""
    m = re.fullmatch(r"\s*(\d+)\s*[-–]\s*(\d+)\s*", str(spec))
    if not m or int(m.group(1)) >= int(m.group(2)):
        raise ConfigError(f"likert_scale must look like 0-10 or 1-5 (low-high), got {spec!r}")
    return int(m.group(1)), int(m.group(2))


def groups(k: int, size: int) -> list[tuple[int, int]]:
    """Consecutive ``[start, end)`` slices of ``k`` candidates, ``size`` each (the last may be shorter)."""
    if size < 1:
        raise ConfigError(f"likert_group_size must be at least 1, got {size}")
    return [(a, min(a + size, k)) for a in range(0, max(0, k), size)]


@dataclass
class ParsedScores:
    scores: list[float]  # one per passage, in passage order; always on the scale
    failed: bool  # no passage scored: every score is the lowest
    missing: int = 0
    clamped: int = 0
    out_of_range: int = 0  # ids outside 1..n
    duplicates: int = 0

    @property
    def repaired(self) -> bool:
        return not self.failed and bool(self.missing or self.clamped or self.out_of_range or self.duplicates)


def _strip_fences(text: str) -> str:
    return re.sub(r"```[a-zA-Z]*", " ", text)


def parse_scores(text: str, n: int, low: int, high: int) -> ParsedScores:
    """The scores an answer gives to ``n`` passages numbered 1..n (see the module docstring)."""
    body = _strip_fences(text)
    pairs = [(int(k), float(v)) for k, v in _PAIR.findall(body)]
    if not pairs:
        # a bare list of numbers, one per passage in order ([7, 0, 3])
        m = re.search(r"\[[^\[\]]*\]", body)
        try:
            values = json.loads(m.group(0)) if m else None
        except ValueError:
            values = None
        if isinstance(values, list) and values and all(isinstance(v, (int, float)) for v in values):
            pairs = [(i, float(v)) for i, v in enumerate(values, 1)]
    got: dict[int, float] = {}
    clamped = out_of_range = duplicates = 0
    for key, value in pairs:
        if not 1 <= key <= n:
            out_of_range += 1
            continue
        if key in got:
            duplicates += 1
            continue
        if not low <= value <= high:
            clamped += 1
            value = min(max(value, low), high)
        got[key] = value
    if not got:
        return ParsedScores([float(low)] * n, failed=True, out_of_range=out_of_range)
    scores = [got.get(i, float(low)) for i in range(1, n + 1)]
    return ParsedScores(scores, failed=False, missing=n - len(got), clamped=clamped, out_of_range=out_of_range,
                        duplicates=duplicates)


class LikertReranker(GenerativeReranker):
    """GroupRank-style groupwise Likert scoring with the configured generator."""

    name = "likert"

    def __init__(self, generator=None, settings: Optional[Settings] = None, group_size: Optional[int] = None,
                 scale: Optional[str] = None, passage_tokens: Optional[int] = None, keep_answers: int = 0):
        super().__init__(generator, settings, passage_tokens, keep_answers)
        self.group_size = int(group_size or self.options.likert_group_size)
        groups(1, self.group_size)  # checks the size now, not mid-run
        self.scale = scale or self.options.likert_scale
        self.low, self.high = parse_scale(self.scale)

    def prompt(self, query: str, passages: Sequence[str]) -> str:
        return (self.numbered_passages(query, passages) +
                f"Score how relevant each passage is to the question, from {self.low} (irrelevant) to "
                f"{self.high} (answers it).\nQuestion: {query.strip()}\n"
                f"Answer with one JSON object that maps every passage number to its score, and say nothing else.")

    def max_tokens(self, n: int) -> int:
        return TOKENS_PER_SCORE * n + ANSWER_SLACK

    def order(self, query: str, texts: Sequence[str], log: CallLog) -> tuple[list[float], dict[str, Any]]:
        k = len(texts)
        scores = [float(self.low)] * k
        missing = 0
        spans = groups(k, self.group_size)
        for start, end in spans:
            answer = self.call(query, texts[start:end], log, stop=["}"])
            parsed = parse_scores(answer, end - start, self.low, self.high)
            log.parse_failures += parsed.failed
            log.repairs += parsed.repaired
            log.unchanged += not parsed.failed and end - start > 1 and len(set(parsed.scores)) == 1
            missing += parsed.missing if not parsed.failed else end - start
            scores[start:end] = parsed.scores
        # make_results sorts by (-score, input position): equal scores keep the first-stage order
        return scores, {"groups": len(spans), "group_size": self.group_size, "scale": f"{self.low}-{self.high}",
                        "scores_missing": missing}
