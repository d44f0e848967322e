"""Cached-chunk QR against the full prompt, side by side in one run, on the embedded model and a real book.

    .venv/bin/python benchmarks/qr_cached.py [--book PATH] [--counts 20,50] [--questions 3] [--kv-dtypes bfloat16,int8]

Chunks the book as ``bookqa ingest`` does (~200 tokens, exact spans), takes each question's BM25 top 50
(its top 20 for the smaller count), and measures, each in its own subprocess so peak RSS does not mix:

  (i)   full    : today's QR (the configured ranker, as ``bookqa ask`` runs it) over the candidates
  (ii)  cached  : the question pass over the candidates' stored keys/values (read from the book's
                  memory-mapped cache); also the cascade (cached, then the full prompt over the top 10)
  (iii) build   : encoding the candidates' chunks into the cache, seconds per chunk (the one-off cost)
  (iv)  bytes   : cache bytes per token and for the whole book, measured on disk for what was built and
                  computed for the rest; peak RSS of each subprocess

and how the cached rankings compare with the full prompt's (same top-1, Kendall tau) and int8 with
bfloat16 rows. Targets: (ii) >= 20x faster than (i) at 50 candidates, (ii) <= 2 s.
The default book is Moby Dick from the development data (``--book``, or ``$BOOKQA_DATA``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BOOKQA_DATA") or ROOT.parent / "shared" / "data")
BOOK = DATA / "gutenberg_novels" / "pg2701_moby_dick.txt"
QUESTIONS = ("What was the counterpane on the harpooneer's bed like?",
             "Why does Ahab want to kill the white whale?",
             "What does Queequeg do with the coffin?",
             "Who is the captain of the Pequod?",
             "What did Father Mapple preach about?")


def _setup():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(book_path: Path, home: Path, questions: list[str], k: int) -> dict:
    """Chunk the book into a throw-away library and store each question's BM25 top ``k``."""
    _setup()
    from bookqa.library import Library
    from bookqa.retrieve import search
    from bookqa.retrieve.stages import Bm25Stage
    from bookqa.settings import Settings
    from bookqa.stages import ChunkStage

    settings = Settings.from_env(home=home)
    book = Library(settings).ingest(book_path, stages=[ChunkStage(), Bm25Stage()]).book
    cands = {q: [c.chunk_id for c in search(book, q, k=k, method="bm25", settings=settings)] for q in questions}
    return {"book_dir": str(book.dir), "chunks": len(book.chunks), "tokens": sum(c.tokens for c in book.chunks),
            "candidates": cands}


def _book(book_dir: str):
    from bookqa.store import Book

    return Book(Path(book_dir))


def run_full(plan: dict, counts: list[int]) -> dict:
    _setup()
    from bookqa.pipeline import get_reranker
    from bookqa.settings import Settings

    settings = Settings.from_env()
    ranker = get_reranker(settings)
    book = _book(plan["book_dir"])
    out = {"rss_after_load_mib": _rss_mib(), "describe": ranker.describe(), "rows": []}
    for q, ids in plan["candidates"].items():
        for n in counts:
            t = time.perf_counter()
            res = ranker.rank(q, [book.chunks[i] for i in ids[:n]])
            out["rows"].append({"question": q, "n": n, "seconds": time.perf_counter() - t,
                                "tokens": res.info["prompt_tokens"], "order": res.chunk_ids})
    out["peak_rss_mib"] = _rss_mib()
    return out


def run_build(plan: dict, kv_dtype: str) -> dict:
    _setup()
    from bookqa.pipeline import get_cached_reranker
    from bookqa.rerank.stage import open_book_cache
    from bookqa.settings import Settings

    settings = Settings.from_env(qr_cache_dtype=kv_dtype)
    cached = get_cached_reranker(settings)
    book = _book(plan["book_dir"])
    store = open_book_cache(book, cached, settings, create=True)
    ids = sorted({i for v in plan["candidates"].values() for i in v})
    rss = _rss_mib()
    t = time.perf_counter()
    done = cached.fill(store, book.chunks, ids)
    seconds = time.perf_counter() - t
    built_tokens = int(sum(store.lengths[i] for i in ids))
    return {"kv_dtype": kv_dtype, "encoded": done["encoded"], "seconds": seconds,
            "per_chunk_s": seconds / max(1, done["encoded"]), "built_tokens": built_tokens,
            "disk_bytes": store.disk_bytes(), "full_bytes": store.full_bytes(), "book_tokens": int(store.meta["tokens"]),
            "prefix_tokens": store.prefix_tokens, "layers": store.shape.layers, "rss_after_load_mib": rss,
            "peak_rss_mib": _rss_mib()}


