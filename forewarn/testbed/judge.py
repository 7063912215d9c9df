"""The judge: scores a run by the Alertmanager webhook notifications alone, as the held-out check.

An *alert* is one label set (forewarn gives every incident its own ``incident`` label). Its first
firing notification is when the on-call engineer was paged. Each alert is attributed to the fault
whose window ``[onset, end + notify_within]`` holds that first page: a fault of the same
``service`` if there is one, else the fault that began last; an alert with no such fault is a false page (labelled with what was going on:
normal traffic, the surge, the deploy...). A fault passes when:

* exactly one alert is attributed to it (the disk fill: at least one, all of them naming the
  disk's service and mentioning a filesystem or disk in a label or annotation, since a forecast
  and an incident for the same disk are both fair);
* that alert's ``service`` label is the fault's service;
* it was first notified within ``notify_within_s`` of onset (disk: ``disk_lead_s`` before 95 %);
* a resolved notification for it arrived after the fault ended, within ``resolve_within_s``.

Times are virtual seconds (wall seconds / scale) after the timeline's start.

>>> from forewarn.testbed.timeline import Scenario
>>> s = Scenario.preset("full")
>>> page = lambda t, svc, status="firing", inc="1": (t, {"alerts": [{"status": status,
...     "labels": {"alertname": "ForewarnIncident", "service": svc, "incident": inc}}]})
>>> notes = [page(400, "payments"), page(480, "payments", "resolved")]
>>> v = judge(s, notes, start=0.0, onsets={})
>>> [r.verdict for r in v.rows][:2], v.passed
(['PASS', 'FAIL'], False)
>>> judge(s, [page(30, "frontend", inc="9")], 0.0, {}).false_pages[0].context
'normal traffic'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from forewarn.testbed.timeline import Event, Scenario


@dataclass
class Alert:
    key: str
    labels: dict[str, str]
    first_s: float  # virtual time of the first firing notification
    resolved_s: list[float] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def service(self) -> str:
        return self.labels.get("service", "")

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "?")

    @property
    def about_disk(self) -> bool:
        """Mentions a filesystem or disk in a label or annotation (the disk fault's warning must)."""
        return any(
            "filesystem" in v or "disk" in v.lower()
            for v in [*self.labels.values(), *self.annotations.values()]
        )

    def brief(self) -> str:
        return f"{self.name} service={self.service or '-'} at {self.first_s:.0f}s"


@dataclass
class FalsePage:
    alert: Alert
    context: str
    during: Event | None = None  # the harmless change it followed, if any


@dataclass
class Row:
    event: Event
    onset_s: float
    alerts: list[Alert]
    verdict: str
    reasons: list[str]


@dataclass
class Verdict:
    scenario: Scenario
    rows: list[Row]
    harmless: list[Event]
    false_pages: list[FalsePage]
    notifications: int

    @property
    def passed(self) -> bool:
        return not self.false_pages and all(r.verdict == "PASS" for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "scale": self.scenario.scale,
            "passed": self.passed,
            "notifications": self.notifications,
            "faults": [
                {
                    "kind": r.event.kind,
                    "service": r.event.service,
                    "onset_s": round(r.onset_s, 1),
                    "verdict": r.verdict,
                    "reasons": r.reasons,
                    "alerts": [
                        {
                            "labels": a.labels,
                            "first_s": round(a.first_s, 1),
                            "resolved_s": [round(x, 1) for x in a.resolved_s],
                        }
                        for a in r.alerts
                    ],
                }
                for r in self.rows
            ],
            "false_pages": [
                {"labels": f.alert.labels, "first_s": round(f.alert.first_s, 1), "context": f.context}
                for f in self.false_pages
            ],
        }

    def table(self) -> str:
        s = self.scenario
        lines = [
            f"scenario {s.name} (scale {s.scale:g}: {s.duration_s * s.scale / 60:.1f} min wall); "
            f"{self.notifications} webhook notifications; times in virtual seconds after the start",
            f"{'fault':<16} {'page':<10} {'onset':>6}  {'verdict':<7} {'alerts (service@first page, resolved)':<48} why",
        ]
        for r in self.rows:
            got = (
                "; ".join(
                    f"{a.service or '-'}@{a.first_s - r.onset_s:+.0f}s"
                    + (f" res@{a.resolved_s[-1] - r.event.end_s:+.0f}s" if a.resolved_s else " unresolved")
                    + ("" if a.name == "ForewarnIncident" else f" ({a.name})")
                    for a in r.alerts
                )
                or "none"
            )
            lines.append(
                f"{r.event.kind:<16} {r.event.service:<10} {r.onset_s:6.0f}  {r.verdict:<7} {got:<48} {'; '.join(r.reasons)}"
            )
        for e in self.harmless:
            n = sum(1 for f in self.false_pages if f.during is e)
            lines.append(
                f"{e.kind:<16} {e.service:<10} {e.at_s:6.0f}  {'PASS' if n == 0 else 'FAIL':<7} "
                f"{(str(n) + ' page(s)') if n else 'no page':<48} harmless: {e.describe()}"
            )
        normal = [f for f in self.false_pages if f.context == "normal traffic"]
        lines.append(
            f"{'normal traffic':<16} {'-':<10} {'':>6}  {'PASS' if not normal else 'FAIL':<7} "
            f"{(str(len(normal)) + ' page(s)') if normal else 'no page':<48}"
        )
        if self.false_pages:
            lines.append("false pages:")
            lines += [
                f"  {f.alert.brief()} during {f.context}: {f.alert.labels}" for f in self.false_pages[:20]
            ]
            if len(self.false_pages) > 20:
                lines.append(f"  ... and {len(self.false_pages) - 20} more")
        ok = sum(r.verdict == "PASS" for r in self.rows)
        lines.append(
            f"result: {'PASS' if self.passed else 'FAIL'} - {ok}/{len(self.rows)} faults right, "
            f"{len(self.false_pages)} false page(s)"
        )
        return "\n".join(lines)


def collect_alerts(notifications: list[tuple[float, dict]], start: float, scale: float) -> list[Alert]:
    """One :class:`Alert` per label set, from (receipt epoch, webhook body) pairs."""
    alerts: dict[str, Alert] = {}
    for at, body in sorted(notifications, key=lambda n: n[0]):
        t = (at - start) / scale
        for a in body.get("alerts") or []:
            labels = {str(k): str(v) for k, v in (a.get("labels") or {}).items()}
            key = json.dumps(labels, sort_keys=True)
            firing = a.get("status") != "resolved"
            if key not in alerts:
                if not firing:
                    continue  # resolved before we ever saw it fire: nothing was paged
                alerts[key] = Alert(key, labels, t, annotations=dict(a.get("annotations") or {}))
            elif not firing:
                alerts[key].resolved_s.append(t)
    return sorted(alerts.values(), key=lambda a: a.first_s)


def _context(s: Scenario, t: float) -> Event | None:
    """The harmless change a page followed (within twice the notification deadline), if any."""
    recent = [
        e for e in s.events if e.harmless and e.at_s <= t <= max(e.end_s, e.at_s) + s.notify_within_s * 2
    ]
    return max(recent, key=lambda e: e.at_s) if recent else None


def judge(
    s: Scenario, notifications: list[tuple[float, dict]], start: float, onsets: dict[int, float]
) -> Verdict:
    """``start``: epoch of virtual t=0; ``onsets``: index in ``s.events`` -> actual virtual onset
    (the player's record; the plan's time when missing)."""
    alerts = collect_alerts(notifications, start, s.scale)
    faults = [(i, e) for i, e in enumerate(s.events) if not e.harmless]
    faults.sort(key=lambda ie: ie[1].at_s)
    onset = {i: onsets.get(i, e.at_s) for i, e in faults}
    attributed: dict[int, list[Alert]] = {i: [] for i, _ in faults}
    false_pages: list[FalsePage] = []
    for a in alerts:
        windows = [(i, e) for i, e in faults if onset[i] <= a.first_s <= e.end_s + s.notify_within_s]
        same = [(i, e) for i, e in windows if e.service == a.service]
        if same or windows:  # the same service's fault, else the one that began last
            attributed[max(same or windows, key=lambda ie: onset[ie[0]])[0]].append(a)
        else:
            e = _context(s, a.first_s)
            false_pages.append(FalsePage(a, f"{e.kind} ({e.describe()})" if e else "normal traffic", e))
    rows = []
    for i, e in faults:
        got = attributed[i]
        reasons: list[str] = []
        right = [a for a in got if a.service == e.service]
        wrong = [a for a in got if a.service != e.service]
        if not got:
            reasons.append("no page")
        if wrong:
            reasons.append("wrong service: " + ", ".join(sorted({a.service or "-" for a in wrong})))
        if e.kind == "disk_fill":
            # the warning must be about the disk, not another forecast that happens to name the service
            unrelated = [a for a in right if not a.about_disk]
            right = [a for a in right if a.about_disk]
            if unrelated:
                reasons.append(f"{len(unrelated)} page(s) for {e.service} not about the disk")
            if not right and got:
                reasons.append("no page about the disk")
            if right and min(a.first_s for a in right) > e.deadline_s(s.disk_lead_s):
                late = min(a.first_s for a in right) - e.crosses_s(0.95)
                reasons.append(f"warned {late:+.0f}s from 95 % (needs <= -{s.disk_lead_s:.0f}s)")
        else:
            if len(got) > 1:
                reasons.append(f"{len(got)} incidents for one fault")
            if right and right[0].first_s > onset[i] + s.notify_within_s:
                reasons.append(
                    f"paged {right[0].first_s - onset[i]:.0f}s after onset (> {s.notify_within_s:.0f}s)"
                )
        for a in right:
            after = [r for r in a.resolved_s if r >= e.end_s]
            if not after:
                reasons.append("never resolved" if not a.resolved_s else "resolved before the fault ended")
            elif after[0] > e.end_s + s.resolve_within_s:
                reasons.append(
                    f"resolved {after[0] - e.end_s:.0f}s after the end (> {s.resolve_within_s:.0f}s)"
                )
        rows.append(Row(e, onset[i], got, "PASS" if not reasons else "FAIL", reasons))
    harmless = [e for e in s.events if e.harmless]
    return Verdict(s, rows, harmless, false_pages, len(notifications))
