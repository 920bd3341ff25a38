"""Hostile ``POST /v1/events`` bodies on a real broker (review findings 8, 12, 17, 22): one bad event never costs
the batch whatever the codec, the event limit is checked before decoding, a rejection is never a retriable 503,
and bodies refused as a whole are dead-lettered too."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc

import msgpack

from tests.integration.streaming_kit import ingest, read_topic, streaming_settings

MSGPACK = {"content-type": "application/msgpack", "accept": "application/json"}


def _ev(i: int, tag: str) -> dict:
    return {"event_id": f"{tag}-{i}", "type": "view", "user_id": f"u{i % 7}", "session_id": f"s{i % 11}",
            "ts": int(time.time() * 1000), "channel": "web", "item_id": "SKU-000001"}


def test_one_hostile_event_among_999_good_is_rejected_at_its_index(tansu_proc, fresh_valkey, registry_dir) -> None:
    """Finding 8: a msgpack event with a bytes map key, or a JSON event nested 300 deep, used to turn the whole
    request into a 500 (its dead-letter record did not serialize): 999 good events lost."""
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    good = [_ev(i, "mp") for i in range(999)]
    good2 = [_ev(i, "js") for i in range(999)]
    deep = json.loads("[" * 300 + "]" * 300)

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            body = msgpack.packb({"events": [*good, {b"event_id": "x", "type": "view"}]}, use_bin_type=True)
            resp = await client.post("/v1/events", content=body, headers=MSGPACK)
            assert resp.status_code == 202, resp.text
            assert resp.json()["accepted"] == 999 and [r["index"] for r in resp.json()["rejected"]] == [999]
            resp = await client.post("/v1/events", json={"events": [*good2, dict(_ev(999, "js"), junk=deep)]})
            assert resp.status_code == 202, resp.text
            assert resp.json()["accepted"] == 999 and resp.json()["rejected"][0]["index"] == 999
        events = await read_topic(cfg.broker, cfg.topics.events, 1998)
        assert {e["event_id"] for e in events} == {e["event_id"] for e in good + good2}
        dlq = await read_topic(cfg.broker, cfg.topics.dead_letter, 2)
        assert sorted(d["index"] for d in dlq) == [999, 999] and all(d["reason"] for d in dlq)

    asyncio.run(go())


def test_a_decode_bomb_is_refused_before_it_is_decoded(tansu_proc, fresh_valkey, registry_dir) -> None:
    """Finding 12: a 4 MiB msgpack body of 4 million empty maps (or JSON of 1.4 million) was decoded whole
    (+336 MB) before the 1000-event check. Now the check comes first: the request allocates about nothing
    beyond the body itself."""
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    n = (4 << 20) - 16
    mp = b"\x81\xa6events\xdd" + n.to_bytes(4, "big") + b"\x80" * n
    js = b'{"events":[' + b"{}," * ((4 << 20) // 3 - 8) + b"{}]}"

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            for body, headers in ((mp, MSGPACK), (js, {"content-type": "application/json"})):
                tracemalloc.start()
                try:
                    resp = await client.post("/v1/events", content=body, headers=headers)
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                assert resp.status_code == 413, resp.text
                assert resp.json()["error"]["field"] == "events"
                assert peak < 3 * len(body), f"peak {peak / 1e6:.1f} MB for a {len(body) / 1e6:.1f} MB body"

    asyncio.run(go())


def test_an_event_too_big_for_the_log_is_a_4xx_and_its_record_is_truncated(tansu_proc, fresh_valkey,
                                                                             registry_dir) -> None:
    """Finding 17: a 4 MB ``type`` of control characters made a 44 MB dead-letter record the producer refused:
    503 ``retriable: true`` forever. Now: 422 naming the field, a short reason, a bounded record with its size."""
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    e = _ev(0, "big")
    e["type"] = "\x01" * 4_000_000
    body = msgpack.packb({"events": [e]}, use_bin_type=True)

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            resp = await client.post("/v1/events", content=body, headers=MSGPACK)
            assert resp.status_code == 422, resp.text[:300]
            err = resp.json()
            assert err["retriable"] is False and err["error"]["field"] == "events[0].body"
            assert "exceeds the 131072-byte limit" in err["error"]["reason"] and len(resp.content) < 2000
        (rec,) = await read_topic(cfg.broker, cfg.topics.dead_letter, 1)
        assert rec["size"] == len(body) - 9 and rec["raw_truncated"] is True and rec["field"] == "body"
        assert len(json.dumps(rec)) < 100_000

    asyncio.run(go())


def test_bodies_refused_as_a_whole_are_dead_lettered_with_their_size(tansu_proc, fresh_valkey, registry_dir) -> None:
    """Finding 22: a 413 for more than 1000 events or a 400 for a malformed body left nothing in the dead-letter
    topic."""
    cfg = streaming_settings(tansu_proc.bootstrap, fresh_valkey.url, registry_dir)
    too_many = json.dumps({"events": [_ev(i, "many") for i in range(1001)]}).encode()

    async def go() -> None:
        async with ingest(cfg) as (client, _):
            resp = await client.post("/v1/events", content=too_many, headers={"content-type": "application/json"})
            assert resp.status_code == 413
            resp = await client.post("/v1/events", content=b'{"events": [', headers={"content-type": "application/json"})
            assert resp.status_code == 400
        dlq = await read_topic(cfg.broker, cfg.topics.dead_letter, 2)
        assert [(d["code"], d["size"]) for d in dlq] == [("payload_too_large", len(too_many)), ("malformed_body", 12)]
        assert dlq[0]["raw_truncated"] is True and dlq[1]["raw"] == '{"events": ['

    asyncio.run(go())
