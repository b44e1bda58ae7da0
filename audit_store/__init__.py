"""Append-only, hash-chained audit store of every access decision the sidecar makes.

Writing: `AuditStore.append(event)` (the sidecar). Reading and checking: `queries`,
`verify`, `export`, `replay` and the `lcr-audit` command line (`python -m audit_store`).
"""

from .events import AuditEvent
from .store import AuditStore, AuditWriteError, init_app

__all__ = ["AuditEvent", "AuditStore", "AuditWriteError", "init_app"]
