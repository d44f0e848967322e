"""QR head commands: detect heads for a model, build seed sets, show the heads a model would use."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ..progress import TqdmProgress
from ..settings import Settings

# The installed package: heads files under it (the shipped heads, a shipped adapter's) are never updated
# in place, so an estimate cannot change what every other user of this installation ranks with.
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("heads", help="QR heads: detect them for a model, build seed sets, show them")
    hs = p.add_subparsers(dest="heads_command", metavar="SUBCOMMAND")
    hs.required = True

    d = hs.add_parser("detect", help="rank every head by its QR score on a seed set and write a heads file")
    d.add_argument("--model", dest="reranker_model", help="registry name, hub id or local directory "
                   "(default: the reranker model)")
    d.add_argument("--data", action="append", required=True, metavar="SEED.jsonl",
                   help="seed items to select heads on (repeatable)")
    d.add_argument("--heldout", action="append", default=[], metavar="SEED.jsonl",
                   help="seed items used only to evaluate the chosen heads (repeatable)")
    d.add_argument("--heldout-frac", type=float, default=0.0,
                   help="also hold out this fraction of --data (split by a hash of the item id)")
    d.add_argument("--layers", help="layer range to choose heads from, e.g. 8-16 (the report then compares "
                   "it with heads from all layers)")
    d.add_argument("--top", type=int, default=16, help="heads to keep (default 16)")
    d.add_argument("--select", choices=("qr", "greedy"), default="qr",
                   help="qr: top heads by QR score (the paper); greedy: forward selection by MRR")
    d.add_argument("--span", choices=("question", "query"), help="question span convention "
                   "(default: the rerank_question_span setting)")
    d.add_argument("--limit", type=int, help="use only the first N items of --data")
    d.add_argument("--out", default="heads.json", help="heads file to write (default heads.json)")
    d.add_argument("--report", help="Markdown report to write")
    d.add_argument("--cache", help="per-item score cache directory (default OUT.cache); reruns resume from it")
    d.add_argument("--no-compare", action="store_true", help="with --layers: scan only those layers")
    d.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto")
    d.add_argument("--cached-only", action="store_true",
                   help="report on the items already in the cache, compute nothing (peek at a running detection)")
    d.set_defaults(handler=cmd_detect)

    b = hs.add_parser("build-seeds", help="build a seed JSONL from a development dataset")
    b.add_argument("--dataset", required=True, choices=("musique", "hotpotqa", "locomo", "narrativeqa"))
    b.add_argument("--data", required=True, help="the dataset file (musique .jsonl, hotpotqa .json/.jsonl, "
                   "locomo10.json, narrativeqa qaps_dev.jsonl)")
    b.add_argument("--out", required=True, help="seed JSONL to write")
    b.add_argument("--model", dest="reranker_model", help="model whose tokenizer measures candidate length")
    b.add_argument("--select", help="record range A-B (LoCoMo: conversations, NarrativeQA: documents)")
    b.add_argument("--per-doc", type=int, help="at most N questions per conversation / document")
    b.add_argument("--limit", type=int, help="at most N items (a seeded random subset)")
    b.add_argument("--candidates", type=int, help="candidates per item (default: all paragraphs; top-20 for "
                   "LoCoMo / NarrativeQA)")
    b.add_argument("--max-tokens", type=int, default=120, help="cap on a candidate's tokens (default 120)")
    b.add_argument("--negatives", choices=("bm25", "random"), default="bm25", help="LoCoMo candidates")
    b.add_argument("--keep-order", action="store_true", help="keep the source / retriever order (default: "
                   "shuffle each item's candidates)")
    b.set_defaults(handler=cmd_build_seeds)

    e = hs.add_parser("eval", help="recall of a head set on seed items, next to the items' input order")
    e.add_argument("--model", dest="reranker_model")
    e.add_argument("--heads", dest="reranker_heads", help="heads file or builtin:NAME (default: resolved)")
    e.add_argument("--data", action="append", required=True, metavar="SEED.jsonl")
    e.add_argument("--limit", type=int, help="first N items")
    e.add_argument("--span", choices=("question", "query"), help="question span (default: the heads file's)")
    e.add_argument("--calibrate", action="store_true", help="subtract the N/A null-query attention")
    e.add_argument("--aggregate", choices=("sum", "max"))
    e.add_argument("--debias", choices=("none", "position"), help="position: correct by the heads file's "
                   "position prior (`bookqa heads prior`)")
    e.add_argument("--permutations", type=int, help="candidate orders scored and averaged (default: rerank_permutations; 0 = auto: 2 on a GPU with untrained heads, else 1)")
    e.add_argument("--refine", type=int, help="re-score the top N in a short reversed prompt (default: rerank_refine; -1 = auto, 5 with one order, 0 = off)")
    e.add_argument("--json", help="also write the numbers to this JSON file")
    e.set_defaults(handler=cmd_eval)

    pr = hs.add_parser("prior", help="estimate the per-position score prior of a head set (rerank_debias=position) "
                       "and store it in the heads file")
    pr.add_argument("--model", dest="reranker_model")
    pr.add_argument("--heads", dest="reranker_heads", help="heads file (default: the one the reranker uses)")
    pr.add_argument("--data", action="append", required=True, metavar="SEED.jsonl",
                    help="seed items whose non-gold candidates show what a position alone earns (repeatable)")
    pr.add_argument("--counts", default=None, help="candidate counts to estimate at, e.g. 20,50 (default: top_k); "
                    "other counts use the nearest one, by relative position")
    pr.add_argument("--limit", type=int, help="a seeded sample of N items")
    pr.add_argument("--seed", type=int, default=0, help="seed of the sample and of the candidate orders")
    pr.add_argument("--mode", choices=("auto", "subtract", "divide"), default="auto",
                    help="how the prior corrects a score (default auto: the better on held-out prompts)")
    pr.add_argument("--span", choices=("question", "query"), help="question span (default: the heads file's)")
    pr.add_argument("--aggregate", choices=("sum", "max"))
    pr.add_argument("--out", help="heads file to write (default: the heads file read, updated in place; "
                    "required when that file ships with bookqa)")
    pr.set_defaults(handler=cmd_prior)

    s = hs.add_parser("show", help="print the heads the reranker would use for a model")
    s.add_argument("--model", dest="reranker_model")
    s.add_argument("--heads", dest="reranker_heads", help="heads file or builtin:NAME")
    s.set_defaults(handler=cmd_show)


def cmd_detect(args: argparse.Namespace, settings: Settings) -> int:
    from ..lab.detection.detect import detect

    progress = TqdmProgress(quiet=args.quiet)
    command = _detect_command(args, settings)
    try:
        outcome = detect(settings.reranker_model, args.data, settings=settings, heldout=args.heldout,
                         layers=args.layers, top=args.top, heldout_frac=args.heldout_frac, limit=args.limit,
                         span=args.span, select=args.select, compare_all=not args.no_compare,
                         cache_dir=Path(args.cache) if args.cache else None, out=Path(args.out),
                         report_path=Path(args.report) if args.report else None, command=command,
                         dtype=args.dtype, cached_only=args.cached_only, progress=progress)
    finally:
        progress.close()
    print(f"wrote {args.out}: {len(outcome.heads.heads)} heads "
          f"({', '.join(f'{l}-{h}' for l, h in outcome.heads.heads)})")
    if args.report:
        print(f"wrote {args.report}")
    held = outcome.evaluations.get("Held-out evaluation", {}).get("all", {})
    for name, ev in held.items():
        print(f"  held-out {name}: R@1 {ev['R@1']:.3f}  R@3 {ev['R@3']:.3f}  R@5 {ev['R@5']:.3f}")
    return 0


def _detect_command(args: argparse.Namespace, settings: Settings) -> str:
    """The detect command line, rebuilt from the parsed options (recorded in the heads file/report)."""
    parts = ["bookqa", "heads", "detect", "--model", settings.reranker_model]
    for path in args.data:
        parts += ["--data", path]
    for path in args.heldout:
        parts += ["--heldout", path]
    for flag, value in (("--heldout-frac", args.heldout_frac or None), ("--layers", args.layers),
                        ("--top", args.top), ("--select", args.select), ("--span", args.span),
                        ("--limit", args.limit), ("--out", args.out), ("--report", args.report),
                        ("--cache", args.cache), ("--dtype", None if args.dtype == "auto" else args.dtype)):
        if value is not None:
            parts += [flag, str(value)]
    if args.no_compare:
        parts.append("--no-compare")
    return " ".join(shlex.quote(p) for p in parts)


def cmd_build_seeds(args: argparse.Namespace, settings: Settings) -> int:
    from ..weights import fast_tokenizer
    from ..lab.detection.seeds import build_seeds, write_seeds

    tok = fast_tokenizer(settings.reranker_model, settings)
    items = build_seeds(args.dataset, args.data, tok, select=args.select, per_doc=args.per_doc, limit=args.limit,
                        negatives=args.negatives, n_candidates=args.candidates, max_tokens=args.max_tokens,
                        shuffle=not args.keep_order)
    n = write_seeds(args.out, items)
    cands = sum(len(it.candidates) for it in items) / max(1, n)
    print(f"wrote {args.out}: {n} items from {args.dataset}, {cands:.1f} candidates per item")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from ..fileio import write_json
    from ..rerank import QRRanker
    from ..lab.detection.detect import evaluate_heads
    from ..lab.detection.seeds import read_seeds

    items = [it for path in args.data for it in read_seeds(path)]
    if args.limit is not None:
        items = items[:args.limit]
    progress = TqdmProgress(quiet=args.quiet)
    try:
        ranker = QRRanker(settings=settings, question_span=args.span, calibrate=args.calibrate or None,
                          aggregate=args.aggregate, debias=args.debias, permutations=args.permutations,
                          refine=args.refine, progress=progress)
        out = evaluate_heads(ranker, items, progress)
    finally:
        progress.close()
    print(f"{len(items)} items, {out['tokens_per_item']:.0f} prompt tokens and {out['seconds_per_item']:.1f} s "
          f"per item; heads {ranker.heads.source}, span {ranker.layout.question_span}, "
          f"calibrate {ranker.calibrate}, aggregate {ranker.aggregate}, debias {ranker.debias}, "
          f"permutations {ranker.permutations}")
    print("| source | ranking | R@1 | R@3 | R@5 | Hit@1 | MRR | n |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [("all", out)] + sorted(out["by_source"].items())
    for src, block in rows:
        for name in ("input_order", "heads"):
            ev = block[name]
            print(f"| {src} | {name.replace('_', ' ')} | {ev['R@1']:.3f} | {ev['R@3']:.3f} | {ev['R@5']:.3f} | "
                  f"{ev['Hit@1']:.3f} | {ev['MRR']:.3f} | {ev['n']} |")
    if args.json:
        write_json(args.json, out)
    return 0


def cmd_prior(args: argparse.Namespace, settings: Settings) -> int:
    import random

    from ..errors import ConfigError
    from ..rerank import QRRanker
    from ..rerank.orders import with_prior
    from ..rerank.heads import save_heads
    from ..lab.detection.prior import estimate_priors
    from ..lab.detection.seeds import read_seeds

    items = [it for path in args.data for it in read_seeds(path)]
    if args.limit is not None and len(items) > args.limit:
        keep = sorted(random.Random(f"bookqa-prior-sample:{args.seed}").sample(range(len(items)), args.limit))
        items = [items[i] for i in keep]
    try:
        counts = [int(c) for c in (args.counts or str(settings.top_k)).split(",") if c.strip()]
    except ValueError:
        raise ConfigError(f"--counts must be numbers separated by commas, got {args.counts!r}") from None
    progress = TqdmProgress(quiet=args.quiet)
    try:
        ranker = QRRanker(settings=settings, question_span=args.span, aggregate=args.aggregate, calibrate=False,
                          debias="none", permutations=1, progress=progress)
        out = args.out or ranker.heads.source
        if not out or not str(out).endswith(".json"):
            raise ConfigError(f"the heads come from {ranker.heads.source!r}, not a heads file; pass --out FILE.json")
        if not args.out and Path(out).resolve().is_relative_to(PACKAGE_DIR):
            raise ConfigError(f"the heads in use ship with bookqa ({out}); write the prior to a file of your own "
                              "with --out FILE.json, then rank with reranker_heads = that file")
        command = " ".join(shlex.quote(a) for a in ["bookqa", "heads", "prior", "--model", settings.reranker_model]
                           + (["--heads", settings.reranker_heads] if settings.reranker_heads else [])
                           + [x for p in args.data for x in ("--data", p)] + ["--counts", ",".join(map(str, counts))]
                           + (["--limit", str(args.limit)] if args.limit is not None else [])
                           + ["--seed", str(args.seed), "--mode", args.mode])
        priors = estimate_priors(ranker, items, counts, seed=args.seed, mode=args.mode,
                                 source={"data": list(args.data), "command": command}, progress=progress)
    finally:
        progress.close()
    save_heads(out, with_prior(ranker.heads, priors))
    print(f"wrote {out}: position priors of {len(ranker.heads.heads)} heads from {len(items)} items, "
          f"counts {', '.join(map(str, counts))}, {priors[0].source['seconds_per_prompt']:.1f} s per prompt")
    print("| scoring | count | prompts | position 1 | 2 | 3 | middle | last |")
    print("|---|---|---|---|---|---|---|---|")
    for prior in priors:
        label = "calibrated" if prior.scoring["calibrate"] else "plain"
        for n, curve in sorted(prior.curves.items()):
            cells = [f"{curve[i]:.3f}" if i < n else "–" for i in (0, 1, 2)] + [f"{curve[n // 2]:.3f}", f"{curve[-1]:.3f}"]
            print(f"| {label} | {n} | {prior.prompts.get(n, 0)} | " + " | ".join(cells) + " |")
    print("\nheld-out prompts (two folds, each ranked with the other's prior):")
    print("| scoring | correction | Hit@1 | MRR | top-1 at position 1 | n | chosen |")
    print("|---|---|---|---|---|---|---|")
    for prior in priors:
        ev = prior.evaluation
        label = "calibrated" if prior.scoring["calibrate"] else "plain"
        for mode in ("none", "subtract", "divide"):
            if mode in ev:
                m = ev[mode]
                print(f"| {label} | {mode} | {m['hit@1']:.3f} | {m['mrr']:.3f} | {m['top1_at_position_1']:.3f} | "
                      f"{ev['n']} | {'yes' if ev.get('chosen') == mode else ''} |")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from ..errors import BookQAError
    from ..weights import causal_lm_source
    from ..rerank.heads import head_name, resolve_heads

    source = None
    try:
        source = causal_lm_source(settings.reranker_model, settings)
    except BookQAError:
        pass  # the weights are not needed to name the heads (shipped or built-in lists)
    heads = resolve_heads(settings.reranker_model, settings.reranker_heads or None, model_dir=source)
    print(f"{len(heads.heads)} heads for {settings.reranker_model} from {heads.source}:")
    print("  " + ", ".join(head_name(h) for h in heads.heads))
    if heads.detection:
        print(f"  detection: {heads.detection.get('method', '')}")
    return 0
