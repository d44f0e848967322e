"""``bookqa demo``: the README's main job on the embedded default models, on the bundled sample."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..progress import TqdmProgress
from ..settings import Settings
from ..store import Library

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "dying_detective.txt"
SAMPLE_TITLE = "The Adventure of the Dying Detective"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="ingest the bundled sample story and show what was built")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    progress = TqdmProgress(quiet=args.quiet)
    try:
        report = Library(settings).ingest(SAMPLE, title=SAMPLE_TITLE, progress=progress)
    finally:
        progress.close()
    book = report.book
    chunks = book.chunks
    print(f"Book {book.id!r}: \"{book.title}\" — {len(chunks)} chunks, "
          f"{sum(c.tokens for c in chunks):,} tokens (budget {settings.chunk_tokens} per chunk)")
    print(f"Stages built: {', '.join(report.stages_run) or 'none (already up to date)'}; stored in {book.dir}")
    chapters = sorted({c.chapter for c in chunks if c.chapter})
    if chapters:
        print(f"Headings: {', '.join(chapters[:8])}")
    for c in chunks[:2]:
        snippet = " ".join(c.text.split())[:160]
        print(f"  [{c.id}] chars {c.start}-{c.end}, {c.tokens} tokens: {snippet}…")
    print("Next: bookqa show BOOK --chunk N | bookqa books")
    return 0
