"""A bounded abuse load test: one abusive client (slow headers, endless trailer, huge pipeline) next to
a normal client, against a real ``strata edge`` process pinned to its own core. The normal client's
p99 under abuse stays within 2x of its p99 in the quiet windows (``strata bench abuse`` is the longer
run). Short quiet and abused windows alternate, so noise from other work on a shared machine hits
both alike; a miss is measured once more before it fails the test (a real regression misses twice:
the server before these limits gave ratios over 1000x)."""

from __future__ import annotations

from strata.loadtest.abuse import TARGET_RATIO, run


def test_normal_client_p99_within_2x_under_abuse(registry_dir):
    runs = []
    for _ in range(2):
        result = run(str(registry_dir), rounds=5, window_s=1.2)
        assert result["abuser"].get("pipelined_answers", 0) > 0           # the attacks really ran
        assert result["abuser"].get("trailer_cut", 0) > 0
        runs.append(result)
        if result["p99_ratio"] <= TARGET_RATIO:
            break
    assert min(r["p99_ratio"] for r in runs) <= TARGET_RATIO, [
        (r["quiet"]["p99_ms"], r["abused"]["p99_ms"], r["p99_ratio"]) for r in runs]
