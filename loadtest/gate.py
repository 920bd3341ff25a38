"""``strata loadtest``: Locust headless against Strata, an SLO verdict, reports and an exit code.

- Targets: ``--host`` (the edge: only ``EdgeWorker`` runs), ``--endpoints-file`` (the JSON ``strata up``
  writes: every caller class gets its host), or neither: ``strata up`` is started here (through the
  ``strata`` command the CLI hands in, ``launch.Launcher.command``: ``loadtest`` never imports ``deploy``)
  and stopped after.
- Load: the Locust CLI as a subprocess on ``loadtest/locustfile.py`` (``--headless``, ``--processes N`` is
  Locust's own multi-process mode), writing Locust's CSV (``locust_stats.csv``, ``..._history.csv`` with
  every entry; the stats, failures and exceptions files rewritten from the final stats when Locust quits), its HTML report (``report.html``) and the summary the SLOs are checked on.
- Verdicts: ``slo.json`` (each SLO's name, limit, measured, pass), a pass/fail table, ``latency.png`` (p50/
  p95/p99 per tier over time), ``report.json`` (everything, with the per-tier comparison against the tiers'
  own ``/metrics`` over the same window and Locust's CPU, rate and process count).
- Exit: 0 all SLOs pass, 1 any breach, 2 bad usage or an unreachable host.
"""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from strata.loadtest import server_metrics
from strata.loadtest.launch import Launcher
from strata.loadtest.slo import DEFAULT_FILE, NAME_RE, Verdict, breaches, entries_of, evaluate, load_slos
from strata.shared.errors import ConfigError, StrataError

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
ENDPOINT_KEYS = ("edge", "streaming", "origin")
PERCENTILES = (0.5, 0.95, 0.99)
MATCH_TOLERANCE = 0.10
UP_TIMEOUT_S = 600.0          # strata up may export every bundle first on an empty registry
# (endpoint, tier) pairs each caller class produces (the router can make the edge's answers any tier).
DRIVES = {
    "EdgeWorker": {("recommend", "edge"), ("recommend", "streaming"), ("recommend", "origin")},
    "RegionalClient": {("recommend", "streaming"), ("recommend", "origin"), ("explain", "origin")},
    "EventProducer": {("events", "streaming"), ("recommend", "edge")},
}


class Unreachable(StrataError):
    """A target did not answer its health check (exit 2)."""


@dataclass
class Options:
    host: str | None = None
    endpoints_file: Path | None = None
    users: int = 20
    spawn_rate: float = 10.0
    run_time: str = "60s"
    slo: Path = DEFAULT_FILE
    processes: int = 1
    out: Path = Path("loadtest-report")
    registry: Path = Path("registry")


@dataclass
class Hosts:
    edge: str = ""
    streaming: str = ""
    origin: str = ""

    def classes(self) -> list[str]:
        out = []
        if self.edge:
            out.append("EdgeWorker")
        if self.streaming or self.origin:
            out.append("RegionalClient")
        if self.streaming:
            out.append("EventProducer")
        return out

    def driven(self) -> set[tuple[str, str]]:
        pairs: set[tuple[str, str]] = set()
        for c in self.classes():
            pairs |= DRIVES[c]
        if not self.origin:
            pairs -= {("explain", "origin")}
        return pairs


@dataclass
class RunInfo:
    seconds: float
    requests: int
    failures: int
    rps: float
    cpu_seconds: float
    cpu_share: float                  # Locust's CPU seconds / wall seconds (1.0 = one core busy)
    processes: int
    exit_code: int
    argv: list[str] = field(default_factory=list)


def parse_run_time(text: str) -> float:
    """Locust's ``-t`` format (``20s``, ``1m30s``, ``2h``, plain seconds): seconds, or ConfigError."""
    m = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*", text)
    if not text.strip() or m is None or not any(m.groups()):
        raise ConfigError(f"must look like 20s, 1m30s or 2h, got {text!r}", field="run-time")
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    seconds = h * 3600 + mi * 60 + s
    if seconds <= 0:
        raise ConfigError(f"must be positive, got {text!r}", field="run-time")
    return float(seconds)


def hosts_from(opts: Options) -> Hosts | None:
    """The targets the options name; None: start ``strata up`` here."""
    if opts.host and opts.endpoints_file:
        raise ConfigError("give --host or --endpoints-file, not both", field="host")
    if opts.host:
        if not re.match(r"^https?://[^/\s]+", opts.host):
            raise ConfigError(f"must be a base URL like http://HOST:PORT, got {opts.host!r}", field="host")
        return Hosts(edge=opts.host.rstrip("/"))
    if opts.endpoints_file:
        return read_endpoints(opts.endpoints_file)
    return None


