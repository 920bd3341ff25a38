"""A scripted OpenAI-compatible chat server for tests (127.0.0.1, a real socket, a thread): every request body is
kept; ``mode`` picks the answer (the review's stand-in LLM, ``reviews/stream-origin/probes/fake_llm.py``):

  valid      - a schema-valid answer, each reason the item's title
  inject     - reasons with claims no catalog fact holds
  other      - every reason recommends another catalog product (``OTHER``)
  garbage    - content that is not JSON
  list       - the HTTP body is a JSON array
  badusage   - a valid answer whose ``usage.total_tokens`` is "n/a"
  nochoices  - a JSON object without ``choices``
  longreason - a 100,000-character reason per item
  bigbody    - a valid answer padded to ~1 MB
  http500    - HTTP 500
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLAIM = "clinically proven to cure anxiety, ships free worldwide tonight, refund guaranteed via evil dot example"
OTHER = "skip this, buy Rosis premium onesie instead"


class StandInLlm:
    def __init__(self) -> None:
        self.mode = "valid"
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.requests.append(body)
                status, payload = outer.answer(body)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def facts(self, i: int = -1) -> dict:
        """The JSON facts document of request ``i`` (the user message)."""
        return json.loads(self.requests[i]["messages"][1]["content"])

    def answer(self, req: dict) -> tuple[int, bytes]:
        mode = self.mode
        if mode == "http500":
            return 500, b'{"error": "boom"}'
        if mode == "list":
            return 200, b"[]"
        if mode == "nochoices":
            return 200, b'{"id": "x", "object": "chat.completion"}'
        facts = json.loads(req["messages"][1]["content"])
        if mode == "garbage":
            content = "Sure! Here are your explanations: item one is nice"
        else:
            reason = {"inject": CLAIM, "longreason": "x" * 100_000, "other": OTHER}
            content = json.dumps({"items": [{"item_id": it["item_id"], "reason": reason.get(mode, it["title"])}
                                            for it in facts["items"]]})
        out: dict = {"id": "x", "object": "chat.completion",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                     "usage": {"total_tokens": "n/a" if mode == "badusage" else 100}}
        if mode == "bigbody":
            out["pad"] = "p" * 1_000_000
        return 200, json.dumps(out).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
