"""TLS, mutual TLS and basic authentication of the router from Prometheus' web configuration
file, against real clients (amtool, httpx) and the real Alertmanager 0.25 as the oracle of
which requests it answers and how."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import httpx
import pytest
from forewarn.alerts.server import AlertRouter
from forewarn.alerts.testing import Alertmanager, RouterProcess, RouterThread
from forewarn.alerts.webconfig import WebConfigError, load_web_config, parse_web_config
from pki import TestCA

from forewarn.net import free_port

CONFIG = """
route:
  receiver: r
  group_by: [alertname]
  group_wait: 1h
receivers: [{name: r}]
"""
PASSWORD = "correct horse"
# bcrypt's lowest cost keeps the tests quick; Go and the bcrypt package accept it alike.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
AMTOOL = "/usr/bin/amtool"
PATHS = [
    ("GET", "/-/healthy"),
    ("GET", "/-/ready"),
    ("GET", "/api/v2/status"),
    ("GET", "/api/v2/alerts"),
    ("GET", "/api/v2/silences"),
    ("GET", "/metrics"),
    ("POST", "/-/reload"),
    ("GET", "/no/such/path"),
]
CREDENTIALS = {
    "none": None,
    "right": ("alice", PASSWORD),
    "wrong password": ("alice", "nope"),
    "unknown user": ("mallory", PASSWORD),
    "long password": ("alice", PASSWORD + "x" * 80),
}


def _web(tmp: Path, text: str) -> Path:
    p = tmp / "web.yml"
    p.write_text(text)
    return p


def _answers(url: str, **client: object) -> dict[tuple[str, str, str], tuple[int, str | None, bytes]]:
    out = {}
    with httpx.Client(base_url=url, trust_env=False, timeout=10, **client) as c:  # type: ignore[arg-type]
        for who, auth in CREDENTIALS.items():
            for method, path in PATHS:
                r = c.request(method, path, auth=auth)
                body = r.content if r.status_code == 401 else b""
                out[(who, method, path)] = (r.status_code, r.headers.get("www-authenticate"), body)
    return out


@pytest.mark.skipif(not Alertmanager.available(), reason="prometheus-alertmanager not installed")
def test_basic_auth_guards_every_path_like_alertmanager(tmp_path: Path) -> None:
    """exporter-toolkit wraps Alertmanager's whole handler: /-/healthy, /-/ready, /-/reload and
    /metrics need the password too. Same statuses, challenge and 401 body as Alertmanager."""
    web = _web(tmp_path, f"basic_auth_users:\n  alice: {HASH}\n")
    client = {"auth": ("alice", PASSWORD)}
    with (
        Alertmanager(CONFIG, web_config=web, client=client) as am,
        RouterProcess(CONFIG, web_config=web, client=client) as fw,
    ):
        am_answers, fw_answers = _answers(am.url), _answers(fw.url)
    assert am_answers[("none", "GET", "/-/healthy")][0] == 401  # the oracle protects health too
    assert am_answers[("right", "GET", "/-/healthy")][0] == 200
    diffs = {k: (am_answers[k], fw_answers[k]) for k in am_answers if am_answers[k] != fw_answers[k]}
    assert not diffs, diffs


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = TestCA(d)
    other = TestCA(d, "other-ca")
    srv, srv_key = ca.issue("server")
    cli, cli_key = ca.issue("client", client=True)
    rogue, rogue_key = other.issue("rogue", client=True)
    return {
        "ca": ca.pem,
        "srv": srv,
        "srv_key": srv_key,
        "cli": cli,
        "cli_key": cli_key,
        "rogue": rogue,
        "rogue_key": rogue_key,
        "dir": d,
    }


def _tls_client(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` (the system roots if None), presenting ``cert`` if given."""
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def _mtls_web(tmp: Path, pki: dict[str, Path], extra: str = "") -> Path:
    return _web(
        tmp,
        f"""
tls_server_config:
  cert_file: {pki["srv"]}
  key_file: {pki["srv_key"]}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki["ca"]}
  min_version: TLS12
{extra}
basic_auth_users:
  alice: {HASH}
""",
    )


