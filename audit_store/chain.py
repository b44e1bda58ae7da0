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
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

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


# -- the same text and hash, faster, for the writer ----------------------------------------
#
# content_json() builds a dict and has the JSON encoder sort it; content_text() writes the
# same canonical text straight from the stored values (test_chain checks they agree). The
# hash input starts with the content, so its SHA-256 state can be computed before the write
# lock is taken; inside the lock only prev_hash and seq are fed to a copy of it.

_SORTED = sorted(range(len(CONTENT_NAMES)), key=lambda i: CONTENT_NAMES[i])
_KEYS = tuple(encode_basestring_ascii(CONTENT_NAMES[i]) + ":" for i in _SORTED)
_int_repr = int.__repr__
_float_repr = float.__repr__


def content_text(values: Sequence[Any]) -> str:
    """content_json() of a row given as its stored values in CONTENT_NAMES order.

    Each value must already be typed as stored: str, int, a finite float or None.
    """
    parts = []
    for key, i in zip(_KEYS, _SORTED, strict=False):
        value = values[i]
        kind = type(value)
        if kind is str:
            parts.append(key + encode_basestring_ascii(value))
        elif value is None:
            parts.append(key + "null")
        elif kind is int:
            parts.append(key + _int_repr(value))
        elif kind is float:
            parts.append(key + _float_repr(value))
        else:
            raise TypeError(f"{CONTENT_NAMES[i]}: {kind.__name__} is not a stored type")
    return "{" + ",".join(parts) + "}"


def hash_prefix(content: str) -> hashlib._Hash:
    """SHA-256 state after the part of the hashed text that precedes prev_hash."""
    return hashlib.sha256(b'{"content":' + content.encode("ascii") + b',"prev_hash":"')


def row_hash_after(prefix: hashlib._Hash, seq: int, prev_hash: str) -> str:
    """row_hash(seq, prev_hash, content) from hash_prefix(content)."""
    h = prefix.copy()
    h.update(f'{prev_hash}","seq":{seq:d}}}'.encode("ascii"))
    return h.hexdigest()


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
