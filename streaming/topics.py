"""Explicit topic creation (Tansu auto-creates unknown topics silently, with its own partition count)."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from strata.shared.config import TopicSettings
from strata.shared.errors import describe
from strata.streaming.errors import BrokerUnavailable

logger = logging.getLogger(__name__)
_ALREADY_EXISTS = 36


async def ensure_topics(bootstrap: str, topics: TopicSettings, timeout_ms: int = 5000) -> dict[str, int]:
    """Create the events, dead-letter and triggers topics if missing; returns topic -> partitions."""
    wanted = {topics.events: topics.partitions, topics.dead_letter: 1, topics.triggers: 1}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        resp = await admin.create_topics([NewTopic(name, n, 1) for name, n in wanted.items()], timeout_ms)
        for name, code, message in resp.topic_errors:
            if code not in (0, _ALREADY_EXISTS):
                raise BrokerUnavailable(f"cannot create topic {name}: error {code} {message}", field="broker")
        described = await admin.describe_topics(list(wanted))
    except KafkaError as exc:
        raise BrokerUnavailable(f"broker {bootstrap} unreachable: {describe(exc)}", field="broker") from exc
    finally:
        await admin.close()
    have = {d["topic"]: len(d["partitions"]) for d in described}
    if have.get(topics.events, 0) < topics.partitions:
        logger.warning("topic %s has %d partitions, %d configured", topics.events, have.get(topics.events, 0),
                       topics.partitions)
    return have
