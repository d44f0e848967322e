"""``bookqa eval DATASET --data PATH``: run every configuration on a dataset and write a report.

Results go to ``--out`` (default ``./eval-out/<dataset>``): ``<dataset>.jsonl`` (one row per question,
appended as each finishes), ``<dataset>-report.{md,json}``, ``<dataset>-run.json`` and
``<dataset>-books.json``. ``--resume`` continues a run (or adds configurations to it); ``--report-only``
rewrites the report from the results file without running anything.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..fileio import portable_path
from ..progress import TqdmProgress
from ..rerank.config import QRRankerConfig
from ..settings import Settings
from .ray_args import add_ray_arguments, ray_options


def register(sub: argparse._SubParsersAction) -> None:
    from ..lab.evaluate.configs import ALL_CONFIGS
    from ..lab.evaluate.datasets import DATASETS

    p = sub.add_parser("eval", help="evaluate retrieval, reranking and answers on a QA dataset",
                       description="Evaluate first-stage retrieval, QR reranking, baselines and answers on a dataset "
                                   "in its official format; writes per-question JSONL and a Markdown/JSON report.")
    p.add_argument("dataset", choices=DATASETS, help="dataset format")
    p.add_argument("--data", required=True, type=Path, help="dataset file or folder (official format)")
    p.add_argument("--books", nargs="+", metavar="BOOK",
                   help="a number N (the first N documents), a range A-B (documents A..B, 0-based, e.g. LoCoMo "
                        "conversations 5-9) or document ids / id prefixes / title parts")
    p.add_argument("--per-book", type=int, metavar="N",
                   help="at most N questions per document: a seeded random sample, kept in file order")
    p.add_argument("--seed", type=int, default=0, help="seed of the --per-book sample (default 0)")
    p.add_argument("--sample", type=int, metavar="N",
                   help="a seeded random sample of N questions of the selection, kept in file order")
    p.add_argument("--limit", type=int, metavar="N", help="at most N questions in all (the first N)")
    p.add_argument("--configs", metavar="LIST",
                   help=f"comma-separated configurations (default: all but qr_trained, rankgpt and likert): "
                        f"{', '.join(ALL_CONFIGS)}")
    p.add_argument("--k", dest="eval_k", type=int, metavar="K",
                   help="first-stage candidates per question, reranked by every reranker (default: top_k, 50)")
    p.add_argument("--trained", type=Path, metavar="DIR",
                   help="a trained QRRanker checkpoint or shipped adapter name (adds qr_trained)")
    p.add_argument("--fusion-weight", type=float, help="qr_fused: RRF weight of the first-stage order (QR's is 1)")
    p.add_argument("--answers", dest="answers", action="store_true", default=None,
                   help="generate and score answers (default for narrativeqa, locomo, quality, detectiveqa)")
    p.add_argument("--no-answers", dest="answers", action="store_false", help="retrieval metrics only")
    p.add_argument("--rank-all", action="store_true",
                   help="run every configuration on questions without gold chunks too (recall leaves them out; "
                        "bookqa eval-answers reads their rankings)")
    p.add_argument("--answer-config", default="qr", help="configuration whose top evidence the generator reads (default qr)")
    p.add_argument("--exclude-ids", nargs="+", type=Path, metavar="FILE",
                   help="leave out these questions: files with one id per line, or seed JSONL rows with an 'id' "
                        "(e.g. the items the QR heads were detected on)")
    p.add_argument("--include-adversarial", action="store_true", help="LoCoMo: keep category 5 (adversarial)")
    p.add_argument("--split", help="NarrativeQA official CSVs: the split to read (default test)")
    p.add_argument("--stories", type=Path, help="NarrativeQA: folder of story texts (<id>.content or <id>.txt)")
    p.add_argument("--lang", choices=("en", "zh", "both"), default="both", help="DetectiveQA Hub layout: languages")
    p.add_argument("--out", type=Path, help="output folder (default ./eval-out/<dataset>)")
    p.add_argument("--books-home", type=Path, help="where the evaluation's books are stored (default <home>/eval)")
    p.add_argument("--resume", action="store_true", help="continue a run in --out: skip finished questions")
    p.add_argument("--shuffle-check", action="store_true",
                   help="also run every order-sensitive reranker on a seeded shuffle of the same candidates "
                        "(--seed) and report shuffled-order recall next to the original order's")
    p.add_argument("--permutations", type=int, metavar="N",
                   help="orders the *_perm configurations average over (default 3: input, reversed, interleaved)")
    p.add_argument("--report-only", action="store_true", help="rewrite the report of the selected questions from the results file and stop")
    # model settings shared with `bookqa ask`
    p.add_argument("--reranker-model", dest="reranker_model", help="QR reranker model (name, hub id, dir)")
    p.add_argument("--heads", dest="reranker_heads", help="QR heads file (default: shipped for the model)")
    p.add_argument("--generator", choices=("local", "remote"), help="answer generator: local llama.cpp or remote")
    p.add_argument("--base-url", dest="base_url", help="OpenAI-compatible server for --generator remote")
    p.add_argument("--model", dest="generator_model", help="generator model: GGUF name/path, or remote name")
    p.add_argument("--top", dest="top_n", type=int, help="evidence chunks given to the generator (default BOOKQA_TOP_N, 3)")
    p.add_argument("--style", dest="answer_style", choices=("prose", "short"), default="short",
                   help="answer style: short (the answer phrase, as the references are written; default) or prose "
                        "(bookqa ask's default)")
    add_ray_arguments(p, "books' questions")
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from ..lab.evaluate.configs import CACHED_NAMES
    from ..lab.evaluate.registry import build_configs, parse_config_names
    from ..lab.evaluate.corpus import eval_settings
    from ..lab.evaluate.datasets import load_dataset
    from ..lab.evaluate.runner import ANSWER_BY_DEFAULT, Runner, read_id_list, select
    from ..lab.evaluate.registry import default_ranker_config
    from ..lab.settings import EvalSettings
    from ..rerank.adapter import adapter_dir

    out = args.out or Path("eval-out") / args.dataset
    if args.trained is not None and not args.trained.is_dir():
        shipped = adapter_dir(args.trained)  # a shipped adapter's name
        if shipped is None:
            from ..errors import NotFoundError

            raise NotFoundError(f"--trained {args.trained}: neither a checkpoint directory nor a shipped adapter")
        args.trained = shipped
    settings = eval_settings(settings, args.books_home)
    options = EvalSettings.from_env(eval_fusion_weight=args.fusion_weight)
    data_options: dict = {}  # how the dataset's files are read (not the configurations' options above)
    if args.dataset == "narrativeqa":
        data_options = {"split": args.split, "stories_dir": args.stories}
    elif args.dataset == "detectiveqa":
        data_options = {"langs": ("en", "zh") if args.lang == "both" else (args.lang,)}
    data = load_dataset(args.dataset, args.data, **data_options)
    selection = select(data, books=args.books, per_book=args.per_book, limit=args.limit,
                       include_adversarial=args.include_adversarial, seed=args.seed, sample=args.sample,
                       exclude_ids=read_id_list(args.exclude_ids, data.name) if args.exclude_ids else None,
                       exclude_reason="used for QR head detection (--exclude-ids)")
    if args.report_only:
        return _report_only(out, args.dataset, selection)
    names = parse_config_names(args.configs, args.trained)
    configs = build_configs(names, settings, trained=args.trained, permutations=args.permutations, options=options)
    answers = args.answers if args.answers is not None else (args.dataset in ANSWER_BY_DEFAULT)
    if answers and args.answer_config not in [c.name for c in configs]:
        print(f"bookqa eval: answers need configuration {args.answer_config!r}, which this run does not include; "
              "answers are skipped (add it to --configs, or pick --answer-config)", file=sys.stderr)
        answers = False
    k = args.eval_k or settings.top_k
    qr = _resolved(QRRankerConfig.from_settings(settings))  # what "qr" is on this machine ("auto" decided)
    meta = {"command": "bookqa " + " ".join(shlex.quote(portable_path(a)) for a in sys.argv[1:])
            if sys.argv[1:] else "bookqa eval",
            "selection": {"books": args.books, "per_book": args.per_book, "sample": args.sample, "seed": args.seed,
                          "limit": args.limit, "exclude_ids": [str(p) for p in args.exclude_ids or []],
                          "shuffle_check": args.shuffle_check},
            "settings": {"reranker": qr.model, "adapter": qr.adapter, "heads": qr.heads or "shipped",
                         "embedder": settings.embed_model, "generator": f"{settings.generator}:{settings.generator_model}",
                         "answer_style": settings.answer_style,
                         "chunk_tokens": settings.chunk_tokens, "summaries": settings.summaries,
                         # resolved, not "auto": the same settings give float32 on one CPU and bfloat16 on
                         # another (rerank/qr.py), and a resume must not mix the two under one name
                         "device": qr.device, "dtype": qr.dtype,
                         # the rest of qr's configuration (model, heads, adapter, device, dtype are above)
                         "rerank": {key: value for key, value in qr.to_json().items()
                                    if key not in ("model", "heads", "adapter", "device", "dtype")}}}
    if answers:  # how many passages each answer read, so a resume cannot mix two evidence sizes
        meta["settings"]["top_n"] = settings.top_n
    if "default" in names:  # the out-of-the-box ranker, so a resume cannot mix two under that name
        meta["settings"]["default"] = _resolved(default_ranker_config(settings)).to_json()
    if any(n in CACHED_NAMES for n in names):  # how chunk keys/values are stored and how far the cascade reaches
        meta["settings"]["cached"] = {"kv_dtype": settings.qr_cache_dtype, "cascade_top": settings.qr_cascade_top}
    adapted = [n for n in names if n in CACHED_NAMES and n.endswith("_adapted")]
    if adapted:  # which adapter the cached pass asks with ("auto" resolved, as the ranker resolves it)
        from ..errors import ConfigError
        from ..rerank.adapter import chosen_adapter

        adapter = chosen_adapter(settings.reranker_model, settings.qr_cached_adapter,
                                 heads_given=bool(settings.reranker_heads), applies_to="question")
        if adapter is None:
            raise ConfigError(f"{adapted[0]} needs the cached pass's adapter: set BOOKQA_QR_CACHED_ADAPTER "
                              "to a shipped adapter's name or an adapter directory")
        meta["settings"]["cached_adapter"] = checkpoint_fingerprint(adapter.path)
    if args.trained:  # which checkpoint "qr_trained" is, so a resume cannot mix two under one name
        meta["settings"]["trained"] = checkpoint_fingerprint(args.trained)
    if args.resume:
        _check_same_settings(out / f"{args.dataset}-run.json", meta["settings"])
    print(f"{data.name}: {len(selection.questions)} questions on {len(selection.documents)} documents; "
          f"configurations {', '.join(c.name for c in configs)}; K = {k}; answers {'on' if answers else 'off'}",
          file=sys.stderr)
    progress = TqdmProgress(quiet=args.quiet)
    run_options = dict(k=k, answers=answers, answer_config=args.answer_config, resume=args.resume, progress=progress,
                       show_bar=not args.quiet, meta=meta, shuffle_check=args.shuffle_check, shuffle_seed=args.seed,
                       rank_all=args.rank_all)
    if args.ray is not None:
        import functools

        from ..lab.scale.ray_jobs import RayRunner

        # each worker builds the same configurations and loads their models itself
        make_configs = functools.partial(build_configs, names, settings, trained=args.trained,
                                         permutations=args.permutations, options=options)
        runner = RayRunner(data, selection, configs, settings, out, make_configs=make_configs,
                           ray=ray_options(args), **run_options)
    else:
        runner = Runner(data, selection, configs, settings, out, **run_options)
    import signal

    def stop(signum, frame):  # `kill PID` ends a run like Ctrl-C: results compacted, report written
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        runner.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
    md, _ = runner.report_paths
    print(f"results: {runner.results_path}\nreport: {md}")
    return 0


def _resolved(config: QRRankerConfig) -> QRRankerConfig:
    """``config`` with its "auto" values decided as QRRanker decides them on this machine, without loading
    the model; as it is when no heads are known for the model (a run without QR configurations)."""
    from ..errors import BookQAError
    from ..rerank.qr import resolve_config

    try:
        return resolve_config(config).config
    except BookQAError:  # no heads known: QRRanker itself will say so
        return config


def _changed(stored: dict, now: dict, prefix: str = "") -> list[str]:
    """What differs between two settings dicts, at any depth; keys the stored one lacks are skipped
    (options added since that run was made, whose defaults reproduce what it did)."""
    out = []
    for key, value in now.items():
        if key not in stored:
            continue
        old = stored[key]
        if isinstance(old, dict) and isinstance(value, dict):
            out += _changed(old, value, f"{prefix}{key}.")
        elif old != value:
            out.append(f"{prefix}{key}: {old!r} -> {value!r}")
    return out


def checkpoint_fingerprint(directory: Path) -> dict:
    """What identifies a trained checkpoint (``--trained``) without reading its weights: the sha-256 of
    every top-level file's name and size plus the content of its small files (adapter.json, config.json,
    qr_heads.json, the training report, which differs between any two runs). Markdown files are left out:
    a README added beside a shipped copy does not change what the checkpoint ranks."""
    import hashlib

    directory = Path(directory)
    digest = hashlib.sha256()
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() != ".md") \
        if directory.is_dir() else []
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        if size <= 1 << 20:
            digest.update(path.read_bytes())
    return {"path": portable_path(str(directory.resolve())), "sha256": digest.hexdigest()}


def _check_same_settings(run_file: Path, settings: dict) -> None:
    """Refuse to resume a run whose stored rows were made with other model settings: a report would mix
    two rerankers (or embedders, generators, trained checkpoints) under one name. Keys a run file lacks
    (older runs) pass; a stored checkpoint is kept when this run names none (it adds no qr_trained rows)."""
    from ..errors import ConfigError
    from ..fileio import read_json

    if not run_file.is_file():
        return
    stored = read_json(run_file).get("settings") or {}
    stored.setdefault("adapter", "none")  # runs from before the setting used none
    for key in ("device", "dtype"):  # runs from before these were resolved recorded "auto": unknown, passes
        if stored.get(key) == "auto":
            stored.pop(key)
    if (stored.get("rerank") or {}).get("question_span") == "auto":  # likewise, from before it was resolved
        stored["rerank"] = {k: v for k, v in stored["rerank"].items() if k != "question_span"}
    for key in ("trained", "cached_adapter"):
        if key in stored and key not in settings:
            settings[key] = stored[key]  # a run that names none adds no rows of it (the caller writes these)
        elif key in stored:  # compared by content: the same checkpoint, moved, made the same rows
            stored = {**stored, key: {**stored[key], "path": settings[key]["path"]}}
    changed = _changed(stored, settings)
    if changed:
        raise ConfigError(f"{run_file.parent} holds results made with other settings ({'; '.join(changed)}); "
                          "resume with the same settings, or write to another --out")


def _report_only(out: Path, dataset: str, selection) -> int:
    """Rewrite the report of the questions this command selects, with the stored run description."""
    from ..lab.evaluate.report import write_report
    from ..lab.evaluate.runner import read_rows
    from ..fileio import read_json

    rows = selection.rows_of(read_rows(out / f"{dataset}.jsonl"))
    run_file = out / f"{dataset}-run.json"
    meta = read_json(run_file) if run_file.is_file() else {"dataset": dataset}
    meta.update(selected_questions=len(selection.questions), selected_documents=[d.id for d in selection.documents],
                excluded=selection.excluded)
    md, _ = write_report(out, dataset, rows, meta)
    print(f"report: {md} ({len(rows)} of {len(selection.questions)} selected questions)")
    return 0
