"""Request and response bodies of the HTTP API (pydantic models; they also make the OpenAPI page).

``/v1/rerank`` (and ``/v2/rerank``) take the rerank body that Cohere, Jina and Voyage share and that
LlamaIndex, LangChain and Dify send: ``model``, ``query``, ``documents`` (strings, or objects with a
``text``), ``top_n``, ``return_documents``; Cohere's ``rank_fields`` and ``max_tokens_per_doc`` are read
too. ``/rerank`` takes text-embeddings-inference's (``query``, ``texts``). Unknown fields are ignored,
as those APIs do, so a client's extra options never fail a request.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RerankRequest(_Lenient):
    model: Optional[str] = Field(None, description="accepted and ignored: the server ranks with its QR reranker")
    query: str
    documents: list[Union[str, dict[str, Any]]] = Field(
        description="strings, or objects with a 'text' field (other fields come back with return_documents)")
    top_n: Optional[int] = Field(None, ge=1, description="results returned, best first (default: all)")
    return_documents: bool = False
    rank_fields: Optional[list[str]] = Field(
        None, description="for object documents: the fields ranked, as 'field: value' lines (default: text)")
    max_tokens_per_doc: Optional[int] = Field(
        None, ge=1, description="tokens kept of each document (default: the server's BOOKQA_SERVE_DOC_TOKENS)")
    max_chunks_per_doc: Optional[int] = Field(None, description="accepted and ignored")


class RerankResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int = Field(description="position of the document in the request")
    relevance_score: float = Field(
        description="QR score of this call, min-max normalised: the best document 1, the worst 0")
    document: Optional[dict[str, Any]] = None
    qr_score: float = Field(description="the raw QR score (attention of the QR heads); comparable within a call only")


class RerankResponse(BaseModel):
    id: str
    results: list[RerankResult]
    model: str
    meta: dict[str, Any]
    usage: dict[str, int]


class TeiRerankRequest(_Lenient):
    query: str
    texts: list[str]
    truncate: bool = Field(False, description="cut texts longer than the server's limit instead of refusing them")
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"
    raw_scores: bool = Field(False, description="the raw QR score instead of the normalised one")
    return_text: bool = False


class TeiRank(BaseModel):
    index: int
    score: float
    text: Optional[str] = None


class AskRequest(_Lenient):
    question: str
    stream: bool = Field(False, description="server-sent events: answer tokens, then the citations (also "
                                            "chosen by 'Accept: text/event-stream')")
    k: Optional[int] = Field(None, ge=1, le=200, description="first-stage candidates reranked (default BOOKQA_TOP_K)")
    top_n: Optional[int] = Field(None, ge=1, le=20, description="passages given to the generator (default BOOKQA_TOP_N)")
    use_prefix: bool = True
    rerank: bool = True
    method: Literal["hybrid", "bm25", "dense"] = "hybrid"
    style: Optional[Literal["prose", "short"]] = Field(None, description="answer style: short (the answer phrase, "
                                                                         "cited) or prose (one to three cited "
                                                                         "sentences); default BOOKQA_ANSWER_STYLE")


class BookInfo(BaseModel):
    id: str
    title: str
    kind: str
    created: Optional[str] = None
    chunks: Optional[int] = None
    ready: bool = Field(description="every ingest stage is done: the book can be asked")
    stages: dict[str, str]


class BrokenBookInfo(BaseModel):
    id: str
    title: str
    reason: str = Field(description="what is wrong with its files")
    repair: str = Field(description="the command that repairs it")


class BookList(BaseModel):
    books: list[BookInfo]
    broken: list[BrokenBookInfo] = Field(default_factory=list, description="damaged books: asking them is a 409")


class JobInfo(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed"]
    filename: str
    stage: Optional[str] = Field(None, description="the ingest stage running (chunks, bm25, dense, summaries)")
    step: Optional[str] = Field(None, description="what that stage reported last")
    fraction: float = Field(description="share of the ingest done, 0..1")
    eta_s: Optional[float] = Field(None, description="seconds left in the current step, once its rate is known")
    elapsed_s: float
    book_id: Optional[str] = None
    error: Optional[str] = None
    stages_run: Optional[list[str]] = None


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class ChunkInfo(BaseModel):
    book_id: str
    id: int
    start: int = Field(description="character offset into the book's text")
    end: int
    tokens: int
    text: str
    chapter: Optional[str] = None
    location: str
    meta: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    message: str
    type: str
    request_id: str
