"""The SLO file of ``strata loadtest`` (``loadtest/slo.yaml``) and its checker.

Format (a contract: gates are written by hand)::

    slos:
      - name: edge recommend p99          # unique, required
        endpoint: recommend               # optional: recommend | explain | events
        tier: edge                        # optional: edge | streaming | origin
        p99_ms: 100                       # exactly one limit among LIMITS

A latency limit (``p50_ms`` ... ``p999_ms``) and ``max_error_ratio`` / ``max_degraded_ratio`` are upper
bounds; ``min_rps`` is a lower bound. An entry without ``endpoint`` or ``tier`` covers every endpoint or
tier. Measured values come from the Locust run's requests (client side), merged over every request the
entry covers: ``<endpoint> [<tier>]`` and ``<endpoint> [<tier>, degraded]`` (see ``locustfile.py``).

Errors name the entry (``slos[2] (edge p99)``) and the field, so a typo in a hand-written gate is found at
once; ``SloError`` is a ``ConfigError`` (the CLI exits 2).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from strata.shared.errors import ConfigError

ENDPOINTS = ("recommend", "explain", "events")
TIERS = ("edge", "streaming", "origin")
LATENCY_LIMITS = {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "p999_ms": 99.9}
UPPER_LIMITS = (*LATENCY_LIMITS, "max_error_ratio", "max_degraded_ratio")
LIMITS = (*UPPER_LIMITS, "min_rps")
KEYS = ("name", "endpoint", "tier", *LIMITS)
DEFAULT_FILE = Path(__file__).with_name("slo.yaml")
PRODUCTION_FILE = Path(__file__).with_name("slo-production.yaml")

# "<endpoint> [<tier>]" or "<endpoint> [<tier>, degraded]": the names the locustfile reports requests under.
NAME_RE = re.compile(r"^(?P<endpoint>[a-z]+) \[(?P<tier>[a-z?]+)(?P<degraded>, degraded)?\]$")


class SloError(ConfigError):
    """A bad SLO file: the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class Slo:
    name: str
    limit_key: str
    limit: float
    endpoint: str | None = None
    tier: str | None = None
    line: int = 0                   # line of the entry in its file (0: not from a file)

    @property
    def upper(self) -> bool:
        return self.limit_key != "min_rps"

    def covers(self, endpoint: str, tier: str) -> bool:
        return (self.endpoint is None or self.endpoint == endpoint) and (self.tier is None or self.tier == tier)

    def describe(self) -> str:
        scope = " ".join(x for x in (self.endpoint, self.tier) if x) or "all"
        op = "<=" if self.upper else ">="
        return f"{scope}: {self.limit_key} {op} {self.limit:g}"


def _where(i: int, entry: object) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"slos[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")


def parse_slos(doc: object, source: str = "SLO file", lines: list[int] | None = None) -> list[Slo]:
    """Validate a decoded SLO document; errors name the entry (index and name) and the field."""
    if not isinstance(doc, dict) or set(doc) != {"slos"}:
        keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise SloError(f"{source}: the top level must be a mapping with exactly one key, slos (got {keys})",
                       field="slos")
    entries = doc["slos"]
    if not isinstance(entries, list) or not entries:
        raise SloError(f"{source}: slos must be a non-empty list of entries", field="slos")
    out: list[Slo] = []
    names: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{source}: {_where(i, entry)}"
        if not isinstance(entry, dict):
            raise SloError(f"{where}: an entry must be a mapping, got {type(entry).__name__}", field=f"slos[{i}]")
        unknown = sorted(set(entry) - set(KEYS), key=str)
        if unknown:
            raise SloError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(KEYS)})",
                           field=f"slos[{i}].{unknown[0]}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SloError(f"{where}: name is required (a non-empty string)", field=f"slos[{i}].name")
        if name in names:
            raise SloError(f"{where}: name {name!r} is used twice", field=f"slos[{i}].name")
        names.add(name)
        endpoint, tier = entry.get("endpoint"), entry.get("tier")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise SloError(f"{where}: endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}",
                           field=f"slos[{i}].endpoint")
        if tier is not None and tier not in TIERS:
            raise SloError(f"{where}: tier must be one of {', '.join(TIERS)}, got {tier!r}", field=f"slos[{i}].tier")
        limits = [k for k in LIMITS if k in entry]
        if len(limits) != 1:
            got = ", ".join(limits) if limits else "none"
            raise SloError(f"{where}: exactly one limit among {', '.join(LIMITS)} is required, got {got}",
                           field=f"slos[{i}]")
        key = limits[0]
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise SloError(f"{where}: {key} must be a number, got {value!r}", field=f"slos[{i}].{key}")
        if key.endswith("_ratio") and not 0 <= value <= 1:
            raise SloError(f"{where}: {key} must be between 0 and 1, got {value}", field=f"slos[{i}].{key}")
        if not key.endswith("_ratio") and value <= 0:
            raise SloError(f"{where}: {key} must be positive, got {value}", field=f"slos[{i}].{key}")
        line = lines[i] if lines is not None and i < len(lines) else 0
        out.append(Slo(name, key, float(value), endpoint, tier, line))
    return out


