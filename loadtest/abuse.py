"""``strata bench abuse``: a normal client's latency with and without one abusive client next to it.

The edge (its own HTTP server, ``--store none``) runs pinned to one core. On the other core a normal
client sends one cache-miss recommend every ``interval_ms`` on a keep-alive connection and records
each latency. Quiet and abused windows alternate (so machine noise hits both alike); in the abused
windows one abuser process (niced, so it cannot starve the measuring client of its core) runs the
review's three attacks at once:

- slow headers: ``slow_conns`` connections dripping one header byte every 200 ms;
- an endless chunked trailer, streamed until the server cuts it off, then again on a new connection;
- a huge pipeline: 3000 unique k=100 requests in one write, answers read back, again.

Target: the normal client's p99 under abuse <= 2x its p99 in the quiet windows. Prints a table, writes
JSON, exits non-zero on a miss.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import statistics
import time
from pathlib import Path

import orjson

from strata.loadtest.servers import HOST, PinnedServer, edge_command, free_port, pick_cores

TARGET_RATIO = 2.0


def _post(body: bytes) -> bytes:
    return (b"POST /v1/recommend HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _read_answer(sock: socket.socket, buf: bytearray) -> tuple[int, bytearray]:
    """One answer from a keep-alive socket (by content-length); returns (status, rest of the buffer)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end])
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    need = end + 4 + length
    while len(buf) < need:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        buf += chunk
    return status, buf[need:]


def normal_client(port: int, seconds: float, interval_s: float, tag: str) -> list[float]:
    """Latencies (s) of one cache-miss request every ``interval_s`` for ``seconds``; a request with no
    answer within 10 s counts as 10 s (and the client reconnects)."""
    out: list[float] = []
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(10)
    buf = bytearray()
    t_end = time.perf_counter() + seconds
    nxt = time.perf_counter()
    i = 0
    try:
        while time.perf_counter() < t_end:
            i += 1
            req = _post(orjson.dumps({"user_id": "normal", "session_id": f"{tag}-{i}", "k": 10}))
            t0 = time.perf_counter()
            try:
                sock.sendall(req)
                status, buf = _read_answer(sock, buf)
            except OSError:                     # timed out (10 s) or closed: counted as a 10 s answer
                out.append(max(time.perf_counter() - t0, 10.0))
                sock.close()
                sock = socket.create_connection((HOST, port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(10)
                buf = bytearray()
                nxt = time.perf_counter()
                continue
            out.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"normal client got {status}")
            nxt += interval_s
            delay = nxt - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                nxt = time.perf_counter()
    finally:
        sock.close()
    return out


# -- the abuser (its own process) ---------------------------------------------------------------------
def _slow_headers(port: int, n: int, stop: mp.Event, stats: dict) -> None:
    conns: list[socket.socket] = []
    while not stop.is_set():
        while len(conns) < n:
            try:
                s = socket.create_connection((HOST, port), timeout=2)
                s.setblocking(False)
                s.send(b"POST /v1/recommend HTTP/1.1\r\nX-Slow: ")
                conns.append(s)
            except OSError:
                break
        for s in list(conns):
            try:
                s.send(b"a")
                data = s.recv(4096)
                if data or data == b"":
                    stats["slow_closed"] = stats.get("slow_closed", 0) + 1
                    s.close()
                    conns.remove(s)
            except BlockingIOError:
                pass
            except OSError:
                stats["slow_closed"] = stats.get("slow_closed", 0) + 1
                s.close()
                conns.remove(s)
        stop.wait(0.2)
    for s in conns:
        s.close()


def _endless_trailer(port: int, stop: mp.Event, stats: dict) -> None:
    body = b'{"user_id":"u","session_id":"t"}'
    head = (b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\nX-Trailer: ")
    piece = b"t" * 65536
    while not stop.is_set():
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                s.sendall(head)
                while not stop.is_set():
                    s.sendall(piece)
                    stats["trailer_bytes"] = stats.get("trailer_bytes", 0) + len(piece)
        except OSError:
            stats["trailer_cut"] = stats.get("trailer_cut", 0) + 1
            stop.wait(0.01)


def _pipeline(port: int, stop: mp.Event, stats: dict, n: int = 3000) -> None:
    round_ = 0
    while not stop.is_set():
        round_ += 1
        burst = b"".join(_post(orjson.dumps({"user_id": "p", "session_id": f"pipe-{round_}-{i}", "k": 100}))
                         for i in range(n))
        try:
            with socket.create_connection((HOST, port), timeout=30) as s:
                s.sendall(burst)
                buf = bytearray()
                for _ in range(n):
                    _, buf = _read_answer(s, buf)
                    stats["pipelined_answers"] = stats.get("pipelined_answers", 0) + 1
                    if stop.is_set():
                        break
        except OSError:
            stats["pipeline_errors"] = stats.get("pipeline_errors", 0) + 1


def _abuser(port: int, slow_conns: int, stop: mp.Event, out: mp.Queue) -> None:
    import threading

    os.nice(10)
    stats: dict = {}
    threads = [threading.Thread(target=_slow_headers, args=(port, slow_conns, stop, stats), daemon=True),
               threading.Thread(target=_endless_trailer, args=(port, stop, stats), daemon=True),
               threading.Thread(target=_pipeline, args=(port, stop, stats), daemon=True)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(5)
    out.put(stats)


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98] if len(xs) >= 100 else max(xs)


def run(registry: str, *, rounds: int = 3, window_s: float = 4.0, interval_ms: float = 5.0,
        slow_conns: int = 100) -> dict:
    registry = str(Path(registry).resolve())
    cores = pick_cores()
    old_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cores.loadgen})
    try:
        return _run(registry, cores, rounds, window_s, interval_ms, slow_conns)
    finally:
        os.sched_setaffinity(0, old_affinity)


