"""Splitting an events body before decoding it (``streaming.envelope``), the dead-letter record bounds
(``streaming.dead_letter``) and the ingest's replay buffer (``streaming.replay_buffer``)."""

from __future__ import annotations

import json

import msgpack
import orjson
import pytest

from strata.shared.errors import InvalidField, MalformedBody, PayloadTooLarge
from strata.streaming import dead_letter, envelope
from strata.streaming.replay_buffer import ReplayBuffer

BATCH = {"events": [{"event_id": f"e{i}", "q": "a]},{\"x\":[", "n": [i, {"k": [1, 2]}]} for i in range(7)]}


@pytest.mark.parametrize("spans", [envelope._c_spans, envelope._py_spans])
def test_json_spans_find_each_element_whatever_its_strings_hold(spans) -> None:
    if spans is None:
        pytest.skip("the C kernel is not built")         # the Python scan is tested either way
    body = json.dumps(BATCH, indent=1).encode()
    pos = body.index(b"[")
    found, end, longest = spans(body, pos, 1000)
    assert [json.loads(body[s:e]) for s, e in found] == BATCH["events"] and body[end:].strip() == b"}"
    assert longest == max(e - s for s, e in found) and spans(body, pos, 1000, False) == (7, end, longest)
    assert spans(body, pos, 6) == (None, 7, 0)
    assert spans(b"[ ]", 0, 5) == ([], 3, 0)
    for bad in (b"[1,]", b"[1", b'["x', b"[{}}]"):
        with pytest.raises(ValueError):
            spans(bad, 0, 5)


def test_split_json_and_msgpack_give_the_same_events() -> None:
    for body, ctype in ((orjson.dumps(BATCH), "application/json"), (msgpack.packb(BATCH), "application/msgpack")):
        s = envelope.split(body, ctype, 1000)
        assert s.batch and [envelope.decode_one(s.raw(i), s.codec) for i in range(s.count)] == BATCH["events"]
    fast = envelope.split(orjson.dumps(BATCH), "application/json", 1000, max_event_bytes=1000)
    assert fast.decoded == BATCH["events"] and fast.spans is None          # decoded in one call, spans not needed
    assert json.loads(bytes(fast.raw(3))) == BATCH["events"][3]
    broken = orjson.dumps(BATCH).replace(b'"e3"', b'"e3\\x"')              # one bad event: decoded one by one
    slow = envelope.split(broken, "application/json", 1000, max_event_bytes=1000)
    assert slow.decoded is None and slow.count == 7
    one = envelope.split(b'{"event_id": "x"}', "application/json", 1000)
    assert not one.batch and bytes(one.raw(0)) == b'{"event_id": "x"}'


@pytest.mark.parametrize(("body", "ctype", "exc", "field"), [
    (b'{"events": [' + b"{}," * 1000 + b"{}]}", "application/json", PayloadTooLarge, "events"),
    (b"\x81\xa6events\xdd" + (10**6).to_bytes(4, "big"), "application/msgpack", PayloadTooLarge, "events"),
    (b'{"events": []}', "application/json", InvalidField, "events"),
    (b'{"events": {"a": 1}}', "application/json", InvalidField, "events"),
    (b'{"events": [{}], "x": 1}', "application/json", InvalidField, "body"),
    (b'{"events": [{}', "application/json", MalformedBody, "body"),
    (b"[1, 2]", "application/json", MalformedBody, "body"),
    (b"\x93\x01\x02\x03", "application/msgpack", MalformedBody, "body"),
])
def test_envelope_errors_name_the_field(body: bytes, ctype: str, exc: type, field: str) -> None:
    with pytest.raises(exc) as ei:
        envelope.split(body, ctype, 1000)
    assert ei.value.field == field


def test_per_event_msgpack_limits_reject_one_event_not_the_body() -> None:
    good, bomb = {"event_id": "a"}, {"x": [[]] * 101}
    s = envelope.split(msgpack.packb({"events": [good, bomb, good]}), "application/msgpack", 1000)
    assert envelope.decode_one(s.raw(0), s.codec) == good
    with pytest.raises(MalformedBody):
        envelope.decode_one(s.raw(1), s.codec)


def test_dead_letter_records_are_bounded_and_always_serialize() -> None:
    rec = orjson.loads(dead_letter.record("ingest", "invalid_field", "type", "r" * 10_000, 1, b"\x01" * 4_000_000))
    assert rec["size"] == 4_000_000 and rec["raw_truncated"] and len(rec["raw"]) == dead_letter.RAW_MAX
    assert len(rec["reason"]) == dead_letter.REASON_MAX
    weird = {b"bytes-key": 1}                           # orjson cannot write it: the raw bytes are kept
    rec = orjson.loads(dead_letter.record("ingest", "c", None, "r", 1, msgpack.packb(weird), weird))
    assert rec["raw_encoding"] == "base64" and "raw_truncated" not in rec
    rec = orjson.loads(dead_letter.record("ingest", "c", None, "r", 1, b'{"a": 1}', {"a": 1}))
    assert rec["raw"] == {"a": 1}
    rec = orjson.loads(dead_letter.record("ingest", "c", "body", "r", 1, b"", size=9_000_000))
    assert rec["size"] == 9_000_000 and rec["raw_truncated"]


def test_replay_buffer_keeps_until_applied_and_is_bounded() -> None:
    buf = ReplayBuffer(max_bytes=10_000)
    buf.add("ev", 0, 0, [(b"k", b"v" * 100)] * 10)        # offsets 0..9
    buf.add("ev", 0, 10, [(b"k", b"v" * 100)] * 10)       # 10..19
    buf.add("ev", 1, 0, [(b"k", b"w" * 100)] * 5)
    buf.trim("ev", {0: 9})
    assert len(buf) == 15
    assert [v[:1] for _, v in buf.take("ev")] == [b"v"] * 10 + [b"w"] * 5 and len(buf) == 0 and buf.nbytes == 0
    for i in range(100):
        buf.add("ev", 0, i * 10, [(b"k", b"x" * 100)] * 10)
    assert buf.nbytes <= 10_000 and buf.dropped > 0 and len(buf) + buf.dropped == 1000
