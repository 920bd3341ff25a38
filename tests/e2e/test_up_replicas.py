"""``strata up --replicas edge=2,streaming=2,processor=2,origin=2``: every replica runs on its own port with its own
log, every edge's router lists both streaming services and both origins, the two processors share the events
topic's partitions; then one replica of each kind is killed (SIGKILL) under traffic and the supervisor restarts
it: no edge answers 5xx, and every event the ingest accepted (202) is counted exactly once in the store.

The traffic is what a client behind a load balancer sends: recommends to the edges and event batches to the
ingest replicas in turn; a request a replica does not answer (it is being killed, or restarting) goes to the
other replica, an event batch with the same event ids (as the ingest's contract asks of a retry)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from strata.deploy.local import port_open
from strata.shared.keys import profile_key
from tests.support.up_process import Up, alive, children, running_up, wait_for

pytestmark = pytest.mark.slow

KINDS = ("edge", "streaming", "processor", "origin")
VIEWS = 10                      # view events per batch, each batch a user of its own: its view counter says how
RATES = {"recommend": 12.0, "events": 6.0}          # many were applied (requests/s offered, open loop)
RETRY_FOR_S = 60.0


@pytest.fixture(scope="module")
def up(full_registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    with running_up(full_registry_dir, tmp_path_factory.mktemp("up-replicas"),
                    "--replicas", "edge=2,streaming=2,processor=2,origin=2") as running:
        yield running


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _pid(up: Up, kind: str, url: str) -> int:
    """The pid of the replica of ``kind`` serving on ``url``'s port (from its command line)."""
    flag = "--metrics-port" if kind == "processor" else "--port"
    words = {"edge": " edge ", "streaming": " streaming serve ", "processor": " streaming process ",
             "origin": " origin "}[kind]
    found = [pid for pid, cmd in children(up.proc.pid).items()
             if words in f" {cmd} " and f" {flag} {_port(url)} " in f" {cmd} "]
    assert len(found) == 1, (kind, url, children(up.proc.pid))
    return found[0]


def _views(store: redis.Redis, users: list[str]) -> dict[str, int]:
    with store.pipeline(transaction=False) as pipe:
        for u in users:
            pipe.hgetall(profile_key("default", u))
        profiles = pipe.execute()
    return {u: sum(int(v) for k, v in p.items() if k.startswith(b"v:")) for u, p in zip(users, profiles, strict=True)}


def _partitions(processor: str) -> set[str]:
    text = httpx.get(f"{processor}/metrics", timeout=5).text
    return set(re.findall(r'^strata_processor_consumer_lag\{partition="(\d+)"\}', text, re.M))


def test_every_replica_on_its_own_port_and_every_router_lists_them_all(up: Up) -> None:
    e = up.endpoints
    assert list(e) == ["edge", "streaming", "origin", "store", "broker", "replicas"]
    replicas = e["replicas"]
    assert list(replicas) == list(KINDS)
    urls = [u for kind in KINDS for u in replicas[kind]]
    assert all(len(replicas[kind]) == 2 for kind in KINDS) and len({_port(u) for u in urls}) == 8, replicas
    for key in ("edge", "streaming", "origin"):
        assert e[key] == replicas[key][0]                         # the plain keys name the first replica
    printed = up.output()
    for kind in KINDS:
        for i, url in enumerate(replicas[kind], 1):
            name = f"{kind}-{i}"
            assert (up.run_dir / f"{name}.log").is_file(), name
            assert re.search(rf"│ {name} +│ \d+ +│ {re.escape(url)}", printed), (name, printed)
            path = "/metrics" if kind == "processor" else "/readyz"
            assert httpx.get(f"{url}{path}", timeout=5).status_code == 200, name
    for edge in replicas["edge"]:                                 # the routers' upstream lists filled themselves
        text = httpx.get(f"{edge}/metrics", timeout=5).text
        listed = set(re.findall(r'^strata_router_breaker_open\{endpoint="([^"]+)",target="(\w+)"\}', text, re.M))
        assert listed == {(u, t) for t in ("streaming", "origin") for u in replicas[t]}, (edge, listed)


def test_the_processors_share_the_partitions(up: Up) -> None:
    e = up.endpoints
    with httpx.Client(timeout=5) as client:
        for i in range(40):                                       # 40 sessions: every partition gets some
            u = f"share-{i}"
            event = {"event_id": f"{u}-v", "type": "view", "user_id": u, "session_id": u,
                     "ts": int(time.time() * 1000), "channel": "web", "item_id": "SKU-000001"}
            assert client.post(f"{e['replicas']['streaming'][i % 2]}/v1/events", json=event).status_code == 202
    first, second = e["replicas"]["processor"]
    wait_for(lambda: _partitions(first) and _partitions(second), 30, "a processor owns no partition", up)
    assert not _partitions(first) & _partitions(second)


