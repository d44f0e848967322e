"""``ask(book, question)``: first-stage search → summary prefix → QR rerank → generate → cite.

Each stage is timed. The reranker and generator are loaded once per process and reused (loading the
reranker takes seconds, the GGUF generator about one), so a UI or an evaluation loop pays that once.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

from .answer import (Citation, Evidence, ParsedAnswer, annotate, answer_tokens, attribute_uncited, backed_by,
                     build_messages, evidence_order_for, is_chinese, order_evidence, is_refusal, parse_citations)
from .chunk import Chunk
from .errors import InputError
from .progress import Progress, no_progress
from .rerank.shared import get_cached_reranker, get_reranker  # noqa: F401  (get_reranker: public here)
from .retrieve import search
from .settings import Settings
from .store import Book


@dataclass
class RankedChunk:
    """One candidate after reranking, for display and evaluation."""

    chunk_id: int
    rank: int  # after reranking (or first-stage rank when reranking is off)
    score: float
    first_stage_rank: int
    location: str
    snippet: str


@dataclass
class AskResult:
    book_id: str
    question: str
    answer: str  # as the generator wrote it
    cited_answer: str  # the answer with inferred citations written in as [n]
    citations: list[Citation]
    invalid_citations: list[int]  # numbers the generator cited that were never provided
    uncited_sentences: list[str]
    evidence: list[Evidence]  # passages given to the generator, numbered in document order
    ranked: list[RankedChunk]  # every candidate, best first
    prefix: str
    prefix_summaries: list[str]
    timings: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "book_id": self.book_id, "question": self.question, "answer": self.answer,
            "cited_answer": self.cited_answer,
            "citations": [asdict(c) for c in self.citations],
            "invalid_citations": self.invalid_citations, "uncited_sentences": self.uncited_sentences,
            "evidence": [{"number": e.number, "chunk_id": e.chunk.id, "start": e.chunk.start, "end": e.chunk.end,
                          "location": e.chunk.location, "score": e.score, "rank": e.rank,
                          **({"shown": e.shown} if e.shown is not None else {})} for e in self.evidence],
            "ranked": [asdict(r) for r in self.ranked],
            "prefix": self.prefix, "prefix_summaries": self.prefix_summaries,
            "timings": self.timings, "warnings": self.warnings, "info": self.info,
        }


@dataclass
class DraftedAnswer:
    """What answer_from produced: the answer, the passages it was given (numbered in document order) and
    its citations resolved against them (None when not parsed)."""

    text: str
    evidence: list[Evidence]
    parsed: Optional[ParsedAnswer]
    seconds: float  # generation
    cite_seconds: float = 0.0
    prompt_tokens: Optional[int] = None  # known when not streamed
    completion_tokens: Optional[int] = None
    focus_seconds: Optional[float] = None  # trimming the passages (None: not trimmed)


def answer_from(generator, question: str, chunks: Sequence[Chunk], ranked: Sequence[tuple[int, float]], *,
                title: str, top_n: int, max_tokens: int, stream: bool = False,
                on_token: Optional[Callable[[str], None]] = None,
                messages: Optional[Callable[[list[Evidence]], list]] = None, parse: bool = True,
                style: str = "prose", refusal_example: bool = False, checker=None,
                order: str = "document", trim: Optional[Callable[[list[Evidence]], list[Evidence]]] = None
                ) -> DraftedAnswer:
    """The tail of answering: the top ``top_n`` of ``ranked`` ((chunk id, score), best first) in ``order``
    (document or rank: answer.order_evidence) → the prompt (``messages(evidence)``, default the cited-answer
    prompt) → the generator (streamed to ``on_token`` with ``stream``) → ``[n]`` citations resolved, uncited sentences attributed. ``style``
    is the answer style (answer.ANSWER_STYLES); it sets the prompt and the token budget;
    ``refusal_example`` adds the prompt's worked refusal. ``checker``
    (citecheck.py) marks each citation supported or not, and drops attributions it cannot back. ``trim``
    (focus.attention_trimmer) cuts the passages to what the generator reads. ``ask`` and the evaluation's
    answers both run it."""
    evidence = choose_evidence(chunks, ranked, top_n, order)
    t = time.perf_counter()
    if trim is not None:
        evidence = trim(evidence)
    focus_seconds = time.perf_counter() - t
    prompt = messages(evidence) if messages is not None else build_messages(question, evidence, title=title, prefix="",
                                                                            style=style, refusal_example=refusal_example)
    max_tokens = answer_tokens(style, max_tokens) if messages is None else max_tokens
    t = time.perf_counter()
    prompt_tokens = completion_tokens = None
    if stream:
        pieces: list[str] = []
        for piece in generator.stream(prompt, max_tokens=max_tokens, temperature=0.0):
            pieces.append(piece)
            if on_token is not None:
                on_token(piece)
        text = "".join(pieces).strip()
    else:
        completion = generator.complete(prompt, max_tokens=max_tokens, temperature=0.0)
        text = completion.text.strip()
        prompt_tokens, completion_tokens = completion.prompt_tokens, completion.completion_tokens
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    parsed = cite_answer(text, evidence, question, style=style, checker=checker) if parse else None
    return DraftedAnswer(text, evidence, parsed, seconds, time.perf_counter() - t, prompt_tokens, completion_tokens,
                         focus_seconds if trim is not None else None)


def choose_evidence(chunks: Sequence[Chunk], ranked: Sequence[tuple[int, float]], top_n: int,
                    order: str = "document") -> list[Evidence]:
    """The top ``top_n`` of ``ranked`` as the generator's passages, numbered in ``order`` (document or rank)."""
    chosen = [Evidence(number=0, chunk=chunks[cid], score=float(score), rank=r)
              for r, (cid, score) in enumerate(ranked[:top_n], 1)]
    return order_evidence(chosen, order)


