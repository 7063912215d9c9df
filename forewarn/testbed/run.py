"""Run a scenario end to end and judge forewarn by its webhook notifications, as the held-out check:

    python -m forewarn.testbed.run --scenario ci          # ~4 min wall, what CI can afford
    python -m forewarn.testbed.run --scenario full        # ~17 min, the held-out check's shape
    python -m forewarn.testbed.run --scenario full --lang js --protocol http --semconv old

It starts ``forewarn up --data-dir D --grpc-port P --http-port P --alerts-config A`` as a
subprocess (the held-out check's command line) with an Alertmanager config whose webhook receiver
is a real HTTP server in this process, then the five services under OpenTelemetry
auto-instrumentation, then the users, and plays the scenario through the control file. At scale
< 1 forewarn's bucket and time windows are shortened by the same factor through ``FOREWARN_FLOWS__*``
environment variables (the command line stays the same). The table goes to stdout; the exit code
is 0 only when every fault was paged right and nothing else was.

``run_scenario()`` is the Python API the tests use.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from forewarn.net import free_port
from forewarn.testbed.control import Control
from forewarn.testbed.fleet import Fleet, OtelOptions, Semconv
from forewarn.testbed.judge import Verdict, judge
from forewarn.testbed.timeline import PRESETS, Scenario, control_state

# forewarn settings that are durations of event time: scaled with the scenario (default x scale)
SCALED_FLOWS_KEYS = (
    "step_s",
    "interval_s",
    "lateness_s",
    "correlation_window_s",
    "resolve_after_s",
    "persist_s",
)


MIN_LATENESS_S = 3.0


def scaled_forewarn_env(scale: float) -> dict[str, str]:
    """``FOREWARN_FLOWS__*`` overrides that shrink forewarn's time grid by ``scale`` (none at 1).

    >>> scaled_forewarn_env(0.2)["FOREWARN_FLOWS__STEP_S"]
    '2'
    >>> scaled_forewarn_env(1.0)
    {}
    """
    if scale == 1.0:
        return {}
    from forewarn.config import FlowsSettings

    fields = FlowsSettings.model_fields
    env = {
        f"FOREWARN_FLOWS__{k.upper()}": f"{fields[k].default * scale:g}"
        for k in SCALED_FLOWS_KEYS
        if k in fields
    }
    # The SDKs' export delay does not shrink below a second (batch_delay_ms), and a loaded
    # machine adds to it: a bucket must not close before its spans can have arrived.
    env["FOREWARN_FLOWS__LATENESS_S"] = f"{max(fields['lateness_s'].default * scale, MIN_LATENESS_S):g}"
    return env


def alertmanager_config(url: str, scale: float) -> str:
    """Every alert in its own group, so the judge measures forewarn and not the grouping."""
    wait, interval = max(0.5, 5 * scale), max(1.0, 10 * scale)
    return (
        "# written by forewarn.testbed.run: the on-call pager is the runner's webhook server\n"
        "route:\n  receiver: oncall\n  group_by: ['...']\n"
        f"  group_wait: {round(wait * 1000)}ms\n  group_interval: {round(interval * 1000)}ms\n  repeat_interval: 4h\n"
        f"receivers:\n  - name: oncall\n    webhook_configs:\n      - url: {url}/oncall\n        send_resolved: true\n"
    )


@dataclass
class RunOptions:
    scenario: Scenario
    workdir: Path
    lang: Literal["py", "js"] = "py"
    protocol: Literal["grpc", "http"] = "grpc"
    semconv: Semconv = "stable"
    seed: int = 1
    rate: float | None = None
    export_interval_ms: int | None = None  # metrics; spans and logs batch at the same delay
    metric_interval_ms: int | None = None  # metrics only (the SDKs' default is 60 s)
    forewarn_cmd: list[str] = field(default_factory=lambda: [sys.executable, "-m", "forewarn.cli"])
    forewarn_env: dict[str, str] = field(default_factory=dict)
    out: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


class Bed:
    """The services, the users and the scenario player, for any forewarn listening on OTLP ports
    (the runner's ``forewarn up`` subprocess, or the demo's embedded one)."""

    def __init__(self, o: RunOptions):
        self.o, self.s = o, o.scenario
        self.onsets: dict[int, float] = {}
        self.start = 0.0
        self.fleet: Fleet | None = None
        self.users: subprocess.Popen | None = None
        self._deploys: list[threading.Thread] = []
        self.control = Control(o.workdir / "control.json")

    def say(self, what: str) -> None:
        t = (time.time() - self.start) / self.s.scale if self.start else 0.0
        self.o.out(f"[{t:6.0f}s] {what}")

    def virtual_now(self) -> float:
        return (time.time() - self.start) / self.s.scale

    def start_services(self, grpc_port: int, http_port: int) -> None:
        o, s = self.o, self.s
        o.workdir.mkdir(parents=True, exist_ok=True)
        self.control.write(control_state(s, 0.0, time.time()))
        port = grpc_port if o.protocol == "grpc" else http_port
        otel = OtelOptions(
            endpoint=f"http://127.0.0.1:{port}",
            protocol="grpc" if o.protocol == "grpc" else "http/protobuf",
            semconv=o.semconv,
            metric_interval_ms=o.metric_interval_ms
            or o.export_interval_ms
            or max(1000, round(5000 * s.scale)),
            batch_delay_ms=o.export_interval_ms or max(200, round(5000 * s.scale)),
        )
        self.fleet = Fleet(o.workdir / "services", otel, self.control.path, lang=o.lang, seed=o.seed)
        t = time.monotonic()
        self.fleet.start()
        o.out(
            f"services up in {time.monotonic() - t:.1f}s ({o.lang}, OTLP {otel.protocol} to :{port}, semconv {o.semconv})"
        )
        cmd = [sys.executable, "-m", "forewarn.testbed.traffic", "--target", self.fleet.url("frontend"),
               "--control", str(self.control.path), "--rate", str(o.rate or s.base_rate), "--seed", str(o.seed),
               "--stats-s", "30"]  # fmt: skip
        with (o.workdir / "traffic.log").open("wb") as f:
            self.users = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)

    def play(self, on_tick: Callable[[], None] = lambda: None) -> None:
        """Run the scenario in real time: control file, deploys, onsets (the ground truth)."""
        s = self.s
        self.start = time.time()
        last_state: dict = {}
        announced: set[tuple[int, str]] = set()
        while (now := time.time()) < self.start + s.wall(s.duration_s):
            t = (now - self.start) / s.scale
            state = control_state(s, t, self.start)
            if state != last_state:
                self.control.write(state)
                last_state = state
            for i, e in enumerate(s.events):
                if t >= e.at_s and (i, "on") not in announced:
                    announced.add((i, "on"))
                    self.onsets[i] = t
                    self.say(
                        f"{'change' if e.harmless else 'FAULT':<6} {e.kind} on {e.service}: {e.describe()}"
                    )
                    if e.kind == "deploy":
                        self._deploy(e.service, e.detail)
                if e.duration_s and t >= e.end_s and (i, "off") not in announced:
                    announced.add((i, "off"))
                    self.say(f"{'end':<6} {e.kind} on {e.service}")
            on_tick()
            time.sleep(0.25)

    def _deploy(self, service: str, d: dict) -> None:
        assert self.fleet is not None
        latency = f"{d['route']}={d['factor']}" if d.get("route") else ""
        th = threading.Thread(target=self.fleet.deploy, args=(service, d["version"], latency), daemon=True)
        th.start()
        self._deploys.append(th)

    def stop(self) -> None:
        for th in self._deploys:
            th.join(120)
        if self.users is not None and self.users.poll() is None:
            self.users.terminate()
            self.users.wait(30)
        if self.fleet is not None:
            self.fleet.stop()

    def ground_truth(self) -> list[dict]:
        """Each event as it was played: epoch onset and end, and the service to page (faults), so
        a run's store can be lined up with what happened."""
        s, out = self.s, []
        for i, e in enumerate(s.events):
            onset = self.onsets.get(i, e.at_s)
            row = {
                "kind": e.kind,
                "page": None if e.harmless else e.service,
                "service": e.service,
                "what": e.describe(),
                "onset_s": round(onset, 1),
                "end_s": e.end_s,
                "onset_epoch": round(self.start + s.wall(onset), 3),
                "end_epoch": round(self.start + s.wall(e.end_s), 3),
            }
            if e.kind == "disk_fill":
                row["full_95_epoch"] = round(self.start + s.wall(e.crosses_s(0.95)), 3)
            out.append(row)
        return out

    def judge(self, notifications: list[tuple[float, dict]]) -> Verdict:
        return judge(self.s, notifications, self.start, self.onsets)


