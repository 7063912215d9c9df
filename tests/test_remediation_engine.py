"""Remediation engine against real HTTP receivers on 127.0.0.1 and the real (chDB) audit table."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from forewarn.alerts.remediation.signing import verify_signature
from test_remediation_support import SECRET, Receiver, alert, audit_rows, config, running, settled, until


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_signature_is_verifiable_by_the_receiver(store, settings, tmp_path, receiver) -> None:
    async def main() -> None:
        async with running(config(receiver.url, tmp_path), settings) as eng:
            await eng.submit('{}:{alertname="Boom"}', "team", [alert(1)])
            await settled(eng)

    asyncio.run(main())
    assert receiver.count() == 1
    req = receiver.requests[0]
    ts, sig = req.headers["X-Forewarn-Timestamp"], req.headers["X-Forewarn-Signature"]
    assert sig.startswith("v1=")
    assert verify_signature(SECRET, ts, req.body, sig)
    assert not verify_signature(SECRET, ts, req.body.replace(b"Boom", b"Bust"), sig)
    assert not verify_signature("other-key", ts, req.body, sig)
    assert not verify_signature(SECRET, str(int(ts) - 301), req.body, sig)  # outside the replay window
    body = json.loads(req.body)
    assert body["hook"] == "fix" and body["kind"] == "fire"
    assert body["alert"]["labels"]["instance"] == "i1"
    assert body["idempotencyKey"] == req.headers["Idempotency-Key"]
    assert SECRET not in req.body.decode()


def test_refluses_do_not_reexecute_and_restart_mid_retry_keeps_the_key(store, settings, tmp_path) -> None:
    """Receiver fails with 503 twice, the engine is stopped between retries and restarted:
    the action resumes with the same idempotency key and succeeds exactly once."""
    receiver = Receiver(script=[503, 503, 503], default=200)
    cfg = config(receiver.url, tmp_path, retries=6, backoff={"initial": "300ms", "max": "600ms"})
    group = '{}:{alertname="Boom"}'

    async def first_run() -> None:
        async with running(cfg, settings) as eng:
            for _ in range(3):  # three flushes of the same firing alert
                await eng.submit(group, "team", [alert(7)])
            await until(lambda: receiver.count() >= 2, what="two failed attempts")
        # stopped here, mid-retry

    async def second_run() -> None:
        async with running(cfg, settings) as eng:
            await eng.submit(group, "team", [alert(7)])  # the router re-flushes after its own restart
            await until(lambda: receiver.count(200) >= 1, what="the successful attempt")
            await settled(eng)
            [action] = await eng.list_actions()
            assert action.state == "succeeded"

    try:
        asyncio.run(first_run())
        after_first = receiver.count()
        assert receiver.count(200) == 0
        asyncio.run(second_run())
    finally:
        receiver.close()
    keys = {r.headers["Idempotency-Key"] for r in receiver.requests}
    assert len(keys) == 1
    assert receiver.count(200) == 1
    assert receiver.count() == 4  # 3 x 503, then the success
    attempts = [int(r.headers["X-Forewarn-Attempt"]) for r in receiver.requests]
    assert attempts == sorted(attempts) and attempts[-1] >= 4
    assert after_first >= 2
    rows = audit_rows(store, "event = 'attempt'")
    assert [r["outcome"] for r in rows].count("success") == 1
    assert len(rows) == receiver.count()  # one audit row for every attempt that reached the receiver
    assert {r["idempotency_key"] for r in rows} == keys
    # The first run stops as soon as the receiver has seen two attempts; on a loaded machine the
    # second one can still be in flight then (answered, but not yet read by the engine), and is
    # audited as interrupted with no status: every other attempt carries the receiver's status.
    interrupted = [r["outcome"] == "interrupted" for r in rows]
    assert sum(interrupted) <= 1 and all(
        r["status_code"] == 0 for r, i in zip(rows, interrupted, strict=True) if i
    )
    assert [r["status_code"] for r, i in zip(rows, interrupted, strict=True) if not i] == [
        q.status for q, i in zip(receiver.requests, interrupted, strict=True) if not i
    ]
    assert len(audit_rows(store, "event = 'succeeded'")) == 1


def test_breaker_opens_then_half_opens_and_state_survives_restart(store, settings, tmp_path) -> None:
    receiver = Receiver(script=[500, 500, 500], default=200)
    cfg = config(receiver.url, tmp_path, breaker={"failures": 2, "reset_after": "1s"})

    async def main() -> None:
        async with running(cfg, settings) as eng:
            await eng.submit("g1", "team", [alert(1)])
            await eng.submit("g2", "team", [alert(2)])
            await settled(eng)
            assert eng.status()["breakers"] == {"fix": "open"}
            await eng.submit("g3", "team", [alert(3)])  # refused while open
            await settled(eng)
        assert receiver.count() == 2
        async with running(cfg, settings) as eng:  # open state persisted
            assert eng.status()["breakers"] == {"fix": "open"}
            await asyncio.sleep(1.1)
            await eng.submit("g4", "team", [alert(4)])  # half-open trial: fails (3rd 500) -> open again
            await settled(eng)
            assert eng.status()["breakers"] == {"fix": "open"}
            await asyncio.sleep(1.1)
            await eng.submit("g5", "team", [alert(5)])  # trial succeeds -> closed
            await settled(eng)
            assert eng.status()["breakers"] == {"fix": "closed"}
            states = {a.group_key: (a.state, a.reason) for a in await eng.list_actions()}
        assert states["g3"] == ("refused", "breaker_open")
        assert states["g4"][0] == "failed" and states["g5"][0] == "succeeded"

    try:
        asyncio.run(main())
    finally:
        receiver.close()
    assert receiver.count() == 4
    transitions = [r["outcome"] for r in audit_rows(store, "event = 'breaker'")]
    assert transitions == ["open", "half_open", "open", "half_open", "closed"]
    assert len(audit_rows(store, "event = 'refused' AND reason = 'breaker_open'")) == 1


def test_alert_storm_respects_cooldown_and_blast_radius_cap(store, settings, tmp_path, receiver) -> None:
    """1,000 alerts in 100 groups: the cap lets 10 run; the other alerts of those 10 groups hit
    their group's cooldown, the 90 other groups are refused by the blast-radius cap."""
    cfg = config(receiver.url, tmp_path, cooldown="15m", max_executions=10, window="10m")

    async def main() -> None:
        async with running(cfg, settings) as eng:
            for g in range(100):
                await eng.submit(f"group-{g}", "team", [alert(g * 10 + i) for i in range(10)])
            for g in range(100):  # the storm goes on: every group flushes again
                await eng.submit(f"group-{g}", "team", [alert(g * 10 + i) for i in range(10)])
            await settled(eng, timeout=120)
            states = Counter((a.state, a.reason) for a in await eng.list_actions(limit=5000))
        assert states == {
            ("succeeded", ""): 10,
            ("refused", "blast_radius"): 900,
            ("refused", "cooldown"): 90,
        }

    asyncio.run(main())
    assert receiver.count() == 10
    assert len({r.headers["Idempotency-Key"] for r in receiver.requests}) == 10
    outcomes = Counter(
        (r[0], r[1]) for r in store.query("SELECT event, outcome FROM forewarn_remediation_audit").result_rows
    )
    assert outcomes[("refused", "blast_radius")] == 900
    assert outcomes[("refused", "cooldown")] == 90
    assert outcomes[("attempt", "success")] == 10
    assert outcomes[("succeeded", "succeeded")] == 10


