"""``bookqa ui``: the web UI (upload, ask with clickable citations, summaries) on http://127.0.0.1:7860.

The ``ui`` package depends on bookqa, not the reverse: it is imported inside the handler only.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Optional

from ..errors import ConfigError
from ..settings import Settings
from .ports import check_port  # noqa: F401  (also bookqa.cli.ui.check_port)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="start the web UI (upload texts, ask with clickable citations)")
    p.add_argument("--host", dest="ui_host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", dest="ui_port", type=int, help="port (default 7860)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (anyone who can reach it can upload and ask; use --auth)")
    p.add_argument("--auth", help="require a login, 'user:password' (default: $BOOKQA_UI_AUTH if set)")
    p.add_argument("--sample", action="store_true", help="add the bundled sample story first, ready to ask")
    p.add_argument("--max-mb", dest="max_upload_mb", type=float, help="largest upload in MB (default 50)")
    p.add_argument("-k", "--k", dest="top_k", type=int, help="default candidates to rerank (default 50)")
    p.add_argument("--top", dest="top_n", type=int, help="default passages given to the generator (default 3)")
    p.add_argument("--generator", choices=("local", "remote"), help="default generator")
    p.add_argument("--base-url", dest="base_url", help="remote generator: OpenAI-compatible server URL")
    p.add_argument("--model", dest="generator_model", help="generator model: GGUF name/path, or remote name")
    p.add_argument("--summaries", choices=("llm", "extractive", "none"), help="summaries mode for new ingests")
    p.set_defaults(handler=cmd_ui)


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_auth(raw: Optional[str], source: str) -> Optional[tuple[str, str]]:
    if raw is None or raw == "":
        return None
    user, sep, password = raw.partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"{source} must look like user:password")
    return user, password


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    settings = settings.replace(ui_host=args.ui_host, ui_port=args.ui_port)
    if not is_loopback(settings.ui_host) and not args.allow_remote:
        raise ConfigError(f"refusing to listen on {settings.ui_host}: anyone who can reach it could upload and "
                          "ask; pass --allow-remote (and --auth user:password) if that is what you want")
    # The password comes from a flag or a variable named by a setting, never from Settings itself, so it
    # is not written into book manifests (which record the settings they were built with).
    auth = parse_auth(args.auth, "--auth") or parse_auth(os.environ.get(settings.ui_auth_env), settings.ui_auth_env)
    if not is_loopback(settings.ui_host) and auth is None:
        print("bookqa: warning: the UI is reachable from other machines without a login (see --auth)",
              file=sys.stderr)
    check_port(settings.ui_host, settings.ui_port)
    if args.sample:
        from .demo import ingest_sample

        report = ingest_sample(settings, args.quiet)
        print(f"sample ready: {report.book.id} ({report.book.title})")
    from ui.app import launch  # noqa: PLC0415 - ui depends on bookqa; this is the only link back

    print(f"bookqa UI on http://{settings.ui_host}:{settings.ui_port}", flush=True)
    launch(settings, auth=auth, quiet=args.quiet)
    return 0
