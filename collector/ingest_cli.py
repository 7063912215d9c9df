"""Commands of the Kafka ingest path (``forewarn ingest``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ingest commands to the ``forewarn`` CLI."""
