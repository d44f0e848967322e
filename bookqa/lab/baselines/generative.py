"""What the generative baselines share: rerankers that *write* their judgement with a text generator
(bookqa/generate), one call per window or group of candidates, instead of reading scores off a forward.

They exist to be compared with QRRanker (no generation, continuous scores), so every call is counted:
the results' ``info`` carries ``tokens_generated`` (output tokens, summed over calls), ``generator_calls``,
``prompt_tokens``, ``parse_failures`` (answers nothing could be read from: that call's candidates keep
their order), ``repairs`` (answers that were usable only after fixing: ids missing, repeated or out of
range, scores missing or off the scale) and ``calls_unchanged`` (readable answers that rank nothing);
``timings["generate"]`` is the seconds spent in the generator.

Passages are shown with their whitespace collapsed (one line each) and cut to a token budget
(``genrank_passage_tokens``), lowered further when the generator's context is known and a full window
would not fit it with the answer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ...errors import ConfigError, GeneratorError
from ...rerank.base import Passage, RankedResults, Reranker, make_results, rank_inputs
from ...settings import Settings
from ..settings import EvalSettings

CONTEXT_MARGIN = 64  # tokens left free for the chat template's own wrapping (system prompt, role markers)
MIN_PASSAGE_TOKENS = 16  # below this a window is pointless: the caller must shrink the window instead


def one_line(text: str) -> str:
    """Whitespace collapsed to single spaces, so a passage is one line of the prompt."""
    return " ".join(text.split())


def truncate_tokens(text: str, budget: int, count_tokens) -> tuple[str, bool]:
    """``text`` cut at a word boundary to at most ``budget`` tokens (by ``count_tokens``), and whether it
    was cut. The cut is estimated from the characters-per-token ratio, then shrunk until it fits, so it
    costs a few tokenizations, not one per word."""
    n = count_tokens(text)
    if n <= budget:
        return text, False
    chars = int(len(text) * budget / n)
    while chars > 0:
        cut = text[:chars]
        space = cut.rfind(" ")
        if space > chars // 2:  # end on a whole word unless that loses half the cut
            cut = cut[:space]
        cut = cut.rstrip()
        if count_tokens(cut) <= budget:
            return cut, True
        chars = int(chars * 0.9)
    return "", True


@dataclass
class CallLog:
    """Accounting over one ``rank`` call's generator calls."""

    calls: int = 0
    tokens_generated: int = 0
    prompt_tokens: int = 0
    seconds: float = 0.0
    parse_failures: int = 0
    repairs: int = 0
    truncated_passages: int = 0
    finish_length: int = 0  # answers cut by max_tokens
    unchanged: int = 0  # readable answers that leave their candidates in the order shown (rank nothing)
    answers: list[str] = field(default_factory=list)  # raw answers, kept short for inspection

    def info(self) -> dict[str, Any]:
        return {"tokens_generated": self.tokens_generated, "generator_calls": self.calls,
                "prompt_tokens": self.prompt_tokens, "parse_failures": self.parse_failures,
                "repairs": self.repairs, "truncated_passages": self.truncated_passages,
                "finish_length": self.finish_length, "calls_unchanged": self.unchanged}


