"""kill -9 harness of the direct path: real OpenTelemetry SDK exporters with retries against
``forewarn collector --storage chdb://D --grpc-port P --http-port P``, killed with SIGKILL again
and again; afterwards every acknowledged span must be stored exactly once.

Clients (OTLP/HTTP and OTLP/gRPC span exporters of the OpenTelemetry SDK) export batches of spans,
each span with a unique ``uid`` attribute, and export a batch again (the same spans, so the same
bytes) until the collector acknowledges it. A batch whose answer was lost when the collector died
after committing it is re-sent to the next process; the collector must recognise it.

The kills follow progress, not a clock: after each (re)start the harness waits until the clients
got ``--batches-between`` more acknowledgements, then waits a random 0-``--jitter-s`` seconds
(seeded) and kills. The verdict counts stored rows only, so it does not depend on timing.

    .venv/bin/python bench/kill_harness.py [--cycles 20] [--clients 4] [--spans 20] [--seed 1]
    FOREWARN_COLLECTOR__DEDUP_WINDOW_S=0 .venv/bin/python bench/kill_harness.py   # negative control

Prints acknowledged spans, batches sent more than once, re-sends the collector recognised as
already stored (from its log), lost and duplicated spans; exits 1 on any loss or duplicate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forewarn.net import free_port

FOREWARN = str(Path(sys.executable).parent / "forewarn")
RESENT_LOG = re.compile(r"(\d+) re-sent request\(s\) already stored")


class Collector:
    """``forewarn collector`` on fixed ports and one store, restartable with the same command line."""

    def __init__(self, data: Path, env: dict[str, str]):
        self.data, self.env = data, env
        self.store = data / "chdb"
        self.grpc_port, self.http_port = free_port(), free_port()
        self.log = data / "collector.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def args(self) -> list[str]:
        return [
            *("collector", "--storage", f"chdb://{self.store}"),
            *("--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port)),
        ]

    def start(self, timeout_s: float = 120) -> None:
        import httpx

        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [FOREWARN, *self.args], stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"collector exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"collector not ready after {timeout_s:.0f} s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def recognised_resends(self) -> int:
        return sum(int(n) for n in RESENT_LOG.findall(self.log.read_text(errors="replace")))


def make_spans(first_uid: int, n: int) -> list[Any]:
    """Real SDK spans with uids ``first_uid ..``, finished and kept for explicit (re-)export."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "kill-harness"}))
    tp.add_span_processor(SimpleSpanProcessor(mem))
    tracer = tp.get_tracer("kill-harness", "1.0")
    for uid in range(first_uid, first_uid + n):
        with tracer.start_as_current_span("work", attributes={"uid": uid, "payload": "x" * 64}):
            pass
    return list(mem.get_finished_spans())


@dataclass(eq=False)  # threads are dictionary keys in threading: identity hash
class Client(threading.Thread):
    """One SDK exporter exporting unique batches, each until it is acknowledged."""

    transport: str
    endpoint: str
    first_uid: int
    spans_per_batch: int
    stop_event: threading.Event
    acked: set[int] = field(default_factory=set)
    batches: int = 0
    resent_batches: int = 0  # batches exported more than once (SDK retries included)

    def __post_init__(self) -> None:
        super().__init__(daemon=True, name=f"client-{self.transport}-{self.first_uid}")

    def exporter(self) -> Any:
        if self.transport == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

            return Grpc(endpoint=self.endpoint, insecure=True, timeout=5)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

        return Http(endpoint=self.endpoint, timeout=5)

    def run(self) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        exporter = self.exporter()
        uid = self.first_uid
        while not self.stop_event.is_set():
            spans = make_spans(uid, self.spans_per_batch)
            attempts = 1
            while exporter.export(spans) != SpanExportResult.SUCCESS:  # the SDK retried inside, too
                attempts += 1
                time.sleep(0.2)
            self.acked.update(range(uid, uid + self.spans_per_batch))
            self.batches += 1
            self.resent_batches += attempts > 1
            uid += self.spans_per_batch
        exporter.shutdown()


