"""Commands that work on the store directly: ``migrate``, ``query``, ``config show``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from forewarn import cliutil

StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", help="DSN: chdb:///path (embedded) or http(s)://user:pass@host:8123."),
]

FORMATS = {"table": "PrettyCompactMonoBlock", "json": "JSONEachRow", "csv": "CSVWithNames"}


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_cmd)
    app.command("query")(query_cmd)
    config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
    config_app.command("show")(config_show_cmd)
    app.add_typer(config_app, name="config")


def migrate_cmd(ctx: typer.Context, storage: StorageOpt = None, data_dir: cliutil.DataDirOpt = None) -> None:
    """Create or upgrade the schema and apply the configured TTLs (idempotent)."""
    from forewarn.storage import connect, migrate
    from forewarn.storage.client import schema_for

    s = cliutil.settings(ctx, storage={"dsn": storage}, data_dir=data_dir)
    try:
        client = connect(s.storage_dsn)
        applied = migrate(client, schema_for(s), s.storage.ttl_days)
    except Exception as e:
        cliutil.fail(f"migration failed: {e}", 1)
    names = ", ".join(f"{m.version} {m.name}" for m in applied) or "none (schema up to date)"
    typer.echo(f"applied migrations: {names}")


def query_cmd(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="SQL to run; '-' reads it from stdin.")],
    storage: StorageOpt = None,
    data_dir: cliutil.DataDirOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table | json (one JSON object per row) | csv")
    ] = "table",
) -> None:
    """Run SQL against the store and print the result, formatted by ClickHouse itself.

    A store held by a running forewarn (same --data-dir) is queried through it; a FORMAT clause
    in the SQL wins over --format.
    """
    if fmt not in FORMATS:
        cliutil.fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if sql == "-":
        sql = sys.stdin.read()
    s = cliutil.settings(ctx, storage={"dsn": storage}, data_dir=data_dir)
    last = b"\n"
    with cliutil.reader(s) as reader:
        try:
            for chunk in reader.raw(sql, FORMATS[fmt]):
                if chunk:
                    sys.stdout.buffer.write(chunk)
                    last = chunk[-1:]
        except Exception as e:
            cliutil.fail(str(e), 1)
    if last != b"\n":
        sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.flush()


def config_show_cmd(
    ctx: typer.Context,
    storage: StorageOpt = None,
    data_dir: cliutil.DataDirOpt = None,
) -> None:
    """Print the effective configuration (file + environment + flags) with secrets masked."""
    import yaml

    from forewarn.config import masked_dump

    s = cliutil.settings(ctx, storage={"dsn": storage}, data_dir=data_dir)
    typer.echo(yaml.safe_dump(masked_dump(s), sort_keys=False), nl=False)
