"""``strata up``: the whole system on one machine as supervised processes.

    valkey-server -> Tansu broker -> streaming service (ingest + tier 2) + stream processor + origin + edge

Every bundle the tiers load is exported first when the registry lacks it (``deploy.bundles``), so the origin
runs with its models. The edge is configured with the router's upstream URLs (``router.streaming_urls``,
``router.origin_urls``: the streaming services' and the origins'). ``--replicas`` runs several of a Strata
process (``deploy.replicas``): each on its own port and shard directories; the processors share the events
topic's partitions as one consumer group (at least one partition each). A process that exits is restarted with backoff
(``deploy.supervisor``); each process logs to ``<run dir>/<name>.log`` (``edge-2.log`` for a replica), the
restarts to ``<run dir>/supervisor.log``. ``--config FILE`` names external engines (Redis/Valkey, Kafka,
Qdrant, vLLM): then Valkey and Tansu are not started and every Strata process reads that file (its store,
broker, index and reasoner settings stand); only the ports (free ones; the edge's ``--port``), the registry,
the run directory's index shards and the router URLs are set here.

Every origin, tier 2 and edge follows the broker's ``catalog`` topic (``catalog.broker``, unless the config names
one): a ``POST /v1/items`` to any origin reaches all of them, in one order.

Stopping (Ctrl-C, SIGTERM, SIGHUP, an error) stops everything in reverse order; no process is left.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType

from rich.console import Console
from rich.table import Table

from strata.deploy.bundles import ensure_bundles
from strata.deploy.endpoints import ENDPOINT_KEYS, Endpoints, write_endpoints
from strata.deploy.local import ManagedProcess, ValkeyProcess, free_port, port_open, strata_command
from strata.deploy.replicas import KINDS, Kind, Replicas
from strata.deploy.run_dir import RunDir
from strata.deploy.supervisor import Backoff, Supervised, Supervisor
from strata.deploy.tansu import TansuProcess
from strata.shared.catalog_feed import configured as catalog_configured
from strata.shared.config import StrataSettings, VectorIndexSettings, load_settings
from strata.shared.errors import ConfigError

HOST = "127.0.0.1"
SUPERVISOR_LOG = "supervisor.log"
UP_PREFIX = "strata-up-"
# the router's admission budget under `strata up` (one origin per edge; see ``Stack.router_env``). Measured with
# `strata loadtest` on this 2-core machine (2026-12-06): at the default 0.35, 1269 of 1827 degraded edge answers were
# budget refusals (degraded share 0.42); at 0.8, 18 (share 0.18, the rest breaker openings after origin stalls).
UP_ESCALATION_SHARE = 0.8


def pick_port(port: int, console: Console | None = None) -> int:
    """``port`` if free; a free one if it is taken (said on the console) or 0."""
    if port == 0 or port_open(HOST, port):
        chosen = free_port(HOST)
        if port and console is not None:
            console.print(f"[yellow]port {port} is busy; using {chosen}[/yellow]")
        return chosen
    return port


def _json_env(values: list[str]) -> str:
    return json.dumps(values)


class Stack:
    """The processes of ``strata up``, started by ``start()`` (ready when it returns), stopped by ``stop()``.

    ``config`` None: embedded Valkey + Tansu, everything pointed at them. ``edge_port`` 0: a free port (the first
    edge's; other edges get free ones).
    """

    def __init__(self, registry: Path, run_dir: Path, *, edge_port: int = 0, config: Path | None = None,
                 console: Console | None = None, backoff: Backoff = Backoff(), log_level: str | None = None,
                 replicas: Replicas = Replicas()) -> None:
        self.registry = registry.resolve()
        self.run_dir = run_dir
        self.edge_port = edge_port or free_port(HOST)
        self.config = config.resolve() if config is not None else None
        self.console = console or Console(stderr=True)
        self.log_level = log_level
        self.replicas = replicas
        self.settings: StrataSettings = load_settings(self.config)     # a bad file fails before anything starts
        self._topic_env = self._partitions_env()
        self.supervisor = Supervisor(self._say, backoff)
        self.valkey: ValkeyProcess | None = None
        self.broker: TansuProcess | None = None
        self.services: dict[str, Supervised] = {}
        self.endpoints: Endpoints | None = None
        self._ports: dict[str, int] = {}
        self._kinds: dict[str, Kind] = {}         # service name -> its kind (the table marks the processors')

    # -- helpers -----------------------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        with open(self.run_dir / SUPERVISOR_LOG, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
        self.console.print(f"[yellow]supervisor:[/yellow] {line}")

    def log_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def _common(self) -> list[str]:
        args = ["--log-level", self.log_level] if self.log_level is not None else []
        return args + (["--config", str(self.config)] if self.config is not None else [])

    def _env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **extra}

    def _add(self, name: str, kind: Kind, argv: list[str], ready_url: str, env: dict[str, str]) -> Supervised:
        child = ManagedProcess(name, argv, ready_url=ready_url, env=env, log_path=self.log_path(name))
        svc = Supervised(name, child, ready_url=ready_url)
        self.services[name] = svc
        self._kinds[name] = kind
        return svc

    def _port(self, name: str) -> int:
        """A free port that no other process of this stack has (two asks in a row may get the same one)."""
        taken = {*self._ports.values(), self.edge_port}
        port = free_port(HOST)
        while port in taken:
            port = free_port(HOST)
        self._ports[name] = port
        return port

    def _partitions_env(self) -> dict[str, str]:
        """The events topic gets at least one partition per processor (one consumer per partition: a processor
        without one idles). More than configured: set here, unless the config or env names a number."""
        topics = self.settings.streaming.topics
        n = self.replicas.processor
        if topics.partitions >= n:
            return {}
        if "partitions" in topics.model_fields_set:
            raise ConfigError(f"--replicas processor={n} needs at least {n} partitions of the events topic; "
                              f"streaming.topics.partitions is {topics.partitions}", field="streaming.topics.partitions")
        return {"STRATA_STREAMING__TOPICS__PARTITIONS": str(n)}

    @property
    def store_url(self) -> str:
        return self.valkey.url if self.valkey is not None else self.settings.edge.store.url

    @property
    def broker_bootstrap(self) -> str:
        return self.broker.bootstrap if self.broker is not None else self.settings.streaming.broker

    # -- start -------------------------------------------------------------------------------------------
    def start(self) -> Stack:
        ensure_bundles(self.registry, self.console)
        if self.config is None:
            self.valkey = ValkeyProcess(host=HOST, tmp_root=self.run_dir, log_path=self.log_path("valkey"))
            self.broker = TansuProcess(host=HOST, tmp_root=self.run_dir, log_path=self.log_path("broker"))
            self.services["valkey"] = self.supervisor.spawn(Supervised("valkey", self.valkey))
            self.services["broker"] = self.supervisor.spawn(Supervised("broker", self.broker))
        tiers = self._tiers()
        for svc in tiers:
            self.supervisor.spawn(svc)
        self.supervisor.wait_ready(tiers)
        self.supervisor.start_watching()
        first = {kind: self.urls(kind)[0] for kind in KINDS}
        self.endpoints = Endpoints(edge=first["edge"], streaming=first["streaming"], origin=first["origin"],
                                   store=self.store_url, broker=self.broker_bootstrap,
                                   replicas={k: self.urls(k) for k in KINDS} if self.replicas.several else None)
        return self

    def _tiers(self) -> list[Supervised]:
        """Every replica of every tier, built (not started) in start order."""
        r = self.replicas
        return [*(self._streaming(name, i) for i, name in enumerate(r.names("streaming"), 1)),
                *(self._processor(name) for name in r.names("processor")),
                *(self._origin(name, i) for i, name in enumerate(r.names("origin"), 1)),
                *(self._edge(name, i) for i, name in enumerate(r.names("edge"), 1))]

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self._ports[name]}"

    def urls(self, kind: Kind) -> list[str]:
        """The base URLs of every replica of ``kind`` (a processor's: its /metrics and /readyz server)."""
        return [self.url(name) for name in self.replicas.names(kind)]

    def _engine_flags(self) -> list[str]:
        """--store/--broker for the embedded engines; nothing with --config (the file names them)."""
        if self.config is not None:
            return []
        return ["--store", self.store_url, "--broker", self.broker_bootstrap]

    def _index_env(self, key: str, section: VectorIndexSettings, directory: str, kind: Kind, i: int) -> dict[str, str]:
        """The vector shard directory of replica ``i`` (Qdrant Edge): ``directory`` in the run directory unless the
        config names one; with several replicas each its own, ``-<i>`` after the name (a process clears the
        directories beside its own at start: they cannot share one)."""
        if section.backend != "edge":
            return {}
        suffix = f"-{i}" if self.replicas.count(kind) > 1 else ""
        if section.url is None:
            return {key: str(self.run_dir / f"{directory}{suffix}")}
        return {key: f"{section.url}{suffix}"} if suffix else {}

    def _streaming(self, name: str, i: int) -> Supervised:
        port = self._port(name)
        argv = [*strata_command(), "streaming", "serve", "--host", HOST, "--port", str(port),
                "--registry", str(self.registry), *self._engine_flags(), *self._common()]
        env = self._env(**self._topic_env, **self._index_env(
            "STRATA_STREAMING__TIER2__VECTOR_INDEX__URL", self.settings.streaming.tier2.vector_index, "tier2-index",
            "streaming", i), **self.catalog_env())
        return self._add(name, "streaming", argv, f"http://{HOST}:{port}/readyz", env)

    def _processor(self, name: str) -> Supervised:
        port = self._port(name)
        argv = [*strata_command(), "streaming", "process", "--registry", str(self.registry),
                "--metrics-port", str(port), *self._engine_flags(), *self._common()]
        return self._add(name, "processor", argv, f"http://{HOST}:{port}/metrics", self._env(**self._topic_env))

    def _origin(self, name: str, i: int) -> Supervised:
        port = self._port(name)
        argv = [*strata_command(), "origin", "--registry", str(self.registry), "--host", HOST, "--port", str(port),
                *self._common()]
        if self.config is None:
            argv += ["--store", self.store_url, "--reasoner", "template"]
        env = self._env(**self._index_env("STRATA_ORIGIN__VECTOR_INDEX__URL", self.settings.origin.vector_index,
                                          "origin-index", "origin", i), **self.catalog_env())
        return self._add(name, "origin", argv, f"http://{HOST}:{port}/readyz", env)

    def edge_argv(self, port: int) -> list[str]:
        return [*strata_command(), "edge", "--registry", str(self.registry), "--host", HOST, "--port", str(port),
                *self._engine_flags(), *self._common()]

    def catalog_env(self) -> dict[str, str]:
        """The catalog topic on this stack's broker (the origin, tier 2 and the edge apply it), unless the config
        names one."""
        if catalog_configured(self.settings.catalog):
            return {}
        return {"STRATA_CATALOG__BROKER": self.broker_bootstrap}

    def router_env(self) -> dict[str, str]:
        """The router's upstreams: every streaming service and origin of this stack, unless the config file
        names its own (a non-empty list there stands). The admission budget is ``UP_ESCALATION_SHARE`` unless
        the config sets one: it guards an origin shared by many edges, and here one origin serves one edge."""
        router = self.settings.router
        env: dict[str, str] = {}
        if "max_escalation_share" not in router.model_fields_set:
            env["STRATA_ROUTER__MAX_ESCALATION_SHARE"] = str(UP_ESCALATION_SHARE)
        if not router.streaming_urls:
            env["STRATA_ROUTER__STREAMING_URLS"] = _json_env(self.urls("streaming"))
        if not router.origin_urls:
            env["STRATA_ROUTER__ORIGIN_URLS"] = _json_env(self.urls("origin"))
        return env

    def _edge(self, name: str, i: int) -> Supervised:
        port = self._ports[name] = self.edge_port if i == 1 else self._port(name)    # the first edge on --port
        return self._add(name, "edge", self.edge_argv(port), f"http://{HOST}:{port}/readyz",
                         self._env(**self.router_env(), **self.catalog_env()))

    def add_edge(self, name: str, *, router: bool) -> str:
        """Another edge node on the same store and broker (e.g. ``router=False``: both upstream lists empty,
        the edge answers everything itself), supervised like the rest; returns its URL once it is ready."""
        port = self._port(name)
        env = self.router_env() if router else {"STRATA_ROUTER__STREAMING_URLS": "[]",
                                                 "STRATA_ROUTER__ORIGIN_URLS": "[]"}
        svc = self._add(name, "edge", self.edge_argv(port), f"http://{HOST}:{port}/readyz",
                        self._env(**env, **self.catalog_env()))
        self.supervisor.spawn(svc)
        self.supervisor.wait_ready([svc])
        return self.url(name)

    # -- stop ----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        self.supervisor.stop()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what it shows -------------------------------------------------------------------------------------
    def table(self) -> Table:
        t = Table(title=f"strata up: run directory {self.run_dir}")
        for col in ("process", "pid", "endpoint", "log"):
            t.add_column(col)
        urls = {"valkey": self.store_url, "broker": self.broker_bootstrap}
        for name, svc in self.services.items():
            url = urls.get(name) or (self.url(name) if name in self._ports else "")
            if self._kinds.get(name) == "processor":
                url = f"{url}/metrics"
            log = svc.child.log_path if isinstance(svc.child, ManagedProcess) else self.log_path(name)
            t.add_row(name, str(svc.pid), url, str(log))
        return t


def print_endpoints(stack: Stack, console: Console, endpoints_file: Path | None) -> None:
    assert stack.endpoints is not None
    console.print(stack.table())
    e = stack.endpoints
    for key in ENDPOINT_KEYS:
        console.print(f"{key + ':':<10} {getattr(e, key)}")
    if endpoints_file is not None:
        write_endpoints(endpoints_file, e)
        console.print(f"endpoints written to {endpoints_file}")


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP (terminal closed) raise KeyboardInterrupt: the same cleanup runs for all.

    SIGINT is set explicitly because a shell may start a background job with SIGINT ignored.
    """
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def run_directory(keep: Path | None) -> Iterator[Path]:
    """``keep``: that directory (made if needed, left in place); None: a fresh ``strata-up-<pid>-*`` temporary
    directory, removed on exit."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with RunDir(prefix=UP_PREFIX) as path:
        yield path


def run_up(registry: Path, port: int, config: Path | None, endpoints_file: Path | None, run_dir: Path | None,
           console: Console, replicas: Replicas = Replicas()) -> int:
    """``strata up`` until Ctrl-C: 0 after a clean stop."""
    with signals_as_interrupt():
        try:
            with run_directory(run_dir) as directory:
                stack = Stack(registry, directory, edge_port=pick_port(port, console), config=config,
                              console=console, replicas=replicas)
                with stack:
                    print_endpoints(stack, console, endpoints_file)
                    console.print("[bold]up[/bold]: every process is supervised (restarted with backoff if it "
                                  "exits). Press Ctrl-C to stop.")
                    while True:
                        time.sleep(0.5)
        except KeyboardInterrupt:
            if endpoints_file is not None:
                endpoints_file.unlink(missing_ok=True)
            console.print("stopped; every process strata up started has been stopped")
            return 0