def stored_uids(store: Path, env: dict[str, str]) -> Counter[int]:
    out = subprocess.run(
        [
            FOREWARN,
            "query",
            "--storage",
            f"chdb://{store}",
            "--format",
            "json",
            "SELECT toInt64(SpanAttributes['uid']) AS uid, count() AS n FROM otel.otel_traces GROUP BY uid",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    rows = (json.loads(line) for line in out.stdout.splitlines() if line.strip())
    return Counter({int(r["uid"]): int(r["n"]) for r in rows})


@dataclass
class Verdict:
    acknowledged: int
    lost: list[int]
    duplicated: dict[int, int]
    batches: int
    resent_batches: int
    recognised: int
    kills: int

    def line(self) -> str:
        return (
            f"kills {self.kills}; acknowledged {self.acknowledged} spans in {self.batches} batches; "
            f"batches exported more than once {self.resent_batches}; re-sends the collector found "
            f"already stored {self.recognised}; lost {len(self.lost)}; duplicated {len(self.duplicated)}"
        )


def run(
    data: Path,
    cycles: int,
    clients: int = 4,
    spans_per_batch: int = 20,
    batches_between: int = 6,
    jitter_s: float = 0.5,
    seed: int = 1,
    env: dict[str, str] | None = None,
    say: Any = print,
) -> Verdict:
    """Kill the collector ``cycles`` times under load; count what is stored for what was acknowledged."""
    env = {**(env or os.environ), "FOREWARN_DATA_DIR": str(data)}
    rng = random.Random(seed)
    collector = Collector(data, env)
    collector.start()
    stop = threading.Event()
    workers = [
        Client(
            transport,
            f"127.0.0.1:{collector.grpc_port}"
            if transport == "grpc"
            else f"http://127.0.0.1:{collector.http_port}/v1/traces",
            first_uid=k * 100_000_000,
            spans_per_batch=spans_per_batch,
            stop_event=stop,
        )
        for k, transport in enumerate(("http", "grpc") * ((clients + 1) // 2))
    ][:clients]
    for w in workers:
        w.start()

    def wait_progress(n: int, timeout_s: float = 300) -> None:
        want = sum(w.batches for w in workers) + n
        deadline = time.monotonic() + timeout_s
        while sum(w.batches for w in workers) < want:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no progress: {sum(w.batches for w in workers)} of {want} batches")
            time.sleep(0.05)

    try:
        for cycle in range(cycles):
            wait_progress(batches_between)
            time.sleep(rng.uniform(0, jitter_s))
            collector.kill9()
            say(f"kill -9 #{cycle + 1} after {sum(w.batches for w in workers)} batches acknowledged")
            collector.start()
        wait_progress(batches_between)
    finally:
        stop.set()
        for w in workers:
            w.join(300)
        code = collector.stop()
    if code != 0:
        raise RuntimeError(f"collector exited with {code} on SIGTERM")
    acked = set().union(*(w.acked for w in workers))
    stored = stored_uids(collector.store, env)
    return Verdict(
        acknowledged=len(acked),
        lost=sorted(acked - set(stored)),
        duplicated={u: n for u, n in stored.items() if n > 1},
        batches=sum(w.batches for w in workers),
        resent_batches=sum(w.resent_batches for w in workers),
        recognised=collector.recognised_resends(),
        kills=cycles,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=20, help="kill -9 cycles")
    ap.add_argument("--clients", type=int, default=4, help="SDK exporters, alternately HTTP and gRPC")
    ap.add_argument("--spans", type=int, default=20, help="spans per exported batch")
    ap.add_argument("--batches-between", type=int, default=6, help="acknowledged batches between kills")
    ap.add_argument("--jitter-s", type=float, default=0.5, help="random extra wait before each kill")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the store and the collector's log")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="forewarn-kill-"))
    try:
        t0 = time.monotonic()
        v = run(data, args.cycles, args.clients, args.spans, args.batches_between, args.jitter_s, args.seed)
        print(f"{v.line()} ({time.monotonic() - t0:.0f} s)")
        if v.lost or v.duplicated:
            print(
                f"lost uids (first 10): {v.lost[:10]}; duplicated (first 10): {list(v.duplicated.items())[:10]}"
            )
            sys.exit(1)
    finally:
        if args.keep:
            print(f"store and log kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
