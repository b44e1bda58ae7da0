"""JSON on the record path: orjson, with the standard library where orjson refuses.

Parsing the fetched record, serialising the questions to OPA and the response body are
the sidecar's biggest Python costs per view; orjson does each several times faster
(bench/overhead/PROFILE.md). orjson refuses integers beyond 64 bits, which a token's
claims may hold: those few values go through the standard library instead, so odd but
valid input never becomes a 500.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(raw: bytes | str) -> Any:
    """Parse JSON; raises ValueError (orjson.JSONDecodeError) for anything that is not
    strict JSON: NaN, Infinity, lone surrogates, nesting deeper than 1024."""
    return orjson.loads(raw)
