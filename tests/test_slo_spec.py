"""SLO files: OpenSLO and Sloth specs load into the same SLOs, round-trip through both formats,
and bad files are refused with the file, the field and what is wrong."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import yaml
from forewarn.flows.slo_spec import SLOFileError, TimeWindow, load_dir, load_file, to_openslo, to_sloth

SLOTH = """\
version: "prometheus/v1"
service: "myservice"
labels:
  owner: "myteam"
  tier: "2"
slos:
  - name: "requests-availability"
    objective: 99.9
    description: "Common SLO based on availability for HTTP request responses."
    sli:
      events:
        error_query: sum(rate(http_request_duration_seconds_count{job="myservice",code=~"(5..|429)"}[{{.window}}]))
        total_query: sum(rate(http_request_duration_seconds_count{job="myservice"}[{{.window}}]))
    alerting:
      name: MyServiceHighErrorRate
      labels:
        category: "availability"
      annotations:
        summary: "High error rate on 'myservice' requests responses"
      page_alert:
        labels:
          severity: pageteam
          routing_key: myteam
      ticket_alert:
        labels:
          severity: "slack"
          slack_channel: "#alerts-myteam"
"""

OPENSLO = """\
apiVersion: openslo/v1
kind: SLI
metadata:
  name: checkout-errors
spec:
  ratioMetric:
    counter: true
    bad:
      metricSource:
        type: forewarn
        spec:
          query: spans{service="checkout", status="error"}
    total:
      metricSource:
        type: forewarn
        spec:
          query: spans{service="checkout"}
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: availability
  displayName: Checkout availability
spec:
  service: checkout
  indicatorRef: checkout-errors
  timeWindow:
    - duration: 28d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: good
      target: 0.995
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: latency
spec:
  service: checkout
  indicator:
    metadata:
      name: fast-enough
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_server_request_duration_seconds_bucket{service="checkout", le="0.3"}[5m]))
        total:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_server_request_duration_seconds_count{service="checkout"}[5m]))
  timeWindow:
    - duration: 1M
      isRolling: false
      calendar:
        timeZone: Europe/Paris
  objectives:
    - targetPercent: 99
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_sloth_spec_loads_with_its_labels_and_round_trips(tmp_path):
    (slo,) = load_file(_write(tmp_path, "sloth.yaml", SLOTH))
    assert slo.id == "myservice-requests-availability"
    assert slo.objective == pytest.approx(0.999)
    assert slo.bad.metric == "http_request_duration_seconds_count" and slo.bad.source == "histogram"
    assert slo.bad.matchers == (("job", "=", "myservice"), ("code", "=~", "(5..|429)"))
    assert slo.alertname == "MyServiceHighErrorRate"
    assert slo.labels == {"owner": "myteam", "tier": "2", "category": "availability"}
    assert slo.page_labels == {"severity": "pageteam", "routing_key": "myteam"}
    assert slo.window == TimeWindow(30)
    again = load_file(_write(tmp_path, "again.yaml", yaml.safe_dump(to_sloth([slo]))))[0]
    assert again == replace(slo, file=again.file)
    via_openslo = load_file(_write(tmp_path, "o.yaml", yaml.safe_dump(to_openslo(slo))))[0]
    assert (via_openslo.bad, via_openslo.total, via_openslo.objective, via_openslo.sli_key) == (
        slo.bad, slo.total, slo.objective, slo.sli_key)  # fmt: skip


def test_openslo_inline_and_referenced_indicators_round_trip(tmp_path):
    avail, lat = load_file(_write(tmp_path, "openslo.yaml", OPENSLO))
    assert avail.id == "checkout-availability" and avail.objective == 0.995
    assert avail.window == TimeWindow(28, rolling=True)
    assert avail.bad.text() == 'spans{service="checkout", status="error"}'
    assert lat.good.le == 0.3 and lat.good.source == "histogram" and lat.objective == pytest.approx(0.99)
    assert lat.window == TimeWindow(30, rolling=False, tz="Europe/Paris")
    docs = yaml.safe_dump_all([to_openslo(avail), to_openslo(lat)])
    assert load_file(_write(tmp_path, "back.yaml", docs)) == [
        replace(s, file=str(tmp_path / "back.yaml")) for s in (avail, lat)
    ]


