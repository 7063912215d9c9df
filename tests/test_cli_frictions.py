"""What a new user ran into (issue 12), one test each, named after what they saw."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from forewarn import discovery
from forewarn.cli import app
from tests.test_up import wait_until

FOREWARN = [sys.executable, "-m", "forewarn.cli"]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("FOREWARN_")}


class FakeRouter:
    """A real HTTP server on 127.0.0.1 answering the Alertmanager silences API; it records which
    router was asked, and with which token."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path, self.headers.get("Authorization")))
                if self.path != "/api/v2/silences":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps(
                    [
                        {
                            "id": "4f1c5a7e-0000-4000-8000-000000000001",
                            "status": {"state": "active"},
                            "matchers": [
                                {"name": "alertname", "value": "Disk", "isRegex": False, "isEqual": True}
                            ],
                            "endsAt": "2030-01-01T00:00:00.000Z",
                            "createdBy": "alice",
                            "comment": "disk swap",
                        }
                    ]
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def router():
    r = FakeRouter()
    yield r
    r.close()


def invoke(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(
        app, args, env={**{k: None for k in os.environ if k.startswith("FOREWARN_")}, **(env or {})}
    )


# -- commands silently talked to the wrong place ---------------------------------------------------


def test_silence_list_honours_alerts_url_from_the_config_file(tmp_path, router) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"alerts:\n  url: {router.url}\n  token: from-the-file\n")
    res = invoke(["-c", str(cfg), "silence", "list", "--data-dir", str(tmp_path / "data")])
    assert res.exit_code == 0, res.output
    assert router.requests == [("GET", "/api/v2/silences", "Bearer from-the-file")]


def test_silence_list_has_a_header(tmp_path, router) -> None:
    res = invoke(["silence", "list", "--url", router.url, "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    header, row = res.output.splitlines()
    assert header.split() == ["ID", "STATE", "MATCHERS", "ENDS", "AUTHOR", "COMMENT"]
    assert row.split()[:3] == ["4f1c5a7e-0000-4000-8000-000000000001", "active", '{alertname="Disk"}']
    assert header.index("STATE") == row.index("active")  # columns line up under the header


def test_commands_find_the_router_of_the_running_forewarn_through_the_discovery_file(
    tmp_path, router
) -> None:
    data = tmp_path / "data"
    published = discovery.publish(data, {"command": "up", "router": {"url": router.url, "token": "run-tok"}})
    try:
        res = invoke(["silence", "list", "--data-dir", str(data)])
        assert res.exit_code == 0, res.output
        assert router.requests[-1] == ("GET", "/api/v2/silences", "Bearer run-tok")
        res = invoke(["remediation", "list", "--data-dir", str(data)])
        assert res.exit_code == 1 and "HTTP 404" in res.output
        assert router.requests[-1] == ("GET", "/api/forewarn/v1/remediations", "Bearer run-tok")
    finally:
        published.remove()
    assert not discovery.path(data).exists()


def test_forewarn_alerts_token_with_one_underscore_still_works_with_a_deprecation_warning(
    tmp_path, router
) -> None:
    out = subprocess.run(
        [*FOREWARN, "silence", "list", "--url", router.url, "--data-dir", str(tmp_path)],
        env={**CLEAN_ENV, "FOREWARN_ALERTS_TOKEN": "old-name"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert router.requests[-1][2] == "Bearer old-name"
    assert "FOREWARN_ALERTS_TOKEN is deprecated; use FOREWARN_ALERTS__TOKEN" in out.stderr
    out = subprocess.run(
        [*FOREWARN, "silence", "list", "--url", router.url, "--data-dir", str(tmp_path)],
        env={**CLEAN_ENV, "FOREWARN_ALERTS__TOKEN": "new-name"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "deprecated" not in out.stderr
    assert router.requests[-1][2] == "Bearer new-name"


def test_a_stale_discovery_file_from_a_dead_process_is_recognised(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    discovery.write_private_json(
        discovery.path(tmp_path), {"pid": dead.pid, "command": "up", "router": {"url": "http://127.0.0.1:1"}}
    )
    assert discovery.read(tmp_path) is None
    assert discovery.read(tmp_path, include_stale=True)["stale"] is True
    discovery.check_free(tmp_path)  # a start on this directory is not refused
    published = discovery.publish(tmp_path, {"command": "collector"})
    assert discovery.read(tmp_path)["pid"] == os.getpid()
    published.remove()


def test_up_on_a_busy_router_port_fails_clearly_unless_asked_to_pick_a_free_one(tmp_path) -> None:
    """`up` moved its router to a random free port without saying where when 9093 was busy; the
    silences then went to whatever listened on 9093. Then report, grafana check and query all
    reach the store it holds (they failed with chDB's "Cannot lock file"), and Ctrl-C removes the
    discovery file."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    busy_addr = f"127.0.0.1:{busy.getsockname()[1]}"
    data = tmp_path / "data"
    args = [*FOREWARN, "up", "--data-dir", str(data), "--grpc-port", "0", "--http-port", "0", "--no-flows"]
    env = {**CLEAN_ENV, "FOREWARN_CONFIG": ""}
    try:
        failed = subprocess.run(
            [*args, "--alerts-listen", busy_addr], env=env, capture_output=True, text=True
        )
        assert failed.returncode == 1
        assert f"the alert router cannot listen on {busy_addr}" in failed.stderr
        assert "--alerts-listen-fallback" in failed.stderr and "Traceback" not in failed.stderr
        assert not discovery.path(data).exists()
        proc = subprocess.Popen(
            [*args, "--alerts-listen", busy_addr, "--alerts-listen-fallback"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            info = wait_until(lambda: discovery.read(data), timeout=180)
            assert oct(discovery.path(data).stat().st_mode & 0o777) == "0o600"
            router_url = info["router"]["url"]
            assert router_url != f"http://{busy_addr}"
            assert httpx.get(router_url + "/-/ready").status_code == 200
            cli = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True}
            second = subprocess.run([*args, "--alerts-listen", "127.0.0.1:0"], **cli)
            assert second.returncode == 1 and "already runs on" in second.stderr
            # the other commands run in this process: they reach the store through the running one
            listed = invoke(["silence", "list", "--data-dir", str(data)])
            assert listed.exit_code == 0 and "no active or pending silences at " + router_url in listed.output
            q = invoke(["query", "--data-dir", str(data), "-f", "json", "SELECT 1 AS one"])
            assert q.exit_code == 0 and json.loads(q.output) == {"one": 1}, q.output
            check = invoke(["grafana", "check", "--data-dir", str(data), "--since", "1h"])
            assert check.exit_code == 0 and "lock" not in check.output.lower(), check.output
            out = tmp_path / "report"
            rep = invoke(["report", "--data-dir", str(data), "--since", "1h", "-o", str(out)])
            assert rep.exit_code == 0 and (out / "index.html").exists(), rep.output
        finally:
            proc.send_signal(signal.SIGINT)
            log = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, log
        assert "is busy, listening on " + router_url in log  # it says where
        assert not discovery.path(data).exists()
    finally:
        busy.close()


def test_a_second_ctrl_c_forces_the_exit(monkeypatch) -> None:
    """Ctrl-C twice did not force an exit of `up`/`collector`: the first drains, the second exits."""
    from forewarn import shutdown

    forced: list[bool] = []
    monkeypatch.setattr(shutdown, "_force_exit", lambda: forced.append(True))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        shutdown.on_stop_signals(loop, stop)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.wait_for(stop.wait(), 30)
            assert not forced  # the first one drains
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(3000):
                if forced:
                    break
                await asyncio.sleep(0.01)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    asyncio.run(main())
    assert forced == [True]


# -- configuration that explains itself -------------------------------------------------------------


def test_config_errors_name_the_key_in_plain_words_and_suggest_the_right_one(tmp_path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("collector:\n  grpc_prot: 4317\n  http_port: lots\nstorag:\n  database: x\n")
    res = invoke(["-c", str(cfg), "config", "show"])
    assert res.exit_code == 2
    assert "unknown key `grpc_prot` in section `collector`; did you mean `grpc_port`?" in res.output
    assert "unknown section `storag`; did you mean `storage`?" in res.output
    assert "collector.http_port: must be a whole number, got 'lots'" in res.output
    assert "Extra inputs are not permitted" not in res.output and "Input should be" not in res.output


def test_a_misspelt_section_in_an_environment_variable_is_an_error(tmp_path) -> None:
    res = invoke(["config", "show"], env={"FOREWARN_COLLECTR__GRPC_PORT": "14317", "FOREWARN_CONFIG": ""})
    assert res.exit_code == 2
    assert "FOREWARN_COLLECTR__GRPC_PORT" in res.output and "FOREWARN_COLLECTOR__GRPC_PORT" in res.output


def test_every_config_problem_is_reported_at_once(tmp_path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("collector:\n  grpc_prot: 1\nflows:\n  shards: 0\n")
    env = {"FOREWARN_CONFIG": "", "FOREWARN_KAFKA__PARTITONS": "3", "FOREWARN_LOG_LEVEL": "LOUD"}
    res = invoke(["-c", str(cfg), "config", "show"], env=env)
    assert res.exit_code == 2
    problems = [line for line in res.output.splitlines() if line.startswith("  - ")]
    assert len(problems) == 4, res.output
    assert any("FOREWARN_KAFKA__PARTITONS" in p and "FOREWARN_KAFKA__PARTITIONS" in p for p in problems)
    assert any("log_level: must be one of DEBUG, INFO, WARNING, ERROR" in p for p in problems)


ROUTER_REFUSES = """
route: {receiver: ops, foo: 1, routes: [{receiver: nobody}]}
receivers:
  - name: ops
    webhook_configs: [{url: "not a url"}]
"""

HOOKS_REFUSED_AT_START = """
route: {receiver: ops}
receivers: [{name: ops}]
remediations:
  allowlist: ["http://127.0.0.1:8080/"]
  secret_env: FOREWARN_TEST_UNSET_SECRET
  hooks:
    - name: restart
      matchers: ['alertname="Down"']
      url: http://127.0.0.1:9999/restart
"""


def test_check_config_refuses_what_the_router_refuses_at_start(tmp_path) -> None:
    """check-config passed configs the router then refused (an unset secret_env, a hook URL
    outside the allowlist, `url: not a url`), and named problems a few at a time."""
    from forewarn.alerts.config import AlertsConfigError
    from forewarn.alerts.server import AlertRouter

    for text, expected in (
        (
            ROUTER_REFUSES,
            [
                "route.foo: unsupported key",
                "receivers[0].webhook_configs[0].url: unsupported scheme",
                "route.routes[0]: undefined receiver 'nobody' used in route",  # all at once
            ],
        ),
        (
            HOOKS_REFUSED_AT_START,
            [
                "environment variable FOREWARN_TEST_UNSET_SECRET is not set",
                "remediations.hooks[0].url: http://127.0.0.1:9999/restart is outside the allowlist",
            ],
        ),
    ):
        f = tmp_path / "am.yml"
        f.write_text(text)
        res = invoke(["alerts", "check-config", str(f)])
        assert res.exit_code == 1
        for line in expected:
            assert line in res.output, res.output
        router = AlertRouter(f, data_dir=tmp_path / "alerts", listen="127.0.0.1:0")
        with pytest.raises(AlertsConfigError) as e:
            asyncio.run(router.start())
        assert all(line in str(e.value) for line in expected)


def test_adding_remediations_on_reload_says_a_restart_is_needed(tmp_path, caplog) -> None:
    """Adding `remediations:` needed a restart that nothing mentioned (reload answered 500)."""
    from forewarn.alerts.server import AlertRouter

    f = tmp_path / "am.yml"
    f.write_text("route: {receiver: ops}\nreceivers: [{name: ops}]\n")

    async def main() -> httpx.Response:
        router = AlertRouter(
            f, data_dir=tmp_path / "alerts", storage_dsn="chdb://memory", listen="127.0.0.1:0"
        )
        await router.start()
        try:
            f.write_text(f.read_text() + "remediations:\n  allowlist: []\n")
            async with httpx.AsyncClient() as c:
                return await c.post(f"http://127.0.0.1:{router.port}/-/reload")
        finally:
            await router.stop()

    with caplog.at_level("WARNING"):
        r = asyncio.run(main())
    assert r.status_code == 409
    assert "needs a restart of the router" in r.json()
    assert any("needs a restart" in rec.getMessage() for rec in caplog.records)


# -- CLI output ------------------------------------------------------------------------------------


def _commands(group, prefix=()):
    import click

    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


def test_help_fits_80_columns_without_cut_words_or_bool_metavars() -> None:
    import typer.main

    root = typer.main.get_command(app)
    for path in [(), *_commands(root)]:
        res = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert res.exit_code == 0, (path, res.output)
        for line in res.output.splitlines():
            assert len(line) <= 80, (path, line)
        listing = res.output.partition("\nCommands:\n")[2]
        assert not any(line.endswith("...") for line in listing.splitlines()), (
            path,
            listing,
        )  # cut summaries
        assert "<bool>" not in res.output and "…" not in res.output, (path, res.output)


def test_every_command_that_reads_data_or_talks_to_the_router_takes_data_dir() -> None:
    import typer.main

    root = typer.main.get_command(app)
    needs = [
        ("query",), ("migrate",), ("up",), ("collector",), ("report",), ("demo",), ("config", "show"),
        ("grafana", "check"), ("grafana", "push"), ("silence", "add"), ("silence", "list"),
        ("silence", "expire"), ("remediation", "list"), ("remediation", "approve"), ("remediation", "deny"),
        ("flows", "status"), ("flows", "score"), ("flows", "train"), ("anomaly", "list"), ("anomaly", "mark"),
        ("backfill",), ("backtest",), ("alerts",), ("ingest",), ("slo", "status"), ("slo", "run"),
    ]  # fmt: skip
    for path in needs:
        cmd = root
        for name in path:
            cmd = cmd.commands[name]
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert "--data-dir" in opts, path


def test_discovery_file_is_private_and_names_every_endpoint(tmp_path) -> None:
    f = discovery.publish(tmp_path, {"command": "up"})
    try:
        assert f.path.stat().st_mode & 0o777 == 0o600
        assert {"pid", "store", "router", "collector", "clickhouse_http"} <= set(
            json.loads(f.path.read_text())
        )
    finally:
        f.remove()
    assert not Path(f.path).exists()
