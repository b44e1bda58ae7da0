"""Which audit store a URL names: `sqlite:///var/audit.db` (the default, one host) or
`postgresql://user@host:5432/db` (a fleet of replicas sharing one log).

    store = open_store("postgresql://lcr_sidecar@db/lcr_audit", checkpoint_key=key)
    store = open_store("sqlite:///var/audit.db")      # relative path
    store = open_store("sqlite:////srv/lcr/audit.db") # absolute path
    store = open_store("var/audit.db")                # a bare path is a SQLite file

Both stores have the same interface (`AuditLog`): append, append_many, checkpoint, head,
count, rows, writable, close; readers take a connection with `queries.connect(store)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .store import AuditStore

if TYPE_CHECKING:
    from .pg import PgAuditStore

SQLITE_PREFIX = "sqlite:///"


class StoreUrlError(ValueError):
    """An AUDIT_STORE_URL that names neither a SQLite file nor a PostgreSQL database."""


def is_postgres(url: str | os.PathLike[str] | None) -> bool:
    return isinstance(url, str) and url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str | os.PathLike[str]) -> Path:
    """The file a sqlite:/// URL (or a bare path) names."""
    text = os.fspath(url)
    if text.startswith(SQLITE_PREFIX):
        return Path(text[len(SQLITE_PREFIX) :])
    if "://" in text or text.startswith("sqlite:"):
        raise StoreUrlError(f"audit store URL {text!r} is neither sqlite:///PATH nor postgresql://…")
    return Path(text)


def store_url(config: dict[str, Any]) -> str:
    """AUDIT_STORE_URL, else the SQLite file AUDIT_DB."""
    url = config.get("AUDIT_STORE_URL")
    return str(url) if url else SQLITE_PREFIX + str(config["AUDIT_DB"])


def open_store(url: str | os.PathLike[str], busy_timeout_ms: int = 2000, **kw: Any) -> AuditLog:
    """The store a URL names. PostgreSQL-only options (`pool_size`, `key_anchor`,
    `migrate_schema`) are ignored for SQLite, and SQLite-only ones (`lookup_every`) for
    PostgreSQL. Raises StoreUrlError for anything else."""
    if is_postgres(url):
        from .pg import PgAuditStore

        kw.pop("lookup_every", None)
        return PgAuditStore(str(url), busy_timeout_ms, **kw)
    for name in ("pool_size", "key_anchor", "migrate_schema"):
        kw.pop(name, None)
    return AuditStore(sqlite_path(url), busy_timeout_ms, **kw)


#: either store (the PostgreSQL one is imported only when used)
AuditLog = Union[AuditStore, "PgAuditStore"]