class Runner:
    """``forewarn up`` as a subprocess, the on-call webhook server, the bed; then the judge."""

    def __init__(self, o: RunOptions):
        self.o = o
        self.s = o.scenario
        self.dir = o.workdir
        self.bed = Bed(o)
        self.notes: list[tuple[float, dict]] = []
        self.up: subprocess.Popen | None = None

    def run(self) -> Verdict:
        from forewarn.alerts.testing import WebhookSink

        self.dir.mkdir(parents=True, exist_ok=True)
        with WebhookSink() as sink:
            try:
                self._start_forewarn(sink.url)
                self.bed.start_services(self.grpc_port, self.http_port)
                seen = [0]

                def tick() -> None:
                    records = sink.received("/oncall")
                    for r in records[seen[0] :]:
                        for a in r.body.get("alerts") or []:
                            lab = a.get("labels") or {}
                            rest = " ".join(
                                f"{k}={v}" for k, v in lab.items() if k not in ("alertname", "service")
                            )
                            self.bed.say(
                                f"PAGE   {a.get('status')} {lab.get('alertname')} service={lab.get('service')} {rest}"
                            )
                    seen[0] = len(records)
                    if self.up is not None and self.up.poll() is not None:
                        raise RuntimeError(
                            f"forewarn up exited with {self.up.returncode}; see {self.dir / 'forewarn-up.log'}"
                        )

                self.bed.play(tick)
            finally:
                self.bed.stop()
                self._stop_forewarn()
            self.notes = [(r.t, r.body) for r in sink.received("/oncall")]
        v = self.bed.judge(self.notes)
        saved = {
            "scenario": self.s.name,
            "scale": self.s.scale,
            "start": self.bed.start,
            "onsets": self.bed.onsets,
            "notifications": [{"t": t, "body": b} for t, b in self.notes],
        }
        (self.dir / "notifications.json").write_text(json.dumps(saved))
        (self.dir / "ground_truth.json").write_text(json.dumps(self.bed.ground_truth(), indent=1))
        (self.dir / "verdict.json").write_text(json.dumps(v.as_dict(), indent=1))
        return v

    def _start_forewarn(self, sink_url: str) -> None:
        o, s = self.o, self.s
        cfg = self.dir / "alertmanager.yml"
        cfg.write_text(alertmanager_config(sink_url, s.scale))
        self.grpc_port, self.http_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update({"FOREWARN_ALERTS__LISTEN": f"127.0.0.1:{free_port()}", **scaled_forewarn_env(s.scale)})
        env.update(o.forewarn_env)
        cmd = [*o.forewarn_cmd, "up", "--data-dir", str(self.dir / "data"), "--grpc-port", str(self.grpc_port),
               "--http-port", str(self.http_port), "--alerts-config", str(cfg)]  # fmt: skip
        self.o.out(
            f"starting: {' '.join(cmd[-9:])} (scale {s.scale:g}; {', '.join(f'{k}={v}' for k, v in env.items() if k.startswith('FOREWARN_FLOWS')) or 'default flows settings'})"
        )
        log = self.dir / "forewarn-up.log"
        with log.open("wb") as f:
            self.up = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        deadline = time.monotonic() + 180
        while b"forewarn up:" not in log.read_bytes():
            if self.up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"forewarn up did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def _stop_forewarn(self) -> None:
        if self.up is not None and self.up.poll() is None:
            self.up.terminate()
            try:
                self.up.wait(90)
            except subprocess.TimeoutExpired:
                self.up.kill()
                self.up.wait(10)