def test_blast_radius_cap_is_persisted_across_restart(store, settings, tmp_path, receiver) -> None:
    cfg = config(receiver.url, tmp_path, max_executions=3, window="10m")

    async def main() -> None:
        async with running(cfg, settings) as eng:
            await eng.submit("g", "team", [alert(i) for i in range(2)])
            await settled(eng)
        async with running(cfg, settings) as eng:
            await eng.submit("g", "team", [alert(i) for i in range(2, 6)])
            await settled(eng)

    asyncio.run(main())
    assert receiver.count() == 3
    assert len(audit_rows(store, "reason = 'blast_radius'")) == 3


def test_allowlist_refuses_and_redirects_are_not_followed(store, settings, tmp_path) -> None:
    outside = Receiver()
    inside = Receiver(default=302, script=[])
    try:
        # 1) the hook URL itself is outside the allowlist: nothing is sent
        cfg = config(outside.url, tmp_path, allow=[inside.url + "/"])

        async def refused() -> None:
            async with running(cfg, settings) as eng:
                await eng.submit("g", "team", [alert(1)])
                await settled(eng)

        asyncio.run(refused())
        assert outside.count() == 0
        [row] = audit_rows(store, "event = 'refused'")
        assert row["reason"] == "allowlist" and row["url"] == f"{outside.url}/fix"

        # 2) an allowed hook answers with a redirect to an address outside: not followed
        inside.default = 302
        inside.script = [(302, {"Location": f"{outside.url}/steal"})]
        cfg2 = config(inside.url, tmp_path, allow=[inside.url + "/"], retries=3)

        async def redirected() -> None:
            async with running(cfg2, settings) as eng:
                await eng.submit("g", "team", [alert(2)])
                await settled(eng)
                [failed] = await eng.list_actions(state="failed")
                assert "not followed" in failed.last_error

        asyncio.run(redirected())
        assert inside.count() == 1  # a redirect is not retried either
        assert outside.count() == 0
    finally:
        outside.close()
        inside.close()


