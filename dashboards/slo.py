"""A Grafana dashboard per SLO, as code: objective, SLI, budget left, burn rates against the
alert thresholds, and when the budget runs out with its band, from the SLO flow's tables
(``forewarn_slo_buckets``, ``forewarn_slo_status``). SLOs live in the user's files, so these
dashboards are built from them (``forewarn grafana push`` with ``slo.dir`` set, or
``forewarn slo dashboards --out DIR`` for Grafana's file provisioning), not committed.

>>> from forewarn.flows.slo_spec import SLO, parse_selector
>>> d = slo_dashboard(SLO("checkout", "availability", 0.999, total=parse_selector("spans")))
>>> d["uid"], d["title"], len(d["panels"])
('forewarn-slo-checkout-availability', 'SLO · checkout availability', 10)
"""

from __future__ import annotations

import hashlib
from typing import Any

from forewarn.dashboards.definitions import TAGS, finish
from forewarn.dashboards.panels import stat_panel, table_panel, time_series
from forewarn.flows.slo import ALERT_WINDOWS, BURN_RULES, window_name
from forewarn.flows.slo_spec import SLO
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.models import dashboard


def _lit(v: str) -> str:
    """A SQL string literal (ids are letters, digits, ``-_.`` anyway; quoting keeps it so)."""
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def uid_of(slo: SLO) -> str:
    """Grafana uids are at most 40 characters: long ids keep a readable head and a digest."""
    uid = f"forewarn-slo-{slo.id}"
    if len(uid) <= 40:
        return uid
    return uid[:31] + "-" + hashlib.blake2b(slo.id.encode(), digest_size=4).hexdigest()


def slo_dashboard(slo: SLO) -> dict[str, Any]:
    sid, key = _lit(slo.id), _lit(slo.sli_key)
    status = f"FROM forewarn_slo_status FINAL WHERE slo_id = {sid} AND $__timeFilter(ts)"
    pct = f"{slo.objective * 100:g} %"
    burn_cols = ", ".join(f"burn['{window_name(w)}'] AS `{window_name(w)}`" for w in ALERT_WINDOWS)
    thresholds = ", ".join(sorted({f"{r.factor:g} AS `{r.severity} {r.factor:g}x`" for r in BURN_RULES}))
    panels = [
        stat_panel("Objective", f"SELECT {slo.objective!r} AS objective", f"{pct} over {slo.window.label()}.",
                   unit="percentunit", w=4),
        stat_panel("SLI", f"SELECT argMax(if(total > 0, good / total, nan), ts) AS sli {status}",
                   f"Good events over all events in the SLO window ({slo.window.label()}), at the last evaluation.",
                   unit="percentunit", w=5),
        stat_panel("Error budget left", f"SELECT argMax(budget_remaining, ts) AS budget_left {status}",
                   "Share of the window's error budget not yet spent (negative: overspent).", unit="percentunit", w=5),
        stat_panel("Budget runs out in", f"SELECT argMax(if(isFinite(eta_s), eta_s, NULL), ts) AS runs_out_in {status}",
                   "At the present burn rate (the forecaster's line over the last two days); empty: not running out.",
                   unit="s", w=5),
        table_panel("Alerts firing", f"SELECT arrayStringConcat(argMax(firing, ts), ', ') AS firing {status}",
                    "page: 14.4x over 1 h and 5 min, or 6x over 6 h and 30 min; ticket: 3x over 1 d and 2 h, "
                    "or 1x over 3 d and 6 h.", w=5, h=5),
        time_series(
            "SLI and objective",
            f"""SELECT $__timeInterval(ts) AS time, sum(good) / sum(total) AS sli, {slo.objective!r} AS objective
FROM forewarn_slo_buckets FINAL WHERE sli_key = {key} AND $__timeFilter(ts)
GROUP BY time HAVING sum(total) > 0 ORDER BY time""",
            "Good over all events per interval, against the objective.", "percentunit", w=12,
        ),
        time_series(
            "Burn rates and alert thresholds",
            f"SELECT ts AS time, {burn_cols}, {thresholds} {status} ORDER BY time",
            "Error ratio over each alert window divided by the error budget (1 = spending it exactly over "
            "the window); the constant lines are the alert rules' factors.", "x", w=12,
        ),
        time_series(
            "When the budget runs out (forecast band)",
            f"""SELECT ts AS time, if(isFinite(eta_s), eta_s / 3600, NULL) AS value,
       if(isFinite(eta_low_s), eta_low_s / 3600, NULL) AS lower, if(isFinite(eta_high_s), eta_high_s / 3600, NULL) AS upper
{status} ORDER BY time""",
            "Hours until the error budget is spent at the present burn, with the forecaster's band; "
            "a gap: not heading there.", "h", w=12, band=True,
        ),
        time_series(
            "Error budget left",
            f"SELECT ts AS time, budget_remaining AS budget_left {status} ORDER BY time",
            f"Share of the {slo.window.label()} error budget left at each evaluation.", "percentunit", w=12,
        ),
        table_panel(
            "Alerting evaluations",
            f"""SELECT ts AS time, arrayStringConcat(firing, ', ') AS firing, round(good / total, 6) AS sli,
       round(budget_remaining, 4) AS budget_left, round(burn['5m'], 2) AS burn_5m, round(burn['1h'], 2) AS burn_1h,
       round(burn['6h'], 2) AS burn_6h, round(burn['3d'], 2) AS burn_3d
{status} AND notEmpty(firing) ORDER BY time DESC LIMIT 200""",
            "Evaluations at which an alert rule held.",
        ),
    ]  # fmt: skip
    b = (
        gd.Dashboard(f"SLO · {slo.service} {slo.name}")
        .uid(uid_of(slo))
        .description(slo.description or f"{slo.id}: {pct} over {slo.window.label()} ({slo.file})")
        .tags([*TAGS, "slo", f"service:{slo.service}"])
        .editable()
        .timezone("browser")
        .time("now-7d", "now")
        .refresh("1m")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
    )
    return finish(b, panels)


def slo_dashboards(slos: list[SLO]) -> list[dict[str, Any]]:
    return [slo_dashboard(s) for s in slos]