def run_cached(plan: dict, counts: list[int], kv_dtype: str, repeats: int, cascade_top: int) -> dict:
    _setup()
    from bookqa.pipeline import get_cached_reranker
    from bookqa.rerank.stage import open_book_cache
    from bookqa.settings import Settings

    settings = Settings.from_env(qr_cache_dtype=kv_dtype)
    cached = get_cached_reranker(settings)
    book = _book(plan["book_dir"])
    store = open_book_cache(book, cached, settings, create=False)
    out = {"kv_dtype": kv_dtype, "rss_after_load_mib": _rss_mib(), "rows": []}
    for q, ids in plan["candidates"].items():
        for n in counts:
            chunks = [book.chunks[i] for i in ids[:n]]
            times, res = [], None
            for _ in range(repeats):
                t = time.perf_counter()
                res = cached.rank(q, chunks, store=store, book_chunks=book.chunks)
                times.append(time.perf_counter() - t)
            row = {"question": q, "n": n, "seconds": statistics.median(times), "timings": res.timings,
                   "encoded": res.info["encoded"], "cached_tokens": res.info["cached_tokens"],
                   "tokens_run": res.info["tokens_run"], "order": res.chunk_ids}
            if cascade_top:
                t = time.perf_counter()
                cas = cached.rank(q, chunks, store=store, book_chunks=book.chunks, cascade_top=cascade_top)
                row["cascade_seconds"] = time.perf_counter() - t
                row["cascade_order"] = cas.chunk_ids
            out["rows"].append(row)
    out["peak_rss_mib"] = _rss_mib()
    return out


