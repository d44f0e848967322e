"""``bookqa eval-answers RUN_DIR --variant NAME=key:value,...``: answers of several generators, styles and
rerankers' evidence over the questions of a stored ``bookqa eval`` run, side by side (lab/evaluate/answer_bench.py)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..progress import TqdmProgress
from ..settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval-answers", help="compare generators, answer styles and evidence on a stored eval run",
                       description="Answer the questions of a stored `bookqa eval` run once per variant (generator, "
                                   "style, the configuration whose top passages are read) and write a paired report. "
                                   "Resumable: run it again to finish what is missing.")
    p.add_argument("run_dir", type=Path, help="a `bookqa eval --out` folder (its <dataset>.jsonl rows are read)")
    p.add_argument("--variant", dest="variants", action="append", required=True, metavar="NAME=key:value,...",
                   help="keys: generator (local|remote), model, base_url, style (prose|short), evidence (a stored "
                        "configuration), top (passages), check (off|judge|embedder|both: citations checked); "
                        "the first variant is the paired baseline. Repeat.")
    p.add_argument("--out", type=Path, help="output folder (default RUN_DIR/answers)")
    p.add_argument("--books-home", type=Path, help="where the evaluation's books are stored (default <home>/eval)")
    p.add_argument("--limit", type=int, help="only the first N stored questions (in file order)")
    p.add_argument("--category", type=int, action="append", metavar="N",
                   help="only questions of this category (LoCoMo: 5 is adversarial, whose answer is not in the "
                        "conversation); repeat for several")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from stored answers and stop")
    p.set_defaults(handler=cmd_eval_answers)


def cmd_eval_answers(args: argparse.Namespace, settings: Settings) -> int:
    from ..errors import InputError
    from ..fileio import write_json
    from ..lab.evaluate.answer_bench import AnswerBench, Variant
    from ..lab.evaluate.corpus import eval_settings
    from ..lab.evaluate.runner import read_rows
    from ..library import Library

    files = sorted(p for p in args.run_dir.glob("*.jsonl") if (args.run_dir / f"{p.stem}-run.json").is_file())
    if not files:
        raise InputError(f"{args.run_dir} holds no `bookqa eval` results (<dataset>.jsonl next to <dataset>-run.json)")
    rows = list(read_rows(files[0]).values())
    rows = [r for r in rows if r.get("configs") and (not args.category or r.get("category") in args.category)]
    rows = rows[: args.limit or None]
    variants = [Variant.parse(v) for v in args.variants]
    settings = eval_settings(settings, args.books_home)
    out = args.out or args.run_dir / "answers"
    bench = AnswerBench(rows, variants, Library(settings), out, settings, TqdmProgress(quiet=args.quiet))
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:  # the stored command stays the one that made the answers
        summary = bench.report()
    else:
        write_json(out / "answers-run.json", {"command": "bookqa " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                                              "source": str(files[0]), "variants": [vars(v) for v in variants]})
        summary = bench.run()
    print(f"report: {out / 'answers-report.md'} ({summary['questions']} questions, {len(variants)} variants)")
    return 0
