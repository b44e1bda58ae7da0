"""LCR access sidecar: verify, validate, decide (OPA), fetch, redact, audit, respond."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # The app (Flask and every service) loads on first use of `create_app`, not on import
    # of the package: `sidecar.identifiers` is shared with audit_store, which the app imports.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
