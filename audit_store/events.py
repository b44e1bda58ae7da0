"""One audit row: a typed event with a UTC timestamp and a stable outcome name."""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from dataclasses import dataclass, field, fields
from typing import Any


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
            if isinstance(value, (list, dict)):
                value = canonical_json(value)
            row[name] = value
        return row


def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


try:
    # The C encoder made once: json.dumps builds a new one per call, which costs more
    # than encoding a short list. Same output as json.dumps(sort_keys=True, separators=(",", ":")).
    _encoder = c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", True, False, False)  # type: ignore[misc]

    def canonical_json(value: Any) -> str:
        """Sorted keys, no spaces, non-ASCII escaped, no NaN: equal values give equal text."""
        return "".join(_encoder(value, 0))

except TypeError:  # no C accelerator
    canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode  # type: ignore[assignment]


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(AuditEvent))
