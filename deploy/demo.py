"""``strata demo`` (what ``make run`` does): export if needed, start Valkey, the Tansu broker, tier 2 (the
streaming service: ingest API + tier-2 scorer; the stream processor), an edge node logging its impressions
and an origin node; show answers (the edge's, the origin's cold-start answer and its explanation, then a
click changing the next answer for its session, with the measured event -> vector delay).

Everything started here is stopped here, on Ctrl-C, SIGTERM, SIGHUP or an error, in reverse order, and
the run's temporary directory (edge log, Valkey's working directory) is removed (``deploy.run_dir``). The
edge runs as a real ``strata edge`` process against the embedded Valkey, exactly as it would at a PoP.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from rich.console import Console

from strata.deploy.exporting import export_with_progress, summary_table
from strata.deploy.freshness_demo import click_changes_answer, freshness_summary, freshness_table
from strata.deploy.local import ManagedProcess, ValkeyProcess, free_port, port_open, strata_command
from strata.deploy.origin_samples import ask_origin, origin_table
from strata.deploy.run_dir import RunDir
from strata.deploy.sample_traffic import (
    COLD_SESSION,
    TENANT,
    WARM_SESSION,
    DemoBundle,
    answers_table,
    sample_requests,
    send_samples,
    warm_session_vector,
    write_session_vector,
)
from strata.deploy.tansu import TansuProcess
from strata.shared.config import EdgeSettings
from strata.shared.models.bundle import CURRENT_FILE

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
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


def ensure_bundle(registry: Path, model: str, console: Console) -> None:
    """Export a bundle into an empty registry; a registry with a CURRENT pointer is used as is."""
    if (registry / model / CURRENT_FILE).is_file():
        console.print(f"registry: {registry} (existing bundle)")
        return
    console.print(f"registry: {registry} has no {model}/{CURRENT_FILE}; exporting a model first")
    result = export_with_progress(registry, console)
    console.print(summary_table(result))
    if not (registry / model / CURRENT_FILE).is_file():
        raise RuntimeError(f"export finished but {registry / model / CURRENT_FILE} is missing")


def _pick_port(port: int, console: Console) -> int:
    if port == 0 or port_open(HOST, port):
        chosen = free_port(HOST)
        if port:
            console.print(f"[yellow]port {port} is busy; using {chosen}[/yellow]")
        return chosen
    return port


def run_demo(registry: Path, port: int, once: bool, console: Console) -> int:
    """Returns the process exit code: 0 when every sample request was answered, 1 otherwise."""
    registry = registry.resolve()
    model = EdgeSettings().model
    with _signals_as_interrupt():
        try:
            with RunDir() as run_dir:
                ensure_bundle(registry, model, console)
                bundle = DemoBundle.load(registry, model)
                port = _pick_port(port, console)
                with ValkeyProcess(host=HOST, tmp_root=run_dir) as valkey, \
                        TansuProcess(host=HOST, tmp_root=run_dir) as broker:
                    console.print(f"valkey: {valkey.url} (valkey-server pid {valkey.pid})")
                    console.print(f"broker: {broker.bootstrap} (tansu pid {broker.pid})")
                    tier2 = _tier2(registry, valkey.url, broker.bootstrap, run_dir)
                    argv = [*strata_command(), "edge", "--registry", str(registry), "--host", HOST,
                            "--port", str(port), "--store", valkey.url, "--broker", broker.bootstrap]
                    edge = ManagedProcess("edge", argv, ready_url=f"http://{HOST}:{port}/readyz",
                                          log_path=run_dir / "edge.log")
                    origin_port = free_port(HOST)
                    shard = run_dir / "origin-index"     # the origin's vector shard: removed with the run dir
                    shard.mkdir()
                    origin = ManagedProcess("origin", [*strata_command(), "origin", "--registry", str(registry),
                                                       "--host", HOST, "--port", str(origin_port),
                                                       "--store", valkey.url, "--reasoner", "template"],
                                            ready_url=f"http://{HOST}:{origin_port}/readyz",
                                            env={**os.environ, "STRATA_ORIGIN__VECTOR_INDEX__URL": str(shard)},
                                            log_path=run_dir / "origin.log")
                    service, processor = tier2
                    with service, processor, edge, origin:
                        console.print(f"streaming: http://{HOST}:{service.port} (ingest + tier-2 scorer, pid "
                                      f"{service.pid}); processor pid {processor.pid}")
                        console.print(f"edge:   http://{HOST}:{port} (pid {edge.pid}, log {edge.log_path}, "
                                      "removed on exit)")
                        console.print(f"origin: http://{HOST}:{origin_port} (pid {origin.pid}, "
                                      f"log {origin.log_path}, removed on exit)")
                        procs = {"edge": edge, "origin": origin, "streaming": service, "processor": processor}
                        return _show_and_serve(valkey, procs, bundle, (port, origin_port, service.port), once,
                                               console)
        except KeyboardInterrupt:
            console.print("stopped; everything the demo started has been stopped")
            return 0


class _Service(ManagedProcess):
    port: int


def _tier2(registry: Path, store: str, broker: str, run_dir: Path) -> tuple[_Service, ManagedProcess]:
    """``strata streaming serve`` (ingest + tier-2 scorer, its vector shard in the run dir) and
    ``strata streaming process``, both on the demo's Valkey and broker."""
    port = free_port(HOST)
    common = ["--broker", broker, "--store", store, "--registry", str(registry)]
    service = _Service("streaming", [*strata_command(), "streaming", "serve", "--host", HOST, "--port", str(port),
                                     *common], ready_url=f"http://{HOST}:{port}/readyz",
                       env={**os.environ, "STRATA_STREAMING__TIER2__VECTOR_INDEX__URL": str(run_dir / "tier2-index")},
                       log_path=run_dir / "streaming.log")
    service.port = port
    metrics = free_port(HOST)
    processor = ManagedProcess("processor", [*strata_command(), "streaming", "process", *common,
                                             "--metrics-port", str(metrics)],
                               ready_url=f"http://{HOST}:{metrics}/metrics", log_path=run_dir / "processor.log")
    return service, processor


