"""A small FHIR R4 server standing in for the London Care Record's FHIR API (demo only)."""

from .app import create_app

__all__ = ["create_app"]
