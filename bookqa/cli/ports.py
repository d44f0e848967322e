"""Whether a port can be listened on, checked before any model loads (bookqa ui, bookqa demo --ui)."""
from __future__ import annotations

import errno
import socket

from ..errors import ConfigError


def check_port(host: str, port: int) -> None:
    """Refuse a port that cannot be listened on (ConfigError), before any model loads: the server binds it
    only after the models are ready, and the sample may be ingested first."""
    address = host.strip("[]")
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: {exc.strerror}; choose another --host") from None
    with socket.socket(family, kind, proto) as probe:
        # as the server itself does: a port left in TIME_WAIT by a server that just stopped is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            why = ("is already in use (another bookqa ui?)" if exc.errno == errno.EADDRINUSE
                   else f"cannot be used ({exc.strerror})")
            raise ConfigError(f"port {port} on {host} {why}; choose another with --port N or "
                              "BOOKQA_UI_PORT=N") from None
