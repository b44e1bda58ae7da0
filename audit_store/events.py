"""One audit row: a typed event with a UTC timestamp and a stable outcome name.

Whatever a request presented — a token's claims above all — reaches the row in a form the
store can hold, before the row is built (`storable_text`, `storable_json`):

- text is stored as UTF-8, and a lone UTF-16 surrogate (a name cut in the middle of an
  emoji by a JavaScript client) cannot be: it is kept as its escape, `x\\ud800`, so the
  row still says what was presented. In the JSON columns (`opa_input`, …) every string is
  already written with `\\uXXXX` escapes, so there a lone surrogate reads `"x\\ud800"` and
  stays distinct from a literal backslash (`"x\\\\ud800"`);
- numbers JSON cannot carry become strings: NaN, Infinity and -Infinity by those names, an
  integer too long to write in decimal (over 4,300 digits) as hexadecimal `0x…`;
- JSON nested too deep for the encoder (Python's recursion limit) is kept, from
  MAX_JSON_DEPTH levels down, as its JSON text (one string), so every reader can still parse
  the column; object keys that are not strings (null, booleans, numbers) are written as JSON
  writes them.

Anything else (a value that is not JSON at all) is not storable: that row alone is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field, fields
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]  # the C encoder is private to json, not in typeshed
from typing import Any


def utc_timestamp(moment: dt.datetime | None = None) -> str:
    """The audit store's time format: UTC, ISO 8601 with microseconds and a Z, e.g.
    2026-11-25T12:00:00.000000Z (`moment`, which must be aware; now when omitted)."""
    moment = dt.datetime.now(dt.UTC) if moment is None else moment.astimezone(dt.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class AuditEvent:
    decision_id: str
    time: str  # UTC, ISO 8601, when the request reached the sidecar
    action: str  # record.read | menu.read
    outcome: str = "failed"  # allowed, denied, no-matching-record, unauthenticated, …
    http_status: int = 500
    error_code: str | None = None
    # Who, as they were at the time of the event (verified token claims only).
    subject_id: str | None = None
    subject_name: str | None = None
    care_service: str | None = None
    access_level: str | None = None
    reason_for_request: str | None = None
    client: str | None = None  # the end-user device or system that called
    nhs_number: str | None = None  # only once validated
    reasons: list[str] = field(default_factory=list)
    sections_requested: list[str] = field(default_factory=list)
    sections_allowed: list[str] = field(default_factory=list)
    sections_returned: dict[str, int] = field(default_factory=dict)
    resources_returned: int = 0
    resources_withheld: int = 0
    policy_revision: str | None = None
    opa_input: dict[str, Any] | None = None
    opa_result: dict[str, Any] | None = None
    response_sha256: str | None = None
    latency_ms: float = 0.0
    # Shadow mode: the candidate policy's answer to the same input, never enforced.
    shadow_revision: str | None = None
    shadow_result: dict[str, Any] | None = None
    shadow_diverged: int | None = None  # 1 when the candidate decided differently

    def row(self) -> dict[str, Any]:
        """The row as stored: lists and objects as canonical JSON text.

        Built field by field (not `dataclasses.asdict`, which deep-copies every nested
        object first): this runs once per request on the request path.
        """
        row: dict[str, Any] = {}
        for name in FIELD_NAMES:
            value = getattr(self, name)
            if isinstance(value, (list, dict, tuple)):
                value = storable_json(value)
            elif type(value) is str and not value.isascii():
                value = storable_text(value)
            row[name] = value
        return row


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


try:
    # The C encoder made once: json.dumps builds a new one per call, which costs more
    # than encoding a short list. Same output as json.dumps(sort_keys=True, separators=(",", ":")).
    _encoder = c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", True, False, False)

    def canonical_json(value: Any) -> str:
        """Sorted keys, no spaces, non-ASCII escaped, no NaN: equal values give equal text."""
        return "".join(_encoder(value, 0))

except TypeError:  # no C accelerator
    canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode  # type: ignore[assignment]  # the same function, by the pure-Python encoder


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(AuditEvent))


# -- what the store can hold ----------------------------------------------------------------

#: JSON nested deeper than this is stored, from there down, as its JSON text (a string)
MAX_JSON_DEPTH = 32
#: a value with more parts than this is not storable (no claim comes near; a circular one would never end)
MAX_JSON_VALUES = 1_000_000


def storable_text(value: str) -> str:
    """The text as UTF-8 can carry it: each lone surrogate kept as its escape (`\\ud800`)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def storable_json(value: Any) -> str:
    """Canonical JSON of a list or object, whatever JSON values it holds.

    The common case is one call of the C encoder; only a value it refuses (NaN, an integer
    too long to write, nesting too deep for it, non-string keys of mixed types) is walked
    and normalised. Raises TypeError for a value that is not JSON (e.g. an object()).
    """
    try:
        return canonical_json(value)
    except (ValueError, TypeError, RecursionError, OverflowError):
        return _normalised_text(value, MAX_JSON_DEPTH)


def storable_scalar(value: Any) -> str:
    """A non-JSON-container value stored in a text column."""
    if type(value) is str:
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[_float_key(value)]
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value)
    return storable_text(str(value))


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _float_key(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _int_text(value: int) -> str:
    try:
        return int.__repr__(value)
    except ValueError:  # over sys.get_int_max_str_digits() decimal digits
        return hex(value)


class _Text(str):
    """Literal JSON text in the walk's work stack (not a value to encode)."""


def _scalar_json(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if isinstance(value, int):
        try:
            return int.__repr__(value)
        except ValueError:
            return encode_basestring_ascii(hex(value))
    if isinstance(value, float):
        if math.isfinite(value):
            return float.__repr__(value)
        return encode_basestring_ascii(_NON_FINITE[_float_key(value)])
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return _scalar_json(key)
    if isinstance(key, int):
        return _int_text(key)
    if isinstance(key, float):
        return float.__repr__(key) if math.isfinite(key) else _NON_FINITE[_float_key(key)]
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _normalised_text(value: Any, depth: int) -> str:
    """Canonical JSON of `value`, normalised (module docstring); iterative, so any depth.

    Containers `depth` levels down are written as a JSON string holding their own text.
    """
    out: list[str] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    budget = MAX_JSON_VALUES
    while stack:
        item, level = stack.pop()
        if type(item) is _Text:
            out.append(item)
            continue
        budget -= 1
        if budget < 0:  # a circular value never ends: refuse it (ValueError, as json does)
            raise ValueError(f"more than {MAX_JSON_VALUES:,} JSON values, or a circular reference")
        if isinstance(item, (dict, list, tuple)):
            if level >= depth:
                out.append(encode_basestring_ascii(_normalised_text(item, 1 << 62)))
                continue
            if isinstance(item, dict):
                pairs = sorted(((_key_text(k), v) for k, v in item.items()), key=lambda kv: kv[0])
                work: list[tuple[Any, int]] = [(_Text("{"), 0)]
                for i, (k, v) in enumerate(pairs):
                    work.append((_Text(("," if i else "") + encode_basestring_ascii(k) + ":"), 0))
                    work.append((v, level + 1))
                work.append((_Text("}"), 0))
            else:
                work = [(_Text("["), 0)]
                for i, v in enumerate(item):
                    if i:
                        work.append((_Text(","), 0))
                    work.append((v, level + 1))
                work.append((_Text("]"), 0))
            stack.extend(reversed(work))
        else:
            out.append(_scalar_json(item))
    return "".join(out)
