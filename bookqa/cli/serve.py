"""``bookqa serve``: the HTTP API (rerank any texts with QRRanker; upload, list, ask books) on
http://127.0.0.1:8400, with its OpenAPI page at /docs.

A non-loopback ``--host`` needs ``--allow-remote`` and a bearer token in ``$BOOKQA_SERVE_TOKEN`` (the
variable a setting names, so the token is on no command line and in no manifest).
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from ..errors import ConfigError
from ..settings import Settings
from .ports import bind_port
from .ui import is_loopback

LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="start the HTTP API (rerank endpoint, books, cited answers)")
    p.add_argument("--host", dest="serve_host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", dest="serve_port", type=int, help="port (default 8400)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (needs a token in $BOOKQA_SERVE_TOKEN)")
    p.add_argument("--queue", dest="serve_queue", type=int,
                   help="model requests waiting or running before new ones get 503 (default 16)")
    p.add_argument("--sample", action="store_true", help="add the bundled sample story first, ready to ask")
    p.add_argument("--max-mb", dest="max_upload_mb", type=float, help="largest upload in MB (default 50)")
    p.add_argument("-k", "--k", dest="top_k", type=int, help="default candidates to rerank (default 50)")
    p.add_argument("--top", dest="top_n", type=int, help="default passages given to the generator (default 3)")
    p.add_argument("--generator", choices=("local", "remote"), help="generator of answers")
    p.add_argument("--base-url", dest="base_url", help="remote generator: OpenAI-compatible server URL")
    p.add_argument("--model", dest="generator_model", help="generator model: GGUF name/path, or remote name")
    p.add_argument("--reranker-model", dest="reranker_model", help="QR reranker model")
    p.set_defaults(handler=cmd_serve)


def listening_socket(host: str, port: int) -> socket.socket:
    """The bound socket the server will accept on, taken before any model loads (ports.bind_port)."""
    sock = bind_port(host, port, variable="BOOKQA_SERVE_PORT", busy="")
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings = settings.replace(serve_host=args.serve_host, serve_port=args.serve_port, serve_queue=args.serve_queue)
    token = os.environ.get(settings.serve_token_env) or None
    if not is_loopback(settings.serve_host):
        if not args.allow_remote:
            raise ConfigError(f"refusing to listen on {settings.serve_host}: anyone who can reach it could use the "
                              "API; pass --allow-remote and set a token in "
                              f"${settings.serve_token_env} if that is what you want")
        if token is None:
            raise ConfigError(f"a non-loopback --host needs a bearer token: set ${settings.serve_token_env}")
    sock = listening_socket(settings.serve_host, settings.serve_port)
    try:
        if args.sample:
            from .demo import ingest_sample

            report = ingest_sample(settings, args.quiet)
            print(f"sample ready: {report.book.id} ({report.book.title})", flush=True)
        _configure_logging()
        import uvicorn

        from ..serve.app import create_app

        app = create_app(settings, token=token)
        shown = f"[{settings.serve_host}]" if ":" in settings.serve_host else settings.serve_host
        print(f"bookqa API on http://{shown}:{settings.serve_port} (OpenAPI page: /docs)"
              + (" - bearer token required" if token else ""), flush=True)
        config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _configure_logging() -> None:
    from ..serve.middleware import RequestIdFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
