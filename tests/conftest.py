"""Shared fixtures. chDB hosts one engine path per process, so the whole test session shares
one embedded store directory and each test isolates itself in its own database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forewarn.config import Settings, load_settings
from forewarn.storage import open_storage

# The processes tests start (`forewarn up`, `collector`) would otherwise each try the ClickHouse HTTP
# interface's default port 8123, so all but the first to get it log a warning and which one serves
# it depends on timing. Tests of that interface pass --clickhouse-http-port (a flag beats this).
os.environ.setdefault("FOREWARN_CLICKHOUSE_HTTP__PORT", "0")


@pytest.fixture(autouse=True)
def _own_prefect_home() -> Iterator[None]:
    """A test that runs the flows in process sets PREFECT_HOME to its data dir (flows/runtime.py);
    without this, every `forewarn up` a later test of the same worker starts would inherit it and
    share that Prefect home instead of its own data dir's."""
    before = os.environ.get("PREFECT_HOME")
    yield
    if before is None:
        os.environ.pop("PREFECT_HOME", None)
    else:
        os.environ["PREFECT_HOME"] = before


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb") / "store"


@pytest.fixture(scope="session")
def chdb_dsn(chdb_dir: Path) -> str:
    return f"chdb://{chdb_dir}"


@pytest.fixture
def settings(chdb_dsn: str, tmp_path: Path) -> Settings:
    """Settings on the session's embedded store, in a database of this test's own."""
    db = "t_" + uuid.uuid4().hex[:12]
    return load_settings(overrides={"data_dir": str(tmp_path), "storage": {"dsn": chdb_dsn, "database": db}})


@pytest.fixture
def store(settings: Settings) -> Iterator:
    """A migrated clickhouse-connect client on this test's database."""
    client = open_storage(settings)
    yield client
    client.command(f"DROP DATABASE IF EXISTS `{settings.storage.database}`")
    client.close()
