"""The ``remediations:`` section: every bad key is an error naming its path."""

from __future__ import annotations

import pytest
import yaml
from forewarn.alerts.remediation.config import parse_duration, parse_remediations
from forewarn.alerts.remediation.sender import allowed

EXAMPLE = """
remediations:
  dry_run: false
  allowlist: ["http://127.0.0.1:8080/", "https://runbooks.internal/"]
  secret_env: FOREWARN_REMEDIATION_SECRET
  max_executions: 10
  window: 10m
  hooks:
    - name: restart-checkout
      matchers: ['alertname="HighLatency"', 'service=~"checkout|cart"']
      url: http://127.0.0.1:8080/restart
      method: POST
      timeout: 5s
      retries: 4
      cooldown: 15m
      require_approval: false
      on_resolve: {url: http://127.0.0.1:8080/undo}
      breaker: {failures: 5, reset_after: 1m}
"""


def test_documented_example_parses() -> None:
    cfg = parse_remediations(yaml.safe_load(EXAMPLE)["remediations"])
    [h] = cfg.hooks
    assert (cfg.window, h.timeout, h.cooldown, h.breaker.reset_after) == (600, 5, 900, 60)
    assert h.matches({"alertname": "HighLatency", "service": "cart"})
    assert not h.matches({"alertname": "HighLatency", "service": "search"})
    assert h.on_resolve is not None and h.on_resolve.url.endswith("/undo")
    assert parse_remediations(None).hooks == []


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            lambda r: r["hooks"][0].update(urll="x"),
            "unknown key `urll` in section `remediations.hooks[0]`; did you mean `url`?",
        ),
        (lambda r: r["hooks"][0].update(url="ftp://x/"), "remediations.hooks[0].url"),
        (lambda r: r["hooks"][0].update(timeout="5 parsecs"), "remediations.hooks[0].timeout"),
        (lambda r: r["hooks"][0].update(matchers=["service=~(["]), "remediations.hooks[0].matchers"),
        (lambda r: r["hooks"][0]["breaker"].update(failures=0), "remediations.hooks[0].breaker.failures"),
        (lambda r: r["hooks"][0].update(headers={"Idempotency-Key": "x"}), "remediations.hooks[0].headers"),
        (lambda r: r["hooks"][0].update(method="BREW"), "remediations.hooks[0].method"),
        (lambda r: r["hooks"][0]["on_resolve"].update(url="nope"), "remediations.hooks[0].on_resolve.url"),
        (
            lambda r: r["hooks"][0].update(tls_config={"cert_file": "/c.pem"}),
            "remediations.hooks[0].tls_config",
        ),
        (
            lambda r: r["hooks"][0].update(tls_config={"ca": "/c.pem"}),
            "unknown key `ca` in section `remediations.hooks[0].tls_config`",
        ),
        (lambda r: r.update(allowlist=["not a url"]), "remediations.allowlist[0]"),
        (lambda r: r.update(window="-1s"), "remediations.window"),
        (lambda r: r.update(max_executions=-1), "remediations.max_executions"),
        (lambda r: r.update(blast_radius=3), "unknown key `blast_radius` in section `remediations`"),
        (lambda r: r.pop("secret_env"), "remediations: hooks need a signing key"),
        (lambda r: r["hooks"].append(dict(r["hooks"][0])), "hook names must be unique: restart-checkout"),
    ],
)
def test_bad_keys_are_named(change, path: str) -> None:
    raw = yaml.safe_load(EXAMPLE)["remediations"]
    change(raw)
    with pytest.raises(ValueError) as e:
        parse_remediations(raw)
    assert path in str(e.value)


def test_secret_is_read_from_env_or_file_and_never_echoed(tmp_path, monkeypatch) -> None:
    raw = yaml.safe_load(EXAMPLE)["remediations"]
    cfg = parse_remediations(raw)
    monkeypatch.delenv("FOREWARN_REMEDIATION_SECRET", raising=False)
    with pytest.raises(ValueError, match="FOREWARN_REMEDIATION_SECRET is not set"):
        cfg.read_secret()
    monkeypatch.setenv("FOREWARN_REMEDIATION_SECRET", "hunter2")
    assert cfg.read_secret() == b"hunter2"
    assert "hunter2" not in repr(cfg)
    raw.pop("secret_env")
    raw["secret_file"] = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="cannot read"):
        parse_remediations(raw).read_secret()


def test_durations_and_allowlist_prefixes() -> None:
    assert parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25 and parse_duration("0") == 0
    for bad in ("", "5", "m5", "1h 30m", "-3s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    allow = ["http://127.0.0.1:8080/hooks/", "https://runbooks.internal"]
    assert allowed("http://127.0.0.1:8080/hooks/restart", allow)
    assert allowed("HTTP://127.0.0.1:8080/hooks/", allow)
    assert allowed("https://runbooks.internal:443/a/b", allow)
    assert not allowed("http://127.0.0.1:8080/hooksx", allow)
    assert not allowed("http://127.0.0.1:8080/hooks/%2e%2e/admin", allow)
    assert not allowed("http://127.0.0.1:8081/hooks/x", allow)
    assert not allowed("https://127.0.0.1:8080/hooks/x", allow)
    assert not allowed("http://runbooks.internal/a", allow)
    assert not allowed("https://runbooks.internal.evil.com/a", allow)
    assert not allowed("http://127.0.0.1:8080/hooks/x", [])
