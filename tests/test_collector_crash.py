"""kill -9 of ``forewarn collector --storage chdb://D --grpc-port P --http-port P`` (the direct path)
under load from real OpenTelemetry SDK exporters with retries: nothing acknowledged is lost and
nothing is stored twice, including batches whose client re-sent them because the collector died
after committing and before answering. The harness is ``bench/kill_harness.py`` (20 cycles there)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import kill_harness


def test_a_batch_resent_to_a_fresh_process_after_its_answer_was_lost_is_stored_once(tmp_path):
    """The crash window itself, made deterministic: the batch is committed, the collector is killed,
    and the client's exporter sends the very same spans again to the next process."""
    import os

    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
    from opentelemetry.sdk.trace.export import SpanExportResult

    env = {**os.environ, "FOREWARN_DATA_DIR": str(tmp_path)}
    collector = kill_harness.Collector(tmp_path, env)
    collector.start()
    try:
        http = Http(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces", timeout=30)
        grpc = Grpc(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, timeout=30)
        by_http, by_grpc = kill_harness.make_spans(0, 5), kill_harness.make_spans(100, 5)
        assert http.export(by_http) == SpanExportResult.SUCCESS
        assert grpc.export(by_grpc) == SpanExportResult.SUCCESS
        collector.kill9()  # as if it died before the answers went out
        collector.start()
        assert http.export(by_http) == SpanExportResult.SUCCESS
        assert grpc.export(by_grpc) == SpanExportResult.SUCCESS
        assert http.export(kill_harness.make_spans(200, 5)) == SpanExportResult.SUCCESS
        http.shutdown()
        grpc.shutdown()
    finally:
        assert collector.stop() == 0
    stored = kill_harness.stored_uids(collector.store, env)
    assert stored == {u: 1 for u in [*range(5), *range(100, 105), *range(200, 205)]}
    assert collector.recognised_resends() >= 2  # an SDK retry of a re-send counts again


@pytest.mark.slow  # about a minute: three kill -9 cycles under load, each restart migrating and loading
def test_kill_9_under_load_loses_nothing_and_stores_nothing_twice(tmp_path):
    verdict = kill_harness.run(tmp_path, cycles=3, clients=4, spans_per_batch=20, batches_between=5, seed=7)
    print(f"\n{verdict.line()}")
    assert not verdict.lost, f"lost {len(verdict.lost)} acknowledged spans, e.g. {verdict.lost[:10]}"
    assert not verdict.duplicated, f"stored twice: {list(verdict.duplicated.items())[:10]}"
    assert verdict.acknowledged >= 4 * 20 * 5  # the load did run between the kills
