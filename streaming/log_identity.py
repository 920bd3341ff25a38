"""A log's identity: the topic id the broker gives a topic when it creates it (Kafka Metadata v10+).

A topic deleted and recreated, or a broker that restarts without its log (the embedded Tansu broker keeps
its log in memory), gets a new topic id, and its offsets start again at 0. The processor's watermarks are
offsets, so they are stored with the topic id they belong to (``keys.LOG_IDS_KEY``): a different id means the
log was reset and those watermarks no longer say what was applied.

aiokafka 0.14 speaks Metadata up to v5 only; the v10 request and answer are declared here with its own
protocol types (a 16-byte UUID type added). A broker that does not answer v10 gives no id (None): the
processor then relies on its event-id check alone (``effects.Planner.plan``).

A broker that restarted without its log may not know the topic at all and still take records for it (Tansu
with memory storage does: its Metadata then answers UNKNOWN_TOPIC_OR_PARTITION and offset commits fail):
``TopicMissing`` says so, and the caller creates the topic again (``topics.ensure_topics``; the records
written meanwhile are kept), which gives it its new id.
"""

from __future__ import annotations

import logging
from io import BytesIO

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    AbstractType,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

logger = logging.getLogger(__name__)
_NO_ID = b"\0" * 16
_UNKNOWN_TOPIC = 3            # Kafka error code UNKNOWN_TOPIC_OR_PARTITION


class TopicMissing(Exception):
    """The broker does not know these topics (a restart that lost them): create them again."""

    def __init__(self, topics: list[str]) -> None:
        super().__init__(f"the broker does not know topic(s) {', '.join(topics)}")
        self.topics = topics


class _Uuid(AbstractType[bytes]):
    @classmethod
    def encode(cls, value: bytes | None) -> bytes:
        return bytes(value or _NO_ID)

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        return data.read(16)


class MetadataResponse_v10(Response):
    API_KEY = 3
    API_VERSION = 10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(("node_id", Int32), ("host", CompactString("utf-8")), ("port", Int32),
                                 ("rack", CompactString("utf-8")), ("tags", TaggedFields))),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", CompactArray(
            ("error_code", Int16), ("name", CompactString("utf-8")), ("topic_id", _Uuid), ("is_internal", Boolean),
            ("partitions", CompactArray(("error_code", Int16), ("partition_index", Int32), ("leader_id", Int32),
                                        ("leader_epoch", Int32), ("replica_nodes", CompactArray(Int32)),
                                        ("isr_nodes", CompactArray(Int32)), ("offline_replicas", CompactArray(Int32)),
                                        ("tags", TaggedFields))),
            ("topic_authorized_operations", Int32), ("tags", TaggedFields))),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class MetadataRequest_v10(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 10
    RESPONSE_TYPE = MetadataResponse_v10
    SCHEMA = Schema(
        ("topics", CompactArray(("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields))),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicIdRequest(Request[MetadataRequest_v10]):
    API_KEY = 3
    _CLASSES = (MetadataRequest_v10,)

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[MetadataRequest_v10]) -> MetadataRequest_v10:
        return request_struct_class([(None, t, {}) for t in self.topics], False, False, False, {})


async def topic_ids(client, topics: list[str]) -> dict[str, str | None]:
    """topic -> its id (hex), or None when the broker gives none (too old to answer v10, or not connected).
    ``TopicMissing`` when the broker does not know a topic. ``client`` is a started
    ``aiokafka.client.AIOKafkaClient``; Kafka errors propagate (retriable ones too)."""
    node = client.get_random_node()
    if node is None:
        await client.force_metadata_update()
        node = client.get_random_node()
    conn = await client._get_conn(node)       # noqa: SLF001 - the broker's API versions: is v10 supported?
    versions = getattr(conn, "_versions", {}) if conn is not None else {}
    lo, hi = versions.get(3, (0, 0))
    if not lo <= 10 <= hi:
        return dict.fromkeys(topics)
    answer = await client.send(node, TopicIdRequest(topics))
    out: dict[str, str | None] = dict.fromkeys(topics)
    missing = []
    for t in answer.topics:
        error_code, name, tid = t[0], t[1], t[2]
        if error_code == _UNKNOWN_TOPIC:
            missing.append(name)
        elif error_code == 0 and tid and tid != _NO_ID:
            out[name] = tid.hex()
    if missing:
        raise TopicMissing(missing)
    return out
