"""Can a server listen on host:port? Checked (or the socket bound) before anything slow starts, so a busy
port or a bad host is one line on stderr (exit 2) instead of a traceback from deep inside the event loop,
or uvicorn's startup and shutdown logs.

``check_listen_address`` binds a throwaway socket the way the server will (``SO_REUSEADDR``, every address
the host resolves to) and closes it: something can still take the port before the server binds, and
``bind_error`` words that case the same way. ``listen_socket`` binds the socket a uvicorn server is then
handed (no second bind, so no such window).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator

from strata.shared.errors import ConfigError

# errnos a bind (or resolving the bind address) fails with; anything else is not about the address
_BIND_ERRNOS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def check_listen_address(host: str, port: int, http: str = "strata", *, section: str = "edge",
                         port_key: str | None = None) -> None:
    """Raise ``ConfigError`` naming host:port, the reason and the config key (``<section>.port`` or
    ``<section>.host``) when the server could not listen there.

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
        raise bind_error(host, port, exc, section=section, port_key=port_key) from None


def listen_socket(host: str, port: int, *, section: str) -> socket.socket:
    """A socket bound to host:port as uvicorn binds one (``uvicorn.Config.bind_socket``), for its
    ``Server.run(sockets=[...])``; a failed bind raises ``bind_error``'s ``ConfigError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise bind_error(host, port, exc, section=section) from None
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def held_until_served(sock: socket.socket) -> Iterator[socket.socket]:
    """``with held_until_served(listen_socket(...)) as sock:`` load what the server needs, then serve on
    ``sock``; a failure before that closes it."""
    try:
        yield sock
    except BaseException:
        sock.close()
        raise


def is_bind_error(exc: BaseException) -> bool:
    """True for the errors binding a listening socket raises: unknown host, port taken, address not here."""
    return isinstance(exc, socket.gaierror) or (isinstance(exc, OSError) and exc.errno in _BIND_ERRNOS)


def bind_error(host: str, port: int, exc: OSError, *, section: str = "edge", port_key: str | None = None) -> ConfigError:
    """The one-line error for a failed bind: the address, the OS's reason and the setting at fault:
    config key ``<section>.port`` / ``<section>.host``, or ``port_key`` for a port given only as a flag
    (``--metrics-port``)."""
    # the OS's wording for the errno: event loops wrap it ("error while attempting to bind on address ...")
    if isinstance(exc, socket.gaierror) or not exc.errno:
        reason = exc.strerror or str(exc) or type(exc).__name__
    else:
        reason = os.strerror(exc.errno)
    if exc.errno in (errno.EADDRINUSE, errno.EACCES):
        key = port_key or f"{section}.port"
    else:
        key = f"{section}.host"
    where = f"flag {key}" if key.startswith("--") else f"config key '{key}'"
    return ConfigError(f"cannot listen on {_address(host, port)}: {reason} ({where})", field=key)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


def run_uvicorn(app, sock: socket.socket, **options) -> None:
    """Serve ``app`` under uvicorn on the already bound ``sock`` (``listen_socket``) until SIGINT/SIGTERM.
    ``options`` are ``uvicorn.Config``'s (host and port only label its log line); uvicorn's loggers go to
    the handler ``shared.serving.logs`` configured (JSON lines like ours) unless ``log_config`` is given.
    Exits 3 when the app's startup failed, as ``uvicorn.run`` does."""
    import uvicorn
    from uvicorn.server import STARTUP_FAILURE

    options.setdefault("log_config", None)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
