"""The pieces of a raw ASGI hot route that the edge and the streaming service share: read a bounded body,
send a ``Reply``. (Their hot routes skip framework routing: see ``edge.app`` and ``streaming.app``.)"""

from __future__ import annotations

from strata.shared.errors import PayloadTooLarge
from strata.shared.serving.pipeline import Reply


def body_headers(scope: dict) -> tuple[bytes | None, bytes | None, int, bytes | None]:
    """(Content-Type, Accept, Content-Length (-1: absent or not a number), Content-Encoding) of a request."""
    ctype = accept = coding = None
    length = -1
    for name, value in scope["headers"]:
        if name == b"content-type":
            ctype = value
        elif name == b"accept":
            accept = value
        elif name == b"content-length":
            length = int(value) if value.isdigit() else -1
        elif name == b"content-encoding":
            coding = value
    return ctype, accept, length, coding


def too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body of {size} bytes exceeds the {limit}-byte limit", field="body")


async def receive_body(receive, limit: int) -> bytes | None:
    """The request body from ASGI ``receive``; None when the client disconnected before it ended. Refused
    (413, field ``body``) as soon as more than ``limit`` bytes arrived: nothing past the limit is kept."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunk = msg.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(size, limit)
            chunks.append(chunk)
        if not msg.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_reply(send, r: Reply) -> None:
    headers = [(b"content-type", r.media.encode()), (b"content-length", str(len(r.body)).encode()), *r.headers]
    await send({"type": "http.response.start", "status": r.status, "headers": headers})
    await send({"type": "http.response.body", "body": r.body})