def test_retry_policy_dry_run_and_resolve_action(store, settings, tmp_path) -> None:
    receiver = Receiver(script=[400, (429, {"Retry-After": "0"}), 200], default=200)
    try:
        cfg = config(
            receiver.url,
            tmp_path,
            retries=2,
            on_resolve={"url": f"{receiver.url}/undo"},
        )

        async def main() -> None:
            async with running(cfg, settings) as eng:
                await eng.submit("g1", "team", [alert(1)])  # 400: a client error is not retried
                await settled(eng)
                await eng.submit("g2", "team", [alert(2)])  # 429 then 200
                await settled(eng)
                await eng.submit("g1", "team", [alert(1, status="resolved")])  # fire failed: no undo
                await eng.submit("g2", "team", [alert(2, status="resolved")])
                await eng.submit("g2", "team", [alert(2, status="resolved")])  # repeated: once
                await settled(eng)

        asyncio.run(main())
        assert [(r.path, r.status) for r in receiver.requests] == [
            ("/fix", 400),
            ("/fix", 429),
            ("/fix", 200),
            ("/undo", 200),
        ]
        undo = json.loads(receiver.requests[-1].body)
        assert undo["kind"] == "resolve" and undo["alert"]["status"] == "resolved"

        dry = config(receiver.url, tmp_path, dry_run=True, on_resolve={"url": f"{receiver.url}/undo"})

        async def dry_run() -> None:
            async with running(dry, settings) as eng:
                await eng.submit("g3", "team", [alert(3)])
                await eng.submit("g3", "team", [alert(3, status="resolved")])
                await settled(eng)

        asyncio.run(dry_run())
        assert receiver.count() == 4  # nothing more was sent
        rows = audit_rows(store, "event = 'dry_run'")
        assert [(r["kind"], r["dry_run"]) for r in rows] == [("fire", True), ("resolve", True)]
    finally:
        receiver.close()


def test_audit_rows_wait_in_the_outbox_while_the_store_is_down(store, settings, tmp_path, receiver) -> None:
    from test_remediation_support import RemediationEngine  # type: ignore[attr-defined]

    from forewarn.net import free_port

    cfg = config(receiver.url, tmp_path)
    down = f"http://127.0.0.1:{free_port()}"

    async def main() -> None:
        eng = RemediationEngine(cfg, settings.data_dir, down, settings.storage.database)
        await eng.start()
        await eng.submit("g", "team", [alert(1)])
        await until(lambda: receiver.count() == 1, what="the call")
        await until(lambda: eng.audit is not None and eng.audit.last_error != "", what="a failed audit write")
        # queued + attempt + succeeded, kept locally (the last may be recorded just after the call lands)
        await until(lambda: eng.state.audit_backlog() == 3, what="every audit event in the outbox")
        await eng.stop()
        async with running(cfg, settings) as eng2:  # the store is back: the outbox drains
            assert await eng2.audit_flushed(30)

    asyncio.run(main())
    events = [r["event"] for r in audit_rows(store)]
    assert events == ["queued", "attempt", "succeeded"]


