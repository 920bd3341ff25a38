"""The simulation's report on the console (rich tables, the router's targets checked) and as a PNG."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table

SINGLE_TIERS = ("edge", "streaming", "origin")


def _f(value: object, fmt: str = ".4f") -> str:
    return "–" if value is None else format(value, fmt)


def policies_table(report: dict) -> Table:
    extra = report.get("_extra", {})
    t = Table(title=f"strata simulate: {report['users']} shoppers per policy, {report['duration_s']:.0f} s, "
                    f"seed {report['seed']}, model {extra.get('model_version', '?')}")
    for col in ("policy", "expected CTR", "realised CTR", "NDCG@10", "regret", "p50 ms", "p95 ms", "p99 ms",
                "server p95 ms", "edge/streaming/origin", "degraded", "requests", "errors", "edge cache hits"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, m in report["policies"].items():
        share = m["tier_share"]
        t.add_row(name, _f(m["expected_ctr"]), _f(m["realized_ctr"]), _f(m["ndcg_at_10"]), _f(m["regret"]),
                  _f(m["p50_ms"], ".2f"), _f(m["p95_ms"], ".2f"), _f(m["p99_ms"], ".2f"),
                  _f(extra.get("server_p95_ms", {}).get(name), ".2f"),
                  f"{share['edge']:.2f}/{share['streaming']:.2f}/{share['origin']:.2f}",
                  f"{m['degraded_share']:.3f}", str(m["requests"]), str(extra.get("errors", {}).get(name, 0)),
                  _f(m["edge_cache_hit_ratio"], ".3f"))
    return t


def session_state_table(report: dict) -> Table:
    t = Table(title="expected CTR by session state: cold = no click yet in the session (no session vector), "
                    "warm = after a click")
    for col in ("policy", "cold pages", "cold expected CTR", "warm pages", "warm expected CTR"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, split in report.get("_extra", {}).get("by_session_state", {}).items():
        t.add_row(name, str(split["cold"]["pages"]), _f(split["cold"]["expected_ctr"]), str(split["warm"]["pages"]),
                  _f(split["warm"]["expected_ctr"]))
    return t


def frontier_table(report: dict) -> Table:
    t = Table(title=f"threshold frontier (probe pages: {report.get('_extra', {}).get('probe_pages', 0)}; "
                    f"configured t_edge {report['t_edge']})")
    for col in ("t_edge", "escalated", "expected CTR (by confidence)", "expected CTR (same share at random)",
                "difference", "if every escalation went to the origin"):
        t.add_column(col, justify="right")
    origin_only = {p["t_edge"]: p for p in report.get("_extra", {}).get("frontier_origin_only", [])}
    for p in report["frontier"]:
        mark = " *" if p["t_edge"] == report["t_edge"] else ""
        alt = origin_only.get(p["t_edge"])
        t.add_row(f"{p['t_edge']:.2f}{mark}", f"{p['escalation_share']:.3f}", f"{p['expected_ctr']:.4f}",
                  f"{p['random_expected_ctr']:.4f}", f"{p['expected_ctr'] - p['random_expected_ctr']:+.4f}",
                  _f(alt["expected_ctr"]) if alt else "–")
    return t


def reliability_table(report: dict) -> Table:
    t = Table(title="edge confidence reliability: edge answer quality relative to the origin's, same pages")
    for col in ("confidence", "pages", "edge expected CTR", "origin expected CTR", "edge / origin"):
        t.add_column(col, justify="right")
    for r in report.get("_extra", {}).get("reliability", []):
        t.add_row(r["confidence"], str(r["pages"]), _f(r["edge_ctr"]), _f(r["origin_ctr"]),
                  _f(r["edge_over_origin"], ".3f"))
    return t


def checks(report: dict) -> list[tuple[str, bool | None, str]]:
    """The router's targets as (what, met (None: not measurable here), figures)."""
    pol = report["policies"]
    out: list[tuple[str, bool | None, str]] = []
    routed = pol.get("routed")
    singles = {n: pol[n]["expected_ctr"] for n in SINGLE_TIERS if n in pol and pol[n]["expected_ctr"] is not None}
    if routed and singles and routed["expected_ctr"] is not None:
        best_name = max(singles, key=lambda n: singles[n])
        ratio = routed["expected_ctr"] / singles[best_name] if singles[best_name] else 0.0
        out.append(("routed expected CTR >= 0.98x the best single tier", ratio >= 0.98,
                    f"{routed['expected_ctr']:.4f} vs {best_name} {singles[best_name]:.4f} = {ratio:.3f}x"))
        esc = 1.0 - routed["tier_share"]["edge"]
        out.append(("routed escalates <= 35% of requests", esc <= 0.35, f"{esc:.3f} answered above the edge"))
    if routed and "origin" in pol and routed["p95_ms"] is not None and pol["origin"]["p95_ms"]:
        ratio = routed["p95_ms"] / pol["origin"]["p95_ms"]
        out.append(("routed p95 <= 0.5x origin's", ratio <= 0.5,
                    f"{routed['p95_ms']:.2f} ms vs {pol['origin']['p95_ms']:.2f} ms = {ratio:.3f}x"))
    at = next((p for p in report["frontier"] if p["t_edge"] == report["t_edge"]), None)
    if at is not None:
        out.append((f"at t_edge {report['t_edge']}: by confidence beats the same share at random",
                    at["expected_ctr"] > at["random_expected_ctr"],
                    f"{at['expected_ctr']:.4f} vs {at['random_expected_ctr']:.4f} at {at['escalation_share']:.3f} "
                    "escalated"))
    curve = pol.get("edge", {}).get("learning_curve") or []
    if len(curve) >= 4:
        half = len(curve) // 2
        first = sum(v for _, v in curve[:half]) / half
        last = sum(v for _, v in curve[half:]) / (len(curve) - half)
        out.append(("edge expected CTR rises over the run", last > first,
                    f"first half {first:.4f}, second half {last:.4f}"))
    return out


