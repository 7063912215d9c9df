"""Start, deploy and stop the five shop services as OS processes, each under its language's
OpenTelemetry auto-instrumentation, configured only through ``OTEL_*`` environment variables
(as a user would): OTLP over gRPC or HTTP to forewarn, a chosen HTTP semantic convention, short
export intervals.

>>> env = otel_env("payments", OtelOptions(endpoint="http://127.0.0.1:4317", semconv="dup"))
>>> env["OTEL_SERVICE_NAME"], env["OTEL_SEMCONV_STABILITY_OPT_IN"], env["OTEL_EXPORTER_OTLP_PROTOCOL"]
('payments', 'http/dup', 'grpc')
>>> "OTEL_SEMCONV_STABILITY_OPT_IN" in otel_env("payments", OtelOptions(endpoint="x", semconv="old"))
False
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from forewarn.net import free_port
from forewarn.testbed.service import SERVICES

log = logging.getLogger(__name__)
Semconv = Literal["stable", "old", "dup"]
SEMCONV_ENV = {"stable": "http", "dup": "http/dup", "old": None}
# who calls whom: each service gets TESTBED_URL_<DEP> for these
DEPENDENCIES = {
    "frontend": ("catalog", "checkout"),
    "checkout": ("catalog", "inventory", "payments"),
    "inventory": ("catalog",),
    "payments": (),
    "catalog": (),
}
START_ORDER = ("catalog", "payments", "inventory", "checkout", "frontend")


@dataclass
class OtelOptions:
    """What the services' OpenTelemetry SDKs are told."""

    endpoint: str  # OTLP base URL: http://127.0.0.1:<grpc port> or http://127.0.0.1:<http port>
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    semconv: Semconv = "stable"
    metric_interval_ms: int = 5000
    batch_delay_ms: int = 5000  # spans and logs (the SDK default)
    environment: str = "testbed"


def otel_env(service: str, o: OtelOptions, version: str = "1.0.0") -> dict[str, str]:
    """The ``OTEL_*`` variables of one service, identical in meaning for Python and Node.js."""
    env = {
        "OTEL_SERVICE_NAME": service,
        "OTEL_RESOURCE_ATTRIBUTES": f"service.namespace=shop,service.version={version},"
        f"deployment.environment.name={o.environment}",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": o.protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": o.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": str(o.metric_interval_ms),
        # the JS SDK refuses to start metrics when the timeout exceeds the interval (default 30 s)
        "OTEL_METRIC_EXPORT_TIMEOUT": str(min(30000, o.metric_interval_ms)),
        "OTEL_BSP_SCHEDULE_DELAY": str(o.batch_delay_ms),
        "OTEL_BLRP_SCHEDULE_DELAY": str(o.batch_delay_ms),
        # Python: no spans for the fleet's health checks; the logging bridge on
        "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS": "healthz",
        "OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "true",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "sqlalchemy",  # applied to the engine (service.py)
        # Node.js: the instrumentations a web service has (the rest only add noise and start-up time)
        "OTEL_NODE_ENABLED_INSTRUMENTATIONS": "http,undici,express,runtime-node,winston,pino,bunyan",
        "OTEL_NODE_RESOURCE_DETECTORS": "env,host,os,process",
        "OTEL_LOG_LEVEL": "warn",  # SDK errors (exports failing, bad settings) reach the service's log
    }
    if SEMCONV_ENV[o.semconv]:
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = SEMCONV_ENV[o.semconv]
    return env


@dataclass
class Fleet:
    """The five services of one language; ``start()`` returns when all answer their health check."""

    workdir: Path
    otel: OtelOptions
    control: Path
    lang: Literal["py", "js"] = "py"
    seed: int = 1
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    _old: list[subprocess.Popen] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def command(self, name: str) -> list[str]:
        if self.lang == "js":
            from forewarn.testbed import node

            return node.command(name, self.ports[name])
        instrument = Path(sys.executable).parent / "opentelemetry-instrument"
        exe = str(instrument) if instrument.exists() else shutil.which("opentelemetry-instrument")
        if exe is None:
            raise RuntimeError(
                "opentelemetry-instrument not found: pip install 'forewarn' with its dependencies"
            )
        return [
            exe,
            sys.executable,
            "-m",
            "forewarn.testbed.service",
            "--name",
            name,
            "--port",
            str(self.ports[name]),
        ]

    def env(self, name: str, version: str, latency: str = "") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FOREWARN_"))}
        env.update(otel_env(name, self.otel, version))
        env.update(
            {
                "TESTBED_CONTROL": str(self.control),
                "TESTBED_SEED": str(self.seed),
                "TESTBED_VERSION": version,
                "TESTBED_LATENCY": latency,
                "TESTBED_DB": str(self.workdir / "catalog.db"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for dep in DEPENDENCIES[name]:
            env[f"TESTBED_URL_{dep.upper()}"] = self.url(dep)
        return env

    def _spawn(self, name: str, version: str, latency: str = "") -> subprocess.Popen:
        logfile = self.workdir / f"{name}-{version}.log"
        with logfile.open("ab") as out:  # the child keeps its own descriptor
            return subprocess.Popen(
                self.command(name), stdout=out, stderr=subprocess.STDOUT, env=self.env(name, version, latency),
                cwd=self.workdir, start_new_session=True,
            )  # fmt: skip

    def start(self, timeout_s: float = 180.0) -> Fleet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            self.ports.setdefault(name, free_port())
        for name in START_ORDER:
            self.versions[name] = "1.0.0"
            self.procs[name] = self._spawn(name, "1.0.0")
        for name in START_ORDER:
            self._wait_healthy(name, self.procs[name], timeout_s)
        return self

    def _wait_healthy(self, name: str, proc: subprocess.Popen, timeout_s: float) -> None:
        """Until ``proc`` itself answers: during a deploy two processes share the port."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                r = httpx.get(self.url(name) + "/healthz", timeout=2.0, trust_env=False)
                if r.status_code == 200 and r.json().get("pid") == proc.pid:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{name} not healthy after {timeout_s:.0f}s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        logfile = self.workdir / f"{name}-{self.versions.get(name, '1.0.0')}.log"
        return logfile.read_text(errors="replace")[-chars:] if logfile.exists() else "(no log)"

    def deploy(self, name: str, version: str, latency: str = "", timeout_s: float = 120.0) -> None:
        """A rolling deploy: the new version starts on the same port (SO_REUSEPORT), answers its
        health check, then the old one drains and stops (SIGTERM: in-flight requests finish and
        its SDK flushes). Returns once the old one is gone, so callers' pooled keep-alive
        connections to it are closed and the next request reaches the new version; requests
        that race the old one's shutdown may fail, as in any rolling deploy without retries.
        Node.js services take the deploy from the control file instead."""
        if self.lang == "js":
            return
        new = self._spawn(name, version, latency)
        self._wait_healthy(name, new, timeout_s)
        old = self.procs[name]
        self.procs[name], self.versions[name] = new, version
        old.terminate()
        self._old.append(old)
        try:
            old.wait(timeout_s)
        except subprocess.TimeoutExpired:
            old.kill()
            old.wait(5)

    def stop(self, timeout_s: float = 20.0) -> None:
        procs = [*self.procs.values(), *self._old]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + timeout_s
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *a: object) -> None:
        self.stop()
