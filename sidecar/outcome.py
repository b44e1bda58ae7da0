"""One shape for every error the care app sees: a FHIR OperationOutcome with a stable code."""

from __future__ import annotations

from typing import Any

from .errors import LcrError

ERROR_CODE_SYSTEM = "https://lcr-sidecar.example/CodeSystem/error-code"


def operation_outcome(error: LcrError) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": "error",
        "code": error.issue_type,
        "details": {
            "coding": [{"system": ERROR_CODE_SYSTEM, "code": error.code}],
            "text": error.detail,
        },
        "diagnostics": error.detail,
    }
    reasons = getattr(error, "reasons", None)
    if reasons:
        issue["expression"] = [f"reason:{r}" for r in reasons]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
