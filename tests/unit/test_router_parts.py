"""The router's parts on a fake clock: the circuit breaker, the power-of-two-choices picker, the admission window,
and the W3C trace context."""

from __future__ import annotations

import random

import pytest

from strata.shared.router.admission import AdmissionWindow
from strata.shared.router.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from strata.shared.router.endpoint import Endpoint, pick
from strata.shared.serving.trace import child_traceparent, from_headers, valid_traceparent


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- breaker ----------------------------------------------------------------------------------------------
def test_the_breaker_opens_on_consecutive_failures_only() -> None:
    b = Breaker(3, 2.0, Clock())
    for _ in range(2):
        b.failed()
    b.succeeded()                       # a success resets the streak
    b.failed()
    b.failed()
    assert b.state == CLOSED and b.allow()
    b.failed()
    assert b.state == OPEN and b.is_open and not b.allow() and b.opened == 1


def test_an_open_breaker_lets_one_probe_through_after_open_s_and_closes_on_its_success() -> None:
    clock = Clock()
    b = Breaker(1, 2.0, clock)
    b.failed()
    clock.t += 1.99
    assert not b.allow()
    clock.t += 0.02
    assert b.allow() and b.state == HALF_OPEN
    b.started()                         # the probe is in flight: nobody else
    assert not b.allow() and b.is_open
    b.succeeded()
    assert b.state == CLOSED and b.allow() and not b.is_open


def test_a_failed_probe_opens_the_breaker_for_another_open_s() -> None:
    clock = Clock()
    b = Breaker(2, 1.0, clock)
    b.failed()
    b.failed()
    clock.t += 1.5
    assert b.allow()
    b.started()
    b.failed()                          # one failure in half-open is enough
    assert b.state == OPEN and not b.allow()
    clock.t += 0.9
    assert not b.allow()
    clock.t += 0.2
    assert b.allow()


def test_breaker_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Breaker(0, 1.0)
    with pytest.raises(ValueError):
        Breaker(1, 0.0)


# -- power of two choices ----------------------------------------------------------------------------------
def _eps(*costs: tuple[float, int], clock: Clock | None = None) -> list[Endpoint]:
    out = []
    for i, (ewma, outstanding) in enumerate(costs):
        e = Endpoint(f"http://10.0.0.{i}:1", Breaker(1, 1.0, clock or Clock()))
        e.ewma_s, e.outstanding = ewma, outstanding
        out.append(e)
    return out


def test_p2c_takes_the_cheaper_of_two_and_never_the_most_expensive_of_three() -> None:
    eps = _eps((0.010, 0), (0.002, 0), (0.050, 3))
    rng = random.Random(7)
    picks = [pick(eps, rng) for _ in range(600)]
    assert eps[2] not in picks                           # the worst loses every pair it is drawn into
    assert picks.count(eps[1]) == pytest.approx(400, abs=45)   # the best wins both pairs it is in (2/3)
    assert picks.count(eps[0]) == pytest.approx(200, abs=45)


def test_p2c_counts_outstanding_requests_and_skips_open_breakers() -> None:
    eps = _eps((0.002, 9), (0.004, 0))   # fast but busy: 0.002 * 10 > 0.004 * 1
    assert {pick(eps, random.Random(s)) for s in range(20)} == {eps[1]}
    eps[1].breaker.failed()              # open
    assert {pick(eps, random.Random(s)) for s in range(20)} == {eps[0]}
    eps[0].breaker.failed()
    assert pick(eps, random.Random(0)) is None
    single = _eps((0.001, 0))
    assert pick(single, random.Random(0)) is single[0]
    single[0].breaker.failed()
    assert pick(single, random.Random(0)) is None


def test_the_latency_average_takes_a_slower_answer_at_once_and_a_faster_one_slowly() -> None:
    e = _eps((0.0, 0))[0]
    e.observe(0.010)
    assert e.ewma_s == 0.010
    e.observe(0.050)
    assert e.ewma_s == 0.050
    e.observe(0.010)
    assert e.ewma_s == pytest.approx(0.050 + 0.2 * (0.010 - 0.050))


# -- admission window ---------------------------------------------------------------------------------------
def test_the_window_admits_at_most_the_share_of_requests_it_saw() -> None:
    clock = Clock()
    w = AdmissionWindow(0.35, clock=clock)
    admitted = 0
    for i in range(1000):               # every request wants to escalate
        clock.t = 100.0 + i * 0.005     # 5 s of traffic inside one 10 s window
        admitted += w.admit()
    assert admitted == pytest.approx(350, abs=2) and w.share() == pytest.approx(0.35, abs=0.002)


def test_requests_answered_here_make_room_and_old_seconds_leave_the_window() -> None:
    clock = Clock()
    w = AdmissionWindow(0.5, clock=clock)
    for _ in range(10):
        w.observe()
    # the k-th escalation (0-based) goes while k < 0.5 * (10 + k + 1) + 1: k <= 12
    assert [w.admit() for _ in range(14)] == [True] * 13 + [False]
    clock.t += 10.0                                       # the whole window is old
    assert w.share() == 0.0 and w.admit()


def test_the_first_request_of_an_empty_window_is_admitted_and_zero_admits_none() -> None:
    assert AdmissionWindow(0.1, clock=Clock()).admit()
    never = AdmissionWindow(0.0, clock=Clock())
    assert not any(never.admit() for _ in range(100))
    always = AdmissionWindow(1.0, clock=Clock())
    assert all(always.admit() for _ in range(100))
    with pytest.raises(ValueError):
        AdmissionWindow(1.5)


# -- trace context -------------------------------------------------------------------------------------------
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_is_validated_and_a_child_keeps_the_trace_id() -> None:
    assert valid_traceparent(TP) == TP and valid_traceparent(TP.encode()) == TP
    for bad in ("", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "ff" + TP[2:],
                TP.replace("0af7", "0AF7").replace("b7ad", "XYZW"), "00-" + "0" * 32 + TP[35:], TP + "-extra"):
        assert valid_traceparent(bad) is None, bad
    child = child_traceparent(TP)
    assert child[:36] == TP[:36] and child[36:52] != TP[36:52] and child.endswith("-01") and valid_traceparent(child)
    fresh = child_traceparent(None)
    assert valid_traceparent(fresh) == fresh and fresh[3:35] != TP[3:35]


def test_request_ids_are_kept_only_when_printable_and_short() -> None:
    assert from_headers(b"abc-123", None) == ("abc-123", None)
    assert from_headers(b"has space", b"nonsense") == (None, None)
    assert from_headers(b"x" * 129, TP.encode()) == (None, TP)
    assert from_headers(None, None) is None


def test_a_forked_child_draws_other_trace_ids_than_its_parent() -> None:
    """Trace and span ids come from ``random``, which CPython reseeds in a forked child: workers forked from one
    parent never send the same ids."""
    import os
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                        # the child: its next fresh traceparent, then out
        os.write(w, child_traceparent(None).encode())
        os._exit(0)
    os.close(w)
    mine = child_traceparent(None)
    with os.fdopen(r, "rb") as f:
        theirs = f.read().decode()
    os.waitpid(pid, 0)
    assert valid_traceparent(theirs) == theirs and theirs[3:35] != mine[3:35] and theirs[36:52] != mine[36:52]