def _entry_lines(text: str) -> list[int]:
    """1-based line of each ``slos`` entry (the YAML node's start), for messages that name the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "slos" and isinstance(value, yaml.SequenceNode):
            return [node.start_mark.line + 1 for node in value.value]
    return []


def load_slos(path: str | Path = DEFAULT_FILE) -> list[Slo]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SloError(f"cannot read the SLO file {path}: {exc.strerror or exc}", field="slo") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SloError(f"{path}: not valid YAML: {exc}", field="slo") from None
    return parse_slos(doc, str(path), _entry_lines(text))


# -- measuring -------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Entry:
    """One Locust stats entry: requests reported under one name."""

    endpoint: str
    tier: str
    degraded: bool
    requests: int
    failures: int
    response_times: Mapping[int, int]      # Locust's rounded milliseconds -> count


def entries_of(stats: Iterable[Mapping]) -> list[Entry]:
    """The summary's stats entries whose names follow the locustfile's convention (others are ignored)."""
    out = []
    for s in stats:
        m = NAME_RE.match(s["name"])
        if m is None:
            continue
        out.append(Entry(m["endpoint"], m["tier"], bool(m["degraded"]), int(s["num_requests"]),
                         int(s["num_failures"]), {int(k): int(v) for k, v in s["response_times"].items()}))
    return out


def percentile(response_times: Mapping[int, int], q: float) -> float | None:
    """Locust's percentile over a merged rounded-ms histogram: the smallest time with at least ``q`` of
    the requests at or below it."""
    total = sum(response_times.values())
    if not total:
        return None
    need = total * q / 100.0
    seen = 0
    for t in sorted(response_times):
        seen += response_times[t]
        if seen >= need - 1e-9:
            return float(t)
    return float(max(response_times))


def merge(entries: Iterable[Entry]) -> dict[int, int]:
    out: dict[int, int] = {}
    for e in entries:
        for t, n in e.response_times.items():
            out[t] = out.get(t, 0) + n
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    slo: Slo
    measured: float | None
    passed: bool | None          # None: not applicable to this run (nothing drove that endpoint/tier)
    note: str = ""

    def to_json(self) -> dict:
        return {"name": self.slo.name, "limit": {self.slo.limit_key: self.slo.limit}, "endpoint": self.slo.endpoint,
                "tier": self.slo.tier, "measured": self.measured, "pass": self.passed, "note": self.note,
                "line": self.slo.line}


def measure(slo: Slo, entries: list[Entry], seconds: float) -> float | None:
    mine = [e for e in entries if slo.covers(e.endpoint, e.tier)]
    requests = sum(e.requests for e in mine)
    if slo.limit_key == "min_rps":
        return requests / seconds if seconds > 0 else 0.0
    if not requests:
        return None
    if slo.limit_key == "max_error_ratio":
        return sum(e.failures for e in mine) / requests
    if slo.limit_key == "max_degraded_ratio":
        return sum(e.requests for e in mine if e.degraded) / requests
    return percentile(merge(mine), LATENCY_LIMITS[slo.limit_key])


def evaluate(slos: list[Slo], entries: list[Entry], seconds: float,
             driven: set[tuple[str, str]] | None = None) -> list[Verdict]:
    """A verdict per SLO. ``driven``: the (endpoint, tier) pairs this run's caller classes can produce;
    an SLO that covers none of them is not applicable (``pass`` None), one that covers some but measured
    nothing is a breach (``no requests``)."""
    out = []
    for slo in slos:
        if driven is not None and not any(slo.covers(ep, t) for ep, t in driven):
            out.append(Verdict(slo, None, None, "not driven by this run"))
            continue
        value = measure(slo, entries, seconds)
        if value is None:
            out.append(Verdict(slo, None, False, "no requests"))
            continue
        ok = value <= slo.limit if slo.upper else value >= slo.limit
        out.append(Verdict(slo, value, ok))
    return out


def breaches(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.passed is False]


def main(argv: list[str] | None = None) -> int:
    """``python -m strata.loadtest.slo SUMMARY [--slo FILE]``: the verdicts of a Locust run's summary (the
    ``--strata-summary`` JSON a master of a distributed run writes); exit 1 on a breach, 2 on a bad file."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("summary", type=Path)
    ap.add_argument("--slo", type=Path, default=DEFAULT_FILE)
    args = ap.parse_args(argv)
    try:
        slos = load_slos(args.slo)
        summary = json.loads(args.summary.read_text())
    except (SloError, OSError, ValueError) as exc:
        print(f"slo: {exc}", file=sys.stderr)
        return 2
    seconds = max((summary["last_request_timestamp"] or summary["end_time"]) - summary["start_time"], 1e-9)
    verdicts = evaluate(slos, entries_of(summary["entries"]), seconds)
    for v in verdicts:
        mark = {True: "PASS", False: "FAIL", None: "n/a"}[v.passed]
        measured = "no requests" if v.measured is None else f"{v.measured:.4g}"
        print(f"{mark:4}  {args.slo.name}:{v.slo.line}: {v.slo.name}: {v.slo.describe()}, measured {measured}")
    return 1 if breaches(verdicts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
