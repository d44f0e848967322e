"""``bookqa summarize``: build (or upgrade) a book's summaries with a language model or extractively."""
from __future__ import annotations

import argparse
import time

from ..library import Library
from ..progress import TqdmProgress
from ..settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summarize", help="summarise a stored book (block/session summaries up to one book summary)")
    p.add_argument("book", help="book id, unique id prefix, or title")
    p.add_argument("--mode", dest="summaries", choices=("llm", "extractive"),
                   help="llm (default here: the generator writes the summaries) or extractive (TextRank, fast)")
    p.add_argument("--generator", choices=("local", "remote"),
                   help="local llama.cpp or a remote OpenAI-compatible server")
    p.add_argument("--base-url", dest="base_url", metavar="URL", help="remote server URL (default http://127.0.0.1:8000/v1)")
    p.add_argument("--model", dest="generator_model", metavar="NAME", help="GGUF name or path (local) or model name (remote)")
    p.add_argument("--workers", type=int, metavar="N", help="concurrent calls (default 1; raise for a batching server)")
    p.add_argument("--dry-run", action="store_true", help="print how many calls and tokens it would take; run nothing")
    p.set_defaults(handler=cmd_summarize)


def cmd_summarize(args: argparse.Namespace, settings: Settings) -> int:
    from ..summaries import SummaryStage, load_summaries, plan_summaries

    settings = settings.replace(summaries=args.summaries or "llm", summary_workers=args.workers)
    library = Library(settings)
    book = library.resolve(args.book)
    n_chunks = len(book.chunks)
    if args.dry_run:
        plan = plan_summaries(book, settings)
        print(f"{book.id}  \"{book.title}\": {n_chunks} chunks")
        print(f"  {plan.describe()}")
        return 0
    progress = TqdmProgress(quiet=args.quiet)
    t0 = time.perf_counter()
    try:
        run, _ = library.build(book, stages=[SummaryStage()], progress=progress)
    finally:
        progress.close()
    info = book.stage("summaries")
    tree = load_summaries(book)
    if not run:
        print(f"{book.id}: summaries are up to date ({info.get('mode')}, {info.get('nodes')} summaries)")
    else:
        extra = ""
        if info.get("calls") is not None:
            extra = (f", {info['calls']} model calls ({info.get('cached', 0)} cached), "
                     f"{info.get('retried', 0)} retried, {info.get('failed', 0)} failed (extractive fallback)")
        print(f"{book.id}: {info.get('nodes')} summaries ({info.get('mode')}){extra} in "
              f"{time.perf_counter() - t0:.1f} s")
    if tree is not None and tree.root is not None:
        print(f"\nBook summary:\n{tree.root.text}")
    return 0
