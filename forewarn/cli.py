"""The ``forewarn`` command. Each component registers its own commands from its ``cli`` module,
which keeps heavy imports inside the command bodies so ``forewarn query`` starts fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forewarn import __version__

app = typer.Typer(
    name="forewarn",
    help="forewarn: OTLP in, ClickHouse storage, streaming anomaly detection, Alertmanager-compatible alerts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", envvar="FOREWARN_CONFIG", help="YAML configuration file."),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = {"config": config}


# Modules that add commands; each has a ``register(app)`` and imports its heavy parts lazily.
COMMAND_MODULES = (
    "forewarn.storage_cli",
    "forewarn.up_cli",
    "forewarn.collector.cli",
    "forewarn.collector.ingest_cli",
    "forewarn.detectors.cli",
    "forewarn.alerts.cli",
    "forewarn.flows.cli",
    "forewarn.dashboards.cli",
)


def _register() -> None:
    # Imported here, not at module top, so each component stays optional for the others.
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
