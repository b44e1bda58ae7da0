"""Resident data: load the collection Bundles in a folder and index them in memory.

Every `*.json` file in the folder is a FHIR `Bundle` of type `collection`. The index keeps
resources by `(resourceType, id)`, Patients by identifier, and for every Patient the
resources that reference it (its compartment), so reads and identifier searches are
dictionary lookups.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError

Key = tuple[str, str]  # (resourceType, id)

# A literal reference "Type/id", relative or at the end of an absolute URL. Contained ("#x"),
# version-specific ("…/_history/n") and logical references are not followed: the demo data
# does not use them.
_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass
class Store:
    resources: dict[Key, dict[str, Any]] = field(default_factory=dict)
    #: Where each resource was loaded from, for error messages.
    origin: dict[Key, str] = field(default_factory=dict)
    #: Patient ids in load order (the order searches return them).
    patient_ids: list[str] = field(default_factory=list)
    #: (identifier system, value) → Patient ids.
    by_identifier: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: identifier value (any system) → Patient ids.
    by_identifier_value: dict[str, list[str]] = field(default_factory=dict)
    #: Patient id → keys of the resources that reference it, in load order.
    compartments: dict[str, list[Key]] = field(default_factory=dict)

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        return self.resources.get((resource_type, resource_id))

    def patient(self, patient_id: str) -> dict[str, Any] | None:
        return self.get("Patient", patient_id)

    def patients(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        return [self.resources[("Patient", pid)] for pid in (self.patient_ids if ids is None else ids)]

    def everything(self, patient_id: str) -> list[tuple[dict[str, Any], str]]:
        """The Patient, every resource referencing it, and what those reference, with search modes.

        As `Patient/$everything` does: the compartment is returned as `match`, and the
        resources it points at (Organization, Practitioner, Medication, …) as `include`,
        following references transitively. Other Patients are never pulled in by reference.
        """
        patient_key = ("Patient", patient_id)
        matched = [patient_key, *self.compartments.get(patient_id, [])]
        seen = set(matched)
        included: list[Key] = []
        queue = list(matched)
        while queue:
            for key in references(self.resources[queue.pop(0)]):
                if key in seen or key[0] == "Patient" or key not in self.resources:
                    continue
                seen.add(key)
                included.append(key)
                queue.append(key)
        return [(self.resources[k], "match") for k in matched] + [(self.resources[k], "include") for k in included]


def load(data_dir: str | Path) -> Store:
    """Load every `*.json` Bundle in `data_dir`; raise DataError on anything malformed."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"DATA_DIR {folder} is not a directory: set DEMO_UPSTREAM_DATA_DIR to a folder of Bundle files")
    store = Store()
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DataError(f"no *.json Bundle files in {folder}")
    for path in files:
        for resource in _bundle_resources(path):
            _add(store, resource, path.name)
    _index(store)
    return store


def _bundle_resources(path: Path) -> Iterator[dict[str, Any]]:
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "collection":
        raise DataError(f"{path}: expected a Bundle of type 'collection'")
    for n, entry in enumerate(bundle.get("entry", [])):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise DataError(f"{path}: entry[{n}] has no resource with a resourceType")
        if not isinstance(resource.get("id"), str) or not _ID.match(resource["id"]):
            raise DataError(f"{path}: entry[{n}] ({resource['resourceType']}) needs a FHIR id ([A-Za-z0-9-.]{{1,64}})")
        yield resource


def _add(store: Store, resource: dict[str, Any], origin: str) -> None:
    key = (resource["resourceType"], resource["id"])
    existing = store.resources.get(key)
    if existing is not None:
        # The same supporting resource may be shipped in several files; two different
        # resources under one id would make every read ambiguous.
        if existing != resource:
            raise DataError(f"{key[0]}/{key[1]} is defined differently in {store.origin[key]} and {origin}")
        return
    store.resources[key] = resource
    store.origin[key] = origin


def _index(store: Store) -> None:
    for (rtype, rid), resource in store.resources.items():
        if rtype == "Patient":
            store.patient_ids.append(rid)
            for ident in resource.get("identifier", []):
                system, value = ident.get("system", ""), ident.get("value")
                if isinstance(value, str):
                    _append(store.by_identifier.setdefault((system, value), []), rid)
                    _append(store.by_identifier_value.setdefault(value, []), rid)
        for target_type, target_id in references(resource):
            if target_type == "Patient" and (target_type, target_id) != (rtype, rid):
                _append(store.compartments.setdefault(target_id, []), (rtype, rid))


def _append(items: list[Any], item: Any) -> None:
    if item not in items:
        items.append(item)


def references(node: Any) -> Iterator[Key]:
    """Every literal `Reference.reference` anywhere inside a resource, as (type, id)."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            match = _REFERENCE.search(ref)
            if match:
                yield match.group(1), match.group(2)
        for value in node.values():
            if isinstance(value, (dict, list)):
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)
