"""Engine, sessions and migrations.

``make_engine(url, schema)`` builds the async engine: SQLite (``sqlite+aiosqlite://``, the
embedded default; WAL mode, foreign keys on) or PostgreSQL (``postgresql+asyncpg://``; an
optional schema becomes the connection's ``search_path``, which is how tests isolate runs).
``upgrade(engine)`` applies the Alembic migrations in ``store/migrations``.
"""

from __future__ import annotations

import re
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).parent / "migrations"
_SCHEMAS: weakref.WeakKeyDictionary[Engine, str | None] = weakref.WeakKeyDictionary()
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class DatabaseConfigError(ValueError):
    """DATABASE_URL / schema is not usable."""


def normalise_url(url: str) -> str:
    """Accept the common spellings and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        url = "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if not (url.startswith("postgresql+asyncpg://") or url.startswith("sqlite+aiosqlite://")):
        raise DatabaseConfigError(
            "DATABASE_URL must be sqlite+aiosqlite:///path.db or postgresql+asyncpg://…"
        )
    return url


def make_engine(url: str, schema: str | None = None, **kw: Any) -> AsyncEngine:
    url = normalise_url(url)
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        if schema:
            if not _SCHEMA_NAME.match(schema):
                raise DatabaseConfigError(f"invalid schema name {schema!r}")
            connect_args["server_settings"] = {"search_path": schema}
        # statements differ by IN-list length (padded to a few sizes, store.sql.in_list) and
        # by ORM loader: keep more of them prepared than the driver's default of 100
        connect_args["prepared_statement_cache_size"] = 500
        kw.setdefault("pool_size", 10)
        kw.setdefault("pool_pre_ping", True)
    else:
        connect_args["timeout"] = 30
    engine = create_async_engine(url, connect_args=connect_args, **kw)
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    _SCHEMAS[engine.sync_engine] = schema
    return engine


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Create the schema (PostgreSQL) and apply migrations up to ``revision``. Idempotent."""
    schema = _SCHEMAS.get(engine.sync_engine)
    if schema and engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        try:
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
        except Exception:
            return None
        return None if row is None else str(row[0])
