"""Read a FHIR searchset the way a client must: every page, following `Bundle.link` next."""

from __future__ import annotations

from typing import Any

import requests


def all_entries(url: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every entry of a paged searchset (demo upstream or HAPI), in order."""
    entries: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        page = requests.get(next_url, params=params, timeout=10).json()
        params = None  # next links carry their own query
        entries += page.get("entry", [])
        next_url = next((link["url"] for link in page.get("link", []) if link.get("relation") == "next"), None)
    return entries


def references(value: Any) -> set[str]:
    """Every reference string anywhere in a resource."""
    if isinstance(value, dict):
        own = {value["reference"]} if isinstance(value.get("reference"), str) else set()
        return own.union(*(references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(references(v) for v in value))
    return set()