class Traffic:
    """Recommends to the edges and event batches to the ingest replicas, each request retried on the other
    replica until it is answered; what every request finally got is tallied."""

    def __init__(self, endpoints: dict, tag: str) -> None:
        self.edges = endpoints["replicas"]["edge"]
        self.ingest = endpoints["replicas"]["streaming"]
        self.tag = tag
        self.edge_status: Counter[int] = Counter()               # every answer of an edge (503s included)
        self.tiers: Counter[str] = Counter()                      # which tier answered (the edge's 200s)
        self.failovers = 0                                        # requests a replica did not answer
        self.unanswered = 0                                       # requests no replica answered in RETRY_FOR_S
        self.accepted: list[str] = []                             # users whose VIEWS views were answered 202
        self.ingest_status: Counter[int] = Counter()             # every answer of an ingest (a 503 is retried)
        self._n = itertools.count()

    async def _send(self, client: httpx.AsyncClient, urls: list[str], path: str, body: dict,
                    answers: Counter[int]) -> httpx.Response | None:
        """POST to the replicas in turn (starting at a different one each request) until one answers other than
        503; every answer is counted in ``answers``. None when none did within RETRY_FOR_S."""
        start = next(self._n)
        deadline = time.monotonic() + RETRY_FOR_S
        for k in itertools.count():
            url = urls[(start + k) % len(urls)]
            try:
                resp = await client.post(f"{url}{path}", json=body)
            except httpx.TransportError:
                resp = None
            if resp is not None:
                answers[resp.status_code] += 1
                if resp.status_code != 503:
                    return resp
            self.failovers += 1
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.2 if k % len(urls) == len(urls) - 1 else 0)   # all tried: wait a little
        return None

    async def recommend(self, client: httpx.AsyncClient, i: int) -> None:
        body = {"user_id": f"{self.tag}-ru{i % 50}", "session_id": f"{self.tag}-rs{i % 200}", "k": 5,
                "explain": i % 4 == 0}                           # a new user, or an explanation: the origin's
        resp = await self._send(client, self.edges, "/v1/recommend", body, self.edge_status)
        if resp is None:
            self.unanswered += 1
        elif resp.status_code == 200:
            self.tiers[resp.json()["tier"]] += 1

    async def events(self, client: httpx.AsyncClient, i: int) -> None:
        user = f"{self.tag}-u{i}"
        now = int(time.time() * 1000)
        body = {"events": [{"event_id": f"{user}-v{j}", "type": "view", "user_id": user, "session_id": user,
                            "ts": now, "channel": "web", "item_id": f"SKU-{j:06d}"} for j in range(VIEWS)]}
        resp = await self._send(client, self.ingest, "/v1/events", body, self.ingest_status)
        if resp is None:
            self.unanswered += 1
        elif resp.status_code == 202:
            self.accepted.append(user)

    async def run(self, stop: asyncio.Event) -> None:
        timeout = httpx.Timeout(5.0)
        async with httpx.AsyncClient(timeout=timeout) as client:
            tasks: set[asyncio.Task] = set()

            async def pace(send, rate: float) -> None:
                t0 = time.monotonic()
                for n in itertools.count():
                    if stop.is_set():
                        return
                    task = asyncio.create_task(send(client, n))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    await asyncio.sleep(max(0.0, t0 + (n + 1) / rate - time.monotonic()))

            await asyncio.gather(pace(self.recommend, RATES["recommend"]), pace(self.events, RATES["events"]))
            await asyncio.gather(*list(tasks))