def _run(registry: str, cores, rounds: int, window_s: float, interval_ms: float, slow_conns: int) -> dict:
    port = free_port()
    quiet: list[float] = []
    abused: list[float] = []
    stats: dict = {}
    ctx = mp.get_context("fork")
    with PinnedServer("edge", edge_command(registry, port), port, cores.server):
        normal_client(port, 1.0, interval_ms / 1000, "warm")
        for r in range(rounds):
            quiet += normal_client(port, window_s, interval_ms / 1000, f"q{r}")
            stop = ctx.Event()
            q: mp.Queue = ctx.Queue()
            proc = ctx.Process(target=_abuser, args=(port, slow_conns, stop, q), daemon=True)
            proc.start()
            time.sleep(0.5)                      # the attacks are under way
            abused += normal_client(port, window_s, interval_ms / 1000, f"a{r}")
            stop.set()
            for k, v in q.get(timeout=30).items():
                stats[k] = stats.get(k, 0) + v
            proc.join(10)
            time.sleep(0.5)
    ratio = p99(abused) / p99(quiet)
    return {
        "quiet": {"n": len(quiet), "p50_ms": statistics.median(quiet) * 1e3, "p99_ms": p99(quiet) * 1e3,
                  "max_ms": max(quiet) * 1e3},
        "abused": {"n": len(abused), "p50_ms": statistics.median(abused) * 1e3, "p99_ms": p99(abused) * 1e3,
                   "max_ms": max(abused) * 1e3},
        "p99_ratio": ratio, "target_ratio": TARGET_RATIO, "passed": ratio <= TARGET_RATIO, "abuser": stats,
        "rounds": rounds, "window_s": window_s, "interval_ms": interval_ms, "slow_conns": slow_conns,
        "server_core": cores.server, "client_core": cores.loadgen,
    }


def print_report(r: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"normal client, one cache-miss request every {r['interval_ms']:g} ms "
                    f"({r['rounds']} x {r['window_s']:g} s windows each)")
    for col in ("phase", "requests", "p50 ms", "p99 ms", "max ms"):
        t.add_column(col, justify="right" if col != "phase" else "left")
    for phase, label in (("quiet", "quiet"), ("abused", "with the abuser")):
        p = r[phase]
        t.add_row(label, str(p["n"]), f"{p['p50_ms']:.2f}", f"{p['p99_ms']:.2f}", f"{p['max_ms']:.2f}")
    console.print(t)
    a = r["abuser"]
    console.print(f"abuser: {r['slow_conns']} slow-header connections ({a.get('slow_closed', 0)} cut off), "
                  f"endless trailer ({a.get('trailer_cut', 0)} connections cut off), "
                  f"huge pipeline ({a.get('pipelined_answers', 0)} answers read)")
    verdict = "PASS" if r["passed"] else "MISS"
    console.print(f"p99 abused / quiet = {r['p99_ratio']:.2f}x (target <= {r['target_ratio']:g}x): {verdict}")
