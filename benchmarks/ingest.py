"""Ingestion benchmark: read, decode, split and chunk a whole novel through ``Library.ingest``.

    python benchmarks/ingest.py [PATH] [--chunk-tokens N] [--all-stages] [--progress]

PATH defaults to ``../shared/data/gutenberg_novels/pg1023_bleak_house.txt`` (relative to the parent of
the repository root). The book goes into a temporary BOOKQA_HOME that is deleted afterwards; the model
cache is shared (BOOKQA_MODEL_CACHE, or ~/.cache/bookqa/models) so the tokenizer is not re-extracted.
Only the chunk stage runs unless ``--all-stages`` is given. Target on 2 CPU cores for Bleak House
(~2 MB, ~0.5M tokens): under 60 s and under 1.5 GB peak RSS.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_BOOK = REPO.parent / "shared" / "data" / "gutenberg_novels" / "pg1023_bleak_house.txt"


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_BOOK), help="book to ingest")
    parser.add_argument("--chunk-tokens", type=int, default=None, help="token budget per chunk")
    parser.add_argument("--all-stages", action="store_true", help="run every default stage, not only chunks")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)

    from bookqa.errors import BookQAError
    from bookqa.progress import TqdmProgress, no_progress
    from bookqa.settings import Settings
    from bookqa.stages import ChunkStage
    from bookqa.library import Library

    path = Path(args.path)
    model_cache = os.environ.get("BOOKQA_MODEL_CACHE") or str(Settings().models_dir)
    with tempfile.TemporaryDirectory(prefix="bookqa-bench-") as home:
        settings = Settings.from_env(home=Path(home), model_cache=model_cache, chunk_tokens=args.chunk_tokens)
        progress = TqdmProgress() if args.progress else no_progress
        stages = None if args.all_stages else [ChunkStage()]
        t0 = time.perf_counter()
        try:
            report = Library(settings).ingest(path, stages=stages, progress=progress)
        except BookQAError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        seconds = time.perf_counter() - t0
        if args.progress:
            progress.close()
        chunks = report.book.chunks
        tokens = sum(c.tokens for c in chunks)
        size = path.stat().st_size
        print(f"book          {path.name} ({size / 1e6:.2f} MB, {report.book.manifest['source_encoding']})")
        print(f"stages run    {', '.join(report.stages_run)}")
        print(f"chunk budget  {settings.chunk_tokens} tokens")
        print(f"chunks        {len(chunks):,}")
        print(f"tokens        {tokens:,} (mean {tokens / max(len(chunks), 1):.1f} per chunk, "
              f"max {max((c.tokens for c in chunks), default=0)})")
        print(f"seconds       {seconds:.1f}")
        print(f"chunks/s      {len(chunks) / seconds:.0f}")
        print(f"peak RSS      {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
