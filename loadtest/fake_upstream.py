"""A stand-in upper tier: an HTTP/1.1 server answering ``POST /v1/recommend`` and ``/v1/explain`` at once with a
fixed msgpack answer (or late, or never, or with another status), recording what it was sent.

``strata bench edge`` runs it as its own process (``python -m strata.loadtest.fake_upstream --port P``) for the
router's cost point (an upstream that answers at once: the edge's CPU is the router's own); the router's tests
run it in-process to time out, fail, or answer a banned item.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

import httptools
import msgpack


def answer(tier: str = "origin", items: list[str] | None = None, **extra: object) -> dict:
    """An upper tier's answer in the ``/v1/recommend`` contract."""
    ids = items if items is not None else [f"fake-{i}" for i in range(10)]
    return {"items": [{"item_id": i, "score": round(1.0 - n / 100, 4), "explored": False} for n, i in enumerate(ids)],
            "tier": tier, "confidence": None, "degraded": False, "route_reasons": [], "route_tier": tier,
            "model_version": "fake-1", "request_id": "fake-req", "impression_id": "fake-imp",
            "timing": {"server_us": 1}, **extra}


class FakeUpstream:
    """Behaviour is read per request, so a test may change it while the server runs."""

    def __init__(self, body: dict | None = None) -> None:
        self.body = body if body is not None else answer()
        self.status = 200
        self.delay_s = 0.0
        self.hang = False                  # read the request, never answer
        self.close = False                 # answer with Connection: close
        self.raw: bytes | None = None      # answer these bytes instead of msgpack(body)
        self.requests: list[tuple[bytes, dict[bytes, bytes], bytes]] = []   # (path, headers, body)
        self.keep = 1000                   # requests remembered
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    def payload(self) -> bytes:
        body = self.raw if self.raw is not None else msgpack.packb(self.body, use_bin_type=True)
        head = (f"HTTP/1.1 {self.status} X\r\ncontent-type: application/msgpack\r\ncontent-length: {len(body)}\r\n"
                + ("connection: close\r\n" if self.close else "") + "\r\n")
        return head.encode() + body

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Conn(self), host, port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1.0)


class _Conn(asyncio.Protocol):
    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.url = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport      # type: ignore[assignment]
        self.fake.connections += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()      # type: ignore[union-attr]

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        fake = self.fake
        if len(fake.requests) < fake.keep:
            fake.requests.append((self.url, self.headers, b"".join(self.body)))
        self.url, self.headers, self.body = b"", {}, []
        if fake.hang:
            return
        payload = fake.payload()
        if fake.delay_s:
            asyncio.get_running_loop().call_later(fake.delay_s, self._send, payload, fake.close)
        else:
            self._send(payload, fake.close)

    def _send(self, payload: bytes, close: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(payload)
        if close:
            t.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tier", default="origin")
    ap.add_argument("--items", default=None, help="comma-separated item ids to answer (default: fake-0..fake-9)")
    ap.add_argument("--core", type=int, default=None, help="pin to this core")
    args = ap.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})

    async def serve() -> None:
        fake = FakeUpstream(answer(args.tier, args.items.split(",") if args.items else None))
        fake.keep = 0
        await fake.start(args.host, args.port)
        await asyncio.Event().wait()

    try:
        import uvloop
        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
