"""``strata demo`` (what ``make run`` does): ``strata up`` (every missing bundle exported; Valkey, the Tansu
broker, tier 2 (the streaming service: ingest API + tier-2 scorer; the stream processor), the origin with its
models and an edge node logging its impressions, its router pointed at tier 2 and the origin, all supervised)
plus the sample tables: the edge's answers, the requests the router escalated (the tier that answered and
the time it took), the origin's cold-start answer and its explanation, then a click changing the next
answer for its session, with the measured event -> vector delay.

Everything started here is stopped here, on Ctrl-C, SIGTERM, SIGHUP or an error, in reverse order, and
the run's temporary directory (edge log, Valkey's working directory) is removed (``deploy.run_dir``). The
edge runs as a real ``strata edge`` process against the embedded Valkey, exactly as it would at a PoP.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rich.console import Console

from strata.deploy.exporting import export_with_progress, summary_table
from strata.deploy.freshness_demo import click_changes_answer, freshness_summary, freshness_table
from strata.deploy.origin_samples import ask_origin, origin_table
from strata.deploy.run_dir import RunDir
from strata.deploy.sample_traffic import (
    COLD_SESSION,
    TENANT,
    WARM_SESSION,
    DemoBundle,
    answers_table,
    router_table,
    sample_requests,
    send_samples,
    warm_session_vector,
    write_session_vector,
)
from strata.deploy.up import HOST, SUPERVISOR_LOG, Stack, pick_port, signals_as_interrupt
from strata.shared.config import EdgeSettings
from strata.shared.models.bundle import CURRENT_FILE

logger = logging.getLogger(__name__)


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


def run_demo(registry: Path, port: int, once: bool, console: Console) -> int:
    """Returns the process exit code: 0 when every sample request was answered, 1 otherwise."""
    registry = registry.resolve()
    with signals_as_interrupt():
        try:
            with RunDir() as run_dir:
                stack = Stack(registry, run_dir, edge_port=pick_port(port, console), console=console)
                with stack:
                    bundle = DemoBundle.load(registry, EdgeSettings().model)
                    assert stack.valkey is not None and stack.broker is not None
                    s = stack.services
                    console.print(f"valkey: {stack.valkey.url} (valkey-server pid {stack.valkey.pid})")
                    console.print(f"broker: {stack.broker.bootstrap} (tansu pid {stack.broker.pid})")
                    console.print(f"streaming: {stack.url('streaming')} (ingest + tier-2 scorer, pid "
                                  f"{s['streaming'].pid}); processor pid {s['processor'].pid}")
                    console.print(f"edge:   {stack.url('edge')} (pid {s['edge'].pid}, log "
                                  f"{stack.log_path('edge')}, removed on exit; router upstreams: streaming, origin)")
                    console.print(f"origin: {stack.url('origin')} (pid {s['origin'].pid}, "
                                  f"log {stack.log_path('origin')}, removed on exit)")
                    return _show_and_serve(stack, bundle, once, console)
        except KeyboardInterrupt:
            console.print("stopped; everything the demo started has been stopped")
            return 0


def _show_and_serve(stack: Stack, bundle: DemoBundle, once: bool, console: Console) -> int:
    assert stack.valkey is not None
    valkey, procs = stack.valkey, stack.services
    port, origin_port, streaming_port = (int(stack.url(n).rsplit(":", 1)[1]) for n in ("edge", "origin", "streaming"))
    edge, origin = procs["edge"].child, procs["origin"].child
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
    failed: list[object] = [a for a in answers if a.error is not None]
    n_json = sum(1 for a in answers if a.error is None and "json" in a.sample.codec)
    n_msgpack = sum(1 for a in answers if a.error is None and "msgpack" in a.sample.codec)
    console.print(f"{len(answers)} requests: {n_json} json answers, {n_msgpack} msgpack answers, "
                  f"{len(failed)} failed")
    if failed:
        console.print(f"[red]edge log tail:[/red]\n{edge.output_tail(20)}")
    console.print(router_table(answers, bundle))
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
                      f"{procs['processor'].child.output_tail(20)}\n{procs['streaming'].child.output_tail(20)}")
    finally:
        client.close()
    if once:
        return 1 if failed else 0
    curl = (f"curl -s http://{HOST}:{port}/v1/recommend -H 'Content-Type: application/json' "
            f"""-d '{{"user_id": "u1", "session_id": "{WARM_SESSION}", "slot": "home", "k": 5}}'""")
    console.print(f"origin: curl -s http://{HOST}:{origin_port}/v1/explain -H 'Content-Type: application/json' "
                  """-d '{"user_id": "u1", "session_id": "s1", "k": 3, "query": "gluten free bread"}'""")
    console.print(f"tier 2:  curl -s http://{HOST}:{streaming_port}/v1/recommend -H 'Content-Type: application/json' "
                  f"""-d '{{"user_id": "u1", "session_id": "{WARM_SESSION}", "k": 5}}'""")
    console.print(f"\n[bold]serving[/bold] at http://{HOST}:{port} (metrics: /metrics; every process supervised: "
                  f"restarted with backoff if it exits, see {stack.run_dir / SUPERVISOR_LOG}). Try:\n  {curl}\n"
                  "Press Ctrl-C to stop.")
    while True:
        time.sleep(0.5)
