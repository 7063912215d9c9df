"""ClickHouse's HTTP interface for the embedded store, so ClickHouse clients and Grafana reach it."""

from __future__ import annotations

from forewarn.clickhouse_http.server import ClickHouseHTTPServer
from forewarn.config import Settings

__all__ = ["ClickHouseHTTPServer", "serve_store"]


def serve_store(settings: Settings) -> ClickHouseHTTPServer | None:
    """Start the interface for the store ``settings`` name, if it is embedded and the port is not 0.

    A ClickHouse server store has its own HTTP interface, so forewarn serves none for it. When the
    default port 8123 is taken (often by a ClickHouse server) the interface stays off with a
    warning; a port the user asked for that cannot be bound is an error.
    """
    import logging

    from forewarn.config import mask_dsn
    from forewarn.storage.client import is_embedded

    log = logging.getLogger(__name__)
    cfg, dsn = settings.clickhouse_http, settings.storage_dsn
    if cfg.port == 0:
        return None
    if not is_embedded(dsn):
        log.info("store %s is a ClickHouse server: query it through its own HTTP interface", mask_dsn(dsn))
        return None
    server = ClickHouseHTTPServer(cfg, dsn, settings.storage.database)
    try:
        server.start()
    except OSError as e:
        server.engine.close()
        if "port" in cfg.model_fields_set:
            raise OSError(
                f"cannot serve the ClickHouse HTTP interface on {cfg.host}:{cfg.port} ({e}); "
                "choose another with --clickhouse-http-port PORT, or 0 to turn it off"
            ) from None
        log.warning(
            "ClickHouse HTTP interface off: cannot listen on %s:%d (%s); set --clickhouse-http-port",
            cfg.host,
            cfg.port,
            e,
        )
        return None
    return server
