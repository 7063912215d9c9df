"""The README's five-minute tour, driven as written, so the README cannot drift from the product.

The commands come from the code blocks between ``<!-- section:tour -->`` markers, in order:
start, send with the SDK, send with curl, read back (query and metrics), stop. They run in a
fresh directory whose ``.venv`` links to this checkout's environment, so ``.venv/bin/forewarn``
and ``.venv/bin/python`` work as written and ``./data`` is the default data directory.

Substitutions, and only these:
- ``make up`` (whose Makefile target runs ``$(VENV)/bin/forewarn up`` after installing) is run as
  ``.venv/bin/forewarn up --grpc-port 0 --http-port 0 --alerts-listen 127.0.0.1:0``: free ports,
  so the test never collides with anything on the machine;
- ``localhost:4317`` and ``localhost:4318`` become the ports the running forewarn chose, read
  from its discovery file ``data/forewarn-running.json``;
- "Stop with Ctrl-C" is a SIGINT.
The ``# ...`` lines under a command are its expected output: JSON lines are compared on every
field that does not vary between runs (ids and durations do), other lines must appear.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from forewarn import discovery
from tests.test_up import wait_until

ROOT = Path(__file__).resolve().parent.parent
VOLATILE = {"TraceId", "SpanId", "Duration", "Timestamp"}


def tour_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- section:tour -->(.*?)<!-- /section:tour -->", text, re.S)
    assert m, "README.md has no <!-- section:tour --> section"
    return re.findall(r"```(\w*)\n(.*?)```", m.group(1), re.S)


def commands(block: str) -> list[tuple[str, list[str]]]:
    """Shell commands (continuation lines joined) with the ``# expected`` lines under each."""
    out: list[tuple[str, list[str]]] = []
    pending = ""
    for line in block.splitlines():
        if not pending and line.startswith("#"):
            if out:
                out[-1][1].append(line[1:].strip())
            continue
        if not pending and not line.strip():
            continue
        pending += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on on the next line
            continue
        out.append((pending.rstrip("\n"), []))
        pending = ""
    assert not pending, pending
    return out


def check_expected(stdout: str, expected: list[str]) -> None:
    want = [e for e in expected if e.startswith("{")]
    if want:
        got = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]

        def stable(rows: list[dict]) -> list[str]:
            return sorted(
                json.dumps({k: v for k, v in r.items() if k not in VOLATILE}, sort_keys=True) for r in rows
            )

        expect_rows = [json.loads(e.split("   ")[0]) for e in want]
        assert stable(got) == stable(expect_rows), (stdout, want)
        assert all(sorted(g) == sorted(expect_rows[0]) for g in got)  # the same columns, too


def test_the_readme_tour_works_as_written(tmp_path: Path) -> None:
    blocks = tour_blocks()
    langs = [lang for lang, _ in blocks]
    assert langs == ["sh", "python", "sh", "sh"], langs
    start, sdk, curl, read_back = (b for _, b in blocks)
    assert start.split("#")[0].strip() == "make up", start
    assert "$(VENV)/bin/forewarn up" in (ROOT / "Makefile").read_text().split("\nup:")[1].split("\n\n")[0]

    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOREWARN_", "OTEL_"))}
    env["FOREWARN_CONFIG"] = ""
    up = subprocess.Popen(
        [
            ".venv/bin/forewarn",
            "up",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--alerts-listen",
            "127.0.0.1:0",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        info = wait_until(lambda: discovery.read(tmp_path / "data"), timeout=240)
        grpc_port = info["collector"]["grpc"].rsplit(":", 1)[1]
        http_port = info["collector"]["http"].rsplit(":", 1)[1]

        def ported(text: str) -> str:
            return text.replace("localhost:4317", f"localhost:{grpc_port}").replace(
                "localhost:4318", f"localhost:{http_port}"
            )

        def sh(command: str) -> str:
            done = subprocess.run(
                ["bash", "-c", ported(command)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            return done.stdout

        (tmp_path / "tour.py").write_text(ported(sdk))
        sh(".venv/bin/python tour.py")
        for command, expected in commands(curl):
            out = sh(command)
            assert out.strip() == expected[0].split()[0], (out, expected)  # "{}": everything accepted
        for command, expected in commands(read_back):
            out = sh(command)
            assert out.strip(), command
            check_expected(out, expected)
            if "otel_logs" in command:
                assert "hello from curl" in out
    finally:
        up.send_signal(signal.SIGINT)  # "Stop with Ctrl-C"
        log = up.communicate(timeout=180)[0]
    assert up.returncode == 0, log
    assert not discovery.path(tmp_path / "data").exists()  # the data directory was released
