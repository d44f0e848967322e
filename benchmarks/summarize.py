"""Summarisation speed: LLM block summaries with the embedded model, and the extractive mode.

    python benchmarks/summarize.py llm [--book PATH] [--limit 3]     # a projection from the first N blocks
    python benchmarks/summarize.py extractive [--book PATH]          # the whole book (target < 30 s)

LLM mode chunks the book as ``bookqa ingest`` does, summarises only the first ``--limit`` blocks (and
one summary over them), measures prefill and generation speed per call (time to the first streamed
piece ≈ prefill), and projects the time for the whole book and for a 500k-token book from the dry-run
plan (exact prompt sizes for the blocks, typical sizes above them). Nothing is cached between runs.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bookqa.library import Library  # noqa: E402
from bookqa.settings import Settings  # noqa: E402
from bookqa.stages import ChunkStage  # noqa: E402
from summarizer import Summarizer  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DEFAULT_LLM_BOOK = DATA / "narrativeqa" / "stories" / "18a67c48f4afdee5d95afd681e6e1787471b5f30.txt"  # Hour of the Dragon, ~100k tokens
DEFAULT_EXTRACTIVE_BOOK = DATA / "gutenberg_novels" / "pg1023_bleak_house.txt"


def chunk_book(path: Path, home: Path, settings: Settings):
    t0 = time.perf_counter()
    book = Library(settings.replace(home=home)).ingest(path, stages=[ChunkStage()]).book
    chunks = book.chunks
    seconds = time.perf_counter() - t0
    tokens = sum(c.tokens for c in chunks)
    print(f"book: {book.title} ({path.name}): {len(book.text):,} characters, {len(chunks):,} chunks, "
          f"{tokens:,} tokens; chunked in {seconds:.1f} s")
    return book, chunks, tokens


def shape_calls(n_chunks: int, block: int, fanin: int) -> tuple[int, int]:
    """(block calls, higher-level calls) for a narrative of ``n_chunks`` chunks."""
    blocks = math.ceil(n_chunks / block)
    higher, level = 0, blocks
    while level > 1:
        level = math.ceil(level / fanin)
        higher += level
    return blocks, higher


def run_llm(args, settings: Settings, home: Path) -> None:
    from bookqa.generate import get_generator
    from bookqa.summaries import BLOCK_TOKENS, GROUP_TOKENS, TEMPLATE_MARGIN

    book, chunks, tokens = chunk_book(Path(args.book or DEFAULT_LLM_BOOK), home, settings)
    gen_settings = settings.replace(generator="local", generator_n_ctx=args.n_ctx, threads=args.threads)
    t_load = time.perf_counter()
    generator = get_generator(gen_settings)
    generator.count_tokens("warm up")  # loads the GGUF
    print(f"generator: {generator.model_id}, n_ctx {args.n_ctx}, threads {args.threads or 'default'}; "
          f"loaded in {time.perf_counter() - t_load:.1f} s")
    calls: list[dict] = []

    def complete(prompt: str, max_tokens: int) -> str:
        t0, c0 = time.perf_counter(), time.process_time()
        first = first_cpu = None
        parts = []
        for piece in generator.stream(prompt, max_tokens=max_tokens):
            if first is None:
                first, first_cpu = time.perf_counter(), time.process_time()
            parts.append(piece)
        end, end_cpu = time.perf_counter(), time.process_time()
        first, first_cpu = first or end, first_cpu or end_cpu
        text = "".join(parts)
        calls.append({"in": generator.count_tokens(prompt), "out": generator.count_tokens(text),
                      "prefill_s": first - t0, "decode_s": end - first, "total_s": end - t0,
                      "prefill_cpu": first_cpu - c0, "decode_cpu": end_cpu - first_cpu})
        return text

    block, fanin = settings.summary_block, settings.summary_fanin
    common = dict(block=block, fanin=fanin, model_id=generator.model_id, block_tokens=BLOCK_TOKENS,
                  group_tokens=GROUP_TOKENS, max_input_tokens=args.n_ctx - GROUP_TOKENS - TEMPLATE_MARGIN)
    full_plan = Summarizer(complete, generator.count_tokens, **common).dry_run(chunks)
    subset = chunks[:args.limit * block]
    # with --home, answers are kept in <home>/bench-summaries-cache.json (inspect them; re-runs are free)
    cache = home / "bench-summaries-cache.json" if args.home else None
    summarizer = Summarizer(complete, generator.count_tokens, **common, cache=cache,
                            progress=lambda stage, done, total: print(f"  {stage}: {done}/{total}", flush=True))
    t0 = time.perf_counter()
    tree = summarizer.summarize(subset)
    total_s = time.perf_counter() - t0

    prefill_tokens = sum(c["in"] for c in calls)
    decode_tokens = sum(c["out"] for c in calls)
    prefill_s = sum(c["prefill_s"] for c in calls)
    decode_s = sum(c["decode_s"] for c in calls)
    prefill_rate = prefill_tokens / prefill_s if prefill_s else float("nan")
    decode_rate = decode_tokens / decode_s if decode_s else float("nan")
    mean_out = decode_tokens / len(calls)
    # CPU time of this process: what the rates would be with the cores to ourselves (the machine is shared)
    prefill_cpu = sum(c["prefill_cpu"] for c in calls) / max(1, args.threads or 1)
    decode_cpu = sum(c["decode_cpu"] for c in calls) / max(1, args.threads or 1)
    idle_prefill = prefill_tokens / prefill_cpu if prefill_cpu else float("nan")
    idle_decode = decode_tokens / decode_cpu if decode_cpu else float("nan")
    print(f"\nmeasured on the first {len(tree.levels[0])} blocks ({len(subset)} chunks):")
    print(f"  calls: {len(calls)} ({summarizer.stats.retried} retried, {summarizer.stats.failed} failed)")
    for i, c in enumerate(calls):
        print(f"    call {i + 1}: {c['in']:,} prompt tokens in {c['prefill_s']:.1f} s, {c['out']} answer tokens in "
              f"{c['decode_s']:.1f} s ({c['total_s']:.1f} s)")
    print(f"  seconds per call: {sum(c['total_s'] for c in calls) / len(calls):.1f}")
    print(f"  prefill: {prefill_rate:.0f} tokens/s; generation: {decode_rate:.1f} tokens/s; "
          f"mean answer {mean_out:.0f} tokens")
    print(f"  CPU-time rates (as if the {args.threads or 1} thread(s) had their cores to themselves): "
          f"prefill {idle_prefill:.0f} tokens/s, generation {idle_decode:.1f} tokens/s")
    print(f"  total time: {total_s:.1f} s")
    for node in tree.nodes():
        why = f" ({node.error})" if node.error else ""
        print(f"  {node.id} [{node.status}{why}]: {node.text}")

    def project(in_tokens: float, n_calls: int) -> str:
        wall = in_tokens / prefill_rate + n_calls * mean_out / decode_rate
        idle = in_tokens / idle_prefill + n_calls * mean_out / idle_decode
        return f"~{wall / 60:.0f} min at the measured wall-clock rates, ~{idle / 60:.0f} min on idle cores"

    print("\nPROJECTION (not a full run), from the rates above:")
    print(f"  this book: {full_plan.calls} calls, ~{full_plan.input_tokens:,} prompt tokens -> "
          f"{project(full_plan.input_tokens, full_plan.calls)}")
    in_per_chunk = full_plan.input_tokens / max(1, len(chunks))
    chunks_500k = math.ceil(500_000 / (tokens / len(chunks)))
    b, h = shape_calls(chunks_500k, block, fanin)
    in_500k = in_per_chunk * chunks_500k
    print(f"  a 500k-token book: {chunks_500k:,} chunks, {b} block + {h} higher calls, ~{in_500k:,.0f} prompt "
          f"tokens -> {project(in_500k, b + h)}")


def run_extractive(args, settings: Settings, home: Path) -> None:
    book, chunks, tokens = chunk_book(Path(args.book or DEFAULT_EXTRACTIVE_BOOK), home, settings)
    summarizer = Summarizer(mode="extractive", block=settings.summary_block, fanin=settings.summary_fanin)
    t0 = time.perf_counter()
    tree = summarizer.summarize(chunks)
    seconds = time.perf_counter() - t0
    print(f"extractive summaries: {sum(len(lv) for lv in tree.levels)} nodes "
          f"({' / '.join(str(len(lv)) for lv in tree.levels)} per level) in {seconds:.2f} s "
          f"({'within' if seconds < 30 else 'OVER'} the 30 s target)")
    print(f"  first block: {tree.levels[0][0].text}")
    print(f"  book summary: {tree.root.text}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("llm", "extractive"))
    p.add_argument("--book", help="text file (default: Hour of the Dragon for llm, Bleak House for extractive)")
    p.add_argument("--limit", type=int, default=3, help="llm: summarise only the first N blocks (default 3)")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = its default)")
    p.add_argument("--n-ctx", type=int, default=8192)
    p.add_argument("--home", help="bookqa home for the chunked book (default: a temporary directory)")
    args = p.parse_args()
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory(prefix="bookqa-bench-") as tmp:
        home = Path(args.home) if args.home else Path(tmp)
        (run_llm if args.mode == "llm" else run_extractive)(args, settings, home)


if __name__ == "__main__":
    main()
