"""The memory bound (collector.memory_limit_mib): above the soft limit new requests get 429 with
Retry-After / RESOURCE_EXHAUSTED with RetryInfo and a Status body, before their body is read; above
the limit the queue is refused too; batches shrink to the memory left; below it again, everything is
accepted. The memory figure is injected, so nothing here depends on timing or on this machine.
The measured behaviour at five times the sustainable rate is bench/soak.py --overload."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest
from collector_support import ControlledExporter, RunningCollector
from forewarn.collector.memory import MIB, MemoryGuard, anonymous_resident_bytes
from google.rpc import error_details_pb2, status_pb2
from test_collector_protocol import traces

from forewarn.config import ConfigError, load_settings

PB = {"Content-Type": "application/x-protobuf"}
GRPC_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class Memory:
    """A settable memory figure for the guard."""

    def __init__(self, mib: float):
        self.mib = mib

    def __call__(self) -> int:
        return int(self.mib * MIB)


def started(settings, memory: Memory, exporter=None) -> RunningCollector:
    s = settings.model_copy(deep=True)
    s.collector.memory_limit_mib, s.collector.memory_spike_limit_mib = 500, 100
    rc = RunningCollector(s, exporter or ControlledExporter())
    guard = rc.service.pipeline.memory
    assert guard is not None
    guard.reader, guard.interval_s = memory, 0.01
    return rc


def wait_until(cond, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s  # a liveness bound, not a timing assertion
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_above_the_soft_limit_new_requests_are_refused_as_retryable_and_accepted_again_below(settings):
    memory = Memory(200)
    exp = ControlledExporter()
    with started(settings, memory, exp) as svc, ThreadPoolExecutor(4) as pool:
        http = httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", timeout=60)
        channel = grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}")
        export = channel.unary_unary(GRPC_TRACES)
        assert http.post("/v1/traces", content=traces(2), headers=PB).status_code == 200

        memory.mib = 420  # over 500 - 100, but nothing waits: an engine spike, requests still accepted
        wait_until(lambda: svc.pipeline.memory.over_soft, "the guard sees the memory")
        assert http.post("/v1/traces", content=traces(2), headers=PB).status_code == 200

        memory.mib = 200
        wait_until(lambda: not svc.pipeline.memory.over_soft, "the guard sees memory fall")
        exp.gate.clear()  # the collector falls behind: one batch in its insert, one request waiting
        lane = svc.pipeline._lanes["traces"]
        pending = [pool.submit(http.post, "/v1/traces", content=traces(1), headers=PB)]
        wait_until(lambda: svc.pipeline.queued_requests == 1 and not lane.queue, "first taken")
        pending.append(pool.submit(http.post, "/v1/traces", content=traces(1), headers=PB))
        wait_until(lambda: lane.queue, "second waiting")
        memory.mib = 420
        wait_until(lambda: svc.pipeline.memory.over_soft, "the guard sees the memory")
        r = http.post("/v1/traces", content=traces(2), headers=PB)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.headers["connection"] == "close"  # refused before its body was read
        st = status_pb2.Status.FromString(r.content)
        assert st.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and "memory" in st.message
        with pytest.raises(grpc.RpcError) as err:
            export(traces(2), timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = dict(err.value.trailing_metadata())["grpc-status-details-bin"]
        info = error_details_pb2.RetryInfo()
        assert status_pb2.Status.FromString(details).details[0].Unpack(info)
        assert info.retry_delay.seconds >= 1
        assert http.get("/healthz").status_code == 200  # alive, just refusing

        memory.mib = 250  # load dropped: the collector recovers by itself
        exp.gate.set()
        assert [f.result().status_code for f in pending] == [200, 200]
        wait_until(lambda: not svc.pipeline.memory.over_soft, "the guard sees memory fall")
        assert http.post("/v1/traces", content=traces(2), headers=PB).status_code == 200
        assert export(traces(2), timeout=30) is not None
        channel.close()


def test_above_the_limit_the_queue_is_refused_and_what_is_being_inserted_is_committed(settings):
    memory = Memory(200)
    exp = ControlledExporter()
    exp.gate.clear()  # the first batch hangs in its insert; the next requests queue behind it
    with started(settings, memory, exp) as svc:
        url = f"http://127.0.0.1:{svc.http_port}/v1/traces"
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(httpx.post, url, content=traces(1), headers=PB, timeout=60)
            wait_until(lambda: svc.pipeline.queued_requests == 1, "first request in its insert")
            wait_until(lambda: not any(lane.queue for lane in svc.pipeline._lanes.values()), "batch taken")
            queued = [
                pool.submit(httpx.post, url, content=traces(1), headers=PB, timeout=60) for _ in range(3)
            ]
            wait_until(lambda: svc.pipeline.queued_requests == 4, "three requests queued")
            memory.mib = 520  # over the limit itself
            assert [f.result().status_code for f in queued] == [429, 429, 429]
            memory.mib = 200
            exp.gate.set()
            assert first.result().status_code == 200
    assert len(exp.batches) == 1 and len(exp.batches[0][1]) == 1


def test_batches_shrink_to_the_memory_left(settings):
    """With room for less than one request per insert, requests are committed one per insert."""
    req = traces(50)
    memory = Memory(200)
    exp = ControlledExporter()
    exp.gate.clear()
    with started(settings, memory, exp) as svc:
        guard = svc.pipeline.memory
        guard.soft = 1 << 40  # keep accepting: this is about batch sizes
        memory.mib = 499.99
        wait_until(lambda: guard.used == memory(), "the guard sees the memory")
        assert guard.batch_budget(1 << 30) < len(req)
        url = f"http://127.0.0.1:{svc.http_port}/v1/traces"
        with ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(httpx.post, url, content=req, headers=PB, timeout=60) for _ in range(5)]
            wait_until(lambda: svc.pipeline.queued_requests == 5, "five requests pending")
            exp.gate.set()
            assert [f.result().status_code for f in futures] == [200] * 5
    assert sum(len(b[1]) for b in exp.batches) == 5
    assert all(len(b[1]) == 1 for b in exp.batches[1:])  # the first may have been taken before


def test_a_process_already_over_the_limit_gets_room_and_a_warning(caplog):
    """forewarn up (router, flows, Prefect) or a test runner hold memory before the collector starts."""
    import asyncio

    guard = MemoryGuard(500, 100, reader=Memory(700))

    async def run() -> None:
        guard.start()
        await guard.stop()

    asyncio.run(run())
    assert guard.limit == (700 + 100) * MIB + 128 * MIB and not guard.over_soft
    assert "memory limit raised" in caplog.text


def test_memory_figure_and_config() -> None:
    assert anonymous_resident_bytes() > 10 * MIB  # this very process
    s = load_settings()
    assert (s.collector.memory_limit_mib, s.collector.memory_spike_limit_mib) == (500, 100)
    with pytest.raises(ConfigError, match="memory_spike_limit_mib"):
        load_settings(overrides={"collector": {"memory_limit_mib": 100, "memory_spike_limit_mib": 100}})
    assert load_settings(overrides={"collector": {"memory_limit_mib": 0}}).collector.memory_limit_mib == 0
