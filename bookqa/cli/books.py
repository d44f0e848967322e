"""Library commands: ingest, books, show, rm, doctor."""
from __future__ import annotations

import argparse
import sys

from ..library import Library
from ..progress import TqdmProgress
from ..settings import Settings
from .ray_args import add_ray_arguments, ray_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="add a text (.txt novel, transcript, LoCoMo .json) to the library")
    p.add_argument("path", help="the file to ingest; with --ray also a folder (each of its files is a book)")
    p.add_argument("--title", help="title (default: the Gutenberg title line or the file name)")
    p.add_argument("--kind", choices=("novel", "transcript"), help="default: detected from the content")
    p.add_argument("--chunk-tokens", dest="chunk_tokens", type=int, help="token budget per chunk (default 200)")
    p.add_argument("--max-mb", dest="max_upload_mb", type=float, help="refuse files larger than this (default 50)")
    p.add_argument("--reranker-model", dest="reranker_model", help="model whose tokenizer counts chunk tokens")
    p.add_argument("--embed-model", dest="embed_model", help="sentence-transformers model for dense retrieval")
    p.add_argument("--summaries", choices=("llm", "extractive", "none"), help="summary stage mode")
    p.add_argument("--qr-cache", dest="qr_cache", action="store_const", const="book",
                   help="also store every chunk's keys/values for cached-chunk QR (BOOKQA_QR_MODE=cached|cascade)")
    add_ray_arguments(p, "books")
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

    p = sub.add_parser("doctor", help="verify every book's files against their recorded checksums "
                                      "(exit 2 when a book is damaged, with the command that repairs it)")
    p.set_defaults(handler=cmd_doctor)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    if args.ray is not None:
        return _ingest_on_ray(args, settings)
    progress = TqdmProgress(quiet=args.quiet)
    try:
        report = Library(settings).ingest(args.path, title=args.title, kind=args.kind, progress=progress,
                                          notify=lambda message: print(f"bookqa: {message}", file=sys.stderr))
    finally:
        progress.close()
    _print_report(report)
    return 0


def _ingest_on_ray(args: argparse.Namespace, settings: Settings) -> int:
    """A file or every file of a folder, one book per Ray worker call; reports as a local ingest prints
    them. A file that cannot be ingested is named with its reason, the others are still ingested."""
    from pathlib import Path

    from ..errors import ConfigError
    from ..scale.ingest import folder_files, ingest_on_ray

    path = Path(args.path)
    if path.is_dir() and args.title:
        raise ConfigError("--title names one book; the books of a folder take their titles from their files")
    paths = folder_files(path) if path.is_dir() else [path]
    progress = TqdmProgress(quiet=args.quiet)
    try:
        outcomes = ingest_on_ray(paths, settings, ray_options(args), kind=args.kind, title=args.title,
                                 progress=progress)
    finally:
        progress.close()
    failed = [o for o in outcomes if o.error]
    for outcome in outcomes:
        for message in outcome.messages:
            print(f"bookqa: {outcome.path.name}: {message}", file=sys.stderr)
        if outcome.report is not None:
            _print_report(outcome.report)
    for outcome in failed:
        print(f"bookqa: error: {outcome.error}", file=sys.stderr)
    if failed:
        print(f"bookqa: {len(failed)} of {len(outcomes)} files not ingested", file=sys.stderr)
    return 2 if failed else 0


def _print_report(report) -> None:
    book = report.book
    chunks = book.chunks
    tokens = sum(c.tokens for c in chunks)
    for note in getattr(report, "notes", ()):
        print(f"note: {note}", file=sys.stderr)
    repaired = getattr(report, "repaired", [])
    verb = ("added" if report.created else "repaired" if repaired else "updated" if report.stages_run
            else "unchanged")
    print(f"{verb}: {book.id}  \"{book.title}\" ({book.kind})")
    if repaired:
        print(f"  repaired: {'; '.join(repaired)}")
    print(f"  {len(chunks)} chunks, {tokens:,} tokens, {len(book.text):,} characters"
          f" (body {book.manifest['body_span'][0]:,}-{book.manifest['body_span'][1]:,})")
    if report.stages_run:
        print(f"  built: {', '.join(report.stages_run)} in {report.seconds:.1f} s")
    if report.stages_skipped:
        print(f"  up to date: {', '.join(report.stages_skipped)}")
    print(f"  stored in {book.dir}")


def cmd_books(args: argparse.Namespace, settings: Settings) -> int:
    library = Library(settings)
    books, broken = library.books(), library.broken()
    if not books and not broken:
        print(f"no books in {settings.books_dir}; add one with: bookqa ingest PATH")
        return 0
    for b in broken:  # first, so a damaged book is not missed below a long list
        print(f"{b.id}\t{b.title}\tDAMAGED: {b.reason}\trepair: {b.repair}")
    for b in books:
        stages = b.manifest.get("stages", {})
        status = ",".join(f"{k}{'' if v.get('status') == 'done' else '(' + str(v.get('status')) + ')'}"
                          for k, v in stages.items())
        n = stages.get("chunks", {}).get("chunks", "?")
        print(f"{b.id}\t{b.title}\t{b.kind}\t{n} chunks\t{status}{_qr_cache_note(b)}")
    return 0


def _qr_cache_note(book) -> str:
    """``\tQR cache 812 of 1543 chunks, 1.20 GiB bfloat16`` when the book holds chunk keys/values."""
    from ..rerank.kvstore import book_caches

    caches = book_caches(book.dir)
    if not caches:
        return ""
    parts = [f"{c['built']} of {c['chunks']} chunks, {c['disk_bytes'] / 2**30:.2f} GiB {c['kv_dtype']}" for c in caches]
    return "\tQR cache " + "; ".join(parts)


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
        extra = ", ".join(f"{k}={v}" for k, v in st.items()
                          if k not in ("status", "fingerprint", "finished", "files"))
        if st.get("files"):
            extra += f"{', ' if extra else ''}{len(st['files'])} files with checksums"
        print(f"  stage {name}: {st.get('status')} {st.get('finished', '')} {extra}")
    print(f"  directory: {book.dir}")
    return 0


def cmd_rm(args: argparse.Namespace, settings: Settings) -> int:
    book = Library(settings).remove(args.book)
    print(f"removed {book.id} ({book.title})", file=sys.stdout)
    return 0


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    """One line per book: ok (files verified by checksum, or read back for books made before checksums
    were recorded) or DAMAGED with what is wrong and the command that repairs it. Exit 2 if any is damaged."""
    progress = TqdmProgress(quiet=args.quiet)
    try:
        checks = Library(settings).check(progress=progress)
    finally:
        progress.close()
    if not checks:
        print(f"no books in {settings.books_dir}")
        return 0
    for c in checks:
        if c.ok:
            how = f"{c.verified} files match their checksums"
            if c.unverified:
                how += (f"; {c.unverified} without checksums read back fine (ingest the book again to record "
                        "them)")
            print(f"ok\t{c.id}\t{c.title}\t{how}")
        else:
            print(f"DAMAGED\t{c.id}\t{c.title}\t{'; '.join(c.problems)}\trepair: {c.repair}")
    damaged = sum(not c.ok for c in checks)
    print(f"{len(checks)} books checked, {damaged} damaged" if damaged else f"{len(checks)} books checked, all intact")
    return 2 if damaged else 0