def test_per_hook_rate_limit_timeout_and_reload(store, settings, tmp_path) -> None:
    slow = Receiver(delay_s=0.5)
    fast = Receiver()
    try:
        cfg = config(slow.url, tmp_path, timeout="100ms", max_executions=2, window="1m")
        base = config(fast.url, tmp_path, max_executions=100, window="1m")
        cfg2 = base.model_copy(update={"hooks": [base.hooks[0].model_copy(update={"max_executions": 2})]})

        async def main() -> None:
            async with running(cfg, settings) as eng:
                await eng.submit("g1", "team", [alert(1)])
                await settled(eng)
                [failed] = await eng.list_actions(state="failed")
                assert failed.last_error.startswith("timeout after 0.1s")
                await eng.reload(cfg2)  # new URL, global cap 100, the hook's own cap 2 per minute
                await eng.submit("g2", "team", [alert(2)])
                await eng.submit("g3", "team", [alert(3)])
                await settled(eng)
                assert fast.count() == 1
                states = {a.group_key: (a.state, a.reason) for a in await eng.list_actions()}
                assert states["g3"] == ("refused", "hook_rate_limit")  # g1 and g2 used the hook's 2

        asyncio.run(main())
    finally:
        slow.close()
        fast.close()
    [row] = audit_rows(store, "event = 'attempt' AND outcome = 'error'") or audit_rows(
        store, "event = 'attempt' AND outcome = 'retryable_error'"
    )
    assert row["error"].startswith("timeout") and row["status_code"] == 0


def test_resolution_cancels_retries_and_pending_approvals(store, settings, tmp_path) -> None:
    receiver = Receiver(default=503)
    sent = [0]  # attempts seen when the alert resolved
    try:
        cfg = config(receiver.url, tmp_path, retries=10, backoff={"initial": "400ms", "max": "400ms"})
        gated = config(receiver.url, tmp_path, require_approval=True)

        async def main() -> None:
            async with running(cfg, settings) as eng:
                await eng.submit("g1", "team", [alert(1)])
                # ">= 1": on a loaded machine this poll can wake after the next retry (400 ms) too
                await until(lambda: receiver.count() >= 1, what="the first attempt")
                sent[0] = receiver.count()
                await eng.submit("g1", "team", [alert(1, status="resolved")])
                await settled(eng)
                [a] = await eng.list_actions()
                assert (a.state, a.reason) == ("cancelled", "alert_resolved")
                await asyncio.sleep(0.5)  # past the next retry time: nothing more is sent
            async with running(gated, settings) as eng:
                await eng.submit("g2", "team", [alert(2)])
                await settled(eng)
                await eng.submit("g2", "team", [alert(2, status="resolved")])
                await settled(eng)
                assert [a.state for a in await eng.list_actions(state="pending")] == []

        asyncio.run(main())
    finally:
        receiver.close()
    assert receiver.count() <= sent[0] + 1  # after the resolution, at most the one in flight
    assert len(audit_rows(store, "event = 'cancelled' AND reason = 'alert_resolved'")) == 2


def test_finished_actions_are_forgotten_only_after_their_alert_stopped_flushing(tmp_path) -> None:
    from forewarn.alerts.remediation.state import Action, State

    st = State(tmp_path / "s.sqlite")

    def act(i: str, state: str, at: float) -> Action:
        return Action(
            i,
            "k" + i,
            "h",
            "fire",
            "g",
            "r",
            "fp",
            "",
            "{}",
            "u",
            "POST",
            state,
            created_at=at,
            updated_at=at,
        )

    with st.tx() as c:
        for a in (act("old", "succeeded", 100), act("seen", "succeeded", 100), act("wait", "pending", 100)):
            st.insert_action(c, a)
        assert st.seen_again(c, "kseen", 5000) and not st.seen_again(c, "knew", 5000)
    st.prune(executions_before=0, actions_before=1000)
    assert sorted(a.id for a in st.list_actions()) == ["seen", "wait"]
    st.close()


def test_backoff_does_not_hold_a_concurrency_slot(store, settings, tmp_path) -> None:
    receiver = Receiver(script=[(503, {"Retry-After": "3"})], default=200)
    try:
        cfg = config(
            receiver.url, tmp_path, max_concurrency=1, retries=1, backoff={"initial": "3s", "max": "3s"}
        )

        async def main() -> None:
            async with running(cfg, settings) as eng:
                await eng.submit("g1", "team", [alert(1)])
                await until(lambda: receiver.count() == 1, what="the first attempt")
                await eng.submit("g2", "team", [alert(2)])
                await until(lambda: receiver.count(200) == 2, what="both successes")

        asyncio.run(main())
    finally:
        receiver.close()
    order = [json.loads(r.body)["groupKey"] for r in receiver.requests]
    assert order == ["g1", "g2", "g1"]  # g2 ran while g1 waited for its retry
