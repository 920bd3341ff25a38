"""EventLog against a real Tansu broker: the requests of one event-loop turn share one batch per partition,
every record lands once and in per-session order, and a batch that fails fails every request in it."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from aiokafka import AIOKafkaConsumer

from strata.shared.contracts.event_records import decode_event, event_key
from strata.streaming.errors import BrokerUnavailable
from strata.streaming.log import EventLog
from tests.integration.streaming_kit import streaming_settings


async def _read_all(broker: str, topic: str, n: int) -> list[tuple[int, bytes, dict]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[tuple[int, bytes, dict]] = []
    try:
        for _ in range(100):
            for tp, msgs in (await consumer.getmany(timeout_ms=200)).items():
                out += [(tp.partition, m.key, decode_event(m.value)) for m in msgs]
            if len(out) >= n:
                break
    finally:
        await consumer.stop()
    return out


def _records(topic: str, req: int, n: int) -> list[tuple[str, bytes, bytes]]:
    return [(topic, event_key("t", f"s{i % 5}"), msgpack.packb({"req": req, "i": i, "s": f"s{i % 5}"}))
            for i in range(n)]


def test_concurrent_appends_share_one_batch_per_partition(tansu_proc, tmp_path) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, "redis://127.0.0.1:1", tmp_path)

    async def main() -> tuple[int, list]:
        log = EventLog(cfg)
        await log.start()
        assert log.connected
        producer = log._producer
        sent = 0
        real = producer.send_batch

        async def counting(*a, **kw):          # a spy on the real producer: the broker still gets everything
            nonlocal sent
            sent += 1
            return await real(*a, **kw)

        producer.send_batch = counting
        try:
            await asyncio.gather(*[log.append(_records(cfg.topics.events, r, 40)) for r in range(8)])
        finally:
            await log.stop()
        return sent, await _read_all(tansu_proc.bootstrap, cfg.topics.events, 320)

    sent, got = asyncio.run(main())
    partitions = {p for p, _, _ in got}
    assert sent == len(partitions) <= 4          # 8 requests x 40 records: one batch per partition, not 8 x
    assert len(got) == 320 and len({(v["req"], v["i"]) for _, _, v in got}) == 320
    for req in range(8):                           # per-session order kept within each request
        for s in range(5):
            seq = [v["i"] for _, _, v in got if v["req"] == req and v["s"] == f"s{s}"]
            assert seq == sorted(seq)
    assert len({(k, p) for p, k, _ in got}) == len({k for _, k, _ in got}) == 5    # a session, one partition


def test_a_failed_batch_fails_every_request_that_shares_it(tansu_proc, tmp_path) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, "redis://127.0.0.1:1", tmp_path)

    async def main() -> list:
        log = EventLog(cfg)
        await log.start()
        producer = log._producer

        async def broken(*a, **kw):
            raise OSError("connection reset by the test")

        real = producer.send_batch
        producer.send_batch = broken
        try:
            results = await asyncio.gather(*[log.append(_records(cfg.topics.events, r, 10)) for r in range(4)],
                                           return_exceptions=True)
            producer.send_batch = real                # the log keeps working afterwards
            await log.append(_records(cfg.topics.events, 99, 10))
        finally:
            await log.stop()
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, BrokerUnavailable) for r in results), results
    assert "connection reset by the test" in str(results[0])


@pytest.mark.parametrize("n", [1, 3])
def test_appends_in_different_turns_each_get_their_acknowledgement(tansu_proc, tmp_path, n) -> None:
    cfg = streaming_settings(tansu_proc.bootstrap, "redis://127.0.0.1:1", tmp_path)

    async def main() -> list:
        log = EventLog(cfg)
        await log.start()
        try:
            for r in range(n):
                await log.append(_records(cfg.topics.events, r, 7))
        finally:
            await log.stop()
        return await _read_all(tansu_proc.bootstrap, cfg.topics.events, 7 * n)

    got = asyncio.run(main())
    assert len(got) == 7 * n
