"""Apply the redaction policy's answer to the fetched record, and shape the response Bundle.

The policy (policies/lcr/redact) decides everything: which resources leave, which
contained resources and free-text or extension elements are removed from them, and which
References are masked. This module only carries those edits out, by path, and fails
closed when an edit does not fit the resource it was computed for.

The response must not reveal whether a withheld section has content: it carries only
kept resources, its `total` counts only them, and it is always marked REDACTED, whether
or not anything was withheld for this caller.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any

from . import errors
from .policy import Classification

REDACTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "REDACTED",
    "display": "redacted",
}

# FHIR's data-absent-reason extension, code `masked`: what a masked Reference becomes.
# http://hl7.org/fhir/R4/extension-data-absent-reason.html
MASKED_REFERENCE = {
    "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"}]
}

Path = list[str | int]


@dataclass(frozen=True)
class Redacted:
    resources: list[dict[str, Any]]
    full_urls: list[str | None]
    counts: dict[str, int]  # parts that left per section, contained resources included, for the audit row
    withheld: int  # top-level resources withheld


def apply(
    resources: list[dict[str, Any]], classification: Classification, full_urls: list[str | None] | None = None
) -> Redacted:
    """Keep what the policy kept, with its edits applied.

    resources: the fetched record's resources, in the order the policy saw them (edited
    in place). Raises errors.PolicyUnavailable when an edit's path does not exist in its
    resource (the answer was not computed for this record: fail closed).
    """
    urls = full_urls if full_urls is not None else [None] * len(resources)
    kept: list[dict[str, Any]] = []
    kept_urls: list[str | None] = []
    counts: dict[str, int] = {}
    for resource, url, section, keep, edit in zip(
        resources, urls, classification.sections, classification.keep, classification.edits, strict=False
    ):
        if not keep:
            continue
        if edit.get("mask") or edit.get("remove"):  # most resources leave as they are
            _edit(resource, edit)
        kept.append(resource)
        kept_urls.append(url)
        if section:
            counts[section] = counts.get(section, 0) + 1
        parts = edit.get("parts")
        if parts:
            for part in parts:
                if isinstance(part, str):
                    counts[part] = counts.get(part, 0) + 1
    return Redacted(kept, kept_urls, dict(sorted(counts.items())), len(resources) - len(kept))


def _edit(resource: dict[str, Any], edit: dict[str, Any]) -> None:
    for path in edit.get("mask", []):
        parent, key = _locate(resource, path)
        if parent is None:
            raise errors.PolicyUnavailable(
                "The redaction policy masked an element the record does not have; no record is shown."
            )
        parent[key] = copy.deepcopy(MASKED_REFERENCE)
    # Deepest and highest-indexed first, so that removing one element never shifts the
    # path of another still to be removed.
    for path in sorted(edit.get("remove", []), key=_sort_key, reverse=True):
        parent, key = _locate(resource, path)
        if parent is None:
            continue  # already gone with an element that held it
        del parent[key]
        _prune(resource, path[:-1])


def _locate(resource: dict[str, Any], path: Path) -> tuple[Any, Any]:
    """The container holding path's last step and that step, or (None, None)."""
    if not isinstance(path, list) or not path:
        return None, None
    node: Any = resource
    for step in path[:-1]:
        node = _child(node, step)
        if node is None:
            return None, None
    last = path[-1]
    if _child(node, last) is None:
        return None, None
    return node, last


def _child(node: Any, step: Any) -> Any:
    if isinstance(node, dict) and isinstance(step, str):
        return node.get(step)
    if isinstance(node, list) and isinstance(step, int) and not isinstance(step, bool) and 0 <= step < len(node):
        return node[step]
    return None


def _prune(resource: dict[str, Any], path: Path) -> None:
    # An element emptied by removals is not valid FHIR: remove it too, up to the resource.
    while path:
        parent, key = _locate(resource, path)
        if parent is None or parent[key] not in ({}, []):
            return
        del parent[key]
        path = path[:-1]


def _sort_key(path: Path) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, step, "") if isinstance(step, int) else (1, 0, str(step)) for step in path)


def record_bundle(redacted: Redacted, base_url: str) -> dict[str, Any]:
    """The searchset Bundle that leaves. Each entry keeps the upstream's fullUrl, so that
    urn:uuid and absolute references between kept resources still resolve."""
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"security": [REDACTED]},
        "type": "searchset",
        "total": len(redacted.resources),
        "entry": [
            {
                "fullUrl": url or f"{base_url}/{r['resourceType']}/{r.get('id', '')}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r, url in zip(redacted.resources, redacted.full_urls, strict=False)
        ],
    }
