"""Reranking any texts over HTTP with the QRRanker: Cohere/Jina/Voyage's ``/v1/rerank`` (and Cohere's
``/v2/rerank``, which the current Cohere SDK's ClientV2 and LangChain's CohereRerank call) and
text-embeddings-inference's ``/rerank``.

The texts are ranked exactly as ``QRRanker.rank(query, texts)`` ranks them; only their length is
bounded first: each document is cut to ``max_tokens_per_doc`` tokens (TEI's form refuses a longer text
unless ``truncate``), and a prompt that would still pass ``serve_max_prompt_tokens`` (or the model's
positions) is refused with 413, so no input size reaches the model as a 500.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from fastapi import APIRouter, Request

from ..errors import BookQAError, InputError
from .schemas import RerankRequest, RerankResponse, TeiRank, TeiRerankRequest

router = APIRouter(tags=["rerank"])


class InputTooLarge(BookQAError):
    """A request bigger than the server takes (answered with 413)."""


@dataclass
class Ranking:
    order: list[tuple[int, float]]  # (input index, raw QR score), best first
    truncated: int  # documents that were cut to the token limit
    prompt_tokens: int
    model: str


def cut_texts(tokenizer, texts: Sequence[str], max_tokens: int, keep: str = "start") -> tuple[list[str], int]:
    """Each text cut to its first (``keep="start"``) or last ``max_tokens`` tokens of ``tokenizer``,
    at a token boundary of the original string; and how many were cut."""
    if not texts:
        return [], 0
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    out, cut = [], 0
    for text, offsets in zip(texts, enc["offset_mapping"]):
        if len(offsets) <= max_tokens:
            out.append(text)
            continue
        cut += 1
        out.append(text[:offsets[max_tokens - 1][1]] if keep == "start" else text[offsets[-max_tokens][0]:])
    return out, cut


def too_long(tokenizer, texts: Sequence[str], max_tokens: int) -> Optional[tuple[int, int]]:
    """(index, tokens) of the first text longer than ``max_tokens``, or None."""
    if not texts:
        return None
    enc = tokenizer(list(texts), add_special_tokens=False)
    for i, ids in enumerate(enc["input_ids"]):
        if len(ids) > max_tokens:
            return i, len(ids)
    return None


def check_count(settings, n: int) -> None:
    if n > settings.serve_max_documents:
        raise InputTooLarge(f"{n} documents in one request; this server ranks at most "
                            f"{settings.serve_max_documents} (BOOKQA_SERVE_MAX_DOCUMENTS)")


def rank_texts(state, query: str, texts: Sequence[str], max_tokens_per_doc: int, keep: str = "start",
               refuse_longer: bool = False) -> Ranking:
    """Runs on the model worker: bound the inputs, then ``QRRanker.rank(query, texts)``."""
    settings = state.settings
    check_count(settings, len(texts))
    if not query.strip() and texts:
        raise InputError("the query is empty")
    ranker = state.reranker()
    tokenizer = ranker.tokenizer
    long_query = too_long(tokenizer, [query], settings.serve_doc_tokens)
    if long_query is not None:
        raise InputTooLarge(f"the query has {long_query[1]} tokens; this server takes at most "
                            f"{settings.serve_doc_tokens} (BOOKQA_SERVE_DOC_TOKENS)")
    if refuse_longer:
        found = too_long(tokenizer, texts, max_tokens_per_doc)
        if found is not None:
            raise InputTooLarge(f"text {found[0]} has {found[1]} tokens, more than this server's "
                                f"{max_tokens_per_doc}; send truncate=true to cut long texts")
        fitted, truncated = list(texts), 0
    else:
        fitted, truncated = cut_texts(tokenizer, texts, max_tokens_per_doc, keep)
    limit = settings.serve_max_prompt_tokens
    if ranker.max_positions:
        limit = min(limit, ranker.max_positions)
    n_tokens = ranker.prompt(query, fitted).n_tokens if fitted else 0
    if n_tokens > limit:
        raise InputTooLarge(f"the reranking prompt would have {n_tokens} tokens, more than this server's "
                            f"{limit}; send fewer or shorter documents (or a smaller max_tokens_per_doc)")
    ranked = ranker.rank(query, fitted)
    return Ranking(order=[(r.index, float(r.score)) for r in ranked.results], truncated=truncated,
                   prompt_tokens=n_tokens, model=ranker.model_name)


def normalised(order: Sequence[tuple[int, float]]) -> dict[int, float]:
    """index -> the call's QR score min-max normalised (best 1, worst 0; all 1 when they are equal).
    Rerank clients expect scores in [0, 1]; QR scores are attention sums comparable only within a call."""
    if not order:
        return {}
    scores = [s for _, s in order]
    high, low = max(scores), min(scores)
    span = high - low
    return {i: (1.0 if span <= 0 else (s - low) / span) for i, s in order}


def document_text(doc: Union[str, dict[str, Any]], index: int, rank_fields: Optional[list[str]]) -> str:
    if isinstance(doc, str):
        return doc
    if rank_fields:
        lines = [f"{name}: {doc[name]}" for name in rank_fields if name in doc and doc[name] is not None]
        if not lines:
            raise InputError(f"document {index} has none of the rank_fields {rank_fields}")
        return "\n".join(lines)
    text = doc.get("text")
    if not isinstance(text, str):
        raise InputError(f"document {index} is an object without a string 'text' field")
    return text


async def _rank(request: Request, body: RerankRequest, version: str) -> dict[str, Any]:
    state = request.app.state.bookqa
    check_count(state.settings, len(body.documents))  # before it takes a place in the queue
    texts = [document_text(d, i, body.rank_fields) for i, d in enumerate(body.documents)]
    max_tokens = body.max_tokens_per_doc or state.settings.serve_doc_tokens
    ranking: Ranking = await state.worker.submit(lambda: rank_texts(state, body.query, texts, max_tokens))
    scores = normalised(ranking.order)
    top = ranking.order[:body.top_n] if body.top_n else ranking.order
    results = []
    for index, raw in top:
        row: dict[str, Any] = {"index": index, "relevance_score": scores[index], "qr_score": raw}
        if body.return_documents:
            doc = body.documents[index]
            row["document"] = {"text": doc} if isinstance(doc, str) else doc
        results.append(row)
    warnings = []
    if ranking.truncated:
        warnings.append(f"{ranking.truncated} documents were cut to {max_tokens} tokens")
    return {"id": str(uuid.uuid4()), "results": results, "model": ranking.model,
            "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1},
                     "tokens": {"input_tokens": ranking.prompt_tokens}, "warnings": warnings},
            "usage": {"total_tokens": ranking.prompt_tokens}}


@router.post("/v1/rerank", response_model=RerankResponse, response_model_exclude_none=True,
             summary="Rerank documents (Cohere / Jina / Voyage rerank schema)")
async def rerank_v1(request: Request, body: RerankRequest) -> dict[str, Any]:
    return await _rank(request, body, "1")


@router.post("/v2/rerank", response_model=RerankResponse, response_model_exclude_none=True,
             summary="Rerank documents (Cohere v2: what cohere.ClientV2 and LangChain's CohereRerank call)")
async def rerank_v2(request: Request, body: RerankRequest) -> dict[str, Any]:
    return await _rank(request, body, "2")


@router.post("/rerank", response_model=list[TeiRank], response_model_exclude_none=True,
             summary="Rerank texts (text-embeddings-inference schema)")
async def rerank_tei(request: Request, body: TeiRerankRequest) -> list[dict[str, Any]]:
    state = request.app.state.bookqa
    check_count(state.settings, len(body.texts))
    keep = "end" if body.truncation_direction.lower() == "left" else "start"
    ranking: Ranking = await state.worker.submit(
        lambda: rank_texts(state, body.query, body.texts, state.settings.serve_doc_tokens, keep,
                           refuse_longer=not body.truncate))
    scores = normalised(ranking.order)
    out = []
    for index, raw in ranking.order:
        row: dict[str, Any] = {"index": index, "score": raw if body.raw_scores else scores[index]}
        if body.return_text:
            row["text"] = body.texts[index]
        out.append(row)
    return out
