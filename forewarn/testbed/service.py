"""One shop service of the test bed, run as its own OS process under ``opentelemetry-instrument``.

Nothing in here creates a span, a metric point or a log record by hand except the disk gauge
(no Python instrumentation reports filesystems): the FastAPI, httpx, requests and SQLAlchemy
instrumentations make the spans and the ``http.server.*`` histograms, the system-metrics
instrumentation the ``system.*`` and ``process.*`` metrics, and the logging instrumentation turns
``logging`` records into OTLP logs. So forewarn sees what a real user's services send.

The call graph (the ``TESTBED_URL_<SERVICE>`` environment variables point the callers at their
dependencies)::

    frontend -> catalog (SQLite through SQLAlchemy)
    frontend -> checkout -> catalog, inventory (-> catalog), payments

Work is ``time.sleep`` with a log-normal spread, so latency is realistic and CPU stays low. The
fault switches come from :mod:`forewarn.testbed.control`.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from forewarn.testbed.control import ControlReader

log = logging.getLogger("shop")
SERVICES = ("frontend", "checkout", "payments", "catalog", "inventory")
# median work per route in ms (before the downstream calls); sigma of the log-normal spread
MEDIAN_MS = {
    "GET /": 4.0,
    "GET /products/{product_id}": 3.0,
    "POST /checkout": 5.0,
    "GET /recommendations": 6.0,
    "GET /search": 4.0,
    "POST /orders": 8.0,
    "POST /charge": 35.0,
    "POST /reserve": 6.0,
    "GET /stock/{product_id}": 3.0,
    "GET /products": 2.0,
    "GET /products/{product_id}/stock": 2.0,
}
SIGMA = 0.35
PRODUCTS = 500


class Faults:
    """This service's view of the control file, plus what a deploy baked into its environment."""

    def __init__(self, name: str, reader: ControlReader, rng: random.Random):
        self.name, self.reader, self.rng = name, reader, rng
        # a deploy: the new version's latency change per route, e.g. "POST /charge=1.1"
        self.baked = {
            k.strip(): float(v)
            for k, v in (
                p.split("=", 1) for p in os.environ.get("TESTBED_LATENCY", "").split(";") if "=" in p
            )
        }

    @property
    def cfg(self) -> dict[str, Any]:
        return self.reader.service(self.name)

    def pause(self, route: str) -> None:
        """Sleep this route's work time: log-normal around its median, times any slow-down."""
        factor = self.baked.get(route, 1.0) * float((self.cfg.get("latency") or {}).get(route, 1.0))
        ms = MEDIAN_MS.get(route, 3.0) * math.exp(self.rng.gauss(0.0, SIGMA)) * factor
        time.sleep(ms / 1000.0)

    def fails(self) -> bool:
        return self.rng.random() < float(self.cfg.get("error_ratio", 0.0))


def _background(faults: Faults, disk: Disk | None) -> None:
    """Log bursts and memory growth run off the request path, as they do in real services."""
    leak: list[bytes] = []
    owed = 0.0  # MiB of the leak not yet allocated
    burst = logging.getLogger("shop.sync")
    next_burst = time.monotonic()
    while True:
        cfg = faults.cfg
        rate = float(cfg.get("log_burst_per_s", 0.0))
        now = time.monotonic()
        while rate > 0 and next_burst <= now:
            burst.error(
                "warehouse sync aborted: manifest %s from feed %s failed checksum (expected %08x, got %08x)",
                f"m-{faults.rng.randrange(10**6):06d}",
                faults.rng.choice(["eu-west", "us-east", "ap-south"]),
                faults.rng.getrandbits(32),
                faults.rng.getrandbits(32),
            )
            next_burst += 1.0 / rate
        if rate <= 0:
            next_burst = now
        mb_per_s = float(cfg.get("leak_mb_per_s", 0.0))
        if mb_per_s > 0:
            # bytes repetition writes every page, so the growth is resident memory, not just address space
            # a whole MiB at a time, with the fraction carried over, so the rate is the one asked for
            owed += mb_per_s * 0.25
            leak.extend(b"\x01" * (1 << 20) for _ in range(int(owed)))
            owed -= int(owed)
        elif leak:
            log.warning("session cache flushed: %d MiB released", len(leak))
            leak.clear()
        if disk is not None:
            disk.tick()
        time.sleep(0.25)


