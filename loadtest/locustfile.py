"""Locust users for Strata, one per caller of the design card (``FastHttpUser``, keep-alive).

- ``EdgeWorker``: a CDN edge worker: msgpack ``POST /v1/recommend`` on the edge with candidates, k 10-24,
  sessions and candidates drawn from the registry's catalog (Zipf-repeating sessions: a realistic mix of
  response-cache hits and misses).
- ``RegionalClient``: a client app on a regional endpoint: JSON recommend without candidates on the streaming
  service (tier 2), cold-start ``query`` requests and ``/v1/explain`` on the origin.
- ``EventProducer``: batches of a realistic event mix to ``POST /v1/events``; its clicks carry impression ids
  the edge returned (to this process's ``EdgeWorker`` users, or to its own recommend when it has none).

Every answer is checked with ``catch_response`` (``strata.loadtest.checks``: schema, k items, tier in the
known set): a 200 with a wrong body is a failure. Requests are reported under the tier that answered,
``recommend [edge]``, ``recommend [origin]``, ... and degraded answers apart (``recommend [edge, degraded]``),
so one run gives per-tier percentiles.

Options (``locust -f loadtest/locustfile.py --help``; ``strata loadtest`` sets them): ``--edge-host``,
``--streaming-host``, ``--origin-host``, ``--registry`` (catalog; without it the catalog is learned from the
edge's answers), the weights ``--edge-weight`` / ``--regional-weight`` / ``--events-weight``, and
``--strata-summary PATH`` (the JSON ``strata loadtest`` checks the SLOs on). Do not pass Locust's ``--host``:
it would point every class at one host.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
import uuid
from pathlib import Path

import msgpack
import numpy as np
import orjson
from locust import FastHttpUser, between, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from strata.loadtest.checks import JSON, MSGPACK, BadAnswer, check_events, check_ranked, request_name
from strata.loadtest.traffic import Catalog, EdgeSessions, Impressions, Shown, context, event_batch

logger = logging.getLogger("strata.loadtest")

STATE: dict = {"catalog": None, "impressions": Impressions(), "hosts": {}}
SUMMARY_VERSION = 1


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("Strata")
    group.add_argument("--edge-host", default="", help="the edge's base URL (EdgeWorker)")
    group.add_argument("--streaming-host", default="", help="the streaming service (RegionalClient's recommend, "
                                                           "EventProducer's /v1/events)")
    group.add_argument("--origin-host", default="", help="the origin (RegionalClient's cold start and explain)")
    group.add_argument("--registry", default="", help="registry whose edge-scorer catalog the users draw from "
                                                      "(default: learned from the edge's answers)")
    group.add_argument("--edge-weight", type=int, default=6, help="EdgeWorker weight")
    group.add_argument("--regional-weight", type=int, default=2, help="RegionalClient weight")
    group.add_argument("--events-weight", type=int, default=2, help="EventProducer weight")
    group.add_argument("--strata-summary", default="", help="write every stats entry (response-time "
                                                           "histograms included) as JSON here at the end")


def _learn_catalog(edge: str) -> Catalog:
    """Item ids from the edge's own answers (its pools, per channel), for a machine without the registry."""
    import urllib.request

    ids: list[str] = []
    for channel in ("web", "app", "email", "sms", "pos"):
        body = orjson.dumps({"user_id": "lt-catalog", "session_id": f"lt-catalog-{uuid.uuid4().hex[:8]}",
                             "k": 100, "context": {"channel": channel}})
        req = urllib.request.Request(f"{edge}/v1/recommend", data=body, headers={"Content-Type": JSON})
        with urllib.request.urlopen(req, timeout=10) as resp:
            ids += [it["item_id"] for it in orjson.loads(resp.read())["items"]]
    return Catalog.from_ids(ids)


@events.init.add_listener
def _init(environment, **_kw) -> None:
    opts = environment.parsed_options
    STATE["environment"] = environment
    if opts is None:          # a library user building its own Environment sets the class hosts itself
        return
    hosts = {"edge": opts.edge_host.rstrip("/"), "streaming": opts.streaming_host.rstrip("/"),
             "origin": opts.origin_host.rstrip("/")}
    STATE["hosts"] = hosts
    EdgeWorker.host, EventProducer.host = hosts["edge"] or None, hosts["streaming"] or None
    RegionalClient.host = hosts["streaming"] or hosts["origin"] or None
    EdgeWorker.weight, RegionalClient.weight, EventProducer.weight = (
        max(opts.edge_weight, 1), max(opts.regional_weight, 1), max(opts.events_weight, 1))