def _show_and_serve(valkey: ValkeyProcess, procs: dict[str, ManagedProcess], bundle: DemoBundle,
                    ports: tuple[int, int, int], once: bool, console: Console) -> int:
    port, origin_port, streaming_port = ports
    edge, origin = procs["edge"], procs["origin"]
    vec, category = warm_session_vector(bundle)
    client = valkey.client()
    try:
        write_session_vector(client, TENANT, WARM_SESSION, vec)
    finally:
        client.close()
    console.print(f"session {WARM_SESSION!r}: vector written to Valkey (taste: category {category}); "
                  f"session {COLD_SESSION!r}: none")
    answers = send_samples(HOST, port, sample_requests(bundle))
    console.print(answers_table(answers, bundle))
    failed = [a for a in answers if a.error is not None]
    n_json = sum(1 for a in answers if a.error is None and "json" in a.sample.codec)
    n_msgpack = sum(1 for a in answers if a.error is None and "msgpack" in a.sample.codec)
    console.print(f"{len(answers)} requests: {n_json} json answers, {n_msgpack} msgpack answers, "
                  f"{len(failed)} failed")
    if failed:
        console.print(f"[red]edge log tail:[/red]\n{edge.output_tail(20)}")
    try:
        console.print(origin_table(ask_origin(HOST, origin_port), bundle))
    except Exception as exc:       # the table says what went wrong; the demo's exit code counts it
        failed.append(exc)
        console.print(f"[red]origin did not answer: {exc}[/red]\n{origin.output_tail(20)}")
    client = valkey.client()
    try:
        fresh = click_changes_answer(HOST, port, streaming_port, client)
        console.print(freshness_table(fresh, bundle))
        console.print(freshness_summary(fresh))
    except Exception as exc:       # the table says what went wrong; the demo's exit code counts it
        failed.append(exc)
        console.print(f"[red]the click did not reach the next answer: {exc}[/red]\n"
                      f"{procs['processor'].output_tail(20)}\n{procs['streaming'].output_tail(20)}")
    finally:
        client.close()
    if once:
        return 1 if failed else 0
    curl = (f"curl -s http://{HOST}:{port}/v1/recommend -H 'Content-Type: application/json' "
            f"""-d '{{"user_id": "u1", "session_id": "{WARM_SESSION}", "slot": "home", "k": 5}}'""")
    console.print(f"\n[bold]serving[/bold] at http://{HOST}:{port} (metrics: /metrics). Try:\n  {curl}\n"
                  "Press Ctrl-C to stop.")
    console.print(f"origin: curl -s http://{HOST}:{origin_port}/v1/explain -H 'Content-Type: application/json' "
                  """-d '{"user_id": "u1", "session_id": "s1", "k": 3, "query": "gluten free bread"}'""")
    console.print(f"tier 2:  curl -s http://{HOST}:{streaming_port}/v1/recommend -H 'Content-Type: application/json' "
                  f"""-d '{{"user_id": "u1", "session_id": "{WARM_SESSION}", "k": 5}}'""")
    while valkey.running and all(p.running for p in procs.values()):
        time.sleep(0.5)
    which = next((name for name, p in procs.items() if not p.running), "valkey-server")
    tail = procs[which].output_tail(20) if which in procs else ""
    console.print(f"[red]{which} exited unexpectedly[/red]\n{tail}")
    return 1
