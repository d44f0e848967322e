"""QR read-out cost against its floor and against eager attention, on the embedded model.

    python benchmarks/qr_rerank.py [--chunks 50] [--small-chunks 13] [--chunk-tokens 150] [--book PATH]

Builds ~150-token chunks from Moby Dick (``--book``, by default
``../shared/data/gutenberg_novels/pg2701_moby_dick.txt`` relative to the parent of the repository root),
and a question naming something in one of them, then measures, each mode in its
own subprocess (so peak RSS does not mix):

  (a) readout : QRRanker.rank with the shipped heads (forward stops at the deepest head's layer)
  (b) sdpa    : a plain SDPA forward of the same truncated layers (the floor)
  (c) eager   : eager attention with output_attentions=True for the same layers

at ~8k tokens (a, b; for c the memory the attention tensors alone would need is printed) and at ~2k
tokens (a, b, c). Targets: (a) <= 1.15 x (b) time and <= 1.2 x (b) peak RSS; (a) >= 3 x faster than (c).

    python benchmarks/qr_rerank.py --dtypes SEED.jsonl [--n 10] [--heads FILE]

instead compares float32 with bfloat16 weights (question-row softmax in float32 either way) on the first
n items of a seed file: time per prompt and whether the rankings are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT.parent / "shared" / "data" / "gutenberg_novels" / "pg2701_moby_dick.txt"
MODEL = "qwen2.5-coder-0.5b"


def _setup():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def make_chunks(n: int, chunk_tokens: int, pool: int = 50, book: Path = BOOK) -> tuple[list[str], str, int]:
    """n consecutive ~chunk_tokens chunks of whole sentences from chapter 3 on, always including the one
    describing Queequeg's counterpane, and a question naming it; returns (chunks, question, its index)."""
    from bookqa.weights import fast_tokenizer
    from bookqa.settings import Settings

    tok = fast_tokenizer(MODEL, Settings.from_env())
    text = Path(book).read_text(encoding="utf-8")
    start = text.find("CHAPTER 3. The Spouter-Inn")
    start = text.find("CHAPTER 3. The Spouter-Inn", start + 1)  # the chapter itself, not the contents line
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(text[start:].split()))
    chunks, cur, cur_tokens = [], [], 0
    for s in sentences:
        t = len(tok.encode(s).ids)
        if cur and cur_tokens + t > chunk_tokens:
            chunks.append(" ".join(cur))
            cur, cur_tokens = [], 0
            if len(chunks) == max(n, pool):
                break
        cur.append(s)
        cur_tokens += t
    target = next(i for i, c in enumerate(chunks) if "counterpane" in c.lower())
    first = max(0, min(target - n // 2, len(chunks) - n))
    chunks = chunks[first:first + n]
    return chunks, "What was the counterpane on the harpooneer's bed like?", target - first


def run_mode(mode: str, n_chunks: int, chunk_tokens: int, book: Path = BOOK) -> dict:
    """Runs in the child process: load, one warm-up-free timed pass, report time and peak RSS."""
    _setup()
    import torch

    from bookqa.weights import causal_lm_source
    from bookqa.rerank import QRRanker
    from bookqa.rerank.heads import resolve_heads
    from bookqa.rerank.qr import load_model, load_tokenizer
    from bookqa.settings import Settings

    settings = Settings.from_env()
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    chunks, question, target = make_chunks(n_chunks, chunk_tokens, book=book)
    source = causal_lm_source(MODEL, settings)
    heads = resolve_heads(MODEL, None, model_dir=source)
    keep = heads.deepest_layer + 1
    out = {"mode": mode, "chunks": len(chunks), "layers": keep, "threads": torch.get_num_threads()}
    if mode == "readout":
        ranker = QRRanker(MODEL, heads=heads, settings=settings, device="cpu")
        out["dtype"] = ranker.dtype
        out["rss_after_load_mib"] = _rss_mib()
        t = time.perf_counter()
        res = ranker.rank(question, chunks)
        out["seconds"] = time.perf_counter() - t
        out["tokens"] = res.info["prompt_tokens"]
        out["target_rank"] = next(r.rank for r in res if r.index == target)
    else:
        from bookqa.rerank.prompt import build_prompt
        from bookqa.rerank.qr import choose_layout

        tok = load_tokenizer(source)
        prompt = build_prompt(tok, question, chunks, layout=choose_layout(heads, settings.rerank_question_span))
        ids = torch.tensor([prompt.input_ids])
        model = load_model(source, device="cpu", dtype="auto", keep_layers=keep)
        out["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
        out["tokens"] = ids.shape[1]
        if mode == "eager":
            model.set_attn_implementation("eager")
        out["rss_after_load_mib"] = _rss_mib()
        with torch.inference_mode():
            t = time.perf_counter()
            if mode == "eager":
                o = model(input_ids=ids, output_attentions=True, use_cache=False)
                out["attention_tensors_mib"] = sum(a.numel() * a.element_size() for a in o.attentions) / 2**20
            else:
                model(input_ids=ids, use_cache=False)
            out["seconds"] = time.perf_counter() - t
    out["peak_rss_mib"] = _rss_mib()
    return out


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, n_chunks: int, chunk_tokens: int, book: Path = BOOK) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--chunks", str(n_chunks), "--chunk-tokens", str(chunk_tokens),
           "--book", str(book)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"mode": mode, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare_dtypes(seed_file: str, n: int, heads_file: str | None) -> int:
    _setup()
    import numpy as np

    from bookqa.rerank import QRRanker
    from bookqa.lab.detection.seeds import read_seeds
    from bookqa.settings import Settings

    items = read_seeds(seed_file)[:n]
    runs = {}
    for dtype in ("float32", "bfloat16"):
        ranker = QRRanker(MODEL, heads=heads_file, settings=Settings.from_env(), device="cpu", dtype=dtype)
        rows = []
        for it in items:
            res = ranker.rank(it.question, it.candidates)
            rows.append((res.timings["total"], [r.index for r in res], np.array([r.score for r in
                                                                              sorted(res, key=lambda r: r.index)]),
                         res.info["prompt_tokens"]))
        runs[dtype] = rows
        print(f"{dtype}: mean {np.mean([r[0] for r in rows]):.2f} s per prompt "
              f"(mean {np.mean([r[3] for r in rows]):.0f} tokens, {len(ranker.heads.heads)} heads, "
              f"{ranker.heads.deepest_layer + 1} layers)", flush=True)
        del ranker
    f32, b16 = runs["float32"], runs["bfloat16"]
    same = sum(a[1] == b[1] for a, b in zip(f32, b16))
    top1 = sum(a[1][0] == b[1][0] for a, b in zip(f32, b16))
    corr = np.mean([np.corrcoef(a[2], b[2])[0, 1] for a, b in zip(f32, b16)])
    t32, t16 = np.mean([r[0] for r in f32]), np.mean([r[0] for r in b16])
    print(f"\n| dtype | s per prompt | |\n|---|---|---|\n| float32 | {t32:.2f} | |\n| bfloat16 | {t16:.2f} | "
          f"{t32 / t16:.2f}x the float32 speed |")
    print(f"identical rankings {same}/{len(items)}, identical top-1 {top1}/{len(items)}, "
          f"mean score correlation {corr:.4f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=50)
    ap.add_argument("--small-chunks", type=int, default=13)
    ap.add_argument("--chunk-tokens", type=int, default=150)
    ap.add_argument("--book", type=Path, default=BOOK, help="the Moby Dick text (Project Gutenberg #2701)")
    ap.add_argument("--dtypes", metavar="SEED.jsonl", help="compare float32 and bfloat16 on seed items instead")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--heads", help="heads file (default: the shipped one)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dtypes:
        return compare_dtypes(args.dtypes, args.n, args.heads)
    if args.child:
        print(json.dumps(run_mode(args.child, args.chunks, args.chunk_tokens, args.book)))
        return 0

    _setup()
    results = {}
    for size, n in (("large", args.chunks), ("small", args.small_chunks)):
        modes = ("readout", "sdpa") if size == "large" else ("readout", "sdpa", "eager")
        for mode in modes:
            r = child(mode, n, args.chunk_tokens, args.book)
            results[(size, mode)] = r
            print(json.dumps({"size": size, **r}), flush=True)
    from transformers import AutoConfig

    from bookqa.weights import causal_lm_source
    from bookqa.settings import Settings

    cfg = AutoConfig.from_pretrained(causal_lm_source(MODEL, Settings.from_env()))
    print()
    print("| size | mode | tokens | layers | time s | peak RSS MiB | RSS after load MiB |")
    print("|---|---|---|---|---|---|---|")
    for (size, mode), r in results.items():
        if "error" in r:
            print(f"| {size} | {mode} | error: {r['error']} |||||")
            continue
        print(f"| {size} | {mode} | {r['tokens']} | {r['layers']} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['rss_after_load_mib']:.0f} |")
    big = results.get(("large", "sdpa"), {})
    if "tokens" in big:
        n_tok, layers = big["tokens"], big["layers"]
        need = layers * cfg.num_attention_heads * n_tok * n_tok * 4 / 2**30
        print(f"\n(c) eager at {n_tok} tokens: the attention outputs alone would need {layers} layers x "
              f"{cfg.num_attention_heads} heads x {n_tok}^2 x 4 B = {need:.1f} GiB (float32); not run.")
    print()
    for size in ("large", "small"):
        a, b = results.get((size, "readout"), {}), results.get((size, "sdpa"), {})
        if "seconds" in a and "seconds" in b:
            print(f"{size}: readout/sdpa time {a['seconds'] / b['seconds']:.2f} (target <= 1.15), "
                  f"peak RSS {a['peak_rss_mib'] / b['peak_rss_mib']:.2f} (target <= 1.2)")
    a, c = results.get(("small", "readout"), {}), results.get(("small", "eager"), {})
    if "seconds" in a and "seconds" in c:
        print(f"small: eager/readout time {c['seconds'] / a['seconds']:.2f} (target >= 3), "
              f"peak RSS eager {c['peak_rss_mib']:.0f} vs readout {a['peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
