"""One audit row: a typed event with a UTC timestamp and a stable outcome name."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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

    def row(self) -> dict[str, Any]:
        """The row as stored: lists and objects as canonical JSON text."""
        row = asdict(self)
        for name, value in row.items():
            if isinstance(value, (list, dict)):
                row[name] = json.dumps(value, sort_keys=True, separators=(",", ":"))
        return row
