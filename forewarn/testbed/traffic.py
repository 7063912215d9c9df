"""The test bed's users: open-loop Poisson arrivals at the frontend, in their own process.

Open loop (arrivals do not wait for answers) is how real users behave: a slow service gets the
same arrivals, so slowness shows as latency and queueing, not as a throughput drop. The rate is
``--rate`` times the control file's ``traffic.multiplier`` (daily curve, promotion surge) times
``1 - traffic.drop`` (an upstream outage); ``traffic.routes`` lists the routes launched so far
(new routes appear over time). Requests for unknown products and empty carts give the sparse
404s and 400s that real traffic has. Every ``--stats-s`` a JSON line of counts goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections import Counter

import httpx

from forewarn.testbed.control import ControlReader
from forewarn.testbed.service import PRODUCTS

# route -> share of arrivals; the last two are launched during a run (traffic.routes)
MIX = {
    "GET /": 0.30,
    "GET /products/{product_id}": 0.40,
    "POST /checkout": 0.15,
    "GET /search": 0.06,
    "GET /recommendations": 0.09,
}
LAUNCHED_LATER = ("GET /search", "GET /recommendations")
WORDS = ["lamp", "chair", "desk", "mug", "kettle", "rug", "shelf", "clock", "vase", "stool"]


def request_for(route: str, rng: random.Random) -> tuple[str, str, dict]:
    """The method, path and httpx keyword arguments of one user request on ``route``."""
    if route == "GET /":
        return "GET", "/", {}
    if route == "GET /products/{product_id}":
        pid = rng.randint(1, PRODUCTS) if rng.random() > 0.01 else rng.randint(PRODUCTS + 1, 10 * PRODUCTS)
        return "GET", f"/products/{pid}", {}
    if route == "POST /checkout":
        items = [] if rng.random() < 0.005 else [
            {"id": rng.randint(1, PRODUCTS), "qty": rng.randint(1, 3)} for _ in range(rng.randint(1, 3))
        ]  # fmt: skip
        return "POST", "/checkout", {"json": {"user": f"u{rng.randrange(5000)}", "items": items}}
    if route == "GET /search":
        return "GET", "/search", {"params": {"q": rng.choice(WORDS)}}
    return "GET", "/recommendations", {}


class Users:
    def __init__(self, target: str, control: ControlReader, rate: float, seed: int, max_inflight: int = 200):
        self.target, self.control, self.rate = target.rstrip("/"), control, rate
        self.rng = random.Random(seed)
        self.max_inflight = max_inflight
        self.inflight = 0
        self.counts: Counter[str] = Counter()

    def current_rate(self) -> float:
        t = self.control.state.get("traffic") or {}
        return self.rate * float(t.get("multiplier", 1.0)) * (1.0 - float(t.get("drop", 0.0)))

    def pick(self) -> str:
        launched = set((self.control.state.get("traffic") or {}).get("routes") or ())
        routes = [r for r in MIX if r not in LAUNCHED_LATER or r in launched]
        return self.rng.choices(routes, weights=[MIX[r] for r in routes])[0]

    async def one(self, client: httpx.AsyncClient, route: str) -> None:
        method, path, kw = request_for(route, self.rng)
        try:
            r = await client.request(method, self.target + path, **kw)
            self.counts[str(r.status_code)] += 1
        except httpx.HTTPError as e:
            self.counts[type(e).__name__] += 1
        finally:
            self.inflight -= 1

    async def run(self, duration_s: float | None, stats_s: float) -> None:
        limits = httpx.Limits(max_connections=self.max_inflight, max_keepalive_connections=32)
        tasks: set[asyncio.Task] = set()
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            start = next_stats = time.monotonic()
            due = start
            while duration_s is None or time.monotonic() - start < duration_s:
                rate = self.current_rate()
                due += self.rng.expovariate(rate) if rate > 0 else 0.25
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:
                    due = time.monotonic()  # fell behind (a loaded machine): do not burst to catch up
                if rate <= 0:
                    continue
                if self.inflight >= self.max_inflight:
                    self.counts["shed"] += 1
                    continue
                self.inflight += 1
                task = asyncio.create_task(self.one(client, self.pick()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                if time.monotonic() >= next_stats:
                    next_stats += stats_s
                    print(json.dumps({"t": time.time(), "rate": round(rate, 2), **self.counts}), flush=True)
            if tasks:
                await asyncio.wait(tasks, timeout=30)


def _interrupt(*_a: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Open-loop users of the test bed's frontend.")
    p.add_argument("--target", required=True, help="frontend base URL")
    p.add_argument("--control", help="control file (traffic.multiplier, traffic.drop, traffic.routes)")
    p.add_argument("--rate", type=float, default=8.0, help="requests per second at multiplier 1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until killed)")
    p.add_argument("--stats-s", type=float, default=10.0)
    a = p.parse_args(argv)
    users = Users(a.target, ControlReader(a.control).start(), a.rate, a.seed)
    signal.signal(signal.SIGTERM, _interrupt)  # the runner stops us with SIGTERM: print the totals
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(users.run(a.duration, a.stats_s))
    print(json.dumps({"t": time.time(), "final": True, **users.counts}), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
