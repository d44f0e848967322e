"""``bookqa search BOOK "query"``: the first-stage candidates (before reranking), for inspection."""
from __future__ import annotations

import argparse
import time

from ..library import Library
from ..retrieve import METHODS, retriever_for, search
from ..settings import Settings

SNIPPET_CHARS = 100


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="list a book's first-stage retrieval candidates for a query")
    p.add_argument("book", help="book id, unique id prefix, or title")
    p.add_argument("query", help="a question or phrase to search for")
    p.add_argument("-k", "--top-k", dest="top_k", type=int, help="how many candidates (default 50)")
    p.add_argument("--method", choices=METHODS, default="hybrid",
                   help="hybrid (BM25 + dense, fused; default), bm25 or dense")
    p.set_defaults(handler=cmd_search)


def snippet(text: str, width: int = SNIPPET_CHARS) -> str:
    """The text on one line, cut at a word boundary."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = flat[:width].rsplit(" ", 1)[0] if " " in flat[:width] else flat[:width]
    return cut + "…"


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    book = Library(settings).resolve(args.book)
    book.require_intact()
    t0 = time.perf_counter()
    retriever_for(book, args.method, settings)  # load the indexes (and embedder) first, to time them apart
    t1 = time.perf_counter()
    candidates = search(book, args.query, k=settings.top_k, method=args.method, settings=settings)
    t2 = time.perf_counter()
    print(f"{book.title}: {len(candidates)} candidates by {args.method} in {(t2 - t1) * 1000:.0f} ms"
          f" (indexes loaded in {t1 - t0:.1f} s)")
    for c in candidates:
        chunk = book.chunk(c.chunk_id)
        ranks = " ".join(f"{name}={rank}" for name, rank in sorted(c.ranks.items()))
        print(f"{c.rank:>3}. {c.score:.4f}  [{ranks}]  {chunk.location}")
        print(f"     {snippet(chunk.text)}")
    return 0