def test_calendar_windows():
    june = int(datetime(2026, 6, 17, 12, tzinfo=UTC).timestamp() * 1000)
    month = TimeWindow(30, rolling=False)
    assert month.start_ms(june) == int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)
    assert month.end_ms(june) == int(datetime(2026, 7, 1, tzinfo=UTC).timestamp() * 1000)
    week = TimeWindow(7, rolling=False)  # ISO week: Monday 15 June
    assert week.start_ms(june) == int(datetime(2026, 6, 15, tzinfo=UTC).timestamp() * 1000)
    assert TimeWindow(7).start_ms(june) == june - 7 * 86_400_000


def test_errors_name_file_field_and_problem(tmp_path):
    bad = SLOTH.replace("objective: 99.9", "objective: 100.5").replace(
        'error_query: sum(rate(http_request_duration_seconds_count{job="myservice",code=~"(5..|429)"}[{{.window}}]))',
        "error_query: sum(rate(a[5m])) / sum(rate(b[5m]))",
    )
    p = _write(tmp_path, "bad.yaml", bad)
    with pytest.raises(SLOFileError) as e:
        load_file(p)
    assert f"{p}: slos[0].objective: 100.5 is not between 0 and 100 (percent), e.g. 99.9" in e.value.problems
    assert any(x.startswith(f"{p}: slos[0].sli.events.error_query: 'sum(rate(a[5m])) / sum(rate(b[5m]))' is not understood")
               for x in e.value.problems)  # fmt: skip
    o = _write(tmp_path, "o.yaml", OPENSLO.replace("duration: 28d", "duration: 90d").replace(
        "indicatorRef: checkout-errors", "indicatorRef: nope"))  # fmt: skip
    with pytest.raises(SLOFileError) as e:
        load_file(o)
    assert (
        f"{o}: SLO availability.spec.indicatorRef: no SLI named 'nope' in this directory" in e.value.problems
    )
    assert f"{o}: SLO availability.spec.timeWindow[0].duration: '90d': windows of 7, 28 or 30 days are supported" in (
        e.value.problems)  # fmt: skip
    y = _write(tmp_path, "y.yaml", "version: prometheus/v1\nslos: [\n")
    with pytest.raises(SLOFileError, match=r"y.yaml: line \d+: not valid YAML"):
        load_file(y)
    u = _write(tmp_path, "u.yaml", "apiVersion: v2\nkind: Thing\n")
    with pytest.raises(SLOFileError, match="unknown format 'v2'"):
        load_file(u)


def test_directory_reports_every_file_and_duplicate_ids(tmp_path):
    _write(tmp_path, "a.yaml", SLOTH)
    _write(tmp_path, "b.yml", SLOTH)
    _write(tmp_path, "c.yaml", "version: prometheus/v1\nservice: x\n")
    with pytest.raises(SLOFileError) as e:
        load_dir(tmp_path)
    text = str(e.value)
    assert "c.yaml: slos: is required" in text
    assert "SLO myservice-requests-availability is already defined in" in text
    with pytest.raises(SLOFileError, match="SLO directory not found"):
        load_dir(tmp_path / "missing")


def test_export_moves_between_the_formats(tmp_path):
    from typer.testing import CliRunner

    from forewarn.cli import app

    src, back = tmp_path / "src", tmp_path / "back"
    src.mkdir(), back.mkdir()
    _write(src, "sloth.yaml", SLOTH)
    res = CliRunner().invoke(app, ["slo", "export", "--dir", str(src), "--to", "openslo"])
    assert res.exit_code == 0, res.output
    (back / "o.yaml").write_text(res.output)
    (a,), (b,) = load_dir(src), load_dir(back)
    assert (a.id, a.objective, a.bad, a.total, a.labels, a.alertname) == (
        b.id,
        b.objective,
        b.bad,
        b.total,
        b.labels,
        b.alertname,
    )
    _write(src, "openslo.yaml", OPENSLO)  # counts good events: not expressible as Sloth events
    res = CliRunner().invoke(app, ["slo", "export", "--dir", str(src), "--to", "sloth"])
    assert res.exit_code == 2 and "checkout-latency" in res.output