class Disk:
    """The database volume of the catalog, reported as the OpenTelemetry Collector's hostmetrics
    receiver does: ``system.filesystem.usage`` (bytes, a non-monotonic sum) by
    ``system.filesystem.state`` used/free/reserved. Its fill level is simulated (a 60 % baseline
    that drifts by a few MiB; the disk-fill fault ramps it to full)."""

    CAPACITY = 20 * 1024**3

    def __init__(self, faults: Faults):
        self.faults = faults
        self.drift = 0.0
        self.used = 0.6 * self.CAPACITY

    def tick(self) -> None:
        self.drift = max(-1.0, min(1.0, self.drift + self.faults.rng.gauss(0.0, 0.05)))
        base = 0.6 + 0.0004 * self.drift
        fill = self.faults.cfg.get("disk")
        if fill:
            elapsed = time.time() - float(fill["start"])
            frac = min(1.0, max(0.0, elapsed / float(fill["duration_s"])))
            base = (
                float(fill.get("from", 0.6))
                + (float(fill.get("to", 1.0)) - float(fill.get("from", 0.6))) * frac
            )
        self.used = min(1.0, base) * self.CAPACITY

    def observe(self, _options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        attrs = {
            "system.device": "/dev/vdb",
            "system.filesystem.mountpoint": "/var/lib/catalog",
            "system.filesystem.type": "ext4",
            "system.filesystem.mode": "rw",
        }
        yield Observation(int(self.used), {**attrs, "system.filesystem.state": "used"})
        yield Observation(int(self.CAPACITY - self.used), {**attrs, "system.filesystem.state": "free"})
        yield Observation(0, {**attrs, "system.filesystem.state": "reserved"})

    def register(self) -> None:
        from opentelemetry import metrics

        metrics.get_meter("forewarn.testbed.disk", "1").create_observable_up_down_counter(
            "system.filesystem.usage",
            callbacks=[self.observe],
            unit="By",
            description="Filesystem bytes used.",
        )


def build_app(name: str, faults: Faults) -> Any:
    """The FastAPI app of ``name``; its dependencies are reached over HTTP like any real service."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import JSONResponse

    app = FastAPI(title=name)
    rng = faults.rng

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "pid": os.getpid()}

    def url(dep: str) -> str:
        return os.environ[f"TESTBED_URL_{dep.upper()}"]

    if name == "frontend":
        import httpx

        http = httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=64))

        def relay(r: httpx.Response) -> Any:
            if r.status_code >= 400:
                raise HTTPException(r.status_code if r.status_code < 500 else 502, "upstream: " + r.text[:80])
            return r.json()

        @app.get("/")
        def home() -> Any:
            faults.pause("GET /")
            return {"featured": relay(http.get(url("catalog") + "/products", params={"limit": 8}))}

        @app.get("/products/{product_id}")
        def product(product_id: int) -> Any:
            faults.pause("GET /products/{product_id}")
            return relay(http.get(f"{url('catalog')}/products/{product_id}"))

        @app.get("/recommendations")
        def recommendations() -> Any:
            faults.pause("GET /recommendations")
            return relay(
                http.get(url("catalog") + "/products", params={"limit": 4, "offset": rng.randrange(400)})
            )

        @app.get("/search")
        def search(q: str) -> Any:
            faults.pause("GET /search")
            return relay(http.get(url("catalog") + "/products", params={"q": q, "limit": 10}))

        @app.post("/checkout")
        def checkout(body: dict) -> Any:
            if not body.get("items"):
                log.warning("checkout rejected: empty cart for user %s", body.get("user", "?"))
                raise HTTPException(400, "cart is empty")
            faults.pause("POST /checkout")
            return relay(http.post(url("checkout") + "/orders", json=body))

    elif name == "checkout":
        import httpx

        http = httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=64))

        @app.post("/orders")
        def orders(body: dict) -> Any:
            faults.pause("POST /orders")
            order = f"o-{rng.randrange(10**8):08d}"
            if faults.fails():
                log.error("order %s failed: order store unavailable (connection pool exhausted)", order)
                return JSONResponse({"error": "order store unavailable"}, status_code=500)
            total = 0.0
            for item in body["items"]:
                p = http.get(f"{url('catalog')}/products/{int(item['id'])}")
                if p.status_code == 404:
                    raise HTTPException(404, f"unknown product {item['id']}")
                if p.status_code >= 400:
                    log.error("order %s failed: catalog answered %d", order, p.status_code)
                    raise HTTPException(502, "catalog unavailable")
                total += p.json()["price"] * int(item.get("qty", 1))
            r = http.post(url("inventory") + "/reserve", json={"order": order, "items": body["items"]})
            if r.status_code >= 400:
                log.warning("order %s: reservation refused (%d)", order, r.status_code)
                raise HTTPException(409 if r.status_code == 409 else 502, "reservation failed")
            c = http.post(url("payments") + "/charge", json={"order": order, "amount": round(total, 2)})
            if c.status_code == 402:
                log.info("order %s declined by the card issuer", order)
                raise HTTPException(402, "payment declined")
            if c.status_code >= 400:
                log.error("order %s failed: payments answered %d", order, c.status_code)
                raise HTTPException(502, "payments unavailable")
            log.info("order %s placed: %d items, total %.2f", order, len(body["items"]), total)
            return {"order": order, "total": round(total, 2)}

    elif name == "payments":

        @app.post("/charge")
        def charge(body: dict) -> Any:
            faults.pause("POST /charge")
            u = rng.random()
            if faults.fails() or u < 0.003:
                log.error("charge for order %s failed: acquirer timeout after %d ms", body.get("order"), 3000)
                return JSONResponse({"error": "acquirer timeout"}, status_code=503)
            if u < 0.02:
                log.info("charge for order %s declined: insufficient funds", body.get("order"))
                return JSONResponse({"error": "declined"}, status_code=402)
            log.info("charged %.2f for order %s", float(body.get("amount", 0)), body.get("order"))
            return {"status": "captured", "id": f"ch_{rng.getrandbits(48):012x}"}

    elif name == "inventory":
        import requests

        session = requests.Session()

        @app.post("/reserve")
        def reserve(body: dict) -> Any:
            faults.pause("POST /reserve")
            if faults.fails():
                log.error("reservation for order %s failed: lock wait timeout", body.get("order"))
                return JSONResponse({"error": "lock wait timeout"}, status_code=500)
            for item in body.get("items", []):
                r = session.get(f"{url('catalog')}/products/{int(item['id'])}/stock", timeout=10)
                if r.status_code >= 400:
                    raise HTTPException(502 if r.status_code >= 500 else 404, "stock lookup failed")
                if r.json()["stock"] < int(item.get("qty", 1)):
                    log.warning("order %s: product %s out of stock", body.get("order"), item["id"])
                    raise HTTPException(409, "out of stock")
            log.info("reserved %d items for order %s", len(body.get("items", [])), body.get("order"))
            return {"reserved": True}

        @app.get("/stock/{product_id}")
        def stock(product_id: int) -> Any:
            faults.pause("GET /stock/{product_id}")
            r = session.get(f"{url('catalog')}/products/{product_id}/stock", timeout=10)
            if r.status_code >= 400:
                raise HTTPException(r.status_code, "stock lookup failed")
            return r.json()

    elif name == "catalog":
        from sqlalchemy import text

        engine = _database(faults)

        @app.get("/products")
        def products(limit: int = 10, offset: int = 0, q: str | None = None) -> Any:
            faults.pause("GET /products")
            if faults.fails():
                log.error("product listing failed: database is locked")
                return JSONResponse({"error": "database is locked"}, status_code=500)
            with engine.connect() as c:
                if q:
                    rows = c.execute(
                        text("SELECT id, name, price FROM products WHERE name LIKE :q ORDER BY id LIMIT :n"),
                        {"q": f"%{q}%", "n": limit},
                    ).all()
                else:
                    rows = c.execute(
                        text("SELECT id, name, price FROM products ORDER BY id LIMIT :n OFFSET :o"),
                        {"n": limit, "o": offset},
                    ).all()
            return [{"id": r.id, "name": r.name, "price": r.price} for r in rows]

        @app.get("/products/{product_id}")
        def product(product_id: int) -> Any:
            faults.pause("GET /products/{product_id}")
            if faults.fails():
                log.error("product %d lookup failed: database is locked", product_id)
                return JSONResponse({"error": "database is locked"}, status_code=500)
            with engine.connect() as c:
                r = c.execute(
                    text("SELECT id, name, price FROM products WHERE id = :id"), {"id": product_id}
                ).first()
            if r is None:
                log.info("product %d not found", product_id)
                raise HTTPException(404, "no such product")
            return {"id": r.id, "name": r.name, "price": r.price}

        @app.get("/products/{product_id}/stock")
        def product_stock(product_id: int) -> Any:
            faults.pause("GET /products/{product_id}/stock")
            with engine.connect() as c:
                r = c.execute(text("SELECT stock FROM products WHERE id = :id"), {"id": product_id}).first()
            if r is None:
                raise HTTPException(404, "no such product")
            return {"id": product_id, "stock": r.stock}

    return app


def _database(faults: Faults) -> Any:
    """The catalog's SQLite file through SQLAlchemy; the cascade fault slows every statement
    (a listener registered after the instrumentation's, so the delay is inside the DB span)."""
    from sqlalchemy import create_engine, event, text

    path = os.environ.get("TESTBED_DB", "catalog.db")
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False}, pool_size=16)
    # The SQLAlchemy instrumentation declares support below 2.1 only, so auto-instrumentation
    # skips it (it is listed in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS to keep that error out of
    # the logs); it works on 2.1 when applied to the engine, as its documentation shows.
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine, skip_dep_check=True)
    with engine.begin() as c:
        c.execute(
            text(
                "CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER)"
            )
        )
        if c.execute(text("SELECT count(*) FROM products")).scalar() == 0:
            words = ["lamp", "chair", "desk", "mug", "kettle", "rug", "shelf", "clock", "vase", "stool"]
            c.execute(
                text("INSERT INTO products VALUES (:id, :name, :price, :stock)"),
                [
                    {
                        "id": i,
                        "name": f"{words[i % 10]} {i}",
                        "price": round(5 + (i * 37 % 200), 2),
                        "stock": 1000,
                    }
                    for i in range(1, PRODUCTS + 1)
                ],
            )

    @event.listens_for(engine, "before_cursor_execute")
    def _slow(*_a: Any) -> None:
        ms = float(faults.cfg.get("db_delay_ms", 0.0))
        if ms > 0:
            time.sleep(ms * math.exp(faults.rng.gauss(0.0, SIGMA)) / 1000.0)

    return engine


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, choices=SERVICES)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--control", default=os.environ.get("TESTBED_CONTROL"))
    p.add_argument("--seed", type=int, default=int(os.environ.get("TESTBED_SEED", "1")))
    a = p.parse_args(argv)
    # Root logger at INFO to stderr; the logging instrumentation has already added its OTLP
    # handler there, and uvicorn's loggers propagate to it (log_config=None).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faults = Faults(
        a.name, ControlReader(a.control).start(), random.Random(f"{a.seed}/{a.name}/{os.getpid()}")
    )
    disk = None
    if a.name == "catalog":
        disk = Disk(faults)
        disk.register()
    threading.Thread(target=_background, args=(faults, disk), name="shop-background", daemon=True).start()
    app = build_app(a.name, faults)
    import uvicorn

    # SO_REUSEPORT lets a new version start on the same port before the old one stops: a rolling
    # deploy without refused connections.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", a.port))
    log.info("%s %s listening on 127.0.0.1:%d", a.name, os.environ.get("TESTBED_VERSION", "1.0.0"), a.port)
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
