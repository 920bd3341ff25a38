"""The bounds on what one client can make the edge's own server do (a PoP faces whatever its CDN worker
forwards). Per request: request line + headers <= ``MAX_HEADER_BYTES`` (431); the body <= ``edge.max_body_bytes``
(413); headers + body + chunk framing, extensions and trailers <= ``MAX_HEADER_BYTES + 2 * max_body +
FRAMING_ALLOWANCE`` raw bytes, so a header block, chunk-size line or trailer that never ends is cut off.
Per connection: input parsed ``FEED_SLICE`` bytes at a time; at most ``MAX_PIPELINE`` parsed requests
waiting; pipelined requests answered inline ``PIPELINE_TURN`` (or ``PIPELINE_TURN_NS``) at a time before
other connections get a turn; after a closing answer, input discarded for ``LINGER_S`` or
``LINGER_MAX_BYTES``. Per process: connections capped so they never exhaust the descriptors
(``FD_RESERVE`` kept free)."""

from __future__ import annotations

MAX_HEADER_BYTES = 64 * 1024
FRAMING_ALLOWANCE = 16 * 1024         # chunk-size lines, extensions and trailers beyond 2x the body limit
LINGER_S = 2.0                        # discard input this long after a closing answer ...
LINGER_MAX_BYTES = 256 * 1024         # ... or until this much was discarded, then reset the connection
MAX_PIPELINE = 32                     # queued requests per connection before reading and parsing pause
FEED_SLICE = 8 * 1024                 # bytes parsed per step (a 256 KiB read of tiny requests is ~1000)
PIPELINE_TURN = 8                     # requests one connection answers inline before others get a turn ...
PIPELINE_TURN_NS = 500_000            # ... or this much time spent answering them, whichever comes first
FD_RESERVE = 64                       # descriptors kept free for the store, the registry and logs
