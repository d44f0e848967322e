"""Binding a server's port before any model loads (bookqa ui, bookqa demo --ui, bookqa serve), so a busy
port is a one-line error at once, not after the models and the sample are ready."""
from __future__ import annotations

import errno
import socket

from ..errors import ConfigError


def bind_port(host: str, port: int, variable: str = "BOOKQA_UI_PORT", busy: str = " (another bookqa ui?)"):
    """A socket bound to ``host:port`` (ConfigError naming ``--port`` and ``variable`` when it cannot be had).
    SO_REUSEADDR as the servers themselves set it: a port left in TIME_WAIT by a server that just stopped is
    free."""
    address = host.strip("[]")
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: {exc.strerror}; choose another --host") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        why = f"is already in use{busy}" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise ConfigError(f"port {port} on {host} {why}; choose another with --port N or {variable}=N") from None
    return sock


def check_port(host: str, port: int) -> None:
    """Refuse a UI port that cannot be listened on (ConfigError); Gradio binds it itself later."""
    bind_port(host, port).close()
