"""``bookqa ask BOOK "question"``: a cited answer, then its sources, then timings."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..library import Library
from ..progress import TqdmProgress
from ..settings import Settings
from ..store import Book


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="answer a question about a book, citing exact passages")
    p.add_argument("book", help="book id, unique id prefix, title, or a path to a text to ingest first")
    p.add_argument("question")
    add_answer_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts)")
    p.set_defaults(handler=cmd_ask)


def add_answer_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", choices=("local", "remote"), help="local llama.cpp (default) or remote")
    p.add_argument("--base-url", dest="base_url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", dest="generator_model", help="generator model: GGUF name/path, or remote name")
    p.add_argument("--reranker-model", dest="reranker_model", help="QR reranker model (name, hub id, dir)")
    p.add_argument("--heads", dest="reranker_heads", help="QR heads file (default: shipped for the model)")
    p.add_argument("-k", "--k", dest="top_k", type=int, help="first-stage candidates to rerank (default 50)")
    p.add_argument("--top", dest="top_n", type=int, help="reranked passages given to the generator (default 3)")
    p.add_argument("--no-prefix", action="store_true", help="rerank without the summary prefix")
    p.add_argument("--no-rerank", action="store_true", help="skip QR reranking (first-stage order)")
    p.add_argument("--qr-mode", dest="qr_mode", choices=("full", "cached", "cascade"),
                   help="QR over one full prompt, over cached chunk keys/values, or cached then full over the top "
                        "(default $BOOKQA_QR_MODE or full)")
    p.add_argument("--style", dest="answer_style", choices=("prose", "short"),
                   help="answer in one to three cited sentences, or the answer phrase alone "
                        "(default $BOOKQA_ANSWER_STYLE or prose)")


def open_book(name: str, settings: Settings, quiet: bool) -> Book:
    """A stored book by name, or ingest the file at ``name`` first (``bookqa ask story.txt "..."``)."""
    library = Library(settings)
    path = Path(name).expanduser()
    if path.is_file():
        progress = TqdmProgress(quiet=quiet)
        try:
            return library.ingest(path, progress=progress).book
        finally:
            progress.close()
    return library.resolve(name)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from ..pipeline import ask, check_question

    question = check_question(args.question)  # before the book is opened (or ingested) and anything printed
    book = open_book(args.book, settings, args.quiet)
    book.require_intact()
    progress = TqdmProgress(quiet=args.quiet or args.json)
    streamed = not args.json

    def on_token(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    if streamed:
        print(f"{book.title} — {question}\n")
    try:
        result = ask(book, question, settings, use_prefix=not args.no_prefix, rerank=not args.no_rerank,
                     on_token=on_token if streamed else None, progress=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return 0
    print("\n")
    if result.cited_answer != result.answer:
        print(f"With inferred citations: {result.cited_answer}\n")
    cited = {c.number for c in result.citations}
    unsupported = {c.number for c in result.citations if c.supported is False}
    print("Sources:" + (" (! = cited, but the citation check found no support)" if unsupported else ""))
    for e in result.evidence:
        mark = "!" if e.number in unsupported else "*" if e.number in cited else " "
        quote = next((c.quote for c in result.citations if c.number == e.number), None)
        text = " ".join((quote or e.chunk.text).split())
        if len(text) > 300:
            text = text[:299] + "…"
        print(f" {mark}[{e.number}] {e.chunk.location}, characters {e.chunk.start}-{e.chunk.end} "
              f"(rerank #{e.rank}, score {e.score:.3f})")
        print(f"      “{text}”")
    if result.invalid_citations:
        print(f"dropped citations to passages that were not provided: {result.invalid_citations}")
    for w in result.warnings:
        print(f"note: {w}")
    mode = f" (QR {result.info['qr_mode']})" if result.info.get("qr_mode") else ""
    print(f"Timings{mode}: " + ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()))
    return 0
