"""Incidents: which anomalies belong together, and when an incident starts, is notified and ends.

* **Grouping.** An onset joins an open incident when it comes within ``window_ms`` of the
  incident's latest onset and the onset's service is one of the incident's services or calls, or
  is called by, one of them in the service graph (parent/child spans); latency or error-type
  evidence relates only to services of the incident with that kind of evidence (lost traffic does
  not make a neighbour fail). A series that keeps firing
  keeps its incident open, but does not make it absorb what happens minutes later (on the test
  bed, faults a minute apart chained into one incident when it did). Onsets of one bucket that relate to no incident group with each other the same way;
  each group opens an incident (its id derives from its first anomaly, so a replay finds the same
  id). An unrelated anomaly, or one after the incident went quiet, opens a new incident.
* **Lifecycle.** An incident's labels (and its named cause) are fixed ``hold_ms`` after it starts,
  when the anomalies that follow the first one have had time to arrive; from then on it is
  notified. It resolves when nothing of it has happened (no onset, no firing series) for
  ``quiet_ms``, or when it reaches ``max_ms`` (after which its series' new onsets start a new one).
* **Saturation warnings** (forecasts) are not incidents: each warning series is one alert, active
  while it warns and resolved after half of ``quiet_ms`` without a warning.

State (open incidents, the service graph, active warnings) travels in the score flow's checkpoint.

>>> book = IncidentBook("live", window_ms=60_000, quiet_ms=120_000, max_ms=3_600_000, hold_ms=20_000)
>>> book.observe_edges({("web", "db")}, 0)
>>> a = [{"anomaly_id": 1, "_ts_ms": 0, "service": "db", "series_id": 11, "kind": "deviation"},
...      {"anomaly_id": 2, "_ts_ms": 0, "service": "web", "series_id": 12, "kind": "deviation"},
...      {"anomaly_id": 3, "_ts_ms": 0, "service": "batch", "series_id": 13, "kind": "deviation"}]
>>> touched = book.assign(a, firing={11: 50_000})
>>> len(touched), a[0]["incident_id"] == a[1]["incident_id"] != a[2]["incident_id"]
(2, True)
>>> [i.resolved_ms for i in book.close(200_000)]
[170000, 120000]
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields

from forewarn.flows.correlate import evidence_kind, stable_id

YOUNG = 2  # correlation windows after its start during which an incident takes new kinds of evidence
THIN = 2  # latency on this many series or fewer must last before it is notified
MAX_EDGES = 10_000  # service graph bound: the most recently seen pairs are kept
EDGE_TTL_MS = 7 * 86_400_000


@dataclass
class Incident:
    incident_id: int
    started_ms: int
    last_active_ms: int  # newest onset or firing point of its series
    last_onset_ms: int = 0
    streak_ms: int = 0  # first bucket of its latest run of active buckets (one step apart at most)
    services: list[str] = field(default_factory=list)
    rising: list[str] = field(default_factory=list)  # services with latency/error-type evidence
    starved: list[str] = field(default_factory=list)  # services whose own incoming traffic fell
    kinds: list[str] = field(default_factory=list)  # kinds of evidence (see evidence_kind)
    series: list[int] = field(default_factory=list)
    anomalies: int = 0
    labels: dict[str, str] = field(default_factory=dict)  # fixed once notified
    suspects: list[dict] = field(default_factory=list)
    resolved_ms: int | None = None
    found_ms: int = 0  # end of the batch that opened it: when its first evidence was scored

    @property
    def notified(self) -> bool:
        return bool(self.labels)


class IncidentBook:
    """Open incidents of one run and shard, and the service graph they are grouped on."""

    def __init__(
        self, run: str, window_ms: int, quiet_ms: int, max_ms: int, hold_ms: int, step_ms: int = 10_000
    ):
        self.run, self.window_ms, self.quiet_ms = run, window_ms, quiet_ms
        self.max_ms, self.hold_ms, self.step_ms = max_ms, hold_ms, step_ms
        self.open: dict[int, Incident] = {}
        self.edges: dict[tuple[str, str], int] = {}  # (caller, callee) -> last seen (ms)
        self.warnings: dict[str, dict] = {}  # saturation series id -> its active warning
        self._now_ms: int | None = None

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"open": [asdict(i) for i in self.open.values()],
                "edges": [[a, b, t] for (a, b), t in self.edges.items()], "warnings": self.warnings}  # fmt: skip

    def load(self, state: dict) -> None:
        known = {f.name for f in fields(Incident)}  # a checkpoint may hold fields no longer kept
        self.open = {
            int(d["incident_id"]): Incident(**{k: v for k, v in d.items() if k in known})
            for d in state.get("open", [])
        }
        self.edges = {(a, b): int(t) for a, b, t in state.get("edges", [])}
        self.warnings = state.get("warnings", {})

    # -- the service graph ---------------------------------------------------------------------
    def observe_edges(self, edges: set[tuple[str, str]], now_ms: int) -> None:
        for e in edges:
            self.edges[e] = now_ms
        if len(self.edges) > MAX_EDGES or any(now_ms - t > EDGE_TTL_MS for t in self.edges.values()):
            keep = sorted(self.edges.items(), key=lambda kv: -kv[1])[:MAX_EDGES]
            self.edges = {e: t for e, t in keep if now_ms - t <= EDGE_TTL_MS}

    def neighbours(self, service: str) -> set[str]:
        return {b for a, b in self.edges if a == service} | {a for a, b in self.edges if b == service}

    def related(self, a: dict, inc: Incident, ts: int | None = None) -> bool:
        """Whether anomaly ``a`` can belong to ``inc``: its service is one of the incident's or a
        direct caller or callee of one; for latency and error-type evidence (not a drop:
        ``a["_drop"]``), one of the incident's services with that kind of evidence too (lost
        traffic does not make a service fail). A kind of evidence the incident has not shown
        joins only while the incident is young (``YOUNG`` windows after its start, at ``ts``) and
        still going on (a series of it deviated in the last bucket): the symptoms of one cause
        appear together, and errors a minute after a slowdown ended, or just after a one-bucket
        latency blip, are a new fault. A young incident also takes any evidence from a service it
        already holds (an outage's callee whose latency shifts as its traffic falls away)."""
        young = ts is None or ts - inc.started_ms <= YOUNG * self.window_ms
        over = ts is not None and ts - inc.last_active_ms > self.step_ms
        if (over or not young) and evidence_kind(a) not in inc.kinds:
            return False
        near = set(inc.services) if a.get("_drop") else set(inc.rising)
        if a["service"] in near or bool(self.neighbours(a["service"]) & near):
            return True
        return young and a["service"] in inc.services

    # -- grouping ------------------------------------------------------------------------------
    def assign(
        self, anomalies: list[dict], firing: dict[int, int], now_ms: int | None = None
    ) -> dict[int, Incident]:
        """Set ``incident_id`` on each deviation (in time order) and record which incidents are
        still active; returns the incidents that gained anomalies. ``now_ms``: the end of the
        batch (when the new incidents were found)."""
        self._now_ms = now_ms
        touched: dict[int, Incident] = {}
        by_ts: dict[int, list[dict]] = defaultdict(list)
        for a in anomalies:
            if a["kind"] == "deviation":
                by_ts[int(a["_ts_ms"])].append(a)
        onset: dict[int, int] = {}  # each series' first onset in this batch
        for ts in sorted(by_ts):
            for a in by_ts[ts]:
                onset.setdefault(int(a["series_id"]), ts)
        for ts in sorted(by_ts):
            # a series firing at the end of the batch has fired since its onset: within a long
            # (catch-up) batch its incident is active at every earlier bucket too; a series
            # whose onset in this batch is still to come fires for the incident that onset
            # joins, not for one it belonged to before (an older blip of it revived and paged)
            self._firing(firing, until_ms=ts, skip={s for s, t in onset.items() if t >= ts})
            self._bucket(ts, sorted(by_ts[ts], key=lambda a: a["anomaly_id"]), touched)
        self._firing(firing)
        return touched

    def _firing(
        self, firing: dict[int, int], until_ms: int | None = None, skip: set[int] = frozenset()
    ) -> None:
        owner = {s: inc for inc in self.open.values() if inc.resolved_ms is None for s in inc.series}
        for sid, ts in firing.items():
            inc = owner.get(int(sid)) if int(sid) not in skip else None
            at = int(ts) if until_ms is None else min(int(ts), until_ms)
            if inc is not None and at >= inc.started_ms:
                # it fired since its onset: no gap, however long the (catch-up) batch was
                inc.last_active_ms = max(inc.last_active_ms, at)

    def _bucket(self, ts: int, group: list[dict], touched: dict[int, Incident]) -> None:
        active = [
            i for i in self.open.values() if i.resolved_ms is None and ts - i.last_onset_ms <= self.window_ms
        ]
        # incidents past their window whose series still fire take more of the same symptom at a
        # service that already shows it (the slowdown's caller whose p99 crossed the line later)
        lasting = [
            i for i in self.open.values()
            if i.resolved_ms is None and i not in active and ts - i.last_active_ms <= self.window_ms
        ]  # fmt: skip
        left = list(group)
        changed = True
        while left and changed:  # join until nothing more relates (chains through new members)
            changed = False
            for a in list(left):
                near = [i for i in active if self.related(a, i, ts)] or [
                    i for i in lasting
                    if not a.get("_drop") and evidence_kind(a) in i.kinds and a["service"] in i.rising
                ]  # fmt: skip
                if near:  # the one with this kind of evidence already, else the latest
                    best = max(
                        near, key=lambda i: (evidence_kind(a) in i.kinds, i.last_onset_ms, i.incident_id)
                    )
                    self._join(best, a, touched)
                    left.remove(a)
                    changed = True
        while left:  # the rest: connected groups of their own
            first = left.pop(0)
            inc = Incident(stable_id(self.run, first["anomaly_id"]), ts, ts, ts)
            inc.found_ms = ts if self._now_ms is None else self._now_ms
            self.open[inc.incident_id] = inc
            self._join(inc, first, touched)
            grew = True
            while grew:
                grew = False
                for a in list(left):
                    if self.related(a, inc):
                        self._join(inc, a, touched)
                        left.remove(a)
                        grew = True
            active.append(inc)

    def _join(self, inc: Incident, a: dict, touched: dict[int, Incident]) -> None:
        a["incident_id"] = inc.incident_id
        at = int(a["_ts_ms"])
        if at - inc.last_active_ms > self.step_ms:  # after a gap: a new run of active buckets
            inc.streak_ms = at
        inc.last_active_ms = max(inc.last_active_ms, at)
        kind = evidence_kind(a)
        if kind != "drop" or "drop" in inc.kinds[:1]:
            # a dip in traffic joins but does not hold the door open for what comes next, unless
            # lost traffic is what the incident is about (noisy rates chained faults together)
            inc.last_onset_ms = max(inc.last_onset_ms, int(a["_ts_ms"]))
        if kind not in inc.kinds:
            inc.kinds = [*inc.kinds, kind]
        if a["service"] not in inc.services:
            inc.services = sorted({*inc.services, a["service"]})
        if not a.get("_drop") and a["service"] not in inc.rising:
            inc.rising = sorted({*inc.rising, a["service"]})
        if a.get("_inbound", a.get("_drop")) and a["service"] not in inc.starved:
            inc.starved = sorted({*inc.starved, a["service"]})
        if int(a["series_id"]) not in inc.series:
            inc.series.append(int(a["series_id"]))
        inc.anomalies += 1
        touched[inc.incident_id] = inc

    # -- lifecycle -----------------------------------------------------------------------------
    def due_labels(self, now_ms: int, drop_wait_ms: int = 0) -> list[Incident]:
        """Open incidents whose hold is over, whose labels are not fixed yet and that are
        :meth:`confirmed`. One made only of lost traffic waits ``drop_wait_ms`` more after it
        was found, for telemetry that was only late to arrive (see ``ScoreEngine._arrived_late``)."""
        return [i for i in self.open.values() if i.resolved_ms is None and not i.labels
                and now_ms - i.started_ms >= self.hold_ms and self.confirmed(i)
                and (i.kinds != ["drop"] or now_ms - i.found_ms >= drop_wait_ms)]  # fmt: skip

    def confirmed(self, inc: Incident) -> bool:
        """Whether the incident is worth a notification. Lost traffic alone is, when it reaches a
        service no outside caller keeps calling (an entry service, or one whose callers all lost
        traffic too); a callee whose callers go on calling it without any deviation of their own
        lost its telemetry (an export that failed, a restart of its exporter), not its traffic.
        Such an incident waits: evidence of another kind, or a caller's drop, confirms it. Only
        a drop in what a service receives counts (``starved``; see ``correlate.is_inbound``: its
        entry spans, a server operation, not a client call): a caller that makes fewer calls
        while its own traffic holds (it fails before calling; in a test-bed run an error burst
        at checkout thinned its calls to payments) starved its callee by choice, not by lost users.
        Latency alone is, once it has lasted into a second bucket without a gap (one slow
        bucket, seen on the p95 and p99 of a server and its callers, is a pause, not a
        regression, and so are two such blips a bucket apart: a warm-ensemble run paged one, and
        the log burst that began just after it joined it under the blip's name), and thin latency
        evidence (on at most ``THIN`` series: a lone p99 among them) once it has lasted a
        correlation window: a busy minute lifts the slowest requests of a route for a bucket or
        two (a traffic surge, a pause), a regression keeps them up. Resource use
        alone (a disk or memory filling) is not: the saturation forecast warns of it, saying when
        the limit is reached; a page for the same disk would say it twice. Nor is load alone (busier
        processors: in a warm-ensemble test-bed run, the host's system CPU time rising from 4.6 %
        to 6.2 %, seen by the four services on it, was paged): what users feel shows in latency
        and errors, which confirm an incident that load joins.

        >>> book = IncidentBook("live", 30_000, 120_000, 3_600_000, 20_000)
        >>> book.observe_edges({("checkout", "payments")}, 0)
        >>> book.confirmed(Incident(1, 0, 0, services=["payments"], starved=["payments"], kinds=["drop"]))
        False
        >>> both = ["checkout", "payments"]
        >>> book.confirmed(Incident(2, 0, 0, services=both, starved=both, kinds=["drop"]))
        True
        >>> book.confirmed(Incident(2, 0, 0, services=both, starved=["payments"], kinds=["drop"]))
        False
        >>> tail = Incident(3, 0, 10_000, kinds=["latency"], series=[7])
        >>> book.confirmed(tail), book.confirmed(Incident(**{**asdict(tail), "last_active_ms": 30_000}))
        (False, True)
        >>> book.confirmed(Incident(4, 0, 60_000, kinds=["resource", "load"])), book.confirmed(
        ...     Incident(5, 0, 0, kinds=["load", "errors"]))
        (False, True)
        """
        if set(inc.kinds) <= {"resource", "load"}:
            return False
        if inc.kinds == ["latency"]:
            lasted = inc.last_active_ms - max(inc.started_ms, inc.streak_ms)
            return lasted >= (self.window_ms if len(inc.series) <= THIN else self.step_ms)
        if inc.kinds != ["drop"]:
            return True
        mine = set(inc.starved)
        return any(not ({a for a, b in self.edges if b == s} - mine) for s in mine)

    def retract(self, incident_id: int, now_ms: int) -> Incident:
        """Take an incident out before it was notified (its evidence did not hold); returns it,
        resolved, for its last state to be written."""
        inc = self.open.pop(incident_id)
        inc.resolved_ms = now_ms
        return inc

    def close(self, now_ms: int) -> list[Incident]:
        """Resolve the incidents that went quiet or reached their lifetime; returns them (they
        leave the book: their last state is written and, if notified, their resolution posted)."""
        done = []
        for inc in list(self.open.values()):
            quiet = now_ms - inc.last_active_ms >= self.quiet_ms
            if quiet or now_ms - inc.started_ms >= self.max_ms:
                inc.resolved_ms = inc.last_active_ms + self.quiet_ms if quiet else now_ms
                done.append(self.open.pop(inc.incident_id))
        return done

    # -- saturation warnings -------------------------------------------------------------------
    def warn(self, key: str, info: dict, ts_ms: int) -> None:
        """A warning point of a saturation series (``info``: service, name, labels, explanation, eta_s)."""
        prev = self.warnings.get(key)
        self.warnings[key] = {
            **info,
            "first_s": prev["first_s"] if prev else ts_ms / 1000.0,
            "last_s": ts_ms / 1000.0,
        }

    def expired_warnings(self, now_ms: int) -> list[dict]:
        """Warnings without a new warning point for half the quiet period (a forecast is one series,
        with no callers to settle), or for two of the series' own intervals if that is longer (a
        disk reported once a minute, the SDKs' default, has no point to warn on in between: its
        warning flapped, resolved and fired again): resolved, and forgotten."""
        gone = [
            k for k, w in self.warnings.items()
            if now_ms / 1000.0 - w["last_s"] >= max(self.quiet_ms / 2000.0, 2.0 * w.get("every_s", 0.0))
        ]  # fmt: skip
        return [self.warnings.pop(k) for k in gone]
