"""Spot check of checked citations on one story: ask its questions with each answer configuration and
print every citation with its verdict, as a reader would see it.

    .venv/bin/python docs/eval/answers/spot_check.py STORY.txt --out spot.md \
        --question "Who were the two bad mice?" --question "How did Tom Thumb pay for what he broke?"

Each configuration is settings overrides (NAME=field:value,...); defaults compare today's default
(0.5B, prose, no check) with the short 1.5B answers checked by judge and embedder together.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONFIGS = {
    "0.5b-prose-unchecked": "generator_model:qwen2.5-coder-0.5b,answer_style:prose,citation_check:off",
    "1.5b-short-both": "generator_model:qwen2.5-coder-1.5b,answer_style:short,citation_check:both",
}


def main() -> None:
    from bookqa import Library, ask
    from bookqa.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("story", type=Path)
    ap.add_argument("--question", action="append", required=True)
    ap.add_argument("--config", action="append", metavar="NAME=field:value,...")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    configs = dict(c.split("=", 1) for c in args.config) if args.config else CONFIGS
    lines = [f"# Spot check: {args.story.name}", ""]
    with tempfile.TemporaryDirectory() as home:
        mine = Settings.from_env()  # a scratch library, the usual model cache
        base = mine.replace(home=Path(home), model_cache=str(mine.models_dir))
        book = Library(base).ingest(str(args.story)).book
        for name, spec in configs.items():
            fields = dict(part.split(":", 1) for part in spec.split(","))
            settings = base.replace(**fields)
            lines += [f"## {name} (`{spec}`)", ""]
            for q in args.question:
                result = ask(book, q, settings=settings)
                lines += [f"**{q}** → {result.answer}", ""]
                for c in result.citations:
                    verdict = {True: "supported", False: "UNSUPPORTED", None: "not checked"}[c.supported]
                    how = "attributed by bookqa" if c.inferred else "the model's"
                    lines.append(f"- [{c.number}] chunk {c.chunk_id} ({how}, {verdict}): {' '.join(c.quote.split())[:160]!r}")
                lines.append("")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
