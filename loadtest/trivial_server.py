"""A trivial HTTP/1.1 server (raw asyncio protocol, uvloop if present) answering one fixed response.

It does close to no work per request, so the req/s the load generator reaches against it is the
generator's own ceiling: the calibration row that shows the generator is not the bottleneck.
Run: ``python -m loadtest.trivial_server --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

_BODY = b'{"ok":true}'
RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)
_CL = b"\r\ncontent-length:"


class FixedResponse(asyncio.Protocol):
    """Consumes whole requests (head + Content-Length body) and answers each with ``RESPONSE``."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end + 2]).lower()
            pos = head.find(_CL)
            length = int(head[pos + len(_CL):head.index(b"\r\n", pos + 2)]) if pos >= 0 else 0
            total = end + 4 + length
            if len(buf) < total:
                return
            del buf[:total]
            self.transport.write(RESPONSE)


async def serve(port: int, host: str = "127.0.0.1") -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(FixedResponse, host, port, reuse_address=True)


async def _serve_forever(port: int) -> None:
    server = await serve(port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fixed-response HTTP server for load-generator calibration")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
