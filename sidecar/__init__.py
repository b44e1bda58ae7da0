"""LCR access sidecar: verify, validate, decide (OPA), fetch, redact, audit, respond."""

from .app import create_app

__all__ = ["create_app"]
