"""Storage: one interface (``Storage``), dialects chosen by URL scheme."""

from __future__ import annotations

from pathlib import Path

from dockyard.errors import ConfigError
from dockyard.storage.base import Storage


def create_storage(url: str | None, *, default_path: Path) -> Storage:
    """Pick the dialect from the URL: none or ``sqlite:///path`` → SQLite, ``postgresql://`` → PG."""
    if not url:
        from dockyard.storage.sqlite import SqliteStorage

        return SqliteStorage(default_path)
    if url.startswith("sqlite:///"):
        from dockyard.storage.sqlite import SqliteStorage

        return SqliteStorage(url.removeprefix("sqlite:///") or default_path)
    if url.startswith(("postgresql://", "postgres://")):
        from dockyard.storage.postgres import PostgresStorage

        return PostgresStorage(url)
    raise ConfigError(
        f"DOCKYARD_DATABASE_URL: unsupported database URL scheme in {url.split(':', 1)[0]!r}; "
        "use sqlite:///path or postgresql://…",
        key="DOCKYARD_DATABASE_URL",
    )


async def migrate_database(url: str | None, *, default_path: Path) -> list[str]:
    """Open the database at ``url``, apply pending migrations, close it; returns the versions
    applied (what ``dockyard migrate`` does, and what test and benchmark set-ups reuse)."""
    storage = create_storage(url, default_path=default_path)
    await storage.open()
    try:
        return await storage.migrate()
    finally:
        await storage.close()


__all__ = ["Storage", "create_storage", "migrate_database"]