def cite_answer(text: str, evidence: Sequence[Evidence], question: str, *, style: str = "prose",
                checker=None) -> ParsedAnswer:
    """An answer's citations: ``[n]`` resolved, uncited sentences attributed, then (with ``checker``) each
    one checked against its passage. A refusal claims nothing, so nothing in it is checked."""
    parsed = attribute_uncited(parse_citations(text, evidence, min_words=1 if style == "short" else 3), evidence)
    if checker is not None and text and not is_refusal(text):
        from .citecheck import check_citations

        parsed = check_citations(parsed, evidence, question, checker)
    return parsed


def answer_backed(parsed: ParsedAnswer, text: str) -> Optional[bool]:
    """``answer.backed_by`` of a parsed answer: True when a citation passed the check, None unchecked."""
    return backed_by(text, bool(parsed.checked_by), (c.supported for c in parsed.citations))


def citation_checker(settings: Settings, generator):
    """The citation checker ``settings.citation_check`` names (None when off); the judge is the answer's
    own generator, the embedder the book's dense embedder."""
    from .citecheck import get_checker

    def embedder():
        from .retrieve.dense import load_embedder
        from .weights import resolve_device

        return load_embedder(settings.embed_model, resolve_device(settings.device), settings.threads,
                             settings.embed_window_overlap)

    return get_checker(resolved_citation_check(settings), generator=generator, embedder_factory=embedder)


def resolved_citation_check(settings: Settings) -> str:
    """``auto`` is both checks, or the embedder alone when the generator is an embedded model too small
    to judge (it answers the same whatever the passage)."""
    if settings.citation_check != "auto":
        return settings.citation_check
    from .weights import lookup

    model = lookup(settings.generator_model)
    return "embedder" if model is not None and not model.judges else "both"


