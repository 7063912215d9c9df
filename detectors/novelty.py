"""New log templates arriving in a burst: a message a service never logged before, suddenly often.

Works from the first day: it needs no model of the template, only the service's own log history.
A template (``family == "template"`` points: ``n`` records, ``k`` of them warnings or errors, per
bucket) is *new* when it first appears after its service has logged for ``settle`` buckets (the
templates of a fresh service are all new). A new template bursts when, within its first ``young``
buckets, it produced ``min_count`` warnings or errors, or as many records as the service usually
logs over that time (an informational message that alone doubles the log volume). The episode
fires while the template keeps coming and ends after ``recover`` buckets without it. The service's
usual volume comes from its ``log.rate`` points (``family == "volume"``).

>>> import pandas as pd
>>> nd = NewTemplates(settle=3)
>>> rows = [("log.rate", 1, t, 20.0, "volume") for t in range(6)]
>>> rows += [("log.template_rate", 2, t, 20.0, "template") for t in range(6)]
>>> rows += [("log.template_rate", 3, 5, 12.0, "template")]  # new at bucket 5, 12 errors
>>> pts = pd.DataFrame(rows, columns=["name", "series_id", "ts", "n", "family"])
>>> pts = pts.assign(service="db", k=[0.0] * 12 + [12.0], dt=1.0, value=pts["n"])
>>> [(f.row, f.component) for f in nd.score(pts).onsets]
[(12, 'new_template')]
"""

from __future__ import annotations

import pandas as pd
from forewarn.detectors.scoring import Finding, Result


class NewTemplates:
    """Bursts of new log templates (see the module docstring); a :class:`.scoring.Detector`."""

    name = "novelty"

    def __init__(self, settle: int = 12, young: int = 6, min_count: int = 10, recover: int = 3):
        self.settle, self.young, self.min_count, self.recover = settle, young, min_count, recover
        self.services: dict[str, list[float]] = {}  # service -> [buckets with logs, records]
        # template series -> [service buckets at first sight, buckets seen, records, warnings,
        #                     firing (0/1/-1 done), last ts]
        self.templates: dict[str, list] = {}

    def state(self) -> tuple[dict, dict]:
        return {"services": self.services, "templates": self.templates}, {}

    def load(self, meta: dict, arrays: dict) -> None:
        self.services = meta.get("services", {})
        self.templates = meta.get("templates", {})

    def score(self, points: pd.DataFrame) -> Result:
        out = Result()
        if points.empty:
            return out
        sel = points[(points["family"] == "template") | (points["name"] == "log.rate")]
        if sel.empty:
            return out
        sel = sel.sort_values(["ts", "family"], kind="stable")  # the service's volume first
        for row, name, sid, service, ts, n, k, dt in zip(
            sel.index, sel["name"], sel["series_id"], sel["service"], sel["ts"], sel["n"], sel["k"], sel["dt"],
            strict=True,
        ):  # fmt: skip
            if name == "log.rate":
                svc = self.services.setdefault(service, [0.0, 0.0])
                svc[0] += 1
                svc[1] += float(n)
                continue
            f = self._template(int(row), str(int(sid)), service, int(ts), float(n), float(k or 0), float(dt))
            if f is not None:
                out.onsets.append(f)
            t = self.templates[str(int(sid))]
            if t[4] == 1:
                out.firing[int(sid)] = int(ts)
        return out

    def _template(self, row: int, key: str, service: str, ts: int, n: float, k: float, dt: float):
        svc = self.services.get(service, [0.0, 0.0])
        t = self.templates.get(key)
        if t is None:
            t = self.templates[key] = [svc[0], 0, 0.0, 0.0, 0, ts]
        gap = (ts - t[5]) / 1000.0
        if t[4] == 1 and dt == dt and gap > self.recover * dt:  # quiet for a while: the episode ended
            t[4] = -1
        elif t[4] == 1:
            t[5] = ts
            return None
        t[1] += 1
        t[5] = ts
        if t[4] != 0 or t[0] < self.settle or t[1] > self.young:
            return None
        t[2] += n
        t[3] += k
        usual = svc[1] / svc[0] * t[1] if svc[0] else float("inf")
        if t[3] >= self.min_count or t[2] >= max(5 * self.min_count, usual):
            t[4] = 1
            why = f"{t[3]:.0f} warnings or errors" if t[3] >= self.min_count else f"{t[2]:.0f} records"
            text = (f"new log template: first seen after {t[0]:.0f} buckets of the service's logs, "
                    f"{why} in its first {t[1]} bucket(s)")  # fmt: skip
            return Finding(row, 1.0 - 1e-6, 0.0, "new_template", text)
        return None
