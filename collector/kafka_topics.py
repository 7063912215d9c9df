"""Which topic carries which signal, the librdkafka settings every client shares, and topic creation.

>>> from forewarn.config import KafkaSettings
>>> k = KafkaSettings(brokers="b1:9092,b2:9092", client={"security.protocol": "SASL_SSL"})
>>> topics(k)["traces"], signal_of_topic(k)["otlp_logs"]
('otlp_spans', 'logs')
>>> base_config(k)["security.protocol"]
'SASL_SSL'
"""

from __future__ import annotations

import logging
from typing import Any

from forewarn.config import KafkaSettings

log = logging.getLogger(__name__)


class TopicError(ConnectionError):
    """Kafka unreachable, a topic missing (``missing``, with ``create_topics`` off) or not creatable."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing


def topics(k: KafkaSettings) -> dict[str, str]:
    """Signal -> topic name."""
    return {"traces": k.topic_spans, "metrics": k.topic_metrics, "logs": k.topic_logs}


def signal_of_topic(k: KafkaSettings) -> dict[str, str]:
    """Topic name -> signal; the three topics must differ."""
    t = topics(k)
    if len(set(t.values())) != len(t):
        raise ValueError(f"kafka topics must be distinct per signal, got {t}")
    return {v: s for s, v in t.items()}


def base_config(k: KafkaSettings) -> dict[str, Any]:
    """bootstrap.servers plus the user's extra properties (SASL, TLS, ...), which win."""
    return {"bootstrap.servers": k.brokers, "client.id": "forewarn", **k.client}


def ensure_topics(k: KafkaSettings, timeout_s: float = 15.0) -> dict[str, int]:
    """Make sure the three topics exist; create missing ones when allowed. Returns topic -> partitions."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(base_config(k))
    wanted = list(topics(k).values())
    try:
        md = admin.list_topics(timeout=timeout_s)
    except KafkaException as e:
        raise TopicError(f"cannot reach Kafka brokers {k.brokers}: {e}") from None
    have = {t: len(m.partitions) for t, m in md.topics.items() if m.error is None and m.partitions}
    missing = [t for t in wanted if t not in have]
    if missing and not k.create_topics:
        raise TopicError(
            f"Kafka topic(s) {', '.join(missing)} do not exist on {k.brokers} and kafka.create_topics is "
            "false: create them (e.g. kafka-topics --create) or enable kafka.create_topics",
            missing=True,
        )
    if missing:
        futures = admin.create_topics(
            [NewTopic(t, k.partitions, k.replication_factor) for t in missing], request_timeout=timeout_s
        )
        for t, f in futures.items():
            try:
                f.result(timeout_s)
                log.info("created Kafka topic %s with %d partitions", t, k.partitions)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another process won the race
                    raise TopicError(f"cannot create Kafka topic {t}: {e}") from None
            have[t] = k.partitions
    return {t: have[t] for t in wanted}