def _amtool(url: str, http_config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [AMTOOL, f"--alertmanager.url={url}", f"--http.config.file={http_config}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which(AMTOOL) is None, reason="amtool not installed (prometheus-alertmanager)")
def test_mutual_tls_and_basic_auth_with_amtool(tmp_path: Path, pki: dict[str, Path]) -> None:
    web = _mtls_web(tmp_path, pki)
    good = tmp_path / "amtool-http.yml"
    good.write_text(
        f"basic_auth: {{username: alice, password: {PASSWORD!r}}}\n"
        f"tls_config: {{ca_file: {pki['ca']}, cert_file: {pki['cli']}, key_file: {pki['cli_key']}}}\n"
    )
    wrong = tmp_path / "amtool-wrong.yml"
    wrong.write_text(good.read_text().replace(repr(PASSWORD), "'nope'"))
    no_cert = tmp_path / "amtool-nocert.yml"
    no_cert.write_text(
        f"basic_auth: {{username: alice, password: {PASSWORD!r}}}\ntls_config: {{ca_file: {pki['ca']}}}\n"
    )
    client = {"auth": ("alice", PASSWORD), "verify": _tls_client(pki["ca"], pki["cli"], pki["cli_key"])}
    with RouterProcess(CONFIG, web_config=web, client=client) as fw:
        assert fw.url.startswith("https://")
        add = _amtool(fw.url, good, "alert", "add", "alertname=TLSCheck", "severity=page")
        assert add.returncode == 0, add.stderr
        query = _amtool(fw.url, good, "alert", "query", "-o", "json")
        assert query.returncode == 0 and "TLSCheck" in query.stdout, query.stderr
        sil = _amtool(fw.url, good, "silence", "add", "alertname=TLSCheck", "-c", "maint", "-d", "1h")
        assert sil.returncode == 0, sil.stderr
        listed = _amtool(fw.url, good, "silence", "query", "-q")
        assert sil.stdout.strip() in listed.stdout
        denied = _amtool(fw.url, wrong, "alert", "query")
        assert denied.returncode != 0 and "401" in denied.stderr + denied.stdout
        refused = _amtool(fw.url, no_cert, "alert", "query")
        assert refused.returncode != 0  # no client certificate: the handshake fails
        plain = _amtool(fw.url.replace("https", "http"), good, "alert", "query")
        assert plain.returncode != 0

        def get(ctx: ssl.SSLContext, path: str, auth: tuple[str, str] | None = None) -> httpx.Response:
            with httpx.Client(base_url=fw.url, verify=ctx, trust_env=False, timeout=10) as c:
                return c.get(path, auth=auth)

        with pytest.raises(httpx.HTTPError):
            get(_tls_client(pki["ca"]), "/-/healthy", ("alice", PASSWORD))  # no client certificate
        with pytest.raises(httpx.HTTPError):  # a client certificate of another CA
            get(_tls_client(pki["ca"], pki["rogue"], pki["rogue_key"]), "/-/healthy", ("alice", PASSWORD))
        with pytest.raises(httpx.HTTPError):  # the server's certificate is not trusted without the CA
            get(_tls_client(None, pki["cli"], pki["cli_key"]), "/-/healthy", ("alice", PASSWORD))
        mtls = _tls_client(pki["ca"], pki["cli"], pki["cli_key"])
        assert get(mtls, "/-/healthy", ("alice", PASSWORD)).status_code == 200
        r = get(mtls, "/api/v2/alerts", ("alice", "nope"))
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Basic"
        assert get(mtls, "/api/v2/alerts").status_code == 401


def test_min_version_and_reloads_without_restart(tmp_path: Path, pki: dict[str, Path]) -> None:
    """min_version is enforced; users and headers change on the next request, the server
    certificate on the next connection; a broken file answers 500 until it is fixed."""
    web = _mtls_web(
        tmp_path, pki, "  max_version: TLS13\nhttp_server_config:\n  headers: {X-Frame-Options: deny}"
    )
    text = web.read_text().replace(
        "client_auth_type: RequireAndVerifyClientCert", "client_auth_type: NoClientCert"
    )
    text = text.replace(f"  client_ca_file: {pki['ca']}\n", "").replace(
        "min_version: TLS12", "min_version: TLS13"
    )
    web.write_text(text)
    ca_ctx = _tls_client(pki["ca"])
    tls12 = _tls_client(pki["ca"])
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    with RouterThread(CONFIG, web_config_file=web) as fw:
        with httpx.Client(base_url=fw.url, verify=ca_ctx, trust_env=False, timeout=10) as c:
            r = c.get("/-/healthy", auth=("alice", PASSWORD))
            assert r.status_code == 200 and r.headers["x-frame-options"] == "deny"
        with (
            httpx.Client(base_url=fw.url, verify=tls12, trust_env=False, timeout=10) as c,
            pytest.raises(httpx.HTTPError),
        ):
            c.get("/-/healthy")
        # A new user, at once.
        web.write_text(web.read_text() + f"  bob: {HASH}\n")
        with httpx.Client(base_url=fw.url, verify=ca_ctx, trust_env=False, timeout=10) as c:
            assert c.get("/-/healthy", auth=("bob", PASSWORD)).status_code == 200
        # A new server certificate (same CA, new key): served on the next connection.
        old = ssl.get_server_certificate(("127.0.0.1", fw.port))
        ca = TestCA(tmp_path / "rotated")
        new_cert, new_key = ca.issue("server")
        web.write_text(
            web.read_text().replace(str(pki["srv"]), str(new_cert)).replace(str(pki["srv_key"]), str(new_key))
        )
        assert ssl.get_server_certificate(("127.0.0.1", fw.port)) != old
        rotated = _tls_client(ca.pem)
        with httpx.Client(base_url=fw.url, verify=rotated, trust_env=False, timeout=10) as c:
            assert c.get("/-/healthy", auth=("bob", PASSWORD)).status_code == 200
            # Broken file: 500 until fixed (the running certificate stays for open connections).
            good = web.read_text()
            web.write_text(good + "unknown_key: 1\n")
            assert c.get("/-/healthy", auth=("bob", PASSWORD)).status_code == 500
            web.write_text(good)
            assert c.get("/-/healthy", auth=("bob", PASSWORD)).status_code == 200


def test_plain_http_with_basic_auth_and_api_tokens(tmp_path: Path) -> None:
    """Without tls_server_config the router serves HTTP (as exporter-toolkit); forewarn's own
    bearer tokens are accepted beside the basic auth users, and the api_tokens check of /api/
    does not ask a basic-auth user again."""
    web = _web(tmp_path, f"basic_auth_users:\n  alice: {HASH}\n")
    with (
        RouterThread(CONFIG, web_config_file=web, api_tokens=["t0ken"]) as fw,
        httpx.Client(base_url=fw.url, trust_env=False, timeout=10) as c,
    ):
        assert fw.url.startswith("http://")
        assert c.get("/api/v2/alerts", auth=("alice", PASSWORD)).status_code == 200
        assert c.get("/api/v2/alerts", headers={"Authorization": "Bearer t0ken"}).status_code == 200
        assert c.get("/api/v2/alerts", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/-/healthy").status_code == 401


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config: {cert_file: a.pem}", "missing key_file"),
        ("tls_server_config: {key_file: a.key}", "missing cert_file"),
        ("tls_server_config: {cert_file: a, key_file: b, client_ca_file: c}", "without a client_auth_type"),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert}",
            "not supported",
        ),
        (
            "tls_server_config: {cert_file: a, key_file: b, client_auth_type: Sometimes}",
            "invalid 'Sometimes'",
        ),
        ("tls_server_config: {cert_file: a, key_file: b, min_version: TLS14}", "unknown TLS version"),
        ("tls_server_config: {cert_file: a, key_file: b, cipher_suites: [RC4]}", "unknown cipher"),
        ("tls_server_config: {cert_file: a, key_file: b, curve_preferences: [X25519]}", "curve"),
        (
            "tls_server_config: {cert_file: a, key_file: b, tls_version: x}",
            "tls_server_config.tls_version: unsupported key",
        ),
        ("basic_auth_users: {alice: hunter2}", "basic_auth_users.alice: not a bcrypt hash"),
        ("http_server_config: {headers: {X-Frame-Options: maybe}}", "invalid value for X-Frame-Options"),
        ("http_server_config: {headers: {Server: x}}", "can not be configured"),
        ("basic_auth: {}", "basic_auth: unsupported key"),
        ("[1, 2]", "top level must be a mapping"),
        ("a: [", "not YAML"),
    ],
)
def test_web_config_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(WebConfigError) as e:
        parse_web_config(text)
    assert message in str(e.value)
    assert "hunter2" not in str(e.value)  # a secret never appears in an error