def read_endpoints(path: Path) -> Hosts:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", field="endpoints-file") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}", field="endpoints-file") from None
    if not isinstance(data, dict) or not any(isinstance(data.get(k), str) and data[k] for k in ENDPOINT_KEYS):
        raise ConfigError(f"{path} names none of {', '.join(ENDPOINT_KEYS)}", field="endpoints-file")
    return Hosts(**{k: str(data.get(k) or "").rstrip("/") for k in ENDPOINT_KEYS})


def check_reachable(hosts: Hosts, timeout_s: float = 5.0) -> None:
    for name in ENDPOINT_KEYS:
        url = getattr(hosts, name)
        if not url:
            continue
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=timeout_s) as resp:
                if resp.status != 200:
                    raise Unreachable(f"{name} at {url}: /healthz answered {resp.status}", field=name)
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise Unreachable(f"{name} at {url} is unreachable: {reason}", field=name) from None


# -- strata up, started here -------------------------------------------------------------------------------

@contextmanager
def started_up(launcher: Launcher, registry: Path, console: Console) -> Iterator[Hosts]:
    """``strata up`` as a child process group; its endpoints once it wrote them; stopped (SIGINT) after."""
    with tempfile.TemporaryDirectory(prefix="strata-loadtest-") as tmp:
        endpoints = Path(tmp) / "endpoints.json"
        log_path = Path(tmp) / "up.log"
        argv = [*launcher.command(), "up", "--registry", str(registry), "--port", "0", "--endpoints-file",
                str(endpoints), "--run-dir", str(Path(tmp) / "run")]
        console.print(f"starting strata up (registry {registry}) ...")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            deadline = time.monotonic() + UP_TIMEOUT_S
            while not endpoints.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise StrataError(f"strata up did not come up (exit {proc.poll()}); its output:\n{tail}")
                time.sleep(0.2)
            hosts = read_endpoints(endpoints)
            console.print(f"strata up is ready: edge {hosts.edge}, streaming {hosts.streaming}, "
                          f"origin {hosts.origin}")
            yield hosts
        finally:
            stop_group(proc)
            console.print("strata up stopped")