def checks_table(report: dict) -> Table:
    t = Table(title="the router's targets")
    for col in ("target", "met", "figures"):
        t.add_column(col)
    for what, met, figures in checks(report):
        t.add_row(what, "–" if met is None else ("[green]yes[/green]" if met else "[red]no[/red]"), figures)
    return t


def render(report: dict) -> Group:
    parts = [policies_table(report), session_state_table(report)]
    if report["frontier"]:
        parts += [frontier_table(report), reliability_table(report)]
    parts.append(checks_table(report))
    return Group(*parts)


def plot(report: dict, path: Path) -> None:
    """Four panels: expected CTR per policy, learning curves, the frontier against the random line, and the
    edge confidence's reliability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pol = report["policies"]
    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    names = list(pol)
    ax[0, 0].bar(names, [pol[n]["expected_ctr"] or 0 for n in names], color="tab:blue", label="expected CTR")
    ax[0, 0].plot(names, [pol[n]["realized_ctr"] or 0 for n in names], "o", color="tab:orange",
                  label="realised CTR (position bias)")
    ax[0, 0].set_title("expected CTR by policy")
    ax[0, 0].legend()
    for n in names:
        curve = pol[n]["learning_curve"]
        if curve:
            ax[0, 1].plot([c[0] for c in curve], [c[1] for c in curve], marker=".", label=n)
    ax[0, 1].set_title("learning curve (expected CTR per time window)")
    ax[0, 1].set_xlabel("seconds into the run")
    ax[0, 1].legend(fontsize=8)
    fr = report["frontier"]
    if fr:
        xs = [p["escalation_share"] for p in fr]
        ax[1, 0].plot(xs, [p["expected_ctr"] for p in fr], marker="o", label="escalate by confidence")
        ax[1, 0].plot(xs, [p["random_expected_ctr"] for p in fr], "--", label="same share at random")
        at = next((p for p in fr if p["t_edge"] == report["t_edge"]), None)
        if at is not None:
            ax[1, 0].plot([at["escalation_share"]], [at["expected_ctr"]], "r*", markersize=14,
                          label=f"configured t_edge {report['t_edge']}")
        ax[1, 0].set_xlabel("escalation share")
        ax[1, 0].set_ylabel("expected CTR")
        ax[1, 0].legend()
    ax[1, 0].set_title("threshold frontier (sweep of t_edge)")
    rel = [r for r in report.get("_extra", {}).get("reliability", []) if r["pages"]]
    if rel:
        ax[1, 1].bar([r["confidence"] for r in rel], [r["edge_over_origin"] or 0 for r in rel])
        ax[1, 1].axhline(1.0, color="grey", linestyle=":")
        for i, r in enumerate(rel):
            ax[1, 1].annotate(str(r["pages"]), (i, (r["edge_over_origin"] or 0)), ha="center", va="bottom", fontsize=8)
    ax[1, 1].set_title("edge confidence reliability: edge / origin expected CTR (pages on bars)")
    ax[1, 1].set_xlabel("edge confidence")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