def test_bad_files_and_the_cli(tmp_path: Path, pki: dict[str, Path]) -> None:
    missing = _web(tmp_path, "tls_server_config: {cert_file: nope.pem, key_file: nope.key}")
    with pytest.raises(WebConfigError, match=r"cannot load cert_file .*nope\.pem"):
        load_web_config(missing)
    (tmp_path / "bin.yml").write_bytes(b"\xff\xfe")
    with pytest.raises(WebConfigError, match="not UTF-8"):
        load_web_config(tmp_path / "bin.yml")
    # Relative file names are relative to the web config file, as in exporter-toolkit.
    shutil.copy(pki["srv"], tmp_path / "s.pem")
    shutil.copy(pki["srv_key"], tmp_path / "s.key")
    assert load_web_config(_web(tmp_path, "tls_server_config: {cert_file: s.pem, key_file: s.key}")).tls
    cfg = tmp_path / "am.yml"
    cfg.write_text(CONFIG)
    bad = tmp_path / "bad-web.yml"
    bad.write_text("basic_auth_users: {alice: hunter2}\n")
    out = subprocess.run(
        [sys.executable, "-m", "forewarn.cli", "alerts", "--config", str(cfg), "--listen", f"127.0.0.1:{free_port()}",
         "--data-dir", str(tmp_path / "d"), "--web.config.file", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0 and "not a bcrypt hash" in out.stderr and "Traceback" not in out.stderr
    assert "hunter2" not in out.stderr


def test_secrets_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    web = _web(tmp_path, f"basic_auth_users:\n  alice: {HASH}\n")
    caplog.set_level(logging.DEBUG)
    with RouterThread(CONFIG, web_config_file=web) as fw, httpx.Client(base_url=fw.url, trust_env=False) as c:
        c.get("/api/v2/alerts", auth=("alice", "s3cret-guess"))
        c.get("/api/v2/alerts", auth=("alice", PASSWORD))
        web.write_text(f"basic_auth_users:\n  alice: {HASH}\n  bob: not-a-hash-but-secret\n")
        assert c.get("/-/healthy", auth=("alice", PASSWORD)).status_code == 500
        web.write_text(f"basic_auth_users:\n  alice: {HASH}\n")
        time.sleep(0.01)
    text = caplog.text
    assert "web config" in text  # the broken file was reported...
    for secret in ("s3cret-guess", PASSWORD, HASH, "not-a-hash-but-secret"):
        assert secret not in text  # ... without any secret


def test_router_refuses_a_bad_web_config_before_listening(tmp_path: Path) -> None:
    cfg = tmp_path / "am.yml"
    cfg.write_text(CONFIG)
    web = _web(tmp_path, "tls_server_config: {cert_file: x.pem}")
    r = AlertRouter(cfg, data_dir=None, listen="127.0.0.1:0", web_config_file=web)
    with pytest.raises(WebConfigError, match="missing key_file"):
        asyncio.run(r.start())


def test_up_honours_the_web_config_key_and_its_flows_still_post(tmp_path: Path, pki: dict[str, Path]) -> None:
    """``alerts.web_config_file`` in forewarn's config puts ``forewarn up``'s router behind TLS
    and basic auth; forewarn's own alerts (the flows' post_alerts) still get through, with no
    password configured, while an outside client without credentials is refused."""
    from forewarn.alerts.anomaly import post_alerts

    from forewarn.config import load_settings
    from forewarn.up import Up

    web = _web(tmp_path, f"tls_server_config: {{cert_file: {pki['srv']}, key_file: {pki['srv_key']}}}\n"
               f"basic_auth_users: {{alice: {HASH}}}\n")  # fmt: skip
    cfg = tmp_path / "am.yml"
    cfg.write_text(CONFIG)
    settings = load_settings(
        overrides={"data_dir": str(tmp_path / "data"), "alerts": {"web_config_file": str(web)}}
    )
    up = Up(settings, alerts_config=cfg, alerts_listen="127.0.0.1:0", flows=False)

    async def main() -> None:
        from forewarn.alerts.server import AlertRouter

        up.router = await up._start_router(AlertRouter)
        url = f"https://127.0.0.1:{up.router.port}"
        try:
            await asyncio.to_thread(post_alerts, url, [{"labels": {"alertname": "FromFlows"}}])
            assert [a.labels["alertname"] for a in up.router.provider.alerts.values()] == ["FromFlows"]
            ca = _tls_client(pki["ca"])
            async with httpx.AsyncClient(base_url=url, verify=ca, trust_env=False) as c:
                assert (await c.get("/api/v2/alerts")).status_code == 401
                assert (await c.get("/api/v2/alerts", auth=("alice", PASSWORD))).status_code == 200
        finally:
            await up.stop()

    asyncio.run(main())
