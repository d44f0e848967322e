"""Retrieval and answer metrics, and bootstrap confidence intervals.

- Recall@k = |top-k ∩ gold| / |gold| per question (HippoRAG-style passage recall), averaged
  over the questions that have gold; recall-any@k = 1 when at least one gold chunk is in the top k.
- Answer token F1 and EM with SQuAD normalisation (lowercase, punctuation and a/an/the removed,
  whitespace collapsed), the maximum over the reference answers; ROUGE-L F-measure (``rouge-score``).
- Multiple-choice accuracy from a letter parsed out of the generator's reply.
- LoCoMo's official per-category scoring (see :func:`locomo_score`).
"""
from __future__ import annotations

import json
import re
import string
from collections import Counter
from functools import lru_cache
from typing import Any, Iterable, Optional, Sequence

import numpy as np

RECALL_KS = (1, 3, 5, 10, 50)
_CITATION = re.compile(r"\s*[\[【［]\s*\d+(?:\s*[,，、;；\-–~～]\s*\d+)*\s*[\]】］]")


# --- retrieval ------------------------------------------------------------------------------------

def recall_at_k(ranked: Sequence[int], gold: Iterable[int], k: int) -> float:
    """|top-k ∩ gold| / |gold|. A ranking shorter than k counts what it has."""
    gold = set(gold)
    if not gold:
        raise ValueError("recall needs at least one gold item")
    return len(set(ranked[:k]) & gold) / len(gold)


def recall_any_at_k(ranked: Sequence[int], gold: Iterable[int], k: int) -> float:
    gold = set(gold)
    if not gold:
        raise ValueError("recall needs at least one gold item")
    return 1.0 if set(ranked[:k]) & gold else 0.0


def recalls(ranked: Sequence[int], gold: Iterable[int], ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """{"R@1": ..., "any@1": ..., ...} for one question."""
    gold = set(gold)
    out: dict[str, float] = {}
    for k in ks:
        out[f"R@{k}"] = recall_at_k(ranked, gold, k)
    for k in ks:
        out[f"any@{k}"] = recall_any_at_k(ranked, gold, k)
    return out


# --- free-form answers ----------------------------------------------------------------------------

def strip_citations(text: str) -> str:
    """The answer without ``[n]`` citation marks (they are not part of the answer's words)."""
    return _CITATION.sub("", text or "").strip()


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation, drop a/an/the, collapse whitespace."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1_tokens(pred: list[str], ref: list[str]) -> float:
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)  # both empty: a match; one empty: none
    return _f1_tokens(pred, ref)


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score's own tokenisation: lowercase alphanumeric tokens)."""
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def best_over(metric, prediction: str, references: Sequence[str]) -> float:
    return max((metric(prediction, r) for r in references), default=0.0)


