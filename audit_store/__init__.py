"""Append-only audit store of every access decision the sidecar makes."""

from .events import AuditEvent
from .store import AuditStore, AuditWriteError, init_app

__all__ = ["AuditEvent", "AuditStore", "AuditWriteError", "init_app"]
