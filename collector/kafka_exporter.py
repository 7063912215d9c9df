"""The collector's Kafka exporter: an export is durable once the broker acknowledged every record.

librdkafka does the hard parts (idempotent producer, acks=all, retries within
``delivery_timeout_s``, bounded buffer); a thread polls it and delivery callbacks resolve
asyncio futures, so ``export`` returns only after the broker's acknowledgement and a broker
that is down or slow turns into a retryable ``ExportError`` within the deadline.

>>> from forewarn.config import load_settings
>>> exp = KafkaExporter(load_settings(overrides={"kafka": {"brokers": "127.0.0.1:1"}}))
>>> exp.name, exp.ready()
('kafka', False)
>>> exp.producer_config()["acks"], exp.producer_config()["enable.idempotence"]
('all', True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from forewarn.collector import kafka_topics, kafka_wire
from forewarn.collector.exporter import ExportError

from forewarn.config import Settings

log = logging.getLogger(__name__)


class KafkaExporter:
    """Publishes each payload as one record of its signal's topic (``collector.exporter = kafka``)."""

    name = "kafka"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.kafka = settings.kafka
        self._topics = kafka_topics.topics(self.kafka)
        self._producer: Any = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._healthy = False
        self._fatal: str | None = None

    def producer_config(self) -> dict[str, Any]:
        k = self.kafka
        conf: dict[str, Any] = {
            **kafka_topics.base_config(k),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": k.linger_ms,
            "compression.type": k.compression,
            "message.max.bytes": max(k.max_message_bytes + 4096, 1_000_000),
            "message.timeout.ms": int(k.delivery_timeout_s * 1000),
            "queue.buffering.max.kbytes": k.max_buffer_kbytes,
            "partitioner": "fnv1a_random",  # Sarama's hash partitioner for keyed records; no key: random
            "error_cb": self._on_error,
        }
        # the user's client properties win, except the guarantees this exporter promises
        conf.update({key: v for key, v in k.client.items() if key not in ("acks", "enable.idempotence")})
        return conf

    async def start(self) -> None:
        from confluent_kafka import Producer

        try:
            await asyncio.to_thread(kafka_topics.ensure_topics, self.kafka)
            self._healthy = True
        except kafka_topics.TopicError as e:
            if e.missing:
                raise  # a configuration error: say so at start rather than refuse every export
            log.warning("%s; exports fail with retryable errors until Kafka is reachable", e)
        self._producer = Producer(self.producer_config())
        self._poller = threading.Thread(target=self._poll, name="kafka-producer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        """Serves delivery callbacks; while the brokers seem down, probes them so readiness comes
        back even when no export succeeds meanwhile (a load balancer may send none to an unready
        collector)."""
        last_probe = 0.0
        while not self._stop.is_set():
            self._producer.poll(0.1)
            if not self._healthy and time.monotonic() - last_probe >= 2.0:
                last_probe = time.monotonic()
                try:
                    self._producer.list_topics(timeout=1.0)
                    self._healthy = True
                except Exception:
                    log.debug("Kafka brokers still unreachable")

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.fatal():
            self._fatal = err.str()
            log.error("Kafka producer fatal error: %s", err.str())
        elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._healthy = False
        log.warning("Kafka producer: %s", err.str())

    def ready(self) -> bool:
        return self._producer is not None and self._healthy and self._fatal is None

    def _records(self, signal: str, payloads: list[bytes]) -> list[tuple[bytes | None, bytes]]:
        k = self.kafka
        split: list[tuple[bytes | None, bytes]] = []
        for p in payloads:
            if signal == "traces" and k.partition_traces_by_id:
                split += kafka_wire.split_by_trace(p)
            elif (signal == "metrics" and k.partition_metrics_by_resource_attributes) or (
                signal == "logs" and k.partition_logs_by_resource_attributes
            ):
                split += kafka_wire.split_by_resource(signal, p)
            else:
                split.append((None, p))
        out = [(key, kafka_wire.encode(signal, v, k.encoding)) for key, v in split]
        for _, v in out:
            if len(v) > k.max_message_bytes:
                raise ExportError(
                    f"{signal} request of {len(v)} bytes exceeds kafka.max_message_bytes "
                    f"({k.max_message_bytes}); send smaller batches or raise the limit",
                    retryable=False,
                )
        return out

    async def export(self, signal: str, payloads: list[bytes]) -> None:
        from confluent_kafka import KafkaException

        if self._producer is None:
            raise ExportError("Kafka exporter not started", retryable=True, retry_after_s=1)
        if self._fatal is not None:
            self._reset(self._fatal)
        records = self._records(signal, payloads)
        loop = asyncio.get_running_loop()
        topic = self._topics[signal]
        futures: list[asyncio.Future[None]] = []
        for key, value in records:
            fut: asyncio.Future[None] = loop.create_future()
            try:
                self._producer.produce(topic, value, key, on_delivery=_resolver(loop, fut))
            except BufferError:
                # earlier records of this call may still be delivered; the client's retry re-sends them
                raise ExportError(
                    "Kafka producer buffer full (broker slow or down)", retryable=True, retry_after_s=1
                ) from None
            except KafkaException as e:
                raise ExportError(f"Kafka refused the record: {e}", retryable=True, retry_after_s=1) from None
            futures.append(fut)
        results = await asyncio.gather(*futures, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if any(isinstance(e, DeliveryError) and e.producer_unusable for e in errors):
            self._reset(str(errors[0]))
        if errors:
            raise ExportError(
                f"{len(errors)} of {len(records)} Kafka records not acknowledged: {errors[0]}",
                retryable=True,
                retry_after_s=1,
            )
        self._healthy = True

    def _reset(self, why: str) -> None:
        """A fenced or failed idempotent producer refuses every later record (seen after delivery
        timeouts while a broker was stopped): replace it. Whatever the old one still holds is purged,
        which fails those exports as retryable, so no client waits on it."""
        from confluent_kafka import Producer

        old, self._producer = self._producer, Producer(self.producer_config())
        self._fatal = None
        log.warning("Kafka producer replaced after: %s", why)
        old.purge()
        old.poll(0)

    async def close(self) -> None:
        if self._producer is None:
            return
        left = await asyncio.to_thread(self._producer.flush, self.kafka.delivery_timeout_s)
        if left:
            log.warning("%d Kafka records still unacknowledged at close", left)
        self._stop.set()
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join, 2.0)


class DeliveryError(RuntimeError):
    """The broker did not acknowledge a record; says whether the producer itself is now unusable."""

    def __init__(self, err: Any):
        from confluent_kafka import KafkaError

        super().__init__(err.str())
        self.producer_unusable = bool(err.fatal()) or err.code() in (
            KafkaError.PRODUCER_FENCED,
            KafkaError.INVALID_PRODUCER_EPOCH,
            KafkaError._FENCED,
            KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
            KafkaError.UNKNOWN_PRODUCER_ID,
            KafkaError.INVALID_PRODUCER_ID_MAPPING,
        )


def _resolver(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> Any:
    """A delivery callback (runs on the poll thread) that settles ``fut`` on the event loop."""

    def settle(err: Any, _msg: Any) -> None:
        if fut.done():
            return
        if err is None:
            fut.set_result(None)
        else:
            fut.set_exception(DeliveryError(err))

    def on_delivery(err: Any, msg: Any) -> None:
        # RuntimeError: the loop closed at shutdown; nobody waits for this answer any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, err, msg)

    return on_delivery
