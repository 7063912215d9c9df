"""The v2 API: validation (same status codes as Alertmanager), silences, status, metrics, auth,
amtool, an unreachable receiver, and forewarn's own anomaly alerts through the pipeline."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from forewarn.alerts.anomaly import AlertPostError, anomaly_alert, post_alerts, post_alerts_async
from forewarn.alerts.testing import Alertmanager, RouterThread, WebhookSink

CONFIG = """
route:
  receiver: hook
  group_by: [alertname, service]
  group_wait: 200ms
  group_interval: 1s
receivers:
  - name: hook
    webhook_configs: [{url: "SINK/hook"}]
  - name: dead
    webhook_configs: [{url: "http://127.0.0.1:1/unreachable"}]
"""


@pytest.fixture(scope="module")
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as s:
        yield s


@pytest.fixture(scope="module")
def fw(sink: WebhookSink) -> Iterator[RouterThread]:
    with RouterThread(CONFIG.replace("SINK", sink.url)) as r:
        yield r


@pytest.fixture(scope="module")
def am(sink: WebhookSink) -> Iterator[Alertmanager | None]:
    if not Alertmanager.available():
        yield None
        return
    with Alertmanager(CONFIG.replace("SINK", sink.url)) as a:
        yield a


S = (
    '{"matchers":[{"name":"a","value":"b","isRegex":false}],"startsAt":"2026-01-01T00:00:00Z",'
    '"endsAt":"2099-01-01T00:00:00Z","createdBy":"x","comment":"c"}'
)
UUID = "7f3e1b2a-0000-4000-8000-000000000000"
# Bad (and a few borderline good) requests: the decode layer (400 + {code, message}), the schema
# layer (422, first failure), handlers (400/404/500 + JSON string), unknown paths and methods.
ERROR_CASES = [
    ("POST", "/api/v2/alerts", b"not json"),
    ("POST", "/api/v2/alerts", b'{"labels": {"a": "b"}}'),
    ("POST", "/api/v2/alerts", b'[{"labels": {}}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": ""}}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"0bad": "x"}}]'),
    (
        "POST",
        "/api/v2/alerts",
        b'[{"labels": {"a": "b"}, "startsAt": "2026-01-02T00:00:00Z", "endsAt": "2026-01-01T00:00:00Z"}]',
    ),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "startsAt": "yesterday"}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": 1}}]'),
    ("POST", "/api/v2/alerts", b'[{"annotations": {"a": "b"}}]'),
    ("POST", "/api/v2/alerts", b"[1]"),
    ("POST", "/api/v2/alerts", b"[]"),
    ("POST", "/api/v2/alerts", b""),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "generatorURL": "::bad"}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "generatorURL": 5}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "annotations": {"0x": "y"}}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}}, {"labels": {}}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "endsAt": "2026-01-01T00:00:00Z"}]'),
    ("POST", "/api/v2/alerts", b"null"),
    ("POST", "/api/v2/alerts", b'[{"labels": null}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "extra": 1}]'),
    ("POST", "/api/v2/silences", b"not json"),
    ("POST", "/api/v2/silences", b"[]"),
    ("POST", "/api/v2/silences", b"{}"),
    ("POST", "/api/v2/silences", S.replace('"comment":"c"', '"comment":""').encode()),
    ("POST", "/api/v2/silences", S.replace(',"comment":"c"', "").encode()),
    ("POST", "/api/v2/silences", S.replace('"createdBy":"x"', '"createdBy":""').encode()),
    (
        "POST",
        "/api/v2/silences",
        S.replace('"matchers":[{"name":"a","value":"b","isRegex":false}]', '"matchers":[]').encode(),
    ),
    ("POST", "/api/v2/silences", S.replace('"value":"b"', '"value":""').encode()),
    ("POST", "/api/v2/silences", S.replace('"name":"a"', '"name":"0a"').encode()),
    (
        "POST",
        "/api/v2/silences",
        S.replace('"value":"b","isRegex":false', '"value":"(","isRegex":true').encode(),
    ),
    (
        "POST",
        "/api/v2/silences",
        S.replace('"value":"b","isRegex":false', '"value":".*","isRegex":true').encode(),
    ),
    ("POST", "/api/v2/silences", S.replace('"isRegex":false', '"isRegex":"no"').encode()),
    ("POST", "/api/v2/silences", S.replace(',"isRegex":false', "").encode()),
    ("POST", "/api/v2/silences", S.replace("2099-01-01T00:00:00Z", "2020-01-01T00:00:00Z").encode()),
    ("POST", "/api/v2/silences", S.replace("2099-01-01T00:00:00Z", "2025-01-01T00:00:00Z").encode()),
    ("POST", "/api/v2/silences", S.replace("2099-01-01T00:00:00Z", "soon").encode()),
    (
        "POST",
        "/api/v2/silences",
        S.replace('{"matchers"', '{"id":"7f3e1b2a-0000-4000-8000-000000000000","matchers"').encode(),
    ),
    ("POST", "/api/v2/silences", S.replace('{"matchers"', '{"id":"nonsense","matchers"').encode()),
    ("POST", "/api/v2/silences", S.replace('"name":"a"', '"name":""').encode()),
    ("GET", "/api/v2/silence/" + UUID, None),
    ("GET", "/api/v2/silence/nonsense", None),
    ("DELETE", "/api/v2/silence/" + UUID, None),
    ("DELETE", "/api/v2/silence/nonsense", None),
    ("GET", "/api/v2/alerts?filter=foo", None),
    ("GET", "/api/v2/alerts?filter=a%3D~%22(%22", None),
    ("GET", "/api/v2/alerts?filter=", None),
    ("GET", "/api/v2/alerts?receiver=(", None),
    ("GET", "/api/v2/alerts/groups?filter=foo", None),
    ("GET", "/api/v2/silences?filter=foo", None),
    ("GET", "/api/v2/silences?filter=a%3D%22b", None),
    ("GET", "/api/v2/nothing", None),
    ("PUT", "/api/v2/alerts", b"[]"),
    ("POST", "/api/v2/silences", b"null"),
    ("POST", "/api/v2/silences", b""),
    ("POST", "/api/v2/silences", S.replace('"name":"a",', "").encode()),
    ("POST", "/api/v2/silences", S.replace('"isRegex":false', '"isRegex":false,"isEqual":"x"').encode()),
    ("POST", "/api/v2/silences", S.replace('"startsAt":"2026-01-01T00:00:00Z",', "").encode()),
    ("POST", "/api/v2/silences", S.replace('"createdBy":"x"', '"createdBy":5').encode()),
    (
        "POST",
        "/api/v2/silences",
        S.replace('"name":"a"', '"name":"0a"')
        .replace("2099-01-01T00:00:00Z", "2020-01-01T00:00:00Z")
        .encode(),
    ),
    (
        "POST",
        "/api/v2/silences",
        S.replace('{"matchers"', '{"id":"nonsense","matchers"').replace('"name":"a"', '"name":"0a"').encode(),
    ),
    ("POST", "/api/v2/silences", S.replace('"startsAt":"2026-01-01T00:00:00Z"', '"startsAt":""').encode()),
    ("POST", "/api/v2/alerts", b'[{"labels": ["a"]}]'),
    (
        "POST",
        "/api/v2/alerts",
        b'[{"labels": {"a": "b"}, "annotations": null, "startsAt": null, "endsAt": ""}]',
    ),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "generatorURL": "http://a b/"}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "generatorURL": "http://h/%zz"}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "generatorURL": "http://h:x/"}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "generatorURL": "relative/path?q=%zz"}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {}}, {"labels": {"0x": "b"}}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {}, "generatorURL": "::x"}, {"annotations": {}}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "startsAt": 5}]'),
    ("GET", "/api/v2/alerts?filter=%7Ba%3D%22b%22%7D", None),
    ("GET", "/api/v2/alerts?active=false&silenced=false&inhibited=false", None),
    ("GET", "/api/v2/alerts?silenced=0", None),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "generatorURL": "relative/path"}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "generatorURL": "http://h/#%zz"}]'),
    ("POST", "/api/v2/alerts", b'[{"labels": {"a": "b"}, "generatorURL": "http://[::1/"}]'),
    ("GET", "/api/v2/silence/7F3E1B2A00004000800000000000000A", None),
    ("DELETE", "/api/v2/silences", None),
    ("GET", "/api/v2/status/x", None),
]


def _shape(r: httpx.Response) -> tuple[int, str, object]:
    """Status, body kind, and the exact part: go-openapi's code and message, or nothing (handler
    messages quote Go's or Python's own regexp and JSON errors, which cannot be equal)."""
    if not r.content:
        return r.status_code, "empty", None
    body = r.json()
    if isinstance(body, dict) and "code" in body:
        # Alertmanager lists a 405's allowed methods in random order.
        exact = (
            sorted(body["message"])
            if body["code"] == 405
            else body["message"]
            if body["code"] != 400
            else None
        )
        return r.status_code, "error object", (body["code"], exact)
    return r.status_code, type(body).__name__, None


@pytest.mark.parametrize(("method", "path", "body"), ERROR_CASES)
def test_error_statuses_like_alertmanager(
    fw: RouterThread, am: Alertmanager | None, method: str, path: str, body: bytes | None
) -> None:
    if am is None:
        pytest.skip("prometheus-alertmanager not installed")
    headers = {"Content-Type": "application/json"} if body is not None else {}
    got = [httpx.request(method, u + path, content=body, headers=headers) for u in (am.url, fw.url)]
    ra, rf = got
    assert _shape(ra) == _shape(rf), (ra.text, rf.text)
    assert httpx.get(fw.url + "/-/healthy").status_code == 200


def test_valid_alerts_of_a_bad_post_are_kept(fw: RouterThread) -> None:
    body = [{"labels": {"alertname": "Kept", "service": "s"}}, {"labels": {}}]
    r = httpx.post(fw.url + "/api/v2/alerts", json=body)
    assert r.status_code == 400 and "at least one label pair required" in r.text
    got = httpx.get(fw.url + "/api/v2/alerts", params={"filter": 'alertname="Kept"'}).json()
    assert len(got) == 1 and got[0]["labels"] == {"alertname": "Kept", "service": "s"}
    assert got[0]["receivers"] == [{"name": "hook"}] and got[0]["status"]["state"] == "active"
    groups = httpx.get(fw.url + "/api/v2/alerts/groups").json()
    assert any(g["labels"] == {"alertname": "Kept", "service": "s"} for g in groups)


def test_silence_lifecycle(fw: RouterThread) -> None:
    now = time.time()

    def iso(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    body = {
        "matchers": [{"name": "alertname", "value": "Sil", "isRegex": False}],
        "startsAt": iso(now),
        "endsAt": iso(now + 3600),
        "createdBy": "me",
        "comment": "c",
    }
    sid = httpx.post(fw.url + "/api/v2/silences", json=body).json()["silenceID"]
    httpx.post(fw.url + "/api/v2/alerts", json=[{"labels": {"alertname": "Sil"}}])
    got = httpx.get(fw.url + "/api/v2/alerts", params={"filter": "alertname=Sil"}).json()
    assert got[0]["status"] == {"inhibitedBy": [], "silencedBy": [sid], "state": "suppressed"}
    assert (
        httpx.get(fw.url + "/api/v2/alerts", params={"silenced": "false", "filter": "alertname=Sil"}).json()
        == []
    )
    s = httpx.get(f"{fw.url}/api/v2/silence/{sid}").json()
    assert s["status"]["state"] == "active" and s["matchers"][0]["isEqual"] is True
    # Updating an active silence's end keeps its ID, as Alertmanager does.
    same = httpx.post(fw.url + "/api/v2/silences", json={**body, "id": sid, "startsAt": s["startsAt"]}).json()
    assert same["silenceID"] == sid
    assert httpx.delete(f"{fw.url}/api/v2/silence/{sid}").status_code == 200
    assert httpx.get(f"{fw.url}/api/v2/silence/{sid}").json()["status"]["state"] == "expired"
    # Alertmanager 0.25: a malformed ID is a 422, an unknown one a 500 on DELETE; expiring an
    # expired silence again is fine.
    assert httpx.delete(f"{fw.url}/api/v2/silence/nope").status_code == 422
    assert httpx.delete(f"{fw.url}/api/v2/silence/{sid}").status_code == 200
    assert httpx.post(fw.url + "/api/v2/silences", json={**body, "id": "nope"}).status_code == 404
    for bad, status in (
        ({**body, "matchers": []}, 422),
        ({**body, "matchers": [{"name": "a", "value": ".*", "isRegex": True}]}, 400),
        ({**body, "endsAt": iso(now - 10), "startsAt": iso(now - 20)}, 400),
        ({**body, "startsAt": iso(now + 10), "endsAt": iso(now + 5)}, 400),
        ({k: v for k, v in body.items() if k != "createdBy"}, 422),
    ):
        r = httpx.post(fw.url + "/api/v2/silences", json=bad)
        assert r.status_code == status, (bad, r.text)


def test_status_receivers_health_metrics(fw: RouterThread) -> None:
    st = httpx.get(fw.url + "/api/v2/status").json()
    assert st["cluster"]["status"] == "disabled" and "route:" in st["config"]["original"]
    assert httpx.get(fw.url + "/api/v2/receivers").json() == [{"name": "hook"}, {"name": "dead"}]
    assert httpx.get(fw.url + "/-/ready").status_code == 200
    httpx.post(fw.url + "/api/v2/alerts", json=[{"labels": {"alertname": "M"}}])
    text = httpx.get(fw.url + "/metrics").text
    assert "forewarn_alerts_received_total" in text and "forewarn_alerts_invalid_total" in text


def test_anomaly_alert_through_the_pipeline(fw: RouterThread, sink: WebhookSink) -> None:
    a = anomaly_alert(
        "checkout",
        "latency_p99",
        "critical",
        "p99 3x baseline",
        "6 sigma above forecast",
        score=0.999,
        forecast=120.0,
        dashboard_url="http://grafana.local/d/1",
    )
    post_alerts(fw.url, [a])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hits = [r for r in sink.received("/hook") if r.body["groupLabels"].get("service") == "checkout"]
        if hits:
            break
        time.sleep(0.05)
    body = hits[0].body
    assert body["groupKey"] == '{}:{alertname="ForewarnAnomaly", service="checkout"}'
    alert = body["alerts"][0]
    assert alert["labels"] == {
        "alertname": "ForewarnAnomaly",
        "service": "checkout",
        "signal": "latency_p99",
        "severity": "critical",
    }
    assert alert["annotations"]["dashboard"] == "http://grafana.local/d/1"
    assert alert["annotations"]["score"] == "0.999" and alert["annotations"]["forecast"] == "120"
    asyncio.run(post_alerts_async(fw.url, [{**a, "endsAt": a["startsAt"]}]))
    with pytest.raises(AlertPostError, match="answered 400"):
        post_alerts(fw.url, [{"labels": {}}])
    with pytest.raises(AlertPostError, match="cannot reach"):
        post_alerts("http://127.0.0.1:1", [a], timeout=1)
    with pytest.raises(ValueError):
        anomaly_alert("s", "x", "catastrophic", "", "", 1.0)


def test_unreachable_receiver_keeps_router_running(sink: WebhookSink) -> None:
    config = CONFIG.replace("SINK", sink.url).replace(
        "receiver: hook\n  group_by", "receiver: dead\n  group_by"
    )
    with RouterThread(config) as r:
        httpx.post(r.url + "/api/v2/alerts", json=[{"labels": {"alertname": "Lost?"}}]).raise_for_status()
        failed = 'forewarn_alerts_notifications_failed_total{integration="webhook"}'
        deadline = time.monotonic() + 20  # the first flush (+0.2 s) fails and retries in the background
        while time.monotonic() < deadline and failed not in httpx.get(r.url + "/metrics").text:
            time.sleep(0.05)
        assert httpx.get(r.url + "/-/healthy").status_code == 200
        assert httpx.get(r.url + "/api/v2/alerts").json()[0]["labels"] == {"alertname": "Lost?"}
        assert failed in httpx.get(r.url + "/metrics").text


def test_api_tokens(sink: WebhookSink) -> None:
    with RouterThread(CONFIG.replace("SINK", sink.url), api_tokens=["s3cret"]) as r:
        assert httpx.get(r.url + "/api/v2/alerts").status_code == 401
        assert (
            httpx.get(r.url + "/api/v2/alerts", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        )
        assert httpx.get(r.url + "/-/ready").status_code == 200
        post_alerts(r.url, [{"labels": {"a": "b"}}], token="s3cret")


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")
def test_amtool_speaks_to_the_router(fw: RouterThread) -> None:
    def amtool(*args: str) -> str:
        out = subprocess.run(
            ["amtool", f"--alertmanager.url={fw.url}", *args], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    sid = amtool(
        "silence", "add", "alertname=ViaAmtool", "--comment=tool", "--author=me", "--duration=1h"
    ).strip()
    assert sid in amtool("silence", "query", "-q")
    amtool("alert", "add", "alertname=FromAmtool", "service=x")
    assert "FromAmtool" in amtool("alert", "query")
    amtool("silence", "expire", sid)
    assert sid not in amtool("silence", "query", "-q")


def test_reload_keeps_running_config_on_error(sink: WebhookSink) -> None:
    with RouterThread(CONFIG.replace("SINK", sink.url)) as r:
        cfg = r.dir / "alertmanager.yml"
        good = cfg.read_text()
        cfg.write_text(good + "\nbogus_top_level: 1\n")
        bad = httpx.post(r.url + "/-/reload")
        assert bad.status_code == 500 and "bogus_top_level: unsupported key" in bad.text
        assert [x["name"] for x in httpx.get(r.url + "/api/v2/receivers").json()] == ["hook", "dead"]
        # Loads, but cannot be built (a TLS file it names is missing): refused, and the running
        # config keeps routing (the old dispatcher used to be stopped before the new one failed).
        cfg.write_text(
            good.replace(
                '[{url: "' + sink.url + '/hook"}]',
                '[{url: "' + sink.url + '/hook", http_config: {tls_config: {ca_file: /nonexistent/ca.pem}}}]',
            )
        )
        bad = httpx.post(r.url + "/-/reload")
        assert bad.status_code == 500 and "cannot load ca_file" in bad.text, bad.text
        post_alerts(r.url, [{"labels": {"alertname": "StillRouted", "service": "s"}}])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _group_notes(sink, "StillRouted"):
            time.sleep(0.05)
        assert _group_notes(sink, "StillRouted")
        cfg.write_text(good.replace("name: dead", "name: renamed"))
        assert httpx.post(r.url + "/-/reload").status_code == 200
        assert [x["name"] for x in httpx.get(r.url + "/api/v2/receivers").json()] == ["hook", "renamed"]


def test_http_config_auth_headers_reach_the_receiver(sink: WebhookSink) -> None:
    config = f"""
