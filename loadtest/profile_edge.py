"""Profile the edge under load with py-spy and print where its time goes, as text.

The issue asks to profile before optimising: this starts ``strata edge`` pinned to one core, drives it
with the benchmark's load generator on the other core, samples it with ``py-spy record --format raw``
(collapsed stacks) and prints the top frames by self and by inclusive share of samples.
Run: ``python -m loadtest.profile_edge --registry R [--mix unique|cached] [--out stacks.txt]``.
Needs ``py-spy`` on PATH or next to the interpreter (``pip install py-spy``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from strata.loadtest.bench_http import PATH
from strata.loadtest.loadgen import Workload, save_workload
from strata.loadtest.payloads import cached_mix, encode_json, load_catalog, unique_mix
from strata.loadtest.servers import PinnedServer, edge_command, free_port, pick_cores, run_loadgen


def summarise(collapsed: str, top: int = 25) -> str:
    """Top frames by self and inclusive sample share from py-spy's raw (collapsed) output."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        self_t[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "self %  frame"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in self_t.most_common(top)]
    lines += ["", "incl %  frame"]
    lines += [f"{100 * n / total:6.1f}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(lines)


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def profile(registry: str, mix: str, connections: int, seconds: float, rate: int, out: Path) -> str:
    cores = pick_cores()
    catalog = load_catalog(registry)
    reqs = unique_mix(catalog, 4096) if mix == "unique" else cached_mix(catalog, 16384)
    with tempfile.TemporaryDirectory(prefix="profile-edge-") as tmp:
        wl = str(Path(tmp) / "w")
        save_workload(Workload(PATH, "application/json", encode_json(reqs)), wl)
        port = free_port()
        with PinnedServer("edge", edge_command(registry, port), port, cores.server) as edge:
            spy = subprocess.Popen([_py_spy(), "record", "--pid", str(edge.pid), "--duration", str(int(seconds)),
                                    "--rate", str(rate), "--nonblocking", "--function", "--format", "raw", "-o", str(out)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                load = run_loadgen(port, wl, connections, seconds, 1.0, cores.loadgen)
            finally:
                _, err = spy.communicate(timeout=seconds + 60)
            if spy.returncode != 0:
                raise SystemExit(f"py-spy failed: {err.decode()[-1000:]}")
    head = (f"edge under load ({mix} mix, c{connections}): {load['rps']:.0f} req/s, p50 {load['p50_ms']:.2f} ms, "
            f"p99 {load['p99_ms']:.2f} ms, p99.9 {load['p999_ms']:.2f} ms; stacks in {out}")
    return head + "\n" + summarise(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="py-spy profile of the edge under load, as text")
    ap.add_argument("--registry", default="registry")
    ap.add_argument("--mix", choices=("unique", "cached"), default="unique")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=200, help="samples per second")
    ap.add_argument("--out", default="edge-stacks.txt", help="collapsed stacks (flamegraph.pl input)")
    args = ap.parse_args(argv)
    print(profile(str(Path(args.registry).resolve()), args.mix, args.connections, args.seconds, args.rate,
                  Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