@events.test_stop.add_listener
def _test_stop(environment, **_kw) -> None:
    """Workers still connected when the run stops (the master forgets them while quitting)."""
    STATE["workers"] = getattr(environment.runner, "worker_count", 0)


@events.quitting.add_listener
def _quitting(environment, **_kw) -> None:
    """On the local runner or the master (which holds every worker's stats), not on a worker."""
    opts = environment.parsed_options
    if opts is None or isinstance(environment.runner, WorkerRunner):
        return
    if opts.strata_summary:
        write_summary(environment, opts.strata_summary)
    if getattr(opts, "csv_prefix", None):
        write_final_csv(environment, opts.csv_prefix)


FINAL_SUFFIX = ".final"
FINAL_CSV = ("stats", "failures", "exceptions")


def write_final_csv(environment, prefix: str) -> None:
    """Locust's own CSV writer rewrites ``<prefix>_stats.csv``, ``_failures.csv`` and ``_exceptions.csv`` once a
    second and only closes them at the end, so what happened in the run's last second (in a short run: all of
    it) can be missing. The same files from the final stats go next to them (``.final``); ``strata loadtest``
    puts them in place once Locust has exited."""
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for name, write in zip(FINAL_CSV, (writer.requests_csv, writer.failures_csv, writer.exceptions_csv),
                           strict=True):
        with open(f"{prefix}_{name}.csv{FINAL_SUFFIX}", "w", newline="") as f:
            write(csv.writer(f))


def catalog() -> Catalog:
    """The catalog, loaded once per process on first use."""
    if STATE["catalog"] is None:
        env = STATE.get("environment")
        registry = env.parsed_options.registry if env is not None and env.parsed_options else ""
        if registry and Path(registry).is_dir():
            STATE["catalog"] = Catalog.from_registry(registry)
        elif STATE["hosts"].get("edge"):
            STATE["catalog"] = _learn_catalog(STATE["hosts"]["edge"])
        else:
            raise StopUser("no catalog: give --registry or --edge-host")
    return STATE["catalog"]


def write_summary(environment, path: str) -> None:
    """Every stats entry with its rounded-ms response-time histogram (what SLO percentiles merge), the run's
    window and the runner's worker count, as JSON."""
    stats = environment.stats
    runner = environment.runner
    entries = [{"name": e.name, "method": e.method, "num_requests": e.num_requests,
                "num_failures": e.num_failures, "response_times": {str(k): v for k, v in e.response_times.items()},
                "total_rps": e.total_rps, "avg_response_time": e.avg_response_time}
               for e in stats.entries.values()]
    out = {"version": SUMMARY_VERSION, "start_time": stats.start_time,
           "last_request_timestamp": stats.last_request_timestamp, "end_time": time.time(),
           "total": {"num_requests": stats.total.num_requests, "num_failures": stats.total.num_failures,
                     "total_rps": stats.total.total_rps},
           "workers": STATE.get("workers", 0), "runner": type(runner).__name__ if runner is not None else None,
           "hosts": STATE["hosts"], "entries": entries,
           "errors": [{"name": e.name, "error": str(e.error), "occurrences": e.occurrences}
                      for e in stats.errors.values()]}
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)


def _rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(8), "little"))


class _Strata(FastHttpUser):
    abstract = True

    def _ranked(self, path: str, body: bytes, ctype: str, *, endpoint: str, called: str, k: int,
                n_candidates: int | None = None, explain: bool = False):
        """POST, check, report under the tier that answered; returns the Answer or None."""
        with self.client.post(path, data=body, headers={"Content-Type": ctype, "Accept": ctype},
                              name=request_name(endpoint, called), catch_response=True) as resp:
            try:
                ans = check_ranked(resp.status_code, resp.content or b"", resp.headers.get("content-type"),
                                   k=k, n_candidates=n_candidates, explain=explain)
            except BadAnswer as exc:
                resp.request_meta["name"] = request_name(endpoint, exc.tier or called)
                resp.failure(exc.reason)
                return None
            resp.request_meta["name"] = request_name(endpoint, ans.tier, ans.degraded)
            resp.success()
            return ans