def stop_group(proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Ctrl-C to a child started with ``start_new_session`` and its process group; SIGKILL after ``timeout_s``."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# -- Locust --------------------------------------------------------------------------------------------------

def locust_argv(opts: Options, hosts: Hosts, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
            "-u", str(opts.users), "-r", f"{opts.spawn_rate:g}", "-t", opts.run_time, "--stop-timeout", "10",
            "--csv", str(out / "locust"), "--csv-full-history", "--html", str(out / "report.html"),
            "--loglevel", "WARNING", "--logfile", str(out / "locust.log"),
            "--strata-summary", str(out / "summary.json")]
    for name in ENDPOINT_KEYS:
        if getattr(hosts, name):
            argv += [f"--{name}-host", getattr(hosts, name)]
    if opts.registry and Path(opts.registry).is_dir():
        argv += ["--registry", str(Path(opts.registry).resolve())]
    if opts.processes != 1:
        argv += ["--processes", str(opts.processes)]
    return argv + hosts.classes()


def run_locust(opts: Options, hosts: Hosts, out: Path, console: Console) -> tuple[RunInfo, dict]:
    argv = locust_argv(opts, hosts, out)
    summary_path = out / "summary.json"
    summary_path.unlink(missing_ok=True)
    console.print(f"locust: {opts.users} users ({', '.join(hosts.classes())}), spawn rate {opts.spawn_rate:g}/s, "
                  f"{opts.run_time}, {max(opts.processes, 1) if opts.processes != -1 else os.cpu_count()} "
                  "process(es)")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    with open(out / "locust.out", "wb") as sink:
        proc = subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for name in ("stats", "failures", "exceptions"):     # the locustfile's final CSVs replace Locust's last snapshot
        final = out / f"locust_{name}.csv.final"
        if final.exists():
            os.replace(final, out / f"locust_{name}.csv")
    if not summary_path.exists():
        tail = (out / "locust.out").read_text(errors="replace")[-3000:]
        raise StrataError(f"locust exited with {proc.returncode} and wrote no summary; its output:\n{tail}")
    summary = json.loads(summary_path.read_text())
    seconds = max((summary["last_request_timestamp"] or summary["end_time"]) - summary["start_time"], 1e-9)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n_proc = (os.cpu_count() or 1) if opts.processes == -1 else max(opts.processes, 1)
    total = summary["total"]
    info = RunInfo(seconds=seconds, requests=total["num_requests"], failures=total["num_failures"],
                   rps=total["num_requests"] / seconds, cpu_seconds=cpu, cpu_share=cpu / wall,
                   processes=n_proc + (1 if n_proc > 1 else 0), exit_code=proc.returncode, argv=argv)
    return info, summary


# -- reports -------------------------------------------------------------------------------------------------

def _fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if abs(v) < 1 and v != 0:
        return f"{v:.4f}"
    return f"{v:,.{digits}f}"


def slo_table(verdicts: list[Verdict]) -> Table:
    t = Table(title="SLOs")
    for col in ("SLO", "line", "scope", "limit", "measured", "result"):
        t.add_column(col, justify="right" if col in ("line", "limit", "measured") else "left")
    for v in verdicts:
        s = v.slo
        scope = " ".join(x for x in (s.endpoint, s.tier) if x) or "all"
        op = "<=" if s.upper else ">="
        result = {True: "[green]PASS[/green]", False: "[red]FAIL[/red]", None: "[dim]n/a[/dim]"}[v.passed]
        note = f" ({v.note})" if v.note else ""
        t.add_row(s.name, str(s.line or ""), scope, f"{s.limit_key} {op} {s.limit:g}", _fmt(v.measured, 2),
                  result + note)
    return t


def client_rows(summary: dict, seconds: float) -> dict[tuple[str, str], dict]:
    """Per (endpoint, tier): Locust's requests, failures, degraded answers and merged percentiles."""
    from strata.loadtest.slo import merge, percentile

    groups: dict[tuple[str, str], list] = {}
    for e in entries_of(summary["entries"]):
        groups.setdefault((e.endpoint, e.tier), []).append(e)
    rows = {}
    for key, es in sorted(groups.items()):
        n = sum(e.requests for e in es)
        hist = merge(es)
        rows[key] = {"requests": n, "failures": sum(e.failures for e in es),
                     "degraded": sum(e.requests for e in es if e.degraded), "rps": n / seconds,
                     **{f"p{round(q * 100)}_ms": percentile(hist, q * 100) for q in PERCENTILES}}
    return rows


def compare(rows: dict[tuple[str, str], dict], window: server_metrics.ServerWindow, seconds: float) -> list[dict]:
    """Locust's per-tier figures next to the tiers' own /metrics over the same window."""
    out = []
    for (endpoint, tier), r in rows.items():
        server_n = window.count(endpoint, tier)
        server_deg = window.degraded(tier) if endpoint == "recommend" else None
        row = {"endpoint": endpoint, "tier": tier, "client_requests": r["requests"], "server_requests": server_n,
               "client_rps": r["rps"], "server_rps": None if server_n is None else server_n / seconds,
               "client_degraded": r["degraded"], "server_degraded": server_deg}
        for q in PERCENTILES:
            key = f"p{round(q * 100)}_ms"
            row[f"client_{key}"] = r[key]
            row[f"server_{key}"] = window.latency_ms(endpoint, tier, q)
        checks = []
        if server_n is not None:
            checks.append(_within(r["requests"], server_n))
        if server_deg is not None:
            checks.append(_within(r["degraded"], server_deg, floor=max(5.0, 0.001 * r["requests"])))
        row["match"] = all(checks) if checks else None
        out.append(row)
    return out


def _within(client: float, server: float, floor: float = 0.0) -> bool:
    """Within MATCH_TOLERANCE of each other (or within ``floor`` in absolute terms for tiny counts)."""
    diff = abs(client - server)
    return diff <= floor or diff <= MATCH_TOLERANCE * max(client, server)


def comparison_table(rows: list[dict]) -> Table:
    t = Table(title="Per tier: Locust (client) vs the tier's own /metrics (server), same window")
    cols = ("endpoint", "tier", "requests client/server", "rps client/server", "degraded client/server",
            "p50 ms client/server", "p95 ms client/server", "p99 ms client/server", "counts match (10%)")
    for c in cols:
        t.add_column(c, justify="left" if c in ("endpoint", "tier") else "right")
    for r in rows:
        def pair(a, b, digits=1):
            return f"{_fmt(a, digits)} / {_fmt(b, digits)}"
        match = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "n/a"}[r["match"]]
        t.add_row(r["endpoint"], r["tier"], pair(r["client_requests"], r["server_requests"], 0),
                  pair(r["client_rps"], r["server_rps"]), pair(r["client_degraded"], r["server_degraded"], 0),
                  pair(r["client_p50_ms"], r["server_p50_ms"], 2), pair(r["client_p95_ms"], r["server_p95_ms"], 2),
                  pair(r["client_p99_ms"], r["server_p99_ms"], 2), match)
    return t


