"""A listwise generative baseline in the RankGPT style: the generator reads the question and a window of
numbered passages and writes their order (``[3] > [1] > [2]``). A sliding window covers K candidates
back to front: the window starts on the last ``window`` candidates, is reordered, then moves ``stride``
positions up, so the best candidates bubble to the top in one pass (the last window always starts at
rank 1, so every candidate is seen). With a perfect judge the top ``window − stride`` are exactly right
after one pass; the rest is only sorted within windows.

Scores are coarse by nature: a candidate's score is ``K − final position`` (K for the first, 1 for the
last), monotone in the generated order and nothing more; they carry no confidence.

Answers are parsed leniently: bracketed ids (``[3]``) are read, or bare numbers when there are none;
ids out of range and repeated ids are dropped, ids never named are appended in their current order
(a *repair*); an answer with no usable id leaves the window as it was (a *parse failure*). An answer
that repeats the order it was shown (as a small model copying the format example ``[1] > [2]`` does) is
counted in ``calls_unchanged``.

The prompt is one user message (question, numbered passages, question again, the format in RankGPT's
words); RankGPT's multi-turn form ("Received passage [i]") gave the embedded 0.5B model no better order
for more prompt tokens (docs/eval/README.md, "Generative rerankers").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ...errors import ConfigError
from ...settings import Settings
from .generative import CallLog, GenerativeReranker

TOKENS_PER_ID = 7  # "[12] > " is about 6 tokens with digit-wise vocabularies; one spare
ANSWER_SLACK = 16


def windows(k: int, window: int, stride: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` position ranges a back-to-front sliding window visits over ``k`` candidates,
    in visiting order: the last window ends at ``k``, each next one ``stride`` positions higher, the final
    one starts at 0. Consecutive windows overlap when ``stride < window``, so every position is covered."""
    if window < 2 or not 1 <= stride <= window:
        raise ConfigError(f"the sliding window needs window >= 2 and 1 <= stride <= window, got {window}/{stride}")
    if k <= 0:
        return []
    if k <= window:
        return [(0, k)]
    out, end = [], k
    while True:
        start = max(0, end - window)
        out.append((start, end))
        if start == 0:
            return out
        end -= stride


@dataclass
class ParsedOrder:
    order: list[int]  # 0-based positions within the window, best first; always a permutation
    failed: bool  # nothing usable: the window's order is kept
    missing: int = 0  # ids never named (appended in their current order)
    duplicates: int = 0
    out_of_range: int = 0

    @property
    def repaired(self) -> bool:
        return not self.failed and bool(self.missing or self.duplicates or self.out_of_range)


def parse_permutation(text: str, n: int) -> ParsedOrder:
    """The order an answer gives to ``n`` passages numbered 1..n (see the module docstring)."""
    tokens = re.findall(r"\[\s*(\d+)\s*\]", text) or re.findall(r"\d+", text)
    order: list[int] = []
    seen: set[int] = set()
    duplicates = out_of_range = 0
    for tok in tokens:
        i = int(tok) - 1
        if not 0 <= i < n:
            out_of_range += 1
        elif i in seen:
            duplicates += 1
        else:
            seen.add(i)
            order.append(i)
    if not order:
        return ParsedOrder(list(range(n)), failed=True, duplicates=duplicates, out_of_range=out_of_range)
    missing = [i for i in range(n) if i not in seen]
    return ParsedOrder(order + missing, failed=False, missing=len(missing), duplicates=duplicates,
                       out_of_range=out_of_range)


class PermutationReranker(GenerativeReranker):
    """RankGPT-style sliding-window permutation generation with the configured generator."""

    name = "rankgpt"

    def __init__(self, generator=None, settings: Optional[Settings] = None, window: Optional[int] = None,
                 stride: Optional[int] = None, passage_tokens: Optional[int] = None, keep_answers: int = 0):
        super().__init__(generator, settings, passage_tokens, keep_answers)
        self.window = int(window or self.options.rankgpt_window)
        self.stride = int(stride or self.options.rankgpt_stride)
        windows(self.window + 1, self.window, self.stride)  # checks window and stride now, not mid-run

    def prompt(self, query: str, passages: Sequence[str]) -> str:
        n = len(passages)
        return (self.numbered_passages(query, passages) +
                f"Rank all {n} passages by how relevant they are to the question, the most relevant first.\n"
                f"Question: {query.strip()}\n"
                f"Answer with the passage numbers only, in the form [] > [], e.g. [1] > [2], and say nothing else.")

    def max_tokens(self, n: int) -> int:
        return TOKENS_PER_ID * n + ANSWER_SLACK

    def order(self, query: str, texts: Sequence[str], log: CallLog) -> tuple[list[float], dict[str, Any]]:
        k = len(texts)
        ranking = list(range(k))  # candidate indices, best first; starts as the first-stage order
        spans = windows(k, self.window, self.stride) if k > 1 else []
        missing = duplicates = out_of_range = 0
        for start, end in spans:
            current = ranking[start:end]
            answer = self.call(query, [texts[i] for i in current], log)
            parsed = parse_permutation(answer, len(current))
            log.parse_failures += parsed.failed
            log.repairs += parsed.repaired
            log.unchanged += not parsed.failed and parsed.order == sorted(parsed.order)
            missing += parsed.missing
            duplicates += parsed.duplicates
            out_of_range += parsed.out_of_range
            ranking[start:end] = [current[j] for j in parsed.order]
        scores = [0.0] * k
        for position, i in enumerate(ranking):
            scores[i] = float(k - position)
        return scores, {"windows": len(spans), "window": self.window, "stride": self.stride,
                        "ids_missing": missing, "ids_duplicated": duplicates, "ids_out_of_range": out_of_range}
