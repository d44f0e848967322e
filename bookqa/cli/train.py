"""QR training commands: ``bookqa train`` fine-tunes the layers feeding the QR heads on training samples;
``bookqa train samples`` builds those samples from a development dataset."""
from __future__ import annotations

import argparse
import shlex
import sys

from ..progress import TqdmProgress
from ..settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="QR training: fine-tune the QR heads' layers (group contrastive loss)",
                       description="Fine-tune the layers feeding the QR heads on training samples and write a "
                                   "model directory QRRanker loads (bookqa eval --trained DIR). Resumes from the "
                                   "last checkpoint in --out. Build samples with `bookqa train samples`.")
    p.add_argument("--model", dest="reranker_model", help="base model: registry name, hub id or directory "
                   "(default: the reranker model)")
    p.add_argument("--heads", dest="reranker_heads", help="heads file or builtin:NAME (default: the model's)")
    p.add_argument("--data", action="append", metavar="SAMPLES.jsonl",
                   help="training samples (repeatable; from `bookqa train samples` or a seed file)")
    p.add_argument("--out", help="output model directory (also holds the checkpoints)")
    p.add_argument("--scope", choices=("full", "qr-layers", "lora"), help="parameters to train (default: "
                   "the train_scope setting, full)")
    p.add_argument("--steps", type=int, help="optimiser steps (default: train_steps)")
    p.add_argument("--max-tokens", type=int, help="cap on a candidate's tokens (default: train_max_tokens)")
    p.add_argument("--candidates", type=int, help="candidates per prompt, retriever order (default: "
                   "train_candidates)")
    p.add_argument("--order", choices=("retriever", "shuffled"),
                   help="candidate order in training prompts (default: train_order, retriever; validation keeps "
                        "retriever order)")
    p.add_argument("--attention", choices=("full", "block", "question"),
                   help="full prompt (default: train_attention, full), the cached-chunk block layout "
                        "(candidates encoded apart, as BOOKQA_QR_MODE=cached ranks), or that layout with the "
                        "adapter on the question only (scope lora: chunks keep the base model's keys/values, so "
                        "one chunk cache serves it; training runs only the question's tokens)")
    p.add_argument("--lr", type=float,
                   help="AdamW learning rate (default: train_lr; 0 = by scope: 1e-5 full / qr-layers, 1e-4 lora)")
    p.add_argument("--accum", type=int, help="samples per optimiser step (default: train_accum, 4)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints and validations")
    p.add_argument("--val-limit", type=int, help="validation samples scored each time (default: train_val_limit)")
    p.add_argument("--device", help="auto | cpu | cuda | mps")
    p.add_argument("--fresh", action="store_true", help="delete the checkpoints in --out and start over")
    p.add_argument("--merge", action="store_true", help="scope lora: write the adapters merged into a full copy "
                   "of the model instead of the adapter alone (~25 MB for the embedded model, loaded over --model)")
    p.set_defaults(handler=cmd_train)

    ts = p.add_subparsers(dest="train_command", metavar="SUBCOMMAND")
    s = ts.add_parser("samples", help="build training samples (JSONL) from a development dataset")
    s.add_argument("--dataset", required=True, choices=("musique", "hotpotqa", "locomo", "narrativeqa"))
    s.add_argument("--data", dest="dataset_path", required=True, help="the dataset file (musique .jsonl, "
                   "hotpotqa .json/.jsonl, locomo10.json, narrativeqa qaps_dev.jsonl)")
    s.add_argument("--out", dest="samples_out", required=True, help="samples JSONL to write")
    s.add_argument("--model", dest="reranker_model", help="model whose tokenizer measures candidates")
    s.add_argument("--select", help="record range A-B (LoCoMo: conversations, NarrativeQA: documents in id order)")
    s.add_argument("--per-doc", type=int, help="at most N questions per conversation / document")
    s.add_argument("--limit", type=int, help="at most N samples (a seeded random subset)")
    s.add_argument("--candidates", dest="n_candidates", type=int, default=20,
                   help="candidates per sample (retriever top-N; default 20)")
    s.add_argument("--max-tokens", dest="cand_tokens", type=int, default=120,
                   help="cap on a candidate's tokens (default 120)")
    s.add_argument("--val-frac", type=float, help="share of documents for validation (default: train_val_frac)")
    s.add_argument("--prefix", action="store_true", help="add a summary prefix (extractive block summaries "
                   "covering the candidates; NarrativeQA and LoCoMo)")
    s.set_defaults(handler=cmd_samples)


