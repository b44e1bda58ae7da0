"""Shape the response Bundle from what the redaction policy kept.

The response must not reveal whether a withheld section has content: it carries only
kept resources, its `total` counts only them, and it is always marked REDACTED, whether
or not anything was withheld for this caller.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .policy import Classification

REDACTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "REDACTED",
    "display": "redacted",
}


@dataclass(frozen=True)
class Redacted:
    resources: list[dict[str, Any]]
    counts: dict[str, int]  # kept resources per section, for the audit row
    withheld: int


def apply(resources: list[dict[str, Any]], classification: Classification) -> Redacted:
    kept = [r for r, keep in zip(resources, classification.keep) if keep]
    counts = Counter(s for s, keep in zip(classification.sections, classification.keep) if keep and s)
    return Redacted(kept, dict(sorted(counts.items())), len(resources) - len(kept))


def record_bundle(redacted: Redacted, base_url: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"security": [REDACTED]},
        "type": "searchset",
        "total": len(redacted.resources),
        "entry": [
            {
                "fullUrl": f"{base_url}/{r['resourceType']}/{r.get('id', '')}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in redacted.resources
        ],
    }
