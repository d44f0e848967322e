"""First-stage retrieval benchmark: index a novel through ``Library.ingest`` and time queries.

    .venv/bin/python benchmarks/retrieval.py [--book PATH] [--queries 100] [--seed 0]

Ingests the book (default: Bleak House from ``<repo>/../shared/data/gutenberg_novels``) into a temporary
BOOKQA_HOME, prints seconds per stage (chunks, bm25, dense; the dense stage split into loading the
embedder and embedding), peak RSS, then hybrid / bm25 / dense query latency over ``--queries`` phrases
sampled (seeded) from the book's chunks, with how often the phrase's own chunk comes back first / in the
top 10 / in the top 50. Targets: indexing <= 4 min, hybrid query p50 <= 100 ms.

``--sweep N`` additionally times embedding N chunks at several batch sizes, in length-sorted and in book
order, to show where the dense stage's time goes. The machine's load average is printed at start and end:
other processes on a shared CPU slow every number here.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bookqa.library import Library  # noqa: E402
from bookqa.progress import TqdmProgress, no_progress  # noqa: E402
from bookqa.retrieve import clear_cache, search  # noqa: E402
from bookqa.retrieve.dense import load_embedder  # noqa: E402
from bookqa.settings import Settings  # noqa: E402
from bookqa.stages import default_stages  # noqa: E402
from bookqa.weights import resolve_device  # noqa: E402

DEFAULT_BOOK = REPO.parent / "shared" / "data" / "gutenberg_novels" / "pg1023_bleak_house.txt"
TIMED_STAGES = ("chunks", "bm25", "dense")


class TimedStage:
    """Wraps a stage to record its wall time and the process's peak RSS when it ends."""

    def __init__(self, stage):
        self.stage = stage
        self.name = stage.name
        self.seconds = None
        self.cpu_seconds = None
        self.peak_rss_mb = None

    def fingerprint(self, book, settings):
        return self.stage.fingerprint(book, settings)

    def run(self, book, settings, progress):
        t0, c0 = time.perf_counter(), cpu_seconds()
        info = self.stage.run(book, settings, progress)
        self.seconds = time.perf_counter() - t0
        self.cpu_seconds = cpu_seconds() - c0
        self.peak_rss_mb = peak_rss_mb()
        return info


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: unlike wall time, it barely depends on what
    else the machine is running, so ``cpu / cores`` estimates the wall time on an idle machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def sample_queries(chunks, n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` phrases of 5-12 consecutive words, each from a random chunk (seeded), with that chunk's id."""
    rng = random.Random(seed)
    eligible = [c for c in chunks if len(c.text.split()) >= 15]
    out = []
    for chunk in rng.sample(eligible, min(n, len(eligible))):
        words = chunk.text.split()
        size = rng.randint(5, 12)
        start = rng.randrange(0, len(words) - size)
        phrase = " ".join(words[start:start + size])
        out.append((re.sub(r"\s+", " ", phrase), chunk.id))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def time_queries(book, queries, method: str, settings) -> dict:
    latencies, cpu, ranks = [], [], []
    for query, source in queries:
        t0, c0 = time.perf_counter(), cpu_seconds()
        hits = search(book, query, k=settings.top_k, method=method, settings=settings)
        latencies.append((time.perf_counter() - t0) * 1000)
        cpu.append((cpu_seconds() - c0) * 1000)
        ranks.append(next((c.rank for c in hits if c.chunk_id == source), None))
    n = len(queries)
    return {
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "cpu_p50_ms": round(percentile(cpu, 0.5), 1),  # ~ the latency on an idle machine
        "source_at_1": round(sum(r == 1 for r in ranks) / n, 3),
        "source_in_10": round(sum(r is not None and r <= 10 for r in ranks) / n, 3),
        "source_in_50": round(sum(r is not None for r in ranks) / n, 3),
    }


def sweep(embedder, chunks, n: int, batch_sizes=(16, 32, 64)) -> list[dict]:
    """Embedding speed on the same ``n`` chunks at several batch sizes, length-sorted vs book order, and
    with one torch thread instead of the default."""
    import torch

    from bookqa.retrieve.dense import _torch_threads

    texts = [c.text for c in chunks[:n]]
    windows = embedder.windows_many(texts)
    flat = [w for ws in windows for w in ws]
    lengths = [embedder._count(w) for w in flat]
    by_length = [w for _, w in sorted(zip(lengths, flat), key=lambda p: -p[0])]
    threads = torch.get_num_threads()
    runs = [(bs, "sorted", threads) for bs in batch_sizes] + [(bs, "book order", threads) for bs in batch_sizes]
    runs.append((32, "sorted", 1))
    rows = []
    for bs, label, nthreads in runs:
        seq = by_length if label == "sorted" else flat
        t0, c0 = time.perf_counter(), cpu_seconds()
        with _torch_threads(nthreads):
            # one encode call per batch, as the stage does, so sentence-transformers' own per-call sort
            # cannot hide the difference
            for i in range(0, len(seq), bs):
                embedder.encode(seq[i:i + bs], batch_size=bs)
        sec, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        row = {"batch": bs, "order": label, "threads": nthreads, "chunks_per_s": round(len(texts) / sec, 1),
               "chunks_per_cpu_s": round(len(texts) / cpu, 1)}
        rows.append(row)
        print(f"  sweep: batch {bs:>3} {label:<10} {nthreads} thread(s): {row['chunks_per_s']:6.1f} chunks/s, "
              f"{row['chunks_per_cpu_s']:6.1f} chunks per CPU-second", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--book", type=Path, default=DEFAULT_BOOK)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, help="embedding batch size (default: settings)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--home", type=Path, help="BOOKQA_HOME to use (default: a temporary directory)")
    ap.add_argument("--sweep", type=int, default=0, metavar="N", help="also time batch sizes on N chunks")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if not args.book.is_file():
        print(f"book not found: {args.book} (pass --book PATH)", file=sys.stderr)
        return 2

    tmp = None if args.home else tempfile.TemporaryDirectory(prefix="bookqa-bench-retrieval-")
    home = args.home or Path(tmp.name)
    # a plain `kill` should still remove the temporary home
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args, home)
    finally:
        if tmp is not None:
            tmp.cleanup()


def run(args: argparse.Namespace, home: Path) -> int:
    model_cache = os.environ.get("BOOKQA_MODEL_CACHE") or str(Path.home() / ".cache" / "bookqa" / "models")
    settings = Settings.from_env(home=home, model_cache=model_cache, embed_batch_size=args.batch_size,
                                 threads=args.threads)
    import torch

    print(f"book: {args.book.name} ({args.book.stat().st_size / 1e6:.2f} MB)  home: {home}")
    print(f"cpus: {os.cpu_count()}  torch threads: {settings.threads or torch.get_num_threads()}  "
          f"embed batch: {settings.embed_batch_size}  load average at start: {loadavg()}", flush=True)

    t0, c0 = time.perf_counter(), cpu_seconds()
    embedder = load_embedder(settings.embed_model, resolve_device(settings.device), settings.threads,
                             settings.embed_window_overlap)
    embedder_load = time.perf_counter() - t0
    embedder_load_cpu = cpu_seconds() - c0
    stages = [TimedStage(s) for s in default_stages(settings) if s.name in TIMED_STAGES]
    progress = no_progress if args.quiet else TqdmProgress()
    t0 = time.perf_counter()
    report = Library(settings).ingest(args.book, stages=stages, progress=progress)
    if isinstance(progress, TqdmProgress):
        progress.close()
    index_total = time.perf_counter() - t0 + embedder_load
    index_cpu = sum(s.cpu_seconds or 0.0 for s in stages) + embedder_load_cpu
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    book = report.book
    chunks = book.chunks
    dense_info = book.stage("dense")
    dense = next(s for s in stages if s.name == "dense")
    results = {
        "book": args.book.name,
        "chunks": len(chunks),
        "tokens": sum(c.tokens for c in chunks),
        "windowed_chunks": dense_info.get("windowed_chunks"),
        "stage_seconds": {s.name: round(s.seconds or 0.0, 1) for s in stages},
        "stage_cpu_seconds": {s.name: round(s.cpu_seconds or 0.0, 1) for s in stages},
        "embedder_load_seconds": round(embedder_load, 1),
        "indexing_seconds_total": round(index_total, 1),
        "indexing_cpu_seconds_total": round(index_cpu, 1),
        "indexing_idle_estimate_seconds": round(index_cpu / cores, 1),
        "embedding_chunks_per_s": round(len(chunks) / dense.seconds, 1) if dense.seconds else None,
        "peak_rss_mb_after_stage": {s.name: round(s.peak_rss_mb or 0.0) for s in stages},
    }
    print(f"\n{len(chunks)} chunks, {results['tokens']:,} tokens "
          f"({dense_info.get('windowed_chunks')} longer than the embedder's window)")
    print(f"embedder load (import + weights): {embedder_load:6.1f} s")
    for s in stages:
        if s.seconds is None:
            print(f"stage {s.name:<7}   (already built in {home}: not timed)")
            continue
        print(f"stage {s.name:<7} {s.seconds:8.1f} s  (CPU {s.cpu_seconds:7.1f} s)"
              f"   peak RSS so far {s.peak_rss_mb:7.0f} MB")
    print(f"indexing total: {index_total:.1f} s (target <= 240 s); CPU {index_cpu:.1f} s, i.e. about "
          f"{index_cpu / cores:.0f} s on {cores} idle cores; "
          f"embedding {results['embedding_chunks_per_s']} chunks/s",
          flush=True)

    queries = sample_queries(chunks, args.queries, args.seed)
    clear_cache()
    t0 = time.perf_counter()
    search(book, queries[0][0], method="hybrid", settings=settings)
    results["first_query_ms_incl_index_load"] = round((time.perf_counter() - t0) * 1000, 1)
    results["queries"] = len(queries)
    for method in ("hybrid", "bm25", "dense"):
        results[method] = time_queries(book, queries, method, settings)
        r = results[method]
        print(f"{method:<6} p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  "
              f"(CPU p50 {r['cpu_p50_ms']:5.1f} ms)  "
              f"source chunk @1 {r['source_at_1']:.2f}  in top 10 {r['source_in_10']:.2f}  "
              f"in top {settings.top_k} {r['source_in_50']:.2f}", flush=True)
    print(f"first query (loads the indexes): {results['first_query_ms_incl_index_load']:.0f} ms")
    if args.sweep:
        results["sweep"] = sweep(embedder, chunks, args.sweep)
    results["peak_rss_mb"] = round(peak_rss_mb())
    results["loadavg_end"] = loadavg()
    print(f"peak RSS: {results['peak_rss_mb']} MB   load average at end: {results['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
