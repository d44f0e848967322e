"""Building the summary tree of a text, with a language model or extractively.

The model is any text-completion callable ``complete(prompt, max_tokens) -> str`` plus a token counter
``count(text) -> int``; this package imports nothing from bookqa. Every call goes through a
content-addressed cache (``cache.py``), so re-runs are free and interrupted runs resume. Levels are
built bottom-up; nodes of one level may run concurrently (``workers``) for remote servers.

Unusable output (empty, symbols, repetition, wrong script; invalid event JSON) is retried once with a
note appended to the prompt; a second failure marks the node ``failed`` with the reason in ``error``
and gives it an extractive summary instead, so every node always has text.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import prompts
from .cache import CallCache, call_key
from .events import EventError, Utterance, attach_sources, parse_events, session_windows, window_utterances
from .extractive import extractive_summary
from .language import detect_language
from .quality import clean_summary, problem, trim_to
from .tree import Node, Tree, build_shape, level0_ranges

Complete = Callable[[str, int], str]
Count = Callable[[str], int]
ProgressFn = Callable[[str, int, Optional[int]], None]

MODES = ("llm", "extractive")
# Typical answer lengths in tokens, for dry-run estimates only.
_EXPECTED_OUTPUT = {"block": 130, "group": 190, "events": 150}
# Longer answers are cut at a sentence end (words; Chinese: characters): small models overshoot the
# asked-for 50–100 (80–150) words, and long summaries crowd each other out of the 512-token prefix.
_MAX_UNITS = {("block", "en"): 120, ("group", "en"): 180, ("block", "zh"): 240, ("group", "zh"): 360}


@dataclass
class Plan:
    """What a run would cost, computed before any call is made."""

    mode: str
    nodes: int
    calls: int  # calls still to make (cached answers excluded; retries of bad output not included)
    cached: int  # nodes whose answer is already cached
    input_tokens: int  # prompt tokens of those calls (exact for known prompts, estimated for the rest)
    output_tokens: int  # estimated answer tokens
    estimated: bool  # True when some higher-level prompts depend on answers not yet made

    def describe(self) -> str:
        if self.mode == "extractive":
            return f"{self.nodes} summaries, extractive: no model calls"
        approx = "about " if self.estimated else ""
        return (f"{self.nodes} summaries: {self.calls} model calls to make ({self.cached} cached), "
                f"{approx}{self.input_tokens:,} input tokens and about {self.output_tokens:,} output tokens "
                "(plus one retry per unusable answer)")


@dataclass
class RunStats:
    calls: int = 0  # completion calls made in this run
    cached: int = 0  # answers read from the cache
    retried: int = 0
    failed: int = 0
    call_seconds: float = 0.0  # wall time spent inside completion calls
    input_tokens: int = 0  # prompt tokens of the calls made (counted with ``count``)
    output_tokens: int = 0
    seconds: float = 0.0  # wall time of the whole run


@dataclass
class _Piece:
    text: str
    start: int
    end: int


class _Missing(Exception):
    """Dry run: this answer is not cached (carries what the call would have been)."""

    def __init__(self, prompt: str, max_tokens: int, kind: str):
        super().__init__(kind)
        self.prompt, self.max_tokens, self.kind = prompt, max_tokens, kind


def _pieces(items: Sequence[Any]) -> list[_Piece]:
    out = []
    for it in items:
        if isinstance(it, (tuple, list)):
            out.append(_Piece(str(it[0]), int(it[1]), int(it[2])))
        else:  # any object with .text, .start, .end (bookqa's Chunk is one)
            out.append(_Piece(it.text, int(it.start), int(it.end)))
    return out


@dataclass
class Summarizer:
    """Builds a :class:`Tree` for a narrative (``summarize``) or a transcript (``summarize_transcript``).

    ``mode`` "llm" needs ``complete`` and ``count``; "extractive" needs neither. ``model_id`` names the
    model in cache keys. ``cache`` is a path (JSON file) or a :class:`CallCache`; None keeps answers in
    memory for this object only.
    """

    complete: Optional[Complete] = None
    count: Optional[Count] = None
    mode: str = "llm"
    model_id: str = ""
    block: int = 20
    fanin: int = 20
    cache: Any = None
    workers: int = 1
    progress: Optional[ProgressFn] = None
    language: Optional[str] = None  # None = detect from the text ("zh" or "en")
    max_input_tokens: int = 6000  # prompts longer than this are shortened (content trimmed at the end)
    block_tokens: int = 200  # max_tokens of a block summary (50–100 words, with headroom)
    group_tokens: int = 280  # max_tokens of a higher-level summary
    event_tokens: int = 400  # max_tokens of a session's event JSON
    stage: str = "summaries"  # progress stage name
    stats: RunStats = field(default_factory=RunStats, init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "llm" and (self.complete is None or self.count is None):
            raise ValueError("llm mode needs a complete(prompt, max_tokens) callable and a count(text) counter")
        if self.block < 1 or self.fanin < 2 or self.workers < 1:
            raise ValueError("block must be >= 1, fanin >= 2 and workers >= 1")
        if not isinstance(self.cache, CallCache):
            self.cache = CallCache(self.cache if self.cache is None else Path(self.cache))
        self._stats_lock = threading.Lock()

    # ------------------------------------------------------------------ public API
    def summarize(self, chunks: Sequence[Any]) -> Tree:
        """Block summaries of ``chunks`` (objects with text/start/end, or (text, start, end) tuples)
        and the levels above them."""
        pieces = _pieces(chunks)
        tree = build_shape([(p.start, p.end) for p in pieces], level0_ranges(len(pieces), self.block), self.fanin)
        return self._run(tree, pieces, None)

    def summarize_transcript(self, chunks: Sequence[Any], utterances: Sequence[Utterance]) -> Tree:
        """Per-session summaries (events in llm mode) of a transcript, and the levels above them."""
        pieces = _pieces(chunks)
        tree = self._transcript_shape(pieces, utterances)
        return self._run(tree, pieces, list(utterances))

    def dry_run(self, chunks: Sequence[Any], utterances: Optional[Sequence[Utterance]] = None) -> Plan:
        """How many calls and tokens a run would take; makes no calls and writes nothing."""
        pieces = _pieces(chunks)
        if utterances is None:
            tree = build_shape([(p.start, p.end) for p in pieces], level0_ranges(len(pieces), self.block), self.fanin)
        else:
            tree = self._transcript_shape(pieces, utterances)
        nodes = sum(len(lv) for lv in tree.levels)
        if self.mode == "extractive":
            return Plan("extractive", nodes, 0, 0, 0, 0, False)
        ctx = self._context(tree, pieces, list(utterances) if utterances is not None else None)
        calls = cached = in_tok = out_tok = 0
        estimated = False
        for level in tree.levels:
            for node in level:
                if node.level > 0 and any(c.status == "pending" for c in ctx["children"][node.id]):
                    # a child's answer is not known yet: estimate this prompt from typical lengths
                    known = [c.text for c in ctx["children"][node.id] if c.status != "pending"]
                    unknown = len(ctx["children"][node.id]) - len(known)
                    in_tok += self.count(self._group_prompt(node, ctx, known)) + unknown * _EXPECTED_OUTPUT["block"]
                    out_tok += _EXPECTED_OUTPUT["group"]
                    calls += 1
                    estimated = True
                    continue
                try:
                    self._process(node, ctx, lookup_only=True)
                    cached += 1
                except _Missing as miss:
                    node.status = "pending"
                    calls += 1
                    in_tok += self.count(miss.prompt)
                    out_tok += _EXPECTED_OUTPUT[miss.kind]
        return Plan("llm", nodes, calls, cached, in_tok, out_tok, estimated)

    # ------------------------------------------------------------------ shapes
    def _transcript_shape(self, pieces: list[_Piece], utterances: Sequence[Utterance]) -> Tree:
        windows = session_windows(len(pieces), utterances, self.block)
        return build_shape([(p.start, p.end) for p in pieces], [(s, e) for s, e, _ in windows], self.fanin,
                           sessions=[sess for _, _, sess in windows])

    def _context(self, tree: Tree, pieces: list[_Piece], utterances: Optional[list[Utterance]]) -> dict[str, Any]:
        language = self.language or detect_language([p.text for p in pieces])
        by_id = {n.id: n for n in tree.nodes()}
        return {
            "tree": tree, "pieces": pieces, "utterances": utterances, "language": language,
            "children": {n.id: [by_id[c] for c in n.children] for n in tree.nodes()},
            "n_blocks": len(tree.levels[0]) if tree.levels else 0,
        }

    # ------------------------------------------------------------------ running
    def _run(self, tree: Tree, pieces: list[_Piece], utterances: Optional[list[Utterance]]) -> Tree:
        t0 = time.perf_counter()
        self.stats = RunStats()
        ctx = self._context(tree, pieces, utterances)
        total = sum(len(lv) for lv in tree.levels)
        done = 0
        report = self.progress or (lambda *_: None)
        report(self.stage, 0, total)
        for level in tree.levels:
            if self.mode == "llm" and self.workers > 1 and len(level) > 1:
                done = self._run_parallel(level, ctx, done, total, report)
            else:
                for node in level:
                    self._process(node, ctx)
                    done += 1
                    report(self.stage, done, total)
        self.stats.seconds = time.perf_counter() - t0
        tree.meta = {
            "format": 1, "mode": self.mode, "language": ctx["language"],
            "kind": "sessions" if utterances is not None else "blocks",
            "model": self.model_id if self.mode == "llm" else None, "block": self.block, "fanin": self.fanin,
            "chunks": len(pieces), "prompt_version": prompts.PROMPT_VERSION, "stats": asdict(self.stats),
        }
        return tree

    def _run_parallel(self, level: list[Node], ctx: dict[str, Any], done: int, total: int, report) -> int:
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="summarize")
        try:
            futures = [pool.submit(self._process, node, ctx) for node in level]
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in finished:
                    f.result()  # re-raise the first failure (the cache keeps what finished)
                    done += 1
                    report(self.stage, done, total)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return done

    # ------------------------------------------------------------------ one node
    def _process(self, node: Node, ctx: dict[str, Any], lookup_only: bool = False) -> None:
        lang = ctx["language"]
        transcript = ctx["utterances"] is not None
        if node.level == 0 and transcript:
            utts = window_utterances(ctx["utterances"], node.start, node.end)
            lines = [u.text for u in utts] or [p.text for p in ctx["pieces"][node.start:node.end]]
            if self.mode == "extractive":
                node.text, node.status = extractive_summary(lines, lang), "extractive"
            elif not utts:  # nothing to extract events from (should not happen with bookqa's chunks)
                node.text, node.status, node.events = extractive_summary(lines, lang), "failed", []
                node.error = "no utterances in this window"
            else:
                self._events(node, utts, lang, lookup_only)
            return
        if node.level == 0:
            texts = [p.text for p in ctx["pieces"][node.start:node.end]]
            if self.mode == "extractive":
                node.text, node.status = extractive_summary(texts, lang), "extractive"
                return
            k = int(node.id.split("-")[1]) + 1

            def build(fraction: float) -> str:
                return prompts.block_prompt(_shorten("\n\n".join(texts), fraction), k, ctx["n_blocks"],
                                            len(texts), lang)

            prompt, _ = self._fit(build)
            self._summary(node, prompt, self.block_tokens, "block", texts, lang, lookup_only)
            return
        children = ctx["children"][node.id]
        child_texts = [c.text for c in children]
        if self.mode == "extractive":
            node.text, node.status = extractive_summary(child_texts, lang), "extractive"
            return
        prompt, _ = self._fit(
            lambda fraction: self._group_prompt(node, ctx, [_shorten(t, fraction) for t in child_texts]))
        self._summary(node, prompt, self.group_tokens, "group", child_texts, lang, lookup_only)

    def _group_prompt(self, node: Node, ctx: dict[str, Any], texts: list[str]) -> str:
        level0 = ctx["tree"].levels[0]
        first = next(i for i, n in enumerate(level0) if n.start == node.start) + 1
        last = next(i for i, n in enumerate(level0) if n.end == node.end) + 1
        is_root = node is ctx["tree"].root
        return prompts.group_prompt(texts, first, last, len(level0), is_root, ctx["language"],
                                    transcript=ctx["utterances"] is not None)

    def _fit(self, build: Callable[[float], str]) -> tuple[str, float]:
        """The prompt, with its content shortened until it fits ``max_input_tokens``, and the fraction
        of the content it kept."""
        prompt = build(1.0)
        n = self.count(prompt)
        fraction = 1.0
        for _ in range(6):
            if n <= self.max_input_tokens:
                break
            fraction *= max(0.1, (self.max_input_tokens / n) * 0.95)
            prompt = build(fraction)
            n = self.count(prompt)
        return prompt, fraction

    def _summary(self, node: Node, prompt: str, max_tokens: int, kind: str, source: list[str], lang: str,
                 lookup_only: bool) -> None:
        limit = _MAX_UNITS[(kind, "zh" if lang == "zh" else "en")]
        text = trim_to(clean_summary(self._call(prompt, max_tokens, kind, lookup_only)), limit, lang)
        why = problem(text, lang)
        if why is None:
            node.text, node.status, node.error = text, "ok", None
            return
        retry = trim_to(clean_summary(self._call(prompts.summary_retry(prompt, why, lang), max_tokens, kind,
                                                 lookup_only)), limit, lang)
        why2 = problem(retry, lang)
        if why2 is None:
            node.text, node.status, node.error = retry, "retried", why
            self._bump("retried")
            return
        node.text, node.status = extractive_summary(source, lang), "failed"
        node.error = f"{why}; after retry: {why2}"
        self._bump("failed")

    def _events(self, node: Node, utts: list[Utterance], lang: str, lookup_only: bool) -> None:
        def keep(fraction: float) -> int:
            return max(1, int(len(utts) * fraction))

        def build(fraction: float) -> str:
            return prompts.events_prompt([u.text for u in utts[:keep(fraction)]], node.session,
                                         utts[0].session_time, lang)

        prompt, fraction = self._fit(build)
        shown = utts[:keep(fraction)]  # a very long window shows its first lines only
        errors = []
        for attempt, p in enumerate((prompt, None)):
            if p is None:
                p = prompts.events_retry(prompt, errors[-1], lang)
            raw = self._call(p, self.event_tokens, "events", lookup_only)
            try:
                events = parse_events(raw, len(shown))
                bad = [problem(ev["summary"], lang, min_units=3 if lang != "zh" else 6) for ev in events]
                bad = [b for b in bad if b]
                if bad:
                    raise EventError(f"an event summary is unusable: {bad[0]}")
            except EventError as exc:
                errors.append(str(exc))
                continue
            node.events = attach_sources(events, shown)
            node.text = " ".join(ev["summary"] for ev in events)
            node.status, node.error = ("retried", errors[0]) if attempt else ("ok", None)
            if attempt:
                self._bump("retried")
            return
        node.events = []
        node.text = extractive_summary([u.text for u in utts], lang)
        node.status, node.error = "failed", "; after retry: ".join(errors)
        self._bump("failed")

    # ------------------------------------------------------------------ calls
    def _call(self, prompt: str, max_tokens: int, kind: str, lookup_only: bool) -> str:
        key = call_key(prompt, self.model_id, {"max_tokens": max_tokens, "temperature": 0.0,
                                               "prompt_version": prompts.PROMPT_VERSION})
        hit = self.cache.get(key)
        if hit is not None:
            if not lookup_only:
                self._bump("cached")
            return hit
        if lookup_only:
            raise _Missing(prompt, max_tokens, kind)
        t0 = time.perf_counter()
        raw = self.complete(prompt, max_tokens)
        seconds = time.perf_counter() - t0
        if not isinstance(raw, str):
            raise TypeError(f"complete() must return a str, got {type(raw).__name__}")
        self.cache.put(key, raw)
        in_tok, out_tok = self.count(prompt), self.count(raw)
        with self._stats_lock:
            self.stats.calls += 1
            self.stats.call_seconds += seconds
            self.stats.input_tokens += in_tok
            self.stats.output_tokens += out_tok
        return raw

    def _bump(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)


def _shorten(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``, cut at whitespace."""
    if fraction >= 1.0:
        return text
    cut = int(len(text) * fraction)
    space = text.rfind(" ", 0, cut)
    return text[:space if space > cut // 2 else cut].rstrip() + " …"