def child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def kendall_tau(a: list[int], b: list[int]) -> float:
    from scipy.stats import kendalltau

    pos = {c: i for i, c in enumerate(b)}
    return float(kendalltau(list(range(len(a))), [pos[c] for c in a]).statistic)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--book", type=Path, default=BOOK, help="a long text (default: Moby Dick of the development data)")
    ap.add_argument("--counts", default="20,50")
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timed cached passes per question (median)")
    ap.add_argument("--kv-dtypes", default="bfloat16,int8")
    ap.add_argument("--cascade-top", type=int, default=10)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    counts = [int(x) for x in args.counts.split(",")]
    if args.child:
        what, plan_file = args.child[0], args.child[1]
        plan = json.loads(Path(plan_file).read_text())
        if what == "full":
            out = run_full(plan, counts)
        elif what == "build":
            out = run_build(plan, args.child[2])
        else:
            out = run_cached(plan, counts, args.child[2], args.repeats, args.cascade_top)
        print(json.dumps(out))
        return 0
    if not args.book.is_file():
        raise SystemExit(f"no book at {args.book}; pass --book PATH (or set BOOKQA_DATA to the data folder)")
    _setup()
    import platform

    import torch

    kv_dtypes = args.kv_dtypes.split(",")
    from bookqa.settings import Settings

    # the user's converted models stay where they are; the chunked book and its cache live in a temp home
    os.environ["BOOKQA_MODEL_CACHE"] = str(Settings.from_env().models_dir)
    with tempfile.TemporaryDirectory(prefix="bookqa-qr-cached-") as tmp:
        home = Path(tmp) / "home"
        os.environ["BOOKQA_HOME"] = str(home)
        t = time.perf_counter()
        plan = prepare(args.book, home, list(QUESTIONS[:args.questions]), max(counts))
        print(f"book {args.book.name}: {plan['chunks']} chunks, {plan['tokens']:,} tokens "
              f"(chunked in {time.perf_counter() - t:.0f} s); CPU {platform.processor() or platform.machine()}, "
              f"torch threads {torch.get_num_threads()}", flush=True)
        plan_file = Path(tmp) / "plan.json"
        plan_file.write_text(json.dumps(plan))
        flags = ["--counts", args.counts, "--repeats", str(args.repeats), "--cascade-top", str(args.cascade_top)]
        full = child(["full", str(plan_file), *flags])
        print(f"(i) full: {full['describe']['dtype']}, refine {full['describe']['refine']}, "
              f"peak RSS {full['peak_rss_mib']:.0f} MiB", flush=True)
        builds, passes = {}, {}
        for dt in kv_dtypes:
            builds[dt] = child(["build", str(plan_file), dt, *flags])
            passes[dt] = child(["cached", str(plan_file), dt, *flags])
            print(f"({dt}) built {builds[dt]['encoded']} chunks in {builds[dt]['seconds']:.0f} s", flush=True)

    print()
    print("| n | full s | cached s (" + ", ".join(kv_dtypes) + ") | speed-up | cascade s | cached tokens | question tokens |")
    print("|---|---|---|---|---|---|---|")
    base = kv_dtypes[0]
    summary = {}
    for n in counts:
        f = [r for r in full["rows"] if r["n"] == n]
        c = {dt: [r for r in passes[dt]["rows"] if r["n"] == n] for dt in kv_dtypes}
        f_med = statistics.median(r["seconds"] for r in f)
        c_med = {dt: statistics.median(r["seconds"] for r in c[dt]) for dt in kv_dtypes}
        cas = statistics.median(r.get("cascade_seconds", float("nan")) for r in c[base])
        summary[n] = (f_med, c_med[base])
        print(f"| {n} | {f_med:.2f} | " + " / ".join(f"{c_med[dt]:.3f}" for dt in kv_dtypes)
              + f" | {f_med / c_med[base]:.0f}x | {cas:.2f} | {c[base][0]['cached_tokens']} | {c[base][0]['tokens_run']} |")
    print()
    print("| stored as | s per chunk to build | bytes per token | built on disk | whole book | peak RSS build / query MiB |")
    print("|---|---|---|---|---|---|")
    for dt in kv_dtypes:
        b = builds[dt]
        per_token = b["full_bytes"] / b["book_tokens"]
        print(f"| {dt} | {b['per_chunk_s']:.3f} | {per_token:,.0f} | {b['disk_bytes'] / 2**20:.0f} MiB for "
              f"{b['built_tokens']:,} tokens | {b['full_bytes'] / 2**30:.2f} GiB ({b['book_tokens']:,} tokens; "
              f"~{b['per_chunk_s'] * plan['chunks'] / 60:.0f} min to build) | {b['peak_rss_mib']:.0f} / "
              f"{passes[dt]['peak_rss_mib']:.0f} |")
    print(f"\npeak RSS of the full prompt: {full['peak_rss_mib']:.0f} MiB")
    print("\nrankings against the full prompt (per question and count):")
    for n in counts:
        f = {r["question"]: r["order"] for r in full["rows"] if r["n"] == n}
        for dt in kv_dtypes:
            c = {r["question"]: r for r in passes[dt]["rows"] if r["n"] == n}
            top1 = sum(c[q]["order"][0] == f[q][0] for q in f)
            tau = statistics.mean(kendall_tau(c[q]["order"], f[q]) for q in f)
            line = f"  n={n} {dt}: same top-1 {top1}/{len(f)}, mean Kendall tau {tau:.2f}"
            if "cascade_order" in next(iter(c.values())):
                ctop = sum(c[q]["cascade_order"][0] == f[q][0] for q in f)
                line += f"; cascade same top-1 {ctop}/{len(f)}"
            if dt != base:
                b = {r["question"]: r["order"] for r in passes[base]["rows"] if r["n"] == n}
                same = sum(c[q]["order"] == b[q] for q in f)
                line += f"; identical to {base}: {same}/{len(f)} rankings, tau {statistics.mean(kendall_tau(c[q]['order'], b[q]) for q in f):.3f}"
            print(line)
    n = max(counts)
    f_med, c_med = summary[n]
    print(f"\nat {n} candidates: cached {c_med:.2f} s vs full {f_med:.1f} s = {f_med / c_med:.0f}x "
          f"(target >= 20x, and <= 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