class GenerativeReranker(Reranker):
    """Common machinery: the generator, passage preparation, one counted call, the result."""

    name = "generative"

    def __init__(self, generator=None, settings: Optional[Settings] = None,
                 passage_tokens: Optional[int] = None, keep_answers: int = 0):
        self.settings = settings or Settings.from_env()
        if generator is None:
            from ...generate import get_generator

            generator = get_generator(self.settings)
            generator.count_tokens("warm up")  # a local model loads now, not inside the first timed query
        self.generator = generator
        self.options = EvalSettings.from_env()
        self.passage_tokens = int(passage_tokens or self.options.genrank_passage_tokens)
        if self.passage_tokens < MIN_PASSAGE_TOKENS:
            raise ConfigError(f"genrank_passage_tokens must be at least {MIN_PASSAGE_TOKENS}, got {self.passage_tokens}")
        self.keep_answers = keep_answers  # raw answers copied into info (debugging; 0 in evaluation runs)

    # --- prompts ---------------------------------------------------------------------------------
    @staticmethod
    def numbered_passages(query: str, passages: Sequence[str]) -> str:
        """The part every generative prompt shares: the question, then the passages numbered from 1."""
        listed = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1))
        return (f"Question: {query.strip()}\n\n"
                f"Here are {len(passages)} passages, each numbered in brackets:\n\n{listed}\n\n")

    def prompt(self, query: str, passages: Sequence[str]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def max_tokens(self, n: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def passage_budget(self, query: str, n: int) -> int:
        """Tokens per passage for a call on ``n`` passages: the setting, lowered so that the prompt and
        the longest answer fit the generator's context when the generator says what its context is."""
        n_ctx = getattr(self.generator, "n_ctx", None)
        if not n_ctx:
            return self.passage_tokens
        fixed = self.generator.count_tokens(self.prompt(query, [""] * n))
        room = (int(n_ctx) - self.max_tokens(n) - fixed - CONTEXT_MARGIN) // max(1, n)
        if room < MIN_PASSAGE_TOKENS:
            raise GeneratorError(f"{n} passages per call do not fit the generator's context of {n_ctx} tokens; "
                                 "lower the window / group size or raise BOOKQA_GENERATOR_N_CTX")
        return min(self.passage_tokens, room)

    def prepare(self, texts: Sequence[str], budget: int, log: CallLog) -> list[str]:
        out = []
        for t in texts:
            cut, truncated = truncate_tokens(one_line(t), budget, self.generator.count_tokens)
            log.truncated_passages += truncated
            out.append(cut)
        return out

    def call(self, query: str, texts: Sequence[str], log: CallLog, stop: Optional[Sequence[str]] = None) -> str:
        """One generator call on these candidates (greedy); the answer's text, counted in ``log``."""
        passages = self.prepare(texts, self.passage_budget(query, len(texts)), log)
        completion = self.generator.complete(self.prompt(query, passages), max_tokens=self.max_tokens(len(texts)),
                                             temperature=0.0, stop=stop)
        tokens = int(completion.completion_tokens or 0)
        if tokens == 0 and completion.text:  # a server that reports no usage: count the text instead
            tokens = int(self.generator.count_tokens(completion.text))
        log.calls += 1
        log.tokens_generated += tokens
        log.prompt_tokens += int(completion.prompt_tokens or 0)
        log.seconds += float(completion.seconds)
        log.finish_length += completion.finish_reason == "length"
        if len(log.answers) < self.keep_answers:
            log.answers.append(completion.text[:500])
        return completion.text

    # --- the contract ----------------------------------------------------------------------------
    def order(self, query: str, texts: Sequence[str], log: CallLog) -> tuple[list[float], dict[str, Any]]:
        """Scores (higher = better) in input order, and extra info."""
        raise NotImplementedError  # pragma: no cover - abstract

    def rank(self, query: str, chunks: Sequence[Passage], prefix: Optional[str] = None) -> RankedResults:
        """Rerank ``chunks`` (in first-stage order: ties and unreadable answers fall back to it).
        ``prefix`` is not shown to the generator; it is accepted to keep the Reranker contract."""
        texts, ids = rank_inputs(query, chunks)
        if not texts:
            return make_results(query, [], [], info={"reranker": self.name})
        t0 = time.perf_counter()
        log = CallLog()
        scores, extra = self.order(query, texts, log)
        total = time.perf_counter() - t0
        info = {"reranker": self.name, "generator": getattr(self.generator, "model_id", type(self.generator).__name__),
                "prefix_used": False, **log.info(), **extra}
        if self.keep_answers:
            info["answers"] = log.answers
        timings = {"generate": log.seconds, "total": total}
        return make_results(query, scores, ids, timings=timings, info=info)
