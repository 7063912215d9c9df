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


def _register() -> None:
    # Imported here, not at module top, so each component stays optional for the others.
    from forewarn import storage_cli
    from forewarn.alerts import cli as alerts_cli
    from forewarn.collector import cli as collector_cli
    from forewarn.detectors import cli as detectors_cli
    from forewarn.flows import cli as flows_cli

    for module in (storage_cli, collector_cli, detectors_cli, alerts_cli, flows_cli):
        module.register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
