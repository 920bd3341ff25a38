"""Why the router has its own HTTP/1.1 client: client CPU per request of it and of the async HTTP client
libraries that are installed, against an upstream answering at once (``loadtest.fake_upstream`` in its own
process on another core), keep-alive, a 100-candidate msgpack request and a 10-item msgpack answer decoded.

    python -m strata.loadtest.router_clients [--requests 4000] [--clients router,aiohttp,pyreqwest,aiosonic,httpx]

The libraries are not dependencies of Strata; one that is not installed is reported as such.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import msgpack

from strata.loadtest.servers import free_port, http_get

PATH = "/v1/recommend"
HEADERS = {"content-type": "application/msgpack", "accept": "application/msgpack", "x-request-id": "bench-1",
           "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
BODY = msgpack.packb({"user_id": "u1", "session_id": "s1", "slot": "home", "k": 10,
                      "context": {"channel": "web", "hour": 12}, "candidates": [f"sku-{i:05d}" for i in range(100)]})


async def _client(name: str, url: str) -> tuple[Callable[[], Awaitable[dict]], Callable[[], Awaitable[None]]]:
    """(one request, close) for a client by name; ImportError when its library is not installed."""
    if name == "router":
        from strata.shared.router.http import HttpPool
        pool = HttpPool(url)
        loop = asyncio.get_running_loop()
        extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in HEADERS.items() if k.startswith(("x-", "trace")))

        async def one() -> dict:
            _, body = await pool.post(PATH.encode(), BODY, extra, loop.time() + 1.0)
            return msgpack.unpackb(body)

        async def close() -> None:
            pool.close()
        return one, close
    if name == "aiohttp":
        import aiohttp
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))

        async def one() -> dict:
            async with session.post(url + PATH, data=BODY, headers=HEADERS) as r:
                return msgpack.unpackb(await r.read())
        return one, session.close
    if name == "httpx":
        import httpx
        client = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=64))

        async def one() -> dict:
            return msgpack.unpackb((await client.post(url + PATH, content=BODY, headers=HEADERS)).content)
        return one, client.aclose
    if name == "pyreqwest":
        from pyreqwest.client import ClientBuilder
        client = await ClientBuilder().build().__aenter__()

        async def one() -> dict:
            r = await client.post(url + PATH).body_bytes(BODY).headers(HEADERS).build().send()
            return msgpack.unpackb(await r.bytes())

        async def close() -> None:
            await client.__aexit__(None, None, None)
        return one, close
    if name == "aiosonic":
        import aiosonic
        client = aiosonic.HTTPClient()

        async def one() -> dict:
            return msgpack.unpackb(await (await client.post(url + PATH, data=BODY, headers=HEADERS)).content())

        async def close() -> None:
            pass
        return one, close
    raise ValueError(f"unknown client {name!r}")


async def measure(name: str, url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(client CPU µs per request, wall µs per request) over ``requests`` after a warm-up."""
    one, close = await _client(name, url)

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()
    await asyncio.gather(*(worker(200 // concurrency) for _ in range(concurrency)))
    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    await close()
    n = requests // concurrency * concurrency
    return cpu / n * 1e6, wall / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--clients", default="router,aiohttp,pyreqwest,aiosonic,httpx")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "strata.loadtest.fake_upstream", "--port", str(port),
                               "--core", str(cpus[-1])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if http_get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        os.sched_setaffinity(0, {cpus[0]})
        import uvloop
        print(f"{'client':<10} {'conc':>4} {'CPU µs/req':>11} {'wall µs/req':>12}")
        for name in args.clients.split(","):
            for conc in (1, 8):
                try:
                    cpu, wall = uvloop.run(measure(name, f"http://127.0.0.1:{port}", args.requests, conc))
                except ImportError:
                    print(f"{name:<10} not installed")
                    break
                print(f"{name:<10} {conc:>4} {cpu:>11.1f} {wall:>12.1f}", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f}")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
