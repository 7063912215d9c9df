"""Commands of the Kafka ingest path (``forewarn ingest``)."""

from __future__ import annotations

from typing import Annotated

import typer

from forewarn import cliutil
from forewarn.storage_cli import StorageOpt


def register(app: typer.Typer) -> None:
    """Add the ingest commands to the ``forewarn`` CLI."""
    app.command("ingest")(ingest_cmd)


def ingest_cmd(
    ctx: typer.Context,
    brokers: Annotated[
        str | None, typer.Option("--brokers", help="Kafka bootstrap servers, host:port,...")
    ] = None,
    storage: StorageOpt = None,
    group: Annotated[
        str | None, typer.Option("--group", help="consumer group; ingesters in one group share partitions.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="serve /metrics on this port.")
    ] = None,
    data_dir: cliutil.DataDirOpt = None,
) -> None:
    """Consume OTLP records from Kafka and load them into ClickHouse, exactly once per record.

    Start more ingesters with the same --group to scale out; each takes a share of the partitions.
    """
    from forewarn.collector.ingest import run_ingester
    from forewarn.collector.kafka_topics import TopicError

    from forewarn.config import mask_dsn

    s = cliutil.settings(
        ctx,
        data_dir=data_dir,
        storage={"dsn": storage},
        kafka={"brokers": brokers, "group_id": group, "metrics_port": metrics_port},
    )
    stop = cliutil.wait_for_shutdown()
    cliutil.log.info(
        "ingest: brokers %s, group %s, storage %s/%s",
        s.kafka.brokers,
        s.kafka.group_id,
        mask_dsn(s.storage_dsn),
        s.storage.database,
    )
    try:
        run_ingester(s, stop)
    except TopicError as e:
        cliutil.fail(str(e), 1)
    except (ConnectionError, ValueError) as e:
        cliutil.fail(f"cannot start the ingester: {e}", 1)