route: {{receiver: r, group_wait: 100ms}}
receivers:
  - name: r
    webhook_configs:
      - url: "{sink.url}/basic"
        http_config: {{basic_auth: {{username: u, password: p}}}}
      - url: "{sink.url}/bearer"
        http_config: {{authorization: {{credentials: tok}}}}
"""
    with RouterThread(config) as r:
        post_alerts(r.url, [{"labels": {"alertname": "Auth"}}])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (sink.received("/basic") and sink.received("/bearer")):
            time.sleep(0.05)
        assert sink.received("/basic")[0].headers["authorization"] == "Basic dTpw"
        assert sink.received("/bearer")[0].headers["authorization"] == "Bearer tok"
        assert "tok" not in httpx.get(r.url + "/api/v2/status").json()["config"]["original"]


QUERIES = [
    {},
    {"active": "maybe"},
    {"silenced": "yes"},
    {"silenced": "0"},
    {"inhibited": "off", "active": "true"},
    {"active": "false"},
    {"filter": 'qi=~"[12]"'},
    {"filter": "qi!=1", "receiver": "hook"},
    {"receiver": "ho.*"},
    {"receiver": "dead"},
]


@pytest.mark.parametrize("path", ["/api/v2/alerts", "/api/v2/alerts/groups"])
def test_alert_queries_like_alertmanager(fw: RouterThread, am: Alertmanager | None, path: str) -> None:
    """Filters, state flags (go-openapi's boolean spelling), receivers: the same answers."""
    from forewarn.alerts.difftest import canonical_api

    if am is None:
        pytest.skip("prometheus-alertmanager not installed")
    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    names: list[dict[str, str]] = []
    for url in (am.url, fw.url):
        alerts = [
            {
                "labels": {"alertname": f"Q{len(path)}", "qi": str(i), "service": "q"},
                "startsAt": iso(now - 10),
                "endsAt": iso(now + 600),
            }
            for i in range(3)
        ]
        assert httpx.post(url + "/api/v2/alerts", json=alerts).status_code == 200
        sil = {
            "matchers": [
                {"name": "qi", "value": "1", "isRegex": False},
                {"name": "alertname", "value": f"Q{len(path)}", "isRegex": False},
            ],
            "startsAt": iso(now),
            "endsAt": iso(now + 600),
            "createdBy": "t",
            "comment": "q",
        }
        sid = httpx.post(url + "/api/v2/silences", json=sil).json()["silenceID"]
        names.append({sid: "q"})
    for params in QUERIES:
        p = {
            **params,
            "filter": [f'alertname="Q{len(path)}"', *([params["filter"]] if "filter" in params else [])],
        }
        ra, rf = (httpx.get(u + path, params=p) for u in (am.url, fw.url))
        assert ra.status_code == rf.status_code, (p, ra.text, rf.text)
        assert canonical_api(ra, names[0]) == canonical_api(rf, names[1]), p


def test_silence_queries_like_alertmanager(fw: RouterThread, am: Alertmanager | None) -> None:
    """``filter`` on silences keeps those having each filter matcher among their own."""
    from forewarn.alerts.difftest import canonical_api, diff_value

    if am is None:
        pytest.skip("prometheus-alertmanager not installed")
    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    specs = {
        "f1": [("svc", "sq", False, True), ("pod", "p1", False, True)],
        "f2": [("svc", "sq", False, True), ("pod", "p.*", True, True)],
        "f3": [("svc", "sq", False, True), ("zone", "eu", False, False)],
    }
    names: list[dict[str, str]] = [{}, {}]
    for i, url in enumerate((am.url, fw.url)):
        for name, ms in specs.items():
            body = {
                "matchers": [{"name": n, "value": v, "isRegex": r, "isEqual": e} for n, v, r, e in ms],
                "startsAt": iso(now),
                "endsAt": iso(now + 600 + len(names[i])),
                "createdBy": "t",
                "comment": name,
            }
            names[i][httpx.post(url + "/api/v2/silences", json=body).json()["silenceID"]] = name
    for extra in ([], ['pod="p1"'], ['pod=~"p.*"'], ['pod!=""'], ['zone=""'], ['zone="eu"'], ["pod!=p1"]):
        p = {"filter": ['svc="sq"', *extra]}
        ra, rf = (httpx.get(u + "/api/v2/silences", params=p) for u in (am.url, fw.url))
        assert ra.status_code == rf.status_code == 200
        a, f = canonical_api(ra, names[0]), canonical_api(rf, names[1])
        diffs: list[str] = []
        diff_value(a, f, str(extra), diffs)
        assert not diffs, diffs


def test_old_alerts_posted_together_flush_together(sink: WebhookSink, fw: RouterThread) -> None:
    """Old alerts (startsAt + group_wait past) flush their new group at once; forewarn inserts a
    request's alerts before any flush can run, so the first notification carries all of them.
    (Alertmanager may send only the first ones then: its dispatcher inserts them one by one
    while the group's goroutine already flushes; the differential tests avoid that race.)"""
    body = [
        {"labels": {"alertname": "OldBatch", "service": "s", "i": str(i)}, "startsAt": "2026-01-01T00:00:00Z"}
        for i in range(5)
    ]
    httpx.post(fw.url + "/api/v2/alerts", json=body).raise_for_status()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _group_notes(sink, "OldBatch"):
        time.sleep(0.05)
    first = _group_notes(sink, "OldBatch")[0]
    assert sorted(a["labels"]["i"] for a in first.body["alerts"]) == ["0", "1", "2", "3", "4"]


def _group_notes(sink: WebhookSink, alertname: str) -> list:  # type: ignore[type-arg]
    return [r for r in sink.received("/hook") if r.body["groupLabels"].get("alertname") == alertname]
