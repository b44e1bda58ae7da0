"""The hash chain over the decision log: what a row's hash covers, and how it is computed.

Each row carries `prev_hash` (the previous row's `row_hash`; GENESIS for seq 1) and

    row_hash = sha256( canonical JSON of {"content": {<the 24 content columns>},
                                          "prev_hash": <hex>, "seq": <int>} )

where canonical JSON means sorted keys, no whitespace, non-ASCII escaped (`\\uXXXX`), and
the content columns hold exactly what is stored (JSON columns as their stored text). Editing,
deleting, inserting or reordering a row therefore breaks the chain at that row; only
rewriting every later row hides it, which the signed checkpoints (checkpoints.py) catch.

The content's canonical JSON is computed before the write lock is taken; inside the lock the
writer only splices seq and prev_hash around it and hashes (a few microseconds), so the
cross-process write lock is held for as short a time as possible. `row_hash_of()` computes
the same value from a plain row, the way an independent verifier would.

The hashed columns are fixed here, not read from the table: a later migration that adds a
column must not change the hash of rows already written.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from .events import canonical_json

GENESIS = "0" * 64

#: column → Python type, exactly as stored (SQLite column affinity coerces the same way).
CONTENT_COLUMNS: dict[str, type] = {
    "decision_id": str,
    "time": str,
    "action": str,
    "outcome": str,
    "http_status": int,
    "error_code": str,
    "subject_id": str,
    "subject_name": str,
    "care_service": str,
    "access_level": str,
    "reason_for_request": str,
    "client": str,
    "nhs_number": str,
    "reasons": str,
    "sections_requested": str,
    "sections_allowed": str,
    "sections_returned": str,
    "resources_returned": int,
    "resources_withheld": int,
    "policy_revision": str,
    "opa_input": str,
    "opa_result": str,
    "response_sha256": str,
    "latency_ms": float,
    "shadow_revision": str,
    "shadow_result": str,
    "shadow_diverged": int,
}
CONTENT_NAMES: tuple[str, ...] = tuple(CONTENT_COLUMNS)
#: every stored column, in INSERT order
STORED_COLUMNS: tuple[str, ...] = ("seq", "prev_hash", "row_hash", *CONTENT_COLUMNS)

_encode = canonical_json


def content_json(content: Mapping[str, Any]) -> str:
    """Canonical JSON of the content columns of a row (as stored)."""
    return _encode({name: content[name] for name in CONTENT_NAMES})


def row_hash(seq: int, prev_hash: str, content: str) -> str:
    """sha256 hex of {"content": …, "prev_hash": …, "seq": …} in canonical JSON.

    `content` is `content_json(row)`; keys already sort as content < prev_hash < seq, and
    prev_hash is hex, so splicing gives exactly the canonical text.
    """
    text = '{"content":' + content + ',"prev_hash":"' + prev_hash + '","seq":' + str(int(seq)) + "}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def row_hash_of(row: Mapping[str, Any]) -> str:
    """The hash a row should carry, from the row alone (the verifier's definition)."""
    whole = {"content": {name: row[name] for name in CONTENT_NAMES}, "prev_hash": row["prev_hash"], "seq": row["seq"]}
    return hashlib.sha256(_encode(whole).encode("ascii")).hexdigest()


def coerce(values: Mapping[str, Any]) -> dict[str, Any]:
    """The content columns typed as they will read back from SQLite, so the hash is stable."""
    out: dict[str, Any] = {}
    for name, kind in CONTENT_COLUMNS.items():
        value = values.get(name)
        if value is not None and type(value) is not kind:
            if kind is str and isinstance(value, (list, dict)):
                value = _encode(value)
            else:
                value = kind(value)
        out[name] = value
    return out