def _log(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from ..errors import ConfigError
    from ..lab.settings import TrainSettings
    from ..lab.train.trainer import TrainOptions, train

    if not args.data or not args.out:
        raise ConfigError("bookqa train needs --data SAMPLES.jsonl and --out DIR")
    if args.device:
        settings = settings.replace(device=args.device)
    options = TrainOptions.from_settings(TrainSettings.from_env(), scope=args.scope, steps=args.steps, max_tokens=args.max_tokens,
                                         candidates=args.candidates, order=args.order, attention=args.attention, lr=args.lr,
                                         accum=args.accum,
                                         checkpoint_every=args.checkpoint_every, val_limit=args.val_limit)
    progress = TqdmProgress(quiet=args.quiet)
    log = (lambda line: None) if args.quiet else _log
    try:
        report = train(settings.reranker_model, args.data, args.out, heads=settings.reranker_heads or None,
                       settings=settings, options=options, fresh=args.fresh, merge=args.merge,
                       command=_command(args, settings),
                       progress=progress, log=log)
    finally:
        progress.close()
    before, after = report.get("before"), report.get("after")
    print(f"wrote {args.out}: {report['steps_done']} steps, scope {options.scope}, "
          f"{report['seconds_per_step_median'] or 0:.1f} s/step (median)")
    for name, ev in (("before", before), ("after", after)):
        if ev:
            q = ev["qr"]
            print(f"  validation {name}: R@1 {q['R@1']:.3f}  R@3 {q['R@3']:.3f}  R@5 {q['R@5']:.3f}  (n={q['n']})")
    return 0


def _command(args: argparse.Namespace, settings: Settings) -> str:
    parts = ["bookqa", "train", "--model", settings.reranker_model]
    if settings.reranker_heads:
        parts += ["--heads", settings.reranker_heads]
    for path in args.data:
        parts += ["--data", path]
    for flag, value in (("--out", args.out), ("--scope", args.scope), ("--steps", args.steps),
                        ("--max-tokens", args.max_tokens), ("--candidates", args.candidates),
                        ("--order", args.order), ("--lr", args.lr),
                        ("--accum", args.accum), ("--checkpoint-every", args.checkpoint_every),
                        ("--val-limit", args.val_limit), ("--device", args.device)):
        if value is not None:
            parts += [flag, str(value)]
    if args.merge:
        parts.append("--merge")
    return " ".join(shlex.quote(str(p)) for p in parts)


def cmd_samples(args: argparse.Namespace, settings: Settings) -> int:
    from ..lab.settings import TrainSettings
    from ..lab.train.samples import build_samples, write_samples
    from ..weights import fast_tokenizer

    tok = fast_tokenizer(settings.reranker_model, settings)
    val_frac = TrainSettings.from_env().train_val_frac if args.val_frac is None else args.val_frac
    samples, report = build_samples(args.dataset, args.dataset_path, tok, select=args.select, per_doc=args.per_doc,
                                    limit=args.limit, n_candidates=args.n_candidates, max_tokens=args.cand_tokens,
                                    val_frac=val_frac, prefix=args.prefix, prefix_tokens=settings.prefix_tokens,
                                    summary_block=settings.summary_block, summary_fanin=settings.summary_fanin)
    n = write_samples(args.samples_out, samples)
    dropped = ", ".join(f"{k}: {v}" for k, v in sorted(report.dropped.items())) or "none"
    print(f"wrote {args.samples_out}: {n} samples from {args.dataset} ({report.splits['train']} train / "
          f"{report.splits['val']} validation, {report.documents['train']} / {report.documents['val']} documents), "
          f"{report.candidates_per_sample:.1f} candidates per sample"
          + (f", {report.with_prefix} with a summary prefix" if args.prefix else ""))
    print(f"  dropped: {dropped}")
    return 0
