"""Errors the demo upstream answers with, each carrying its HTTP status and FHIR issue type.

One handler in `app.py` renders every one of them as the same OperationOutcome shape, the
way HAPI FHIR answers a bad request.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FhirError(Exception):
    status: ClassVar[int] = 500
    #: A code from the FHIR IssueType value set (http://hl7.org/fhir/issue-type).
    code: ClassVar[str] = "exception"

    def __init__(self, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.code, self.diagnostics)


class InvalidRequest(FhirError):
    """A search the server cannot run: unknown parameter, bad date, unsupported prefix."""

    status = 400
    code = "processing"


class ResourceNotFound(FhirError):
    status = 404
    code = "not-found"


class UnknownEndpoint(FhirError):
    """Anything this server does not implement: other types, operations and methods."""

    status = 404
    code = "not-supported"


class DataError(ValueError):
    """The resident files cannot be served; raised at startup so a bad file is never half-loaded."""


def operation_outcome(code: str, diagnostics: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }
