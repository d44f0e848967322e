"""Library commands: ingest, books, show, rm."""
from __future__ import annotations

import argparse
import sys

from ..library import Library
from ..progress import TqdmProgress
from ..settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="add a text (.txt novel, transcript, LoCoMo .json) to the library")
    p.add_argument("path")
    p.add_argument("--title", help="title (default: the Gutenberg title line or the file name)")
    p.add_argument("--kind", choices=("novel", "transcript"), help="default: detected from the content")
    p.add_argument("--chunk-tokens", dest="chunk_tokens", type=int, help="token budget per chunk (default 200)")
    p.add_argument("--max-mb", dest="max_upload_mb", type=float, help="refuse files larger than this (default 50)")
    p.add_argument("--reranker-model", dest="reranker_model", help="model whose tokenizer counts chunk tokens")
    p.add_argument("--embed-model", dest="embed_model", help="sentence-transformers model for dense retrieval")
    p.add_argument("--summaries", choices=("llm", "extractive", "none"), help="summary stage mode")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("books", help="list the books in the library")
    p.set_defaults(handler=cmd_books)

    p = sub.add_parser("show", help="show a book's manifest, or one chunk with its exact span")
    p.add_argument("book", help="book id, unique id prefix, or title")
    p.add_argument("--chunk", type=int, help="chunk id to print")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("rm", help="delete a book and everything built for it")
    p.add_argument("book", help="book id, unique id prefix, or title")
    p.set_defaults(handler=cmd_rm)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    progress = TqdmProgress(quiet=args.quiet)
    try:
        report = Library(settings).ingest(args.path, title=args.title, kind=args.kind, progress=progress)
    finally:
        progress.close()
    book = report.book
    chunks = book.chunks
    tokens = sum(c.tokens for c in chunks)
    verb = "added" if report.created else "updated" if report.stages_run else "unchanged"
    print(f"{verb}: {book.id}  \"{book.title}\" ({book.kind})")
    print(f"  {len(chunks)} chunks, {tokens:,} tokens, {len(book.text):,} characters"
          f" (body {book.manifest['body_span'][0]:,}-{book.manifest['body_span'][1]:,})")
    if report.stages_run:
        print(f"  built: {', '.join(report.stages_run)} in {report.seconds:.1f} s")
    if report.stages_skipped:
        print(f"  up to date: {', '.join(report.stages_skipped)}")
    print(f"  stored in {book.dir}")
    return 0


def cmd_books(args: argparse.Namespace, settings: Settings) -> int:
    books = Library(settings).books()
    if not books:
        print(f"no books in {settings.books_dir}; add one with: bookqa ingest PATH")
        return 0
    for b in books:
        stages = b.manifest.get("stages", {})
        status = ",".join(f"{k}{'' if v.get('status') == 'done' else '(' + str(v.get('status')) + ')'}"
                          for k, v in stages.items())
        n = stages.get("chunks", {}).get("chunks", "?")
        print(f"{b.id}\t{b.title}\t{b.kind}\t{n} chunks\t{status}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    book = Library(settings).resolve(args.book)
    if args.chunk is not None:
        c = book.chunk(args.chunk)
        print(f"{book.title} — {c.location} — characters {c.start}-{c.end}, {c.tokens} tokens")
        if c.meta:
            print(f"meta: {c.meta}")
        print()
        print(book.text[c.start:c.end])
        return 0
    m = book.manifest
    print(f"{book.id}\n  title: {m.get('title')}\n  kind: {m.get('kind')}\n  source: {m.get('source_name')}"
          f" ({m.get('source_encoding')})\n  sha256: {m.get('content_sha256')}\n  created: {m.get('created')}")
    for name, st in m.get("stages", {}).items():
        extra = ", ".join(f"{k}={v}" for k, v in st.items() if k not in ("status", "fingerprint", "finished"))
        print(f"  stage {name}: {st.get('status')} {st.get('finished', '')} {extra}")
    print(f"  directory: {book.dir}")
    return 0


def cmd_rm(args: argparse.Namespace, settings: Settings) -> int:
    book = Library(settings).remove(args.book)
    print(f"removed {book.id} ({book.title})", file=sys.stdout)
    return 0
