"""A stand-in for Grafana's HTTP API, because Grafana cannot be installed on these machines.

It follows the documented behaviour of the endpoints ``forewarn grafana push`` uses
(grafana.com/docs/grafana/latest/developers/http_api/: data source, folder, dashboard,
annotations and health APIs): bearer-token auth (401 ``invalid API key``), 404 for unknown uids,
409 when a data source name is taken, 412 ``version-mismatch`` for an existing dashboard posted
without ``overwrite``, 400 for a missing folder or a dashboard without a title, and the response
bodies' fields (``id``, ``uid``, ``url``, ``version``, ``status``, ``message``). It keeps state in
memory and records every request, so tests can assert what was sent. A real uvicorn server on
127.0.0.1 serves it, and the real grafana-client talks to it.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class FakeGrafana:
    def __init__(self, token: str = "glsa_test"):
        self.token = token
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.annotations: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- app ----------------------------------------------------------------------------------------
    def app(self) -> Starlette:
        r = [
            Route("/api/health", self.health, methods=["GET"]),
            Route("/api/folders", self.create_folder, methods=["POST"]),
            Route("/api/folders/{uid}", self.get_folder, methods=["GET"]),
            Route("/api/datasources", self.create_datasource, methods=["POST"]),
            Route("/api/datasources/uid/{uid}", self.datasource_by_uid, methods=["GET", "PUT"]),
            Route("/api/dashboards/db", self.post_dashboard, methods=["POST"]),
            Route("/api/dashboards/uid/{uid}", self.get_dashboard, methods=["GET"]),
            Route("/api/annotations", self.annotations_route, methods=["GET", "POST"]),
        ]
        return Starlette(routes=r)

    def _auth(self, req: Request) -> JSONResponse | None:
        self.requests.append((req.method, req.url.path))
        if req.url.path == "/api/health":
            return None  # unauthenticated, as in Grafana
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "invalid API key"}, 401)
        return None

    async def health(self, req: Request) -> JSONResponse:
        self._auth(req)
        return JSONResponse({"commit": "fake", "database": "ok", "version": "11.6.0"})

    async def create_folder(self, req: Request) -> JSONResponse:
        if err := self._auth(req):
            return err
        body = await req.json()
        uid = body.get("uid") or f"f{next(self._ids)}"
        if not body.get("title"):
            return JSONResponse({"message": "folder title cannot be empty"}, 400)
        if uid in self.folders:
            return JSONResponse({"message": "a folder with the same uid already exists"}, 409)
        self.folders[uid] = {"id": next(self._ids), "uid": uid, "title": body["title"], "version": 1}
        return JSONResponse(self.folders[uid])

    async def get_folder(self, req: Request) -> JSONResponse:
        if err := self._auth(req):
            return err
        f = self.folders.get(req.path_params["uid"])
        return JSONResponse(f) if f else JSONResponse({"message": "folder not found"}, 404)

    async def create_datasource(self, req: Request) -> JSONResponse:
        if err := self._auth(req):
            return err
        body = await req.json()
        for k in ("name", "type", "access"):
            if not body.get(k):
                return JSONResponse({"message": f"Required field {k} missing"}, 400)
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return JSONResponse({"message": "data source with the same name already exists"}, 409)
        uid = body.get("uid") or f"ds{next(self._ids)}"
        ds = {**body, "id": next(self._ids), "uid": uid, "version": 1}
        ds.pop("secureJsonData", None)  # Grafana stores it encrypted and never returns it
        ds["secureJsonFields"] = {k: True for k in body.get("secureJsonData", {})}
        self.datasources[uid] = ds
        return JSONResponse(
            {"datasource": ds, "id": ds["id"], "message": "Datasource added", "name": ds["name"]}
        )

    async def datasource_by_uid(self, req: Request) -> JSONResponse:
        if err := self._auth(req):
            return err
        uid = req.path_params["uid"]
        if uid not in self.datasources:
            return JSONResponse({"message": "Data source not found"}, 404)
        if req.method == "GET":
            return JSONResponse(self.datasources[uid])
        body = await req.json()
        cur = self.datasources[uid]
        if body.get("version") is not None and body["version"] != cur["version"]:
            return JSONResponse({"message": "Datasource has already been updated by someone else"}, 409)
        secure = body.pop("secureJsonData", {})
        ds = {**body, "id": cur["id"], "uid": uid, "version": cur["version"] + 1}
        ds["secureJsonFields"] = {**cur.get("secureJsonFields", {}), **{k: True for k in secure}}
        self.datasources[uid] = ds
        return JSONResponse(
            {"datasource": ds, "id": ds["id"], "message": "Datasource updated", "name": ds["name"]}
        )

    async def post_dashboard(self, req: Request) -> JSONResponse:
        if err := self._auth(req):
            return err
        body = await req.json()
        dash = body.get("dashboard") or {}
        if not dash.get("title"):
            return JSONResponse({"message": "Dashboard title cannot be empty", "status": "empty-name"}, 400)
        folder = body.get("folderUid")
        if folder and folder not in self.folders:
            return JSONResponse({"message": "folder not found", "status": "not-found"}, 400)
        uid = dash.get("uid") or f"d{next(self._ids)}"
        with self._lock:
            cur = self.dashboards.get(uid)
            if cur and not body.get("overwrite"):
                return JSONResponse(
                    {
                        "message": "The dashboard has been changed by someone else",
                        "status": "version-mismatch",
                    },
                    412,
                )
            version = cur["version"] + 1 if cur else 1
            did = cur["id"] if cur else next(self._ids)
            self.dashboards[uid] = {
                "id": did, "uid": uid, "version": version, "folderUid": folder,
                "dashboard": {**dash, "id": did, "uid": uid, "version": version},
            }  # fmt: skip
        slug = dash["title"].lower().replace(" ", "-")
        return JSONResponse(
            {
                "id": did,
                "uid": uid,
                "url": f"/d/{uid}/{slug}",
                "status": "success",
                "version": version,
                "slug": slug,
            }
        )

    async def get_dashboard(self, req: Request) -> JSONResponse:
        if err := self._auth(req):
            return err
        d = self.dashboards.get(req.path_params["uid"])
        if not d:
            return JSONResponse({"message": "Dashboard not found"}, 404)
        return JSONResponse(
            {"dashboard": d["dashboard"], "meta": {"folderUid": d["folderUid"], "version": d["version"]}}
        )

    async def annotations_route(self, req: Request) -> JSONResponse:
        if err := self._auth(req):
            return err
        if req.method == "POST":
            body = await req.json()
            if not body.get("text"):
                return JSONResponse({"message": "Failed to save annotation: text is required"}, 400)
            a = {
                "id": next(self._ids), "time": int(body.get("time") or time.time() * 1000),
                "timeEnd": int(body.get("timeEnd") or body.get("time") or 0), "tags": body.get("tags") or [],
                "text": body["text"], "dashboardUID": body.get("dashboardUID"), "panelId": body.get("panelId"),
            }  # fmt: skip
            self.annotations.append(a)
            return JSONResponse({"message": "Annotation added", "id": a["id"]})
        q = req.query_params
        tags = q.getlist("tags")
        lo, hi = int(q.get("from", 0)), int(q.get("to", 2**62))
        limit = int(q.get("limit", 100))  # Grafana's default limit
        found = [
            a for a in self.annotations
            if all(t in a["tags"] for t in tags) and a["timeEnd"] >= lo and a["time"] <= hi
        ]  # fmt: skip
        return JSONResponse(sorted(found, key=lambda a: -a["time"])[:limit])

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, port: int) -> str:
        cfg = uvicorn.Config(self.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self.server.run, name="fake-grafana", daemon=True)
        self._thread.start()
        deadline = time.time() + 10
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError("fake Grafana did not start")
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
