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
    rich_markup_mode=None,
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
    _whole_short_help(app)


def _first_paragraph(text: str | None) -> str | None:
    import inspect

    if not text:
        return None
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


def _given(value: object) -> object:
    from typer.models import DefaultPlaceholder

    return None if isinstance(value, DefaultPlaceholder) else value


def _whole_short_help(group: typer.Typer) -> None:
    """Command lists show each command's whole first paragraph, wrapped: click would cut it at
    45 characters with '...', which at 80 columns left most of them unfinished."""
    for cmd in group.registered_commands:
        if not _given(cmd.short_help):
            doc = _given(cmd.help) or (cmd.callback.__doc__ if cmd.callback else None)
            cmd.short_help = _first_paragraph(doc)  # type: ignore[arg-type]
    for sub in group.registered_groups:
        inner = sub.typer_instance
        if inner is None:
            continue
        _whole_short_help(inner)
        if not _given(sub.short_help) and not _given(inner.info.short_help):
            callback = inner.registered_callback.callback if inner.registered_callback else None
            doc = _given(sub.help) or _given(inner.info.help) or (callback.__doc__ if callback else None)
            sub.short_help = _first_paragraph(doc)  # type: ignore[arg-type]


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
