"""``bookqa demo``: the README's main job on the embedded default models — ingest the bundled sample
story, answer a question about it with citations, then (``--ui``) open the web app with it ready."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..library import Library
from ..progress import TqdmProgress
from ..settings import Settings

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "dying_detective.txt"
SAMPLE_TITLE = "The Adventure of the Dying Detective"
SAMPLE_QUESTION = "What was the signal for Inspector Morton to enter the room?"


def ingest_sample(settings: Settings, quiet: bool):
    """The bundled sample story in the library (ingested once), with a progress bar: the IngestReport."""
    progress = TqdmProgress(quiet=quiet)
    try:
        return Library(settings).ingest(SAMPLE, title=SAMPLE_TITLE, progress=progress)
    finally:
        progress.close()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="ingest the bundled sample story and answer a question about it")
    p.add_argument("--question", default=SAMPLE_QUESTION, help=f"default: {SAMPLE_QUESTION!r}")
    p.add_argument("--no-answer", action="store_true", help="only ingest and describe the sample")
    p.add_argument("--ui", action="store_true", help="then open the web app with the sample ready to ask")
    p.add_argument("--port", dest="ui_port", type=int, help="with --ui: port of the web app (default 7860)")
    p.add_argument("-k", "--k", dest="top_k", type=int, help="first-stage candidates to rerank (default 50)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.ui:  # a busy port is reported now, not after the ingest and the answer
        from .ports import check_port

        settings = settings.replace(ui_port=args.ui_port)
        check_port(settings.ui_host, settings.ui_port)
    report = ingest_sample(settings, args.quiet)
    book = report.book
    chunks = book.chunks
    print(f"Book {book.id!r}: \"{book.title}\" — {len(chunks)} chunks, "
          f"{sum(c.tokens for c in chunks):,} tokens (budget {settings.chunk_tokens} per chunk)")
    print(f"Stages built: {', '.join(report.stages_run) or 'none (already up to date)'}; stored in {book.dir}\n")
    if not args.no_answer:
        from .ask import cmd_ask

        ask_args = argparse.Namespace(book=book.id, question=args.question, quiet=args.quiet, json=False,
                                      no_prefix=False, no_rerank=False)
        code = cmd_ask(ask_args, settings)
        if code:
            return code
    if args.ui:
        from ui.app import launch  # ui depends on bookqa; imported here only

        print(f"\nOpening the web app with \"{book.title}\" ready to ask: "
              f"http://{settings.ui_host}:{settings.ui_port}  (Ctrl+C to stop)", flush=True)
        launch(settings, auth=None, quiet=args.quiet)
    print("\nNext: bookqa ask BOOK \"question\" | bookqa ui | bookqa show BOOK --chunk N")
    return 0
