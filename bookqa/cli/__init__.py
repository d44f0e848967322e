"""The ``bookqa`` command: thin argument parsing over the library's API.

Each command group lives in its own module with a ``register(subparsers)`` function that adds its
sub-commands; a sub-command's handler takes ``(args, settings)`` and returns an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

from ..errors import BookQAError
from ..settings import Settings

# Command modules, in the order their commands appear in --help.
COMMANDS = ("demo", "books", "ask", "search", "summarize", "heads", "train", "eval", "answers", "ui", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bookqa",
        description="Answer questions about very long texts, with citations to exact passages.")
    parser.add_argument("--home", help="data directory (default $BOOKQA_HOME or ~/.cache/bookqa)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by whichever global/command flags were given."""
    overrides = {}
    for key in ("home", "chunk_tokens", "max_upload_mb", "reranker_model", "reranker_heads", "embed_model",
                "generator", "generator_model", "base_url", "device", "dtype", "top_k", "top_n",
                "summaries", "qr_mode", "qr_cache", "answer_style"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    if "home" in overrides:
        from pathlib import Path

        overrides["home"] = Path(os.path.expanduser(overrides["home"]))
    return Settings.from_env(**overrides)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        # transformers draws its own bars when loading weights; --quiet means no bars at all
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TQDM_DISABLE"] = "1"
    try:
        settings = settings_from_args(args)
        return int(args.handler(args, settings) or 0)
    except BookQAError as exc:
        print(f"bookqa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bookqa: interrupted; finished work is kept and the next run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
