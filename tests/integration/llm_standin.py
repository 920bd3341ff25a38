"""A stand-in OpenAI-compatible chat server on a real socket: answers every explain with a grounded, schema-valid
JSON (each reason is the item's title), after ``sleep_s``, reporting ``usage`` tokens; counts the calls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandIn:
    def __init__(self) -> None:
        self.sleep_s = 0.0
        self.usage = 100
        self.calls = 0
        self.url = ""


@contextmanager
def llm_standin() -> Iterator[StandIn]:
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            req = json.loads(self.rfile.read(int(self.headers["content-length"])))
            state.calls += 1
            if state.sleep_s:
                time.sleep(state.sleep_s)
            facts = json.loads(req["messages"][1]["content"])
            items = [{"item_id": it["item_id"], "reason": it["title"]} for it in facts["items"]]
            out = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                   "content": json.dumps({"items": items})}}],
                              "usage": {"total_tokens": state.usage}}).encode()
            try:
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except OSError:           # the reasoner gave up (its deadline)
                pass

        def log_message(self, *args) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)
