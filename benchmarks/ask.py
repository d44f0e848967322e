"""End-to-end latency of ``ask`` on one NarrativeQA book with the embedded defaults.

Ingests one development book (default: The Adventure of the Dying Detective, 28 questions), then asks
its first N development questions and prints p50/p95 per stage (search, prefix, rerank, generate, cite)
and end to end, plus how many answers carried at least one citation. The reranker and generator load
once (their load time is reported separately, not counted in the per-question figures).

``--qr-mode cached`` or ``cascade`` ranks over the book's chunk cache (BOOKQA_QR_MODE); the cache is built
for every chunk at ingest (``bookqa ingest --qr-cache``), timed apart, so the per-question figures are
those of a book whose cache exists. The first question runs untimed, as a warm-up.

    .venv/bin/python benchmarks/ask.py [--n 20] [--k 50] [--qr-mode full|cached|cascade] [--doc DOCUMENT_ID] \
        [--data DATA/narrativeqa]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "narrativeqa"
DEFAULT_DOC = "09333c7d604bd412e6aef5d3e56b046ed301c5e5"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--doc", default=DEFAULT_DOC)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--k", type=int, default=None, help="first-stage candidates (default: settings, 50)")
    ap.add_argument("--home", type=Path, default=None, help="BOOKQA_HOME (default: a temporary directory)")
    ap.add_argument("--qr-mode", choices=("full", "cached", "cascade"), default=None,
                    help="QR reranking mode (default: settings, BOOKQA_QR_MODE)")
    ap.add_argument("--no-warmup", action="store_true", help="time the first question too")
    args = ap.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="bookqa-ask-bench-"))
    os.environ["BOOKQA_HOME"] = str(home)
    # The temporary home is for the book only: the converted models stay in the shared cache, so the
    # GGUF is not assembled and converted again for every run.
    os.environ.setdefault("BOOKQA_MODEL_CACHE", str(Path.home() / ".cache" / "bookqa" / "models"))
    sys.path.insert(0, str(REPO))
    from bookqa.pipeline import ask, get_cached_reranker, get_reranker, resolved_citation_check
    from bookqa.generate import get_generator
    from bookqa.settings import Settings
    from bookqa.library import Library

    settings = Settings.from_env(top_k=args.k, qr_mode=args.qr_mode)
    if settings.qr_mode != "full":
        settings = settings.replace(qr_cache="book")  # every chunk's cache built at ingest, timed apart
    questions = [json.loads(line) for line in (args.data / "qaps_dev.jsonl").read_text().splitlines() if line]
    questions = [q for q in questions if q["document_id"] == args.doc][: args.n]
    if not questions:
        print(f"no development questions for document {args.doc}", file=sys.stderr)
        return 2
    t = time.perf_counter()
    book = Library(settings).ingest(args.data / questions[0]["story_file"]).book
    ingest_s = time.perf_counter() - t
    t = time.perf_counter()
    reranker = get_reranker(settings) if settings.qr_mode == "full" else get_cached_reranker(settings)
    generator = get_generator(settings)
    generator.complete("Say OK.", max_tokens=2)  # loads the GGUF
    load_s = time.perf_counter() - t

    if not args.no_warmup:
        ask(book, questions[0]["question"], settings, reranker=reranker, generator=generator)
    per_stage: dict[str, list[float]] = {}
    cited = 0
    for i, q in enumerate(questions, 1):
        result = ask(book, q["question"], settings, reranker=reranker, generator=generator)
        for stage, seconds in result.timings.items():
            per_stage.setdefault(stage, []).append(seconds)
        cited += bool(result.citations)
        print(f"[{i}/{len(questions)}] {result.timings['total']:.1f}s  {q['question']}\n"
              f"        → {' '.join(result.cited_answer.split())[:160]}", flush=True)

    print(f"\nbook: {book.title} ({len(book.chunks)} chunks); k={settings.top_k}, top_n={settings.top_n}, "
          f"qr_mode={settings.qr_mode}, generator={settings.generator}:{settings.generator_model}, "
          f"answer_style={settings.answer_style}, citation_check={resolved_citation_check(settings)}")
    print(f"ingest {ingest_s:.1f}s; reranker+generator load {load_s:.1f}s (once per process)")
    print(f"{'stage':<10} {'p50 s':>8} {'p95 s':>8} {'mean s':>8}")
    for stage, values in per_stage.items():
        print(f"{stage:<10} {percentile(values, 50):>8.2f} {percentile(values, 95):>8.2f} "
              f"{statistics.mean(values):>8.2f}")
    print(f"answers with at least one citation: {cited}/{len(questions)}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