def test_one_of_each_killed_under_traffic_no_edge_5xx_no_event_lost(up: Up) -> None:
    e = up.endpoints
    victims = {kind: f"{kind}-2" for kind in KINDS}
    old = {kind: _pid(up, kind, e["replicas"][kind][1]) for kind in KINDS}
    log = up.run_dir / "supervisor.log"
    traffic = Traffic(e, f"kill-{os.getpid()}")

    def restarted() -> bool:
        text = log.read_text() if log.exists() else ""
        return all(f"{name} restarted" in text for name in victims.values())

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(traffic.run(stop))
        await asyncio.sleep(4)                                    # steady traffic first
        for pid in old.values():
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while not restarted() and time.monotonic() < deadline and not running.done():
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)                                    # traffic on the restarted replicas too
        stop.set()
        await running

    t0 = time.monotonic()
    asyncio.run(scenario())
    elapsed = time.monotonic() - t0
    assert restarted(), f"not every killed replica was restarted; supervisor log:\n{log.read_text()}"
    text = log.read_text()
    for kind, name in victims.items():
        assert re.search(rf"{name} \(pid {old[kind]}\) exited with code -9 ", text), (name, text)
        new = _pid(up, kind, e["replicas"][kind][1])              # the same port, a new process
        assert new != old[kind] and alive(new) and not alive(old[kind]), name

    summary = (f"{elapsed:.0f}s; edges {dict(traffic.edge_status)}, tiers {dict(traffic.tiers)}, ingest "
               f"{dict(traffic.ingest_status)}, failovers {traffic.failovers}, unanswered {traffic.unanswered}")
    print(summary)                                                # in the report with -rP
    assert traffic.unanswered == 0, summary
    assert not [s for s in traffic.edge_status if s >= 500], summary
    assert set(traffic.edge_status) == {200}, summary             # and no 4xx: every request was a good one
    assert traffic.failovers > 0, summary                         # the kills were felt (the edge and the ingest)
    assert traffic.tiers["origin"] > 0, summary                   # the routers reached the origins
    assert set(traffic.ingest_status) <= {202, 503} and len(traffic.accepted) >= 40, summary

    store = redis.Redis.from_url(e["store"])
    users = traffic.accepted
    wait_for(lambda: all(v >= VIEWS for v in _views(store, users).values()), 60,
             f"accepted events not applied ({summary})", up)
    views = _views(store, users)
    lost = sum(max(0, VIEWS - v) for v in views.values())
    doubled = sum(max(0, v - VIEWS) for v in views.values())
    assert (lost, doubled) == (0, 0), summary
    print(f"{len(users)} batches of {VIEWS} views accepted, every view counted once")


def _catalog(url: str) -> dict:
    """The catalog topic's state a replica reports on /readyz (the streaming service: its tier 2's)."""
    body = httpx.get(f"{url}/readyz", timeout=5).json()
    return (body.get("tier2") or body).get("catalog") or {}


def test_a_catalog_upsert_reaches_every_replica_and_a_restarted_one_replays_it(up: Up) -> None:
    """POST /v1/items to one origin: both origins, both tier-2 services and both edges apply it (the catalog
    topic); an origin killed afterwards replays it when the supervisor restarts it."""
    e = up.endpoints
    reps = e["replicas"]
    item = {"item_id": "NEW-REPLICA-1", "title": "Quillon rye loaf", "category": "bakery", "price": 2.5,
            "stock": 9, "age_restricted": False}
    resp = httpx.post(f"{reps['origin'][0]}/v1/items", json={"items": [item]}, timeout=30)
    assert resp.status_code == 200, resp.text
    followers = [*reps["origin"], *reps["streaming"], *reps["edge"]]
    wait_for(lambda: all(_catalog(u).get("applied", 0) >= 1 for u in followers), 30,
             f"a replica did not apply the upsert: {[(u, _catalog(u)) for u in followers]}", up)
    positions = {u: _catalog(u)["position"] for u in followers}
    assert len(set(positions.values())) == 1, positions            # one log, one position everywhere

    def knows(origin: str) -> bool:
        r = httpx.post(f"{origin}/v1/recommend", json={"user_id": "u-cat", "session_id": "s-cat", "k": 3,
                                                       "candidates": ["NEW-REPLICA-1", "SKU-000001"]}, timeout=10)
        return r.status_code == 200 and "NEW-REPLICA-1" in [it["item_id"] for it in r.json()["items"]]

    assert knows(reps["origin"][1])                               # the other origin took it from the log
    victim = _pid(up, "origin", reps["origin"][1])
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not alive(victim), 10, "the killed origin is still there", up)

    def back() -> bool:
        try:
            return _pid(up, "origin", reps["origin"][1]) != victim and _catalog(reps["origin"][1])["replayed"]
        except (AssertionError, httpx.HTTPError, KeyError):
            return False

    wait_for(back, 90, "the killed origin was not restarted and replayed", up)
    assert knows(reps["origin"][1])                               # replayed from the topic at its start


def test_ctrl_c_stops_every_replica_and_leaves_no_port_open(up: Up) -> None:
    descendants = set(children(up.proc.pid))
    assert len(descendants) >= 10                                 # valkey, broker and 8 replicas
    ports = [_port(u) for kind in KINDS for u in up.endpoints["replicas"][kind]]
    os.killpg(up.proc.pid, signal.SIGINT)
    assert up.proc.wait(timeout=60) == 0, up.output()
    wait_for(lambda: not any(alive(p) for p in descendants), 10, "processes left after Ctrl-C", up)
    assert not any(port_open("127.0.0.1", p) for p in ports), ports
    assert not up.endpoints_file.exists()
