"""The summaries stage: a hierarchical summary tree per book (``summaries.json``), and the summary
prefix the reranker reads before the candidate chunks.

Modes (``settings.summaries``): ``llm`` (the configured generator writes block summaries, or event
summaries per session for transcripts), ``extractive`` (TextRank, seconds per book), ``none``. LLM
answers are memoised in ``summaries-cache.json`` in the book directory, so an interrupted run resumes
and a re-run is free. An extractive run never replaces LLM summaries of the same chunks (an upgrade
with ``bookqa summarize`` sticks when the book is ingested again with the default settings).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Optional, Sequence

from summarizer import Plan, Prefix, Summarizer, Tree, Utterance, select_prefix
from summarizer.prompts import PROMPT_VERSION

from .fileio import fingerprint, read_json, write_json
from .progress import Progress, no_progress
from .settings import Settings
from .store import Book

SUMMARIES_FILE = "summaries.json"
CACHE_FILE = "summaries-cache.json"
STAGE_VERSION = 1
# Answer budgets (tokens) and the room kept for the chat template when fitting prompts to n_ctx.
BLOCK_TOKENS, GROUP_TOKENS, EVENT_TOKENS, TEMPLATE_MARGIN = 200, 280, 400, 96


def _chunks_fingerprint(book: Book) -> Optional[str]:
    return book.stage("chunks").get("fingerprint")


def _is_transcript(book: Book) -> bool:
    return book.kind == "transcript" and (book.dir / "utterances.json").exists()


def book_utterances(book: Book) -> list[Utterance]:
    """The book's utterances with their text and the chunks that hold them (transcripts only)."""
    rows = read_json(book.dir / "utterances.json")
    where: dict[str, list[int]] = {}
    for chunk in book.chunks:
        for uid in chunk.meta.get("utterances") or []:
            where.setdefault(uid, []).append(chunk.id)
    text = book.text
    return [Utterance(id=r["id"], text=text[r["start"]:r["end"]].strip(), session=r.get("session"),
                      session_time=r.get("session_time"), chunk_ids=where.get(r["id"], []))
            for r in rows if r["id"] in where]


def make_summarizer(book: Book, settings: Settings, progress: Progress = no_progress,
                    mode: Optional[str] = None, generator=None) -> Summarizer:
    """A Summarizer for ``book`` in ``mode`` (default ``settings.summaries``); ``generator`` defaults to
    ``get_generator(settings)`` in llm mode."""
    mode = mode or settings.summaries
    common = dict(block=settings.summary_block, fanin=settings.summary_fanin, progress=progress,
                  stage="summaries" if mode == "llm" else "summaries (extractive)")
    if mode != "llm":
        return Summarizer(mode="extractive", **common)
    if generator is None:
        from .generate import get_generator

        generator = get_generator(settings, progress)
    from .generate import text_completer

    max_input = settings.generator_n_ctx - max(BLOCK_TOKENS, GROUP_TOKENS, EVENT_TOKENS) - TEMPLATE_MARGIN
    return Summarizer(text_completer(generator), generator.count_tokens, mode="llm",
                      model_id=_model_key(generator, settings), cache=book.dir / CACHE_FILE,
                      workers=settings.summary_workers,
                      max_input_tokens=max_input, block_tokens=BLOCK_TOKENS, group_tokens=GROUP_TOKENS,
                      event_tokens=EVENT_TOKENS, **common)


def _model_key(generator, settings: Settings) -> str:
    """The model and sampling settings that answers depend on (part of every cache key)."""
    key = generator.model_id
    if settings.generator == "local" and key.startswith("llama.cpp:"):
        key += f";repeat_penalty={settings.generator_repeat_penalty:g}"
    return key


def build_summaries(book: Book, summarizer: Summarizer) -> Tree:
    if _is_transcript(book):
        return summarizer.summarize_transcript(book.chunks, book_utterances(book))
    return summarizer.summarize(book.chunks)


def plan_summaries(book: Book, settings: Settings, mode: Optional[str] = None, generator=None) -> Plan:
    """What summarising ``book`` would cost (calls, tokens) without making any call."""
    summarizer = make_summarizer(book, settings, mode=mode, generator=generator)
    utterances = book_utterances(book) if _is_transcript(book) else None
    return summarizer.dry_run(book.chunks, utterances)