def run_scenario(o: RunOptions) -> Verdict:
    """Play ``o.scenario`` against a fresh ``forewarn up`` and return the judge's verdict."""
    return Runner(o).run()


def rejudge(workdir: Path) -> Verdict:
    """Judge a finished run again from its ``notifications.json`` (after a change to the rules)."""
    saved = json.loads((workdir / "notifications.json").read_text())
    s = Scenario.preset(saved["scenario"]).scaled(saved["scale"])
    notes = [(n["t"], n["body"]) for n in saved["notifications"]]
    return judge(s, notes, saved["start"], {int(k): v for k, v in saved["onsets"].items()})


def _interrupt(*_a: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m forewarn.testbed.run", description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="ci", choices=PRESETS)
    p.add_argument("--scale", type=float, help="wall seconds per virtual second (ci: 0.2, others: 1)")
    p.add_argument(
        "--minutes", type=float, help="alternative to --scale: fit the scenario in this many minutes"
    )
    p.add_argument("--lang", default="py", choices=["py", "js"], help="the services' language and SDK")
    p.add_argument("--protocol", default="grpc", choices=["grpc", "http"], help="OTLP transport")
    p.add_argument(
        "--semconv", default="stable", choices=["stable", "old", "dup"], help="HTTP semantic conventions"
    )
    p.add_argument("--rate", type=float, help="users' requests per second at the frontend (default 8)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--export-interval-ms",
        type=int,
        help="OTEL_METRIC_EXPORT_INTERVAL and span/log batch delay (default 5000 x scale)",
    )
    p.add_argument(
        "--metric-interval-ms",
        type=int,
        help="OTEL_METRIC_EXPORT_INTERVAL alone (60000: the SDKs' default, as a user who sets nothing has it)",
    )
    p.add_argument(
        "--workdir", type=Path, help="where logs, the store and verdict.json go (default: a temp dir)"
    )
    p.add_argument(
        "--forewarn-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for forewarn up",
    )
    p.add_argument("--json", action="store_true", help="print the verdict as JSON as the last line")
    p.add_argument(
        "--rejudge", type=Path, metavar="WORKDIR", help="judge a finished run's notifications again"
    )
    a = p.parse_args(argv)
    if a.rejudge:
        v = rejudge(a.rejudge)
        print(v.table())
        return 0 if v.passed else 1
    s = Scenario.preset(a.scenario)
    if a.scale:
        s = s.scaled(a.scale)
    elif a.minutes:
        s = s.scaled(a.minutes * 60 / s.duration_s)
    import tempfile

    workdir = a.workdir or Path(tempfile.mkdtemp(prefix=f"forewarn-testbed-{s.name}-"))
    extra = dict(kv.split("=", 1) for kv in a.forewarn_env)
    o = RunOptions(
        s, workdir, a.lang, a.protocol, a.semconv, a.seed, a.rate, a.export_interval_ms,
        a.metric_interval_ms, forewarn_env=extra,
    )  # fmt: skip
    print(
        f"test bed: scenario {s.name}, {s.duration_s * s.scale / 60:.1f} min wall, workdir {workdir}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # stop the services and forewarn on the way out
    try:
        v = run_scenario(o)
    except KeyboardInterrupt:
        print("test bed: interrupted (services and forewarn stopped)", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError) as e:
        print(f"test bed failed to run: {e}", file=sys.stderr)
        return 2
    print(v.table())
    if a.json:
        print(json.dumps(v.as_dict()))
    return 0 if v.passed else 1


if __name__ == "__main__":
    sys.exit(main())