def _snippet(text: str, n: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[:n - 1] + "…"


def _rerank(book: Book, question: str, cand_chunks: Sequence[Chunk], prefix_text: str, settings: Settings,
            reranker, warnings: list[str], progress: Progress):
    """Rerank in the configured QR mode: the full prompt, or the cached-chunk pass (alone, or as a cascade
    whose top the full prompt re-ranks) over the book's chunk cache. A book without a usable cache is
    ranked with the full prompt, and a warning says so. An explicitly passed ``reranker`` is used as it is
    (a CachedQRRanker in the configured mode, any other in its own)."""
    from .rerank.cached import CachedQRRanker

    given_cached = isinstance(reranker, CachedQRRanker)
    mode = settings.qr_mode if reranker is None or given_cached else "full"
    if mode != "full":
        from .rerank.stage import open_book_cache

        cached = reranker if given_cached else get_cached_reranker(settings, progress)
        store = open_book_cache(book, cached, settings)
        if store is None or (settings.qr_cache == "off" and store.missing([c.id for c in cand_chunks])):
            warnings.append("this book has no complete QR cache (build it with: bookqa ingest BOOK --qr-cache, or "
                            "set BOOKQA_QR_CACHE=lazy); ranked with the full prompt")
            mode = "full"
        else:
            cascade = settings.qr_cascade_top if mode == "cascade" else 0
            return cached.rank(question, cand_chunks, prefix=prefix_text or None, store=store,
                               book_chunks=book.chunks, cascade_top=cascade, progress=progress), mode
    ranker = reranker.ranker if given_cached else reranker or get_reranker(settings, progress)
    return ranker.rank(question, cand_chunks, prefix=prefix_text or None), mode


def _focus_ranker(reranker, settings: Settings, progress: Progress):
    """The full-prompt QRRanker whose heads pick the sentences the generator reads: the one ranking (or
    inside the cached ranker), else the configured one."""
    from .rerank.cached import CachedQRRanker

    if isinstance(reranker, CachedQRRanker):
        return reranker.ranker
    if reranker is not None and hasattr(reranker, "token_attention"):
        return reranker
    return get_reranker(settings, progress)  # also the model inside the cached ranker (rerank/shared.py)


MAX_QUESTION_CHARS = 2000


def check_question(question: Optional[str]) -> str:
    """The question stripped, or ``InputError`` when it is empty or too long (checked before any work)."""
    question = (question or "").strip()
    if not question:
        raise InputError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the question is {len(question):,} characters long; keep it under {MAX_QUESTION_CHARS:,}")
    return question


def ask(book: Book, question: str, settings: Optional[Settings] = None, *, k: Optional[int] = None,
        top_n: Optional[int] = None, use_prefix: bool = True, rerank: bool = True, method: str = "hybrid",
        reranker=None, generator=None, on_token: Optional[Callable[[str], None]] = None,
        progress: Progress = no_progress) -> AskResult:
    """Answer ``question`` about ``book`` with citations. ``on_token`` receives the answer as it streams."""
    settings = settings or Settings.from_env()
    question = check_question(question)
    book.require_intact()  # a damaged book is named with its repair, not met as a crash mid-answer
    k = k or settings.top_k
    top_n = top_n or settings.top_n
    timings: dict[str, float] = {}
    warnings: list[str] = []
    t_all = time.perf_counter()
    chunks = book.chunks
    if is_chinese(question) != is_chinese(book.text[:20000]):
        warnings.append("the question and the book are in different languages; retrieval may miss passages "
                        "(the answer follows the question's language)")

    if generator is None:
        from .generate import get_generator

        generator = get_generator(settings, progress)
    if hasattr(generator, "probe"):  # a remote server that is down is reported now, not after the rerank
        generator.probe()

    t = time.perf_counter()
    candidates = search(book, question, k=k, method=method, settings=settings)
    timings["search"] = time.perf_counter() - t
    if not candidates:
        raise InputError(f"book {book.id} has no indexed chunks to search")
    cand_chunks = [chunks[c.chunk_id] for c in candidates]

    prefix_text, prefix_used = "", []
    if use_prefix:
        t = time.perf_counter()
        from .summaries import summary_prefix

        prefix = summary_prefix(book, [c.chunk_id for c in candidates], settings)
        prefix_text, prefix_used = prefix.text, list(prefix.used)
        timings["prefix"] = time.perf_counter() - t

    first_rank = {c.chunk_id: c.rank for c in candidates}
    qr_mode = None
    if rerank:
        t = time.perf_counter()
        results, qr_mode = _rerank(book, question, cand_chunks, prefix_text, settings, reranker, warnings, progress)
        timings["rerank"] = time.perf_counter() - t
        for key in ("encode", "read", "cache", "forward", "cascade"):
            if key in results.timings and qr_mode != "full":
                timings[f"rerank_{key}"] = results.timings[key]
        order = [(r.chunk_id, r.score) for r in results.results]
    else:
        order = [(c.chunk_id, c.score) for c in candidates]
    ranked = [RankedChunk(chunk_id=cid, rank=i, score=float(score), first_stage_rank=first_rank[cid],
                          location=chunks[cid].location, snippet=_snippet(chunks[cid].text))
              for i, (cid, score) in enumerate(order, 1)]

    evidence_order = evidence_order_for(settings.evidence_order, book.kind)
    trim = None
    if settings.evidence_keep < 1.0:
        if rerank:
            from .focus import attention_trimmer

            trim = attention_trimmer(_focus_ranker(reranker, settings, progress), question, settings.evidence_keep)
        else:
            warnings.append("evidence_keep needs the reranker's heads; without reranking the passages are given whole")
    drafted = answer_from(generator, question, chunks, [(r.chunk_id, r.score) for r in ranked], title=book.title,
                          top_n=top_n, max_tokens=settings.answer_max_tokens, stream=True, on_token=on_token,
                          style=settings.answer_style, refusal_example=settings.refusal_example,
                          checker=citation_checker(settings, generator), order=evidence_order, trim=trim)
    answer, evidence, parsed = drafted.text, drafted.evidence, drafted.parsed
    if drafted.focus_seconds is not None:
        timings["focus"] = drafted.focus_seconds
    timings["generate"] = drafted.seconds
    timings["cite"] = drafted.cite_seconds
    timings["total"] = time.perf_counter() - t_all
    refused = is_refusal(answer)
    backed = answer_backed(parsed, answer)
    if not answer:
        warnings.append("the generator returned an empty answer")
    elif refused:
        warnings.append("the passages given to the generator do not hold the answer; try another wording or a "
                        "larger -k")
    elif backed is False:
        warnings.append("the citation check found no passage that backs this answer: the passages may not hold "
                        "it (read the ranked passages, or try another wording or a larger -k)")
    elif not parsed.citations:
        warnings.append("the answer cites no passage; treat it with care (the ranked passages are listed)")
    elif any(c.supported is False for c in parsed.citations):
        failed = sorted({c.number for c in parsed.citations if c.supported is False})
        warnings.append("the citation check found no support in " + ", ".join(f"[{n}]" for n in failed)
                        + " for the sentence citing it (marked unsupported)")
    elif any(c.inferred for c in parsed.citations):
        warnings.append("the generator left some sentences uncited; bookqa attributed them to the passage that "
                        "best supports them (marked as inferred)")
    return AskResult(
        book_id=book.id, question=question, answer=answer,
        cited_answer=annotate(answer, parsed.citations), citations=parsed.citations,
        invalid_citations=parsed.invalid_numbers, uncited_sentences=parsed.uncited_sentences,
        evidence=evidence, ranked=ranked, prefix=prefix_text, prefix_summaries=prefix_used, timings=timings,
        warnings=warnings,
        info={"candidates": len(candidates), "method": method, "reranked": rerank, "qr_mode": qr_mode,
              "answer_style": settings.answer_style, "evidence_order": evidence_order, "refused": refused, "backed": backed,
              "citation_check": parsed.checked_by or "off",
              "generator": getattr(generator, "model_id", type(generator).__name__)})
