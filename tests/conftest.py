"""Shared fixtures: the real broker (embedded Tansu, session scope, or KAFKA_BOOTSTRAP_SERVERS),
fresh databases (a SQLite file and a PostgreSQL schema per test), and a worker subprocess.

PostgreSQL: TEST_POSTGRES_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test). When it
is unreachable the PostgreSQL variants are skipped locally and FAIL under CI (CI=true).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from channelsync.broker import EmbeddedBroker
from connectors.base import set_testing
from store.db import make_engine, upgrade

PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


def _pg_reachable() -> bool:
    async def probe() -> bool:
        engine = make_engine(PG_URL)
        try:
            async with engine.connect() as conn:
                await conn.execute(text("select 1"))
            return True
        except Exception:
            return False
        finally:
            await engine.dispose()

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def pg_available() -> bool:
    ok = _pg_reachable()
    if not ok and IN_CI:
        pytest.fail(f"PostgreSQL not reachable at {PG_URL} (CI must test it)")
    return ok


@pytest.fixture(params=["sqlite", "postgres"])
def db_config(request: pytest.FixtureRequest, tmp_path: object) -> tuple[str, str | None]:
    """(DATABASE_URL, DATABASE_SCHEMA) of a fresh, empty database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/store.db", None  # type: ignore[str-bytes-safe]
    if not request.getfixturevalue("pg_available"):
        pytest.skip("PostgreSQL not reachable")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    request.addfinalizer(lambda: asyncio.run(_drop_schema(schema)))
    return PG_URL, schema


async def _drop_schema(schema: str) -> None:
    engine = make_engine(PG_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


@pytest.fixture
async def engine(db_config: tuple[str, str | None]) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on a fresh database (both backends)."""
    url, schema = db_config
    eng = make_engine(url, schema)
    await upgrade(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
def instant_retries() -> Iterator[None]:
    set_testing(True)
    yield
    set_testing(False)


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."
