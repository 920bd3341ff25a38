"""Can ``strata edge`` listen on host:port? Checked before the model loads, so a busy port or a bad host is
one line on stderr (exit 2) instead of a traceback from deep inside the event loop or uvicorn.

The check binds a throwaway socket the way the servers will (``SO_REUSEADDR``, every address the host
resolves to) and closes it. Something can still take the port in the second before the server binds;
``bind_error`` words that case the same way for the edge's own server.
"""

from __future__ import annotations

import errno
import os
import socket

from strata.shared.errors import ConfigError

# errnos a bind (or resolving the bind address) fails with; anything else is not about the address
_BIND_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def check_listen_address(host: str, port: int, http: str = "strata") -> None:
    """Raise ``ConfigError`` naming host:port and the reason when the server could not listen there.

    The edge's own server (asyncio) binds every address ``host`` resolves to; uvicorn binds one socket,
    IPv6 only when the host contains a colon.
    """
    family = socket.AF_UNSPEC
    if http == "uvicorn":
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host or None, port, family=family, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        if http == "uvicorn":
            infos = infos[:1]
        for family, kind, proto, _, addr in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
    except OSError as exc:
        raise bind_error(host, port, exc) from None


def is_bind_error(exc: BaseException) -> bool:
    """True for the errors binding a listening socket raises: unknown host, port taken, address not here."""
    return isinstance(exc, socket.gaierror) or (isinstance(exc, OSError) and exc.errno in _BIND_ERRNOS)


def bind_error(host: str, port: int, exc: OSError) -> ConfigError:
    """The one-line error for a failed bind: the address, the OS's reason and the config key at fault."""
    # the OS's wording for the errno: event loops wrap it ("error while attempting to bind on address ...")
    if isinstance(exc, socket.gaierror) or not exc.errno:
        reason = exc.strerror or str(exc) or type(exc).__name__
    else:
        reason = os.strerror(exc.errno)
    key = "edge.port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "edge.host"
    return ConfigError(f"cannot listen on {_address(host, port)}: {reason} (config key '{key}')", field=key)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
