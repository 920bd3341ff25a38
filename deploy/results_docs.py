"""The result tables of ``docs/benchmarks.md``, rendered from the benchmarks' JSON (``loadtest/results/``,
the log of record), so the page quotes exactly the last recorded run with its command, date and machine.

The page keeps its prose; each table sits between ``<!-- results: NAME.json -->`` and ``<!-- end results -->``
and is replaced by ``python -m strata.deploy.results_docs --write``. ``tests/unit/test_results_docs.py``
fails when the page does not show what the JSON holds.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from strata.loadtest.bench_report import HTTP_ROWS, TARGETS, verdict
from strata.loadtest.bench_streaming import TARGETS as STREAMING_TARGETS

PAGE = Path("docs") / "benchmarks.md"
RESULTS = Path("loadtest") / "results"
COMMAND = ".venv/bin/python -m strata.deploy.results_docs --write"
BLOCK = re.compile(r"(<!-- results: (?P<name>[\w.-]+\.json) -->\n)(?P<body>.*?)(<!-- end results -->)", re.S)
STREAMING_LABELS = {"sustained_events_per_s": "sustained events/s (best point)",
                    "freshness_p99_ms_10k": "freshness p99 ms at 10k events/s", "speedup_over_naive": "x naive"}


def _n(v: object, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _machine(d: dict) -> tuple[str, str]:
    m = d.get("machine", d)
    date = m.get("date")
    when = date.replace("T", " ").replace("+00:00", " UTC") if date else "not recorded in the JSON"
    if "cpu_model" not in m:
        return when, "not recorded in the JSON"
    return when, f"{m['cpu_model']}, {m['nproc']} cores, Python {m['python']}, {m['platform'].split('-with')[0]}"


def _header(name: str, d: dict, *commands: str) -> str:
    when, machine = _machine(d)
    return (f"Command: {', then '.join(f'`{c}`' for c in commands)}  \nDate: {when}  \nMachine: {machine}  \n"
            f"Record: [`loadtest/results/{name}`](../loadtest/results/{name})\n\n")


def _check(op: str, value: float | None, bound: float) -> str:
    if value is None:
        return "not measured"
    return "met" if (value >= bound if op == ">=" else value <= bound) else "**missed**"


def edge(name: str, d: dict) -> str:
    out = [_header(name, d, f"strata bench edge --registry registry --json loadtest/results/{name}"),
           f"HTTP, server on core {d.get('server_core')}, load generator on core {d.get('loadgen_core')}, "
           f"{_n(d.get('duration_s'), 0)} s per point, 100 candidates per request:\n\n",
           "| server | connections | req/s | p50 ms | p99 ms | p99.9 ms | response-cache hits |\n"
           "|---|---|---|---|---|---|---|\n"]
    for title, label in HTTP_ROWS:
        for c in (8, 64):
            if f"{label}_rps_c{c}" in d:
                hits = d.get(f"{label}_hit_share_c{c}")
                out.append(f"| {title} | {c} | {_n(d[f'{label}_rps_c{c}'], 0)} | {_n(d[f'{label}_p50_ms_c{c}'])} | "
                           f"{_n(d[f'{label}_p99_ms_c{c}'])} | {_n(d[f'{label}_p999_ms_c{c}'])} | "
                           f"{'' if hits is None else f'{hits:.1%}'} |\n")
    out.append("\n| in-process decision, cache misses (µs) | p50 | p99 |\n|---|---|---|\n")
    for title, key in (("edge, guardrails on (as served)", "inproc"), ("edge, guardrails off", "inproc_noguard"),
                       ("naive baseline ranker", "naive_inproc")):
        for n in (100, 1000):
            if f"{key}_p50_us_{n}" in d:
                out.append(f"| {title}, {n} candidates | {_n(d[f'{key}_p50_us_{n}'], 1)} | "
                           f"{_n(d[f'{key}_p99_us_{n}'], 1)} |\n")
    out.append(f"\n| Thompson decisions/s, {d.get('ts_arms')} arms | `shared.ranking.bandit` | MABWiser | ratio |\n"
               "|---|---|---|---|\n")
    ts, mab = d.get("ts_decisions_per_s"), d.get("mabwiser_decisions_per_s")
    out.append(f"| one decision per call ({d.get('ts_sampler')} sampler) | {_n(ts, 0)} | {_n(mab, 0)} | "
               f"{_n(d.get('ratio_ts_over_mabwiser'), 1)}x |\n")
    if d.get("ts_numpy_decisions_per_s"):
        out.append(f"| one decision per call, NumPy `Generator.beta` | {_n(d['ts_numpy_decisions_per_s'], 0)} | "
                   f"{_n(mab, 0)} | {d['ts_numpy_decisions_per_s'] / mab:.1f}x |\n")
    if d.get("ts_batched_decisions_per_s"):
        out.append(f"| {d.get('ts_batch')} decisions per call | {_n(d['ts_batched_decisions_per_s'], 0)} | "
                   f"{_n(d.get('mabwiser_batched_decisions_per_s'), 0)} | "
                   f"{_n(d.get('ratio_ts_over_mabwiser_batched'), 1)}x |\n")
    out.append("\n| target | bound | measured | |\n|---|---|---|---|\n")
    for t in TARGETS:
        if not t.headline:
            continue
        value = d.get(t.key)
        state, _ = verdict(t, value)
        shown = "-" if value is None else f"{value:,.2f}{t.unit}"
        out.append(f"| {t.label} | {t.op} {t.bound:g}{t.unit} | {shown} | "
                   f"{'met' if state == 'PASS' else '**missed**' if state == 'MISS' else 'not measured'} |\n")
    return "".join(out)


def streaming(name: str, d: dict) -> str:
    out = [_header(name, d, f"strata bench streaming --registry registry --duration {_n(d.get('duration_s'), 0)} "
                            f"--processors {d.get('processors')} --json loadtest/results/{name}"),
           "| offered events/s | sustained events/s | freshness p50 ms | freshness p99 ms | CPU, share of one core |\n"
           "|---|---|---|---|---|\n"]
    for p in d.get("points", []):
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in p.get("cpu_share_of_one_core", {}).items())
        out.append(f"| {_n(p['offered_events_per_s'])} | {_n(p['sustained_events_per_s'], 0)} | "
                   f"{_n(p['freshness_p50_ms'], 0)} | {_n(p['freshness_p99_ms'], 0)} | {cpu} |\n")
    out.append(f"\nNaive processor (one store round trip per command): {_n(d.get('naive_events_per_s'), 0)} events/s; "
               f"the batched processor catching up alone: {_n(d.get('processor_catchup_events_per_s'), 0)} events/s.\n\n"
               "| target | bound | measured | |\n|---|---|---|---|\n")
    for key, (op, bound) in STREAMING_TARGETS.items():
        value = d.get(key)
        shown = _n(value, 0 if value is not None and value >= 100 else 2)
        out.append(f"| {STREAMING_LABELS.get(key, key)} | {op} {bound:,g} | {shown} | {_check(op, value, bound)} |\n")
    return "".join(out)


def origin(name: str, d: dict) -> str:
    out = [_header(name, d, f"strata export --items {d.get('n_items')} --no-text --out R",
                   f"strata bench origin --registry R --json loadtest/results/{name}"),
           f"Path: {d.get('path')}, k {d.get('k')}, {d.get('retrieve')} retrieved (HNSW ef {d.get('ef')}), "
           f"histories of {d.get('history')} purchases, {d.get('requests')} timed requests.\n\n"
           "| figure | value |\n|---|---|\n"]
    rows = [
        ("items (catalog / models)", f"{_n(d.get('in_catalog'))} / {_n(d.get('model_items'))}"),
        ("recommend p50 / p95 / p99 ms", f"{_n(d.get('p50_ms'))} / {_n(d.get('p95_ms'))} / {_n(d.get('p99_ms'))}"),
        ("answers ranked by the deep ranker", _n((d.get("scored_by") or {}).get("ranker"))),
        ("candidates ranked per request (mean)", _n(d.get("candidates_mean"), 0)),
        ("recall@500, the HNSW alone: mean / p5 / min",
         f"{_n(d.get('ann_recall_at_500'), 4)} / {_n(d.get('ann_recall_at_500_p5'), 4)} / "
         f"{_n(d.get('ann_recall_at_500_min'), 4)}"),
        ("recall@500 served (HNSW checked, exact scan on a miss): mean / p5 / min",
         f"{_n(d.get('served_recall_at_500'), 4)} / {_n(d.get('served_recall_at_500_p5'), 4)} / "
         f"{_n(d.get('served_recall_at_500_min'), 4)}"),
        ("queries sent to the exact scan", f"{d.get('checked_exact_share', 0):.0%}"),
    ]
    for key, title in (("session_only", "session items only"), ("edge_scorer_path", "edge-scorer path"),
                       ("explain_template", "explain, template reasoner")):
        if key in d:
            s = d[key]
            rows.append((f"{title} p50 / p95 / p99 ms", f"{_n(s['p50_ms'])} / {_n(s['p95_ms'])} / {_n(s['p99_ms'])}"))
    shares = sorted((d.get("stage_share") or {}).items(), key=lambda kv: -kv[1])[:4]
    rows.append(("largest stages (share of time, mean ms)", ", ".join(
        f"{k} {v:.0%} ({_n((d.get('stage_mean_ms') or {}).get(k))})" for k, v in shares)))
    rows.append(("node load (bundles, shipped shards) s", _n(d.get("load_s"))))
    out += [f"| {a} | {b} |\n" for a, b in rows]
    targets = d.get("targets") or {}
    missed = d.get("missed")
    out.append(f"\nTargets: p95 <= {_n(targets.get('p95_ms'), 0)} ms, recall@500 (HNSW alone, mean) >= "
               f"{targets.get('ann_recall_at_500')}, every answer ranked by the deep ranker: "
               f"{'met' if missed == [] else f'**missed**: {missed}'}.\n")
    return "".join(out)


RENDERERS: dict[str, Callable[[str, dict], str]] = {"bench-edge.json": edge, "bench-streaming.json": streaming,
                                                    "bench-origin.json": origin}


def render(page: str, results: Path = RESULTS) -> str:
    """``page`` with every results block replaced by the table its JSON gives."""
    def block(m: re.Match) -> str:
        name = m.group("name")
        data = json.loads((results / name).read_text(encoding="utf-8"))
        return f"{m.group(1)}{RENDERERS[name](name, data)}{m.group(4)}"

    return BLOCK.sub(block, page)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--write"]):
        print(f"usage: python -m strata.deploy.results_docs [--write]  (rewrites {PAGE})", file=sys.stderr)
        return 2
    text = render(PAGE.read_text(encoding="utf-8"))
    if args:
        PAGE.write_text(text, encoding="utf-8")
        print(f"wrote {PAGE}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