def history(out: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Per request name: (t, p50, p95, p99) from Locust's full stats history (10 s sliding percentiles)."""
    path = out / "locust_stats_history.csv"
    series: dict[str, list] = {}
    if not path.exists():
        return series
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            name = row.get("Name", "")
            if not NAME_RE.match(name):
                continue
            try:
                t, p50, p95, p99 = (float(row["Timestamp"]), float(row["50%"]), float(row["95%"]),
                                    float(row["99%"]))
            except (KeyError, ValueError):
                continue
            series.setdefault(name, []).append((t, p50, p95, p99))
    return series


def plot(out: Path, series: dict[str, list]) -> Path | None:
    """latency.png: a panel per tier's answers (``recommend [edge]``, ``recommend [streaming]``, ...; then
    explain and events), p50/p95/p99 over time (Locust's 10 s sliding window). Degraded answers are left out
    of the lines (their share is in the SLO table)."""
    names = sorted((n for n in series if not NAME_RE.match(n)["degraded"]),
                   key=lambda n: (n.split(" ")[0] != "recommend", n))
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.4 * len(names)), squeeze=False, sharex=True)
    t0 = min(p[0] for n in names for p in series[n])
    for ax, name in zip(axes[:, 0], names, strict=True):
        pts = series[name]
        ts = [p[0] - t0 for p in pts]
        for idx, (label, color) in enumerate((("p50", "tab:green"), ("p95", "tab:orange"), ("p99", "tab:red")),
                                             start=1):
            ax.plot(ts, [p[idx] for p in pts], color=color, label=label)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("ms")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", ncol=3)
    axes[-1, 0].set_xlabel("seconds since start (percentiles over the last 10 s)")
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- the command --------------------------------------------------------------------------------------------

def run_loadtest(opts: Options, launcher: Launcher | None, console: Console) -> int:
    """The whole gate; returns the exit code (0 pass, 1 breach). Usage errors raise ConfigError (exit 2)."""
    slos = load_slos(opts.slo)                 # a bad SLO file fails before anything starts
    parse_run_time(opts.run_time)
    if opts.users < 1:
        raise ConfigError(f"must be at least 1, got {opts.users}", field="users")
    if opts.spawn_rate <= 0:
        raise ConfigError(f"must be positive, got {opts.spawn_rate:g}", field="spawn-rate")
    if opts.processes == 0 or opts.processes < -1:
        raise ConfigError(f"must be a positive count or -1 (one per core), got {opts.processes}", field="processes")
    hosts = hosts_from(opts)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    if hosts is not None:
        check_reachable(hosts)
        return _measure(opts, hosts, slos, out, console)
    if launcher is None:
        raise ConfigError("no target: give --host or --endpoints-file", field="host")
    with started_up(launcher, opts.registry, console) as up_hosts:
        check_reachable(up_hosts)
        return _measure(opts, up_hosts, slos, out, console)


def _measure(opts: Options, hosts: Hosts, slos: list, out: Path, console: Console) -> int:
    scrape_hosts = {"edge": hosts.edge, "streaming": hosts.streaming, "origin": hosts.origin}
    before = server_metrics.scrape_all(scrape_hosts)
    info, summary = run_locust(opts, hosts, out, console)
    after = server_metrics.scrape_all(scrape_hosts)
    window = server_metrics.ServerWindow(before, after)
    verdicts = evaluate(slos, entries_of(summary["entries"]), info.seconds, hosts.driven())
    rows = compare(client_rows(summary, info.seconds), window, info.seconds)
    png = plot(out, history(out))
    (out / "slo.json").write_text(json.dumps([v.to_json() for v in verdicts], indent=2) + "\n")
    report = {"slo_file": str(Path(opts.slo).resolve()), "hosts": asdict(hosts), "options": {
        "users": opts.users, "spawn_rate": opts.spawn_rate, "run_time": opts.run_time, "processes": opts.processes},
        "locust": asdict(info), "slos": [v.to_json() for v in verdicts], "per_tier": rows,
        "files": {"html": "report.html", "csv": "locust_stats.csv", "history": "locust_stats_history.csv",
                  "png": png.name if png else None, "slo": "slo.json"}}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(comparison_table(rows))
    console.print(f"locust: {info.requests:,} requests in {info.seconds:.1f} s = {info.rps:,.1f} req/s, "
                  f"{info.failures:,} failures; its CPU {info.cpu_seconds:.1f} s = {info.cpu_share:.2f} of a core "
                  f"over {info.processes} process(es)")
    console.print(slo_table(verdicts))
    bad = breaches(verdicts)
    console.print(f"reports in {out}: report.html, locust_stats*.csv, latency.png, slo.json, report.json")
    if bad:
        for v in bad:
            where = f"{Path(opts.slo).name}:{v.slo.line}: " if v.slo.line else ""
            console.print(f"[red]BREACH[/red] {where}{v.slo.name}: {v.slo.describe()}, measured "
                          f"{_fmt(v.measured, 2)}{' (' + v.note + ')' if v.note else ''}")
        return 1
    console.print("[green]every SLO passed[/green]")
    return 0
