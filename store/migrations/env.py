"""Alembic environment: run with a connection handed in by store.db.upgrade, or standalone
(``alembic`` CLI) from DATABASE_URL."""

from __future__ import annotations

import asyncio

from alembic import context

from store.models import Base

target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)  # type: ignore[arg-type]
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # standalone CLI use

    async def _main() -> None:
        from channelsync.settings import get_settings
        from store.db import make_engine

        s = get_settings()
        engine = make_engine(s.database_url, s.database_schema)
        async with engine.begin() as conn:
            await conn.run_sync(_run)
        await engine.dispose()

    asyncio.run(_main())