class SummaryStage:
    """Writes ``summaries.json``: the summary tree (see ``summarizer.tree``) plus how it was made."""

    name = "summaries"

    def __init__(self, generator=None):
        self.generator = generator  # llm mode: None = get_generator(settings) when the stage runs

    def fingerprint(self, book: Book, settings: Settings) -> str:
        llm = settings.summaries == "llm"
        return fingerprint(_chunks_fingerprint(book), settings.summaries,
                           settings.generator if llm else None, settings.generator_model if llm else None,
                           settings.generator_repeat_penalty if llm and settings.generator == "local" else None,
                           settings.summary_block, settings.summary_fanin, STAGE_VERSION,
                           PROMPT_VERSION if llm else None)

    def run(self, book: Book, settings: Settings, progress: Progress) -> dict[str, Any]:
        mode = settings.summaries
        path = book.dir / SUMMARIES_FILE
        chunks_fp = _chunks_fingerprint(book)
        if mode == "none":
            write_json(path, {"format": 1, "mode": "none", "chunks_fingerprint": chunks_fp, "root": None,
                              "levels": [], "nodes": []})
            return {"mode": "none", "nodes": 0}
        if mode == "extractive":
            kept = _existing_llm(book, settings, chunks_fp)
            if kept is not None:
                return {"mode": "llm (kept)", "nodes": sum(len(lv) for lv in kept.levels)}
        summarizer = make_summarizer(book, settings, progress, generator=self.generator)
        tree = build_summaries(book, summarizer)
        tree.meta["chunks_fingerprint"] = chunks_fp
        write_json(path, tree.to_json())
        _LOADED.pop(str(path), None)
        stats = summarizer.stats
        info: dict[str, Any] = {"mode": mode, "nodes": sum(len(lv) for lv in tree.levels),
                                "seconds": round(stats.seconds, 2)}
        if mode == "llm":
            info.update(model=summarizer.model_id, calls=stats.calls, cached=stats.cached, retried=stats.retried,
                        failed=stats.failed)
        return info

    def outputs(self, book: Book) -> list[str]:
        # the answer cache (summaries-cache.json) is a memo that grows and is re-read leniently, not an output
        return [SUMMARIES_FILE]


def _existing_llm(book: Book, settings: Settings, chunks_fp: Optional[str]) -> Optional[Tree]:
    tree = load_summaries(book)
    if tree is None or tree.meta.get("mode") != "llm" or tree.meta.get("chunks_fingerprint") != chunks_fp:
        return None
    if tree.meta.get("block") != settings.summary_block or tree.meta.get("fanin") != settings.summary_fanin:
        return None
    return tree


_LOADED: dict[str, tuple[int, Optional[Tree]]] = {}
_LOADED_LOCK = threading.Lock()


def load_summaries(book: Book) -> Optional[Tree]:
    """The book's summary tree, or None when it has none (not built, or mode none). Cached per process
    until the file changes."""
    path = book.dir / SUMMARIES_FILE
    try:
        mtime = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None
    key = str(path)
    with _LOADED_LOCK:
        hit = _LOADED.get(key)
        if hit is not None and hit[0] == mtime:
            return hit[1]
    data = read_json(path)
    tree = None if data.get("mode") == "none" or not data.get("levels") else Tree.from_json(data)
    with _LOADED_LOCK:
        _LOADED[key] = (mtime, tree)
    return tree


def token_counter(settings: Settings):
    """Counts tokens with the reranker's tokenizer: the prefix is read by the reranker."""
    from .weights import fast_tokenizer

    tokenizer = fast_tokenizer(settings.reranker_model, settings)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def summary_prefix(book: Book, chunk_ids: Sequence[int], settings: Settings, count=None) -> Prefix:
    """Summaries covering most of ``chunk_ids`` (the first-stage candidates), in narrative order, within
    ``settings.prefix_tokens`` reranker tokens. Empty when the book has no summaries."""
    tree = load_summaries(book)
    if tree is None:
        return Prefix()
    return select_prefix(tree, chunk_ids, count or token_counter(settings), budget=settings.prefix_tokens)


__all__ = ["SummaryStage", "build_summaries", "load_summaries", "make_summarizer", "plan_summaries",
           "summary_prefix", "token_counter"]