class EdgeWorker(_Strata):
    """A CDN edge worker in front of the PoP's edge node: msgpack recommend with candidates, keep-alive."""

    wait_time = between(0.01, 0.05)
    weight = 6

    def on_start(self) -> None:
        self.rng = _rng()
        self.sessions = EdgeSessions(catalog(), self.rng)

    @task
    def recommend(self) -> None:
        body = self.sessions.next()
        ans = self._ranked("/v1/recommend", msgpack.packb(body), MSGPACK, endpoint="recommend", called="edge",
                           k=body["k"], n_candidates=len(body["candidates"]))
        if ans is not None and ans.impression_id:
            STATE["impressions"].add(Shown(body["user_id"], body["session_id"], ans.impression_id, ans.items,
                                           body["context"]["channel"]))


class RegionalClient(_Strata):
    """A client app (web, app, email...) on a regional endpoint: JSON, no candidates."""

    wait_time = between(0.2, 0.6)
    weight = 2

    def on_start(self) -> None:
        self.rng = _rng()
        self.user = f"lt-r-{uuid.uuid4().hex[:8]}"
        self.session = f"{self.user}-s0"
        self.last: list[str] = []

    def _body(self, **extra) -> bytes:
        return orjson.dumps({"user_id": self.user, "session_id": self.session, "slot": "home",
                             "k": int(self.rng.integers(6, 13)), "context": context(self.rng), **extra})

    @task(5)
    def recommend(self) -> None:
        hosts = STATE["hosts"]
        if not hosts.get("streaming"):
            return self.cold_start()
        body = self._body()
        ans = self._ranked("/v1/recommend", body, JSON, endpoint="recommend", called="streaming",
                           k=orjson.loads(body)["k"])
        if ans is not None:
            self.last = ans.items

    def _origin(self, path: str) -> str:
        origin = STATE["hosts"].get("origin")
        if not origin:
            raise StopUser("no origin host")
        return origin + path

    @task(3)
    def cold_start(self) -> None:
        """A new shopper typing a query: the origin's cold start."""
        self.user = f"lt-r-{uuid.uuid4().hex[:8]}"
        self.session = f"{self.user}-s0"
        body = self._body(query=catalog().query(self.rng))
        ans = self._ranked(self._origin("/v1/recommend"), body, JSON, endpoint="recommend", called="origin",
                           k=orjson.loads(body)["k"])
        if ans is not None:
            self.last = ans.items

    @task(2)
    def explain(self) -> None:
        """Why these products: the items of the last answer (or popular ones)."""
        items = self.last[:5] or catalog().draw(self.rng, 5)
        body = self._body(item_ids=items)
        self._ranked(self._origin("/v1/explain"), body, JSON, endpoint="explain", called="origin",
                     k=len(items), explain=True)


class EventProducer(_Strata):
    """A site's event forwarder: batches of 5-40 events of a realistic mix to the ingest API."""

    wait_time = between(0.2, 0.5)
    weight = 2

    def on_start(self) -> None:
        self.rng = _rng()
        self.sessions = EdgeSessions(catalog(), self.rng, pool=200)

    def _impression(self) -> None:
        """No EdgeWorker in this process yet: ask the edge once, so clicks have an impression to carry."""
        edge = STATE["hosts"].get("edge")
        if not edge:
            return
        body = self.sessions.next()
        ans = self._ranked(edge + "/v1/recommend", msgpack.packb(body), MSGPACK, endpoint="recommend",
                           called="edge", k=body["k"], n_candidates=len(body["candidates"]))
        if ans is not None and ans.impression_id:
            STATE["impressions"].add(Shown(body["user_id"], body["session_id"], ans.impression_id, ans.items,
                                           body["context"]["channel"]))

    @task
    def send(self) -> None:
        if not len(STATE["impressions"]):
            self._impression()
        batch = event_batch(catalog(), self.rng, STATE["impressions"], int(self.rng.integers(5, 41)))
        with self.client.post("/v1/events", data=orjson.dumps({"events": batch}),
                              headers={"Content-Type": JSON}, name=request_name("events", "streaming"),
                              catch_response=True) as resp:
            try:
                check_events(resp.status_code, resp.content or b"", resp.headers.get("content-type"),
                             sent=len(batch))
            except BadAnswer as exc:
                resp.failure(exc.reason)
                return
            resp.success()