def answer_scores(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """F1, EM and ROUGE-L of one answer, each the maximum over the references (citations removed)."""
    pred = strip_citations(prediction)
    return {"f1": best_over(token_f1, pred, references), "em": best_over(exact_match, pred, references),
            "rougeL": best_over(rouge_l, pred, references)}


# --- multiple choice ------------------------------------------------------------------------------

_JSON_ANSWER = re.compile(r"\{[^{}]*\"answer\"\s*:\s*\"\s*\(?([A-Za-z])\)?[^\"]*\"[^{}]*\}", re.S)
# the label is case-insensitive, the letter is not ("the answer is a dog" names no option)
_LABELLED = re.compile(r"(?i:answer|option|choice)(?:\s+is)?\s*[:：]?\s*\(?\*{0,2}([A-Z])\b(?!['’])")
_LABELLED_ZH = re.compile(r"(?:答案|选项|选择)\s*(?:是|为)?\s*[:：]?\s*[（(]?([A-D])")
_BRACKETED = re.compile(r"[(（]([A-Z])[)）]")
_LEADING = re.compile(r"^\s*\**\s*([A-Z])(?:\s*$|[\s.:)\]）、,，*])")


def parse_choice(text: str, letters: Sequence[str] = ("A", "B", "C", "D")) -> Optional[str]:
    """The option letter a reply chooses, or None. Tried in order: a JSON ``{"answer": "C"}``; a labelled
    "Answer: (B)" / "The answer is B" / "答案是B"; a reply that starts with the letter ("B.", "B)",
    "B"); a single bracketed "(C)" anywhere. A letter outside ``letters`` does not count."""
    if not text:
        return None
    allowed = {x.upper() for x in letters}
    m = _JSON_ANSWER.search(text)
    if m is not None:
        try:
            value = json.loads(m.group(0)).get("answer", "")
        except (json.JSONDecodeError, AttributeError):
            value = m.group(1)
        letter = str(value).strip().strip("()").upper()[:1]
        if letter in allowed:
            return letter
    for pattern in (_LABELLED, _LABELLED_ZH):
        for m in pattern.finditer(text):
            letter = m.group(1)
            if letter in allowed:
                return letter
    m = _LEADING.match(text)
    if m is not None and m.group(1) in allowed:
        return m.group(1)
    found = {m.group(1) for m in _BRACKETED.finditer(text) if m.group(1) in allowed}
    if len(found) == 1:
        return found.pop()
    return None


# --- LoCoMo ---------------------------------------------------------------------------------------
# The official rules (snap-research/locomo, task_eval/evaluation.py, ``eval_question_answering``,
# ``f1_score``, ``f1`` and ``normalize_answer`` at commit 92286325a40764bee61f77824ddb95233b11c4d6):
#   - normalisation: commas removed, lowercase, punctuation removed, the articles a/an/the *and the word
#     "and* removed, whitespace collapsed; every token Porter-stemmed;
#   - category 1 (multi-hop): prediction and answer split on commas; for each answer part the best F1
#     over the prediction parts; the mean over answer parts;
#   - categories 2, 3, 4: token F1 (category 3's answer is cut at the first ';');
#   - category 5 (adversarial): 1 when the reply says "no information available" or "not mentioned"
#     (case-insensitive), else 0.

def _locomo_normalize(text: str) -> str:
    text = (text or "").replace(",", "").lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the|and)\b", " ", text)
    return " ".join(text.split())


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem import PorterStemmer

    return PorterStemmer()


def locomo_f1(prediction: str, answer: str) -> float:
    stem = _stemmer().stem
    pred = [stem(w) for w in _locomo_normalize(prediction).split()]
    ref = [stem(w) for w in _locomo_normalize(answer).split()]
    if not pred or not ref:
        return 0.0
    return _f1_tokens(pred, ref)


def locomo_multihop_f1(prediction: str, answer: str) -> float:
    preds = [p.strip() for p in str(prediction).split(",")]
    refs = [g.strip() for g in str(answer).split(",")]
    return float(np.mean([max(locomo_f1(p, g) for p in preds) for g in refs]))


def locomo_score(category: int, prediction: str, answer: str) -> float:
    prediction = strip_citations(prediction)
    if category == 1:
        return locomo_multihop_f1(prediction, answer)
    if category in (2, 3, 4):
        if category == 3:
            answer = str(answer).split(";")[0].strip()
        return locomo_f1(prediction, str(answer))
    if category == 5:
        low = prediction.lower()
        return 1.0 if ("no information available" in low or "not mentioned" in low) else 0.0
    raise ValueError(f"unknown LoCoMo category {category!r}")


# --- summaries ------------------------------------------------------------------------------------

def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, Any]:
    """Mean and a percentile bootstrap interval over questions (resampled with replacement, seeded so
    a report is reproducible). Empty input gives ``{"n": 0, "mean": None, ...}``."""
    arr = np.asarray(list(values), dtype=np.float64)
    n = int(arr.size)
    if n == 0:
        return {"n": 0, "mean": None, "lo": None, "hi": None}
    mean = float(arr.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "lo": mean, "hi": mean}
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // n)  # bound memory: resample in blocks of rows
    for a in range(0, n_boot, step):
        b = min(n_boot, a + step)
        means[a:b] = arr[rng.integers(0, n, size=(b - a, n))].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    # The interval must contain the sample mean (it can miss it by rounding on tiny samples).
    return {"n": n, "mean": mean, "lo": float(min(lo, mean)), "hi": float(max(hi, mean))}


def percentiles(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p95": None}
    return {"n": int(arr.size), "mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
            "p95": float(np.percentile(arr, 95))}
