"""Scenarios: what happens when, and who an on-call engineer should be paged for.

A :class:`Scenario` is a list of :class:`Event` in *virtual* seconds (the timeline as the held-out
check plays it). ``scale`` compresses it: wall time = virtual time x scale, and the runner shortens
forewarn's bucket (``flows.step_s``) and the services' export intervals by the same factor, so a
CI run sees the same number of buckets in a fraction of the time.

Faults (``harmless=False``) carry the service to page; the judge expects exactly one incident for
each. Harmless changes (surge, deploy, new routes) and the normal traffic around them expect none.

>>> s = Scenario.preset("ci")
>>> s.scale, [e.kind for e in s.faults][:2]
(0.2, ['slow_dependency', 'disk_fill'])
>>> d = next(e for e in s.events if e.kind == "disk_fill")
>>> d.at_s, round(d.crosses_s(0.95), 1), d.deadline_s(120)
(420, 735.0, 615.0)
>>> round(Scenario.preset("full").duration_s / 60, 1)
15.8
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

PRESETS = ("full", "ci", "quiet", "extended", "short", "moved")
KINDS = (
    "slow_dependency",
    "error_burst",
    "upstream_outage",
    "log_burst",
    "disk_fill",
    "memory_leak",
    "cascade",
    "surge",
    "deploy",
    "new_route",
)


@dataclass(frozen=True)
class Event:
    """One change at ``at_s`` (virtual seconds after the start) lasting ``duration_s``."""

    kind: str
    service: str  # faults: the service to page; harmless changes: the service they touch
    at_s: float
    duration_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def harmless(self) -> bool:
        return self.kind in ("surge", "deploy", "new_route")

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s

    def describe(self) -> str:
        d = self.detail
        return {
            "slow_dependency": f"{d.get('route')} x{d.get('factor')} latency",
            "error_burst": f"{d.get('ratio', 0):.0%} of requests fail (5xx)",
            "upstream_outage": f"arrivals drop {d.get('drop', 0):.0%}",
            "log_burst": f"new error log template, {d.get('per_s')}/s",
            "disk_fill": f"disk {d.get('from', 0.6):.0%} -> {d.get('to', 1.0):.0%} over {d.get('fill_s', 0):.0f}s",
            "memory_leak": f"+{d.get('mb_per_s')} MiB/s resident memory",
            "cascade": f"database statements +{d.get('db_delay_ms')} ms",
            "surge": f"traffic x{d.get('factor')} (promotion)",
            "deploy": f"version {d.get('version')}: {d.get('route')} x{d.get('factor')} latency",
            "new_route": f"route {d.get('route')} launched",
        }.get(self.kind, self.kind)

    def crosses_s(self, level: float) -> float:
        """disk_fill: virtual time the fill level reaches ``level``."""
        lo, hi = float(self.detail.get("from", 0.6)), float(self.detail.get("to", 1.0))
        return self.at_s + float(self.detail["fill_s"]) * (level - lo) / (hi - lo)

    def deadline_s(self, lead_s: float) -> float:
        """Latest virtual time a notification counts as in time for this fault."""
        if self.kind == "disk_fill":
            return self.crosses_s(0.95) - lead_s
        return self.at_s + lead_s


@dataclass
class Scenario:
    name: str
    events: list[Event]
    duration_s: float  # virtual, including the tail that lets the last incident resolve
    scale: float = 1.0
    base_rate: float = 8.0  # requests per second at the frontend before the daily curve
    day_s: float = 1800.0  # the compressed day (virtual seconds)
    day_amplitude: float = 0.25
    notify_within_s: float = 60.0  # a fault's incident must be notified this soon after onset
    disk_lead_s: float = 120.0  # the disk warning must come this long before 95 %
    resolve_within_s: float = 240.0  # a fault's incident must resolve this soon after the end

    @property
    def faults(self) -> list[Event]:
        return sorted((e for e in self.events if not e.harmless), key=lambda e: e.at_s)

    def scaled(self, scale: float) -> Scenario:
        return replace(self, scale=scale)

    def wall(self, virtual_s: float) -> float:
        return virtual_s * self.scale

    @staticmethod
    def preset(name: str) -> Scenario:
        """``full`` mirrors the held-out check (6.5 min normal, five incidents, ~16 min); ``ci`` is
        ``full`` at scale 0.2 (about 3.2 min); ``short`` is the normal phase and two faults (the
        CI form of ``forewarn demo``); ``quiet`` is 10 min of normal traffic with the
        surge, a deploy and new routes (no notification expected); ``extended`` adds the memory
        leak and the database cascade (~22 min); ``moved`` is ``full`` with the faults on other
        services (a slow mid-tier route, an error burst at a leaf, new log templates at the
        database's service), so a rule fitted to where ``full`` puts them shows."""
        normal = [
            Event("new_route", "frontend", 100, detail={"route": "GET /search"}),
            Event("surge", "frontend", 150, 120, {"factor": 3.0, "ramp_s": 45}),
            Event("new_route", "frontend", 290, detail={"route": "GET /recommendations"}),
            Event(
                "deploy", "payments", 330, detail={"version": "1.1.0", "route": "POST /charge", "factor": 1.1}
            ),
        ]
        five = [
            Event("slow_dependency", "payments", 390, 75, {"route": "POST /charge", "factor": 5.0}),
            Event("disk_fill", "catalog", 420, 380, {"from": 0.6, "to": 1.0, "fill_s": 360}),
            Event("error_burst", "checkout", 495, 75, {"ratio": 0.35}),
            Event("upstream_outage", "frontend", 600, 75, {"drop": 0.8}),
            Event("log_burst", "inventory", 705, 75, {"per_s": 25}),
        ]
        if name == "full":
            return Scenario("full", normal + five, duration_s=950)
        if name == "ci":
            return Scenario("ci", normal + five, duration_s=950, scale=0.2)
        if name == "short":  # forewarn demo --short: the normal phase, then two faults
            two = [e for e in five if e.kind in ("slow_dependency", "error_burst")]
            return Scenario("short", normal + two, duration_s=700)
        if name == "quiet":
            late = [Event("surge", "frontend", 420, 90, {"factor": 3.0, "ramp_s": 40})]
            return Scenario("quiet", normal + late, duration_s=600)
        if name == "moved":  # the disk stays at catalog: the one service that reports a disk
            moved = [
                Event("slow_dependency", "inventory", 390, 75, {"route": "POST /reserve", "factor": 8.0}),
                five[1],
                Event("error_burst", "payments", 495, 75, {"ratio": 0.35}),
                five[3],
                Event("log_burst", "catalog", 705, 75, {"per_s": 25}),
            ]
            return Scenario("moved", normal + moved, duration_s=950)
        if name == "extended":
            more = [
                Event("memory_leak", "checkout", 850, 120, {"mb_per_s": 1.5}),
                Event("cascade", "catalog", 1060, 75, {"db_delay_ms": 120}),
            ]
            return Scenario("extended", normal + five + more, duration_s=1330)
        raise ValueError(f"unknown scenario {name!r}: {', '.join(PRESETS)}")


def daily(s: Scenario, t: float) -> float:
    """The compressed daily curve: a sine of ``day_amplitude`` around 1 over ``day_s``."""
    return 1.0 + s.day_amplitude * math.sin(2 * math.pi * t / s.day_s)


def surge_factor(e: Event, t: float) -> float:
    """Linear ramp up over ``ramp_s``, hold, ramp down over ``ramp_s``."""
    if not e.at_s <= t < e.end_s:
        return 1.0
    ramp = float(e.detail.get("ramp_s", 45))
    k = min(1.0, (t - e.at_s) / ramp, (e.end_s - t) / ramp)
    return 1.0 + (float(e.detail["factor"]) - 1.0) * max(0.0, k)


def control_state(s: Scenario, t: float, wall_start: float) -> dict[str, Any]:
    """The control file's contents at virtual time ``t``; ``wall_start`` is the epoch of t=0.

    >>> s = Scenario.preset("full")
    >>> st = control_state(s, 400, 0.0)
    >>> st["services"]["payments"]["latency"], st["traffic"]["routes"]
    ({'POST /charge': 5.0}, ['GET /recommendations', 'GET /search'])
    >>> control_state(s, 200, 0.0)["traffic"]["multiplier"] > 2
    True
    """
    services: dict[str, dict[str, Any]] = {}
    mult = daily(s, t)
    drop = 0.0
    routes: set[str] = set()
    for e in s.events:
        if e.kind == "new_route" and t >= e.at_s:
            routes.add(e.detail["route"])
        if e.kind == "surge":
            mult *= surge_factor(e, t)
        if e.kind == "deploy" and t >= e.at_s:
            # Python services are restarted with the new version (fleet.deploy); Node.js ones
            # cannot share a port across processes on Node 20 and take the change from here
            services.setdefault(e.service, {})["deploy"] = {
                "version": e.detail["version"],
                "latency": {e.detail["route"]: float(e.detail["factor"])},
            }
        if not e.at_s <= t < e.end_s or e.harmless:
            continue
        cfg = services.setdefault(e.service, {})
        if e.kind == "slow_dependency":
            cfg.setdefault("latency", {})[e.detail["route"]] = float(e.detail["factor"])
        elif e.kind == "error_burst":
            cfg["error_ratio"] = float(e.detail["ratio"])
        elif e.kind == "upstream_outage":
            drop = max(drop, float(e.detail["drop"]))
        elif e.kind == "log_burst":
            cfg["log_burst_per_s"] = float(e.detail["per_s"])  # per wall second, like the requests
        elif e.kind == "disk_fill":
            cfg["disk"] = {
                "start": wall_start + s.wall(e.at_s),
                "duration_s": s.wall(float(e.detail["fill_s"])),
                "from": float(e.detail.get("from", 0.6)),
                "to": float(e.detail.get("to", 1.0)),
            }
        elif e.kind == "memory_leak":
            cfg["leak_mb_per_s"] = float(e.detail["mb_per_s"]) / s.scale  # same total growth
        elif e.kind == "cascade":
            cfg["db_delay_ms"] = float(e.detail["db_delay_ms"])
    state: dict[str, Any] = {
        "traffic": {"multiplier": round(mult, 3), "drop": drop, "routes": sorted(routes)}
    }
    if services:
        state["services"] = services
    return state
