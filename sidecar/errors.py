"""Errors that end a request, each carrying its HTTP status, stable code and audit outcome.

The codes are part of the API (the care app branches on them, metrics and the audit
trail label by them): never rename one, only add.
"""

from __future__ import annotations

from typing import ClassVar


class LcrError(Exception):
    """A request ended without a record. Rendered as one FHIR OperationOutcome."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal-error"
    #: FHIR IssueType (http://hl7.org/fhir/issue-type) for OperationOutcome.issue.code
    issue_type: ClassVar[str] = "exception"
    #: the audit row's outcome for this failure
    outcome: ClassVar[str] = "failed"
    message: ClassVar[str] = "The request could not be completed."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.message
        super().__init__(self.detail)


# 4xx: the caller can fix it ---------------------------------------------------------


class Unauthenticated(LcrError):
    status = 401
    code = "token-invalid"
    issue_type = "login"
    outcome = "unauthenticated"
    message = "Send a valid bearer token signed by the care app."


class TokenMissing(Unauthenticated):
    code = "token-missing"
    message = "Send 'Authorization: Bearer <token>' signed by the care app."


class TokenExpired(Unauthenticated):
    code = "token-expired"
    message = "The token has expired; ask the care app for a fresh one."


class InvalidRequest(LcrError):
    status = 400
    code = "body-invalid"
    issue_type = "invalid"
    outcome = "invalid-request"
    message = (
        'Send a JSON object body: {"nhs_number": "943 476 5919", "dob": "1938-04-12", "sections": [optional list]}.'
    )


class BodyFramingInvalid(InvalidRequest):
    # Same code as any other unreadable body: the care app's fix is the same (send it again).
    message = (
        "The request body could not be read: its framing (Content-Length or chunked transfer "
        "coding) is not valid HTTP/1.1, or it stopped arriving. Send the request again."
    )


class NhsNumberMissing(InvalidRequest):
    code = "nhs-number-missing"
    message = "Both the NHS number and the date of birth are required; the NHS number is missing."


class NhsNumberInvalid(InvalidRequest):
    code = "nhs-number-invalid"
    message = (
        "The NHS number is not valid: it must be 10 digits (spaces or hyphens allowed as "
        "3-3-4) with a correct Modulus 11 check digit. Check it against the resident's records."
    )


class DobMissing(InvalidRequest):
    code = "dob-missing"
    message = "Both the NHS number and the date of birth are required; the date of birth is missing."


class DobInvalid(InvalidRequest):
    code = "dob-invalid"
    message = "The date of birth must be a real calendar date written YYYY-MM-DD."


class DobInFuture(InvalidRequest):
    code = "dob-in-future"
    message = "The date of birth is in the future; check it against the resident's records."


class DobTooOld(InvalidRequest):
    code = "dob-implausible"
    message = "The date of birth is implausibly long ago; check it against the resident's records."


class SectionsInvalid(InvalidRequest):
    code = "sections-invalid"
    message = '\'sections\' must be a list of section names, e.g. ["allergies", "alerts"].'


class QueryInvalid(InvalidRequest):
    code = "query-invalid"
    message = (
        "The Audit Trail filters are not valid: 'since'/'until' are ISO dates or times, "
        "'outcome' an outcome name, 'after_seq' and 'limit' whole numbers."
    )


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload-too-large"
    issue_type = "too-long"
    message = "The request body is too large; send only the identifiers and sections."


class UriTooLong(InvalidRequest):
    status = 414
    code = "uri-too-long"
    issue_type = "too-long"
    message = "The request URL is too long; identifiers go in the JSON body, never the URL."


class HeadersTooLarge(InvalidRequest):
    status = 431
    code = "headers-too-large"
    issue_type = "too-long"
    message = "The request has too many header fields, or too large a one; send only the bearer token and content type."


class AccessDenied(LcrError):
    status = 403
    code = "access-denied"
    issue_type = "forbidden"
    outcome = "denied"
    message = "Your London Care Record access does not allow this request."

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__(f"{self.message} Reasons: {', '.join(reasons) or 'none given'}.")


class TokenPatientMismatch(AccessDenied):
    # The token was minted for another resident: a replayed or leaked token, or a care app
    # bug. Its own code so the care app (and whoever is on call) can tell it from a denial.
    code = "token-patient-mismatch"
    message = "This token was issued for another resident's record."


class NoMatchingRecord(LcrError):
    # One generic answer whichever identifier failed: naming it would let anyone probe
    # the register one field at a time.
    status = 404
    code = "no-matching-record"
    issue_type = "not-found"
    outcome = "no-matching-record"
    message = (
        "No single London Care Record matches this NHS number and date of birth. "
        "Check both against the resident's records."
    )


class RouteNotFound(LcrError):
    status = 404
    code = "not-found"
    issue_type = "not-supported"
    outcome = "invalid-request"
    message = "No such endpoint: use POST /v1/record, POST /v1/menu or POST /v1/audit-trail."


class MethodNotAllowed(LcrError):
    status = 405
    code = "method-not-allowed"
    issue_type = "not-supported"
    outcome = "invalid-request"
    message = "Use POST with a JSON body for /v1/record, /v1/menu and /v1/audit-trail."


# 5xx: fail closed -----------------------------------------------------------------


class PolicyUnavailable(LcrError):
    # Fail closed: an unanswerable question is a no.
    status = 503
    code = "policy-unavailable"
    issue_type = "transient"
    outcome = "policy-unavailable"
    message = "The access policy service is not answering; no record is shown. Try again shortly."


class PolicyStale(PolicyUnavailable):
    # A policy the bundle server has not confirmed for too long is an open complaint.
    code = "policy-stale"
    message = (
        "The access policy has not been refreshed from the bundle server for too long; "
        "no record is shown until it is. Try again shortly."
    )


class UpstreamUnavailable(LcrError):
    status = 502
    code = "upstream-unavailable"
    issue_type = "transient"
    outcome = "upstream-failed"
    message = "The London Care Record service is not reachable; try again shortly."


class UpstreamTimeout(UpstreamUnavailable):
    status = 504
    code = "upstream-timeout"
    issue_type = "timeout"
    message = "The London Care Record service did not answer in time; try again shortly."


class UpstreamInvalid(UpstreamUnavailable):
    code = "upstream-invalid-response"
    issue_type = "exception"
    message = "The London Care Record service sent an answer that is not valid FHIR; no record is shown."


class AuditUnavailable(LcrError):
    # Nothing leaves without its audit row.
    status = 503
    code = "audit-unavailable"
    issue_type = "transient"
    outcome = "audit-failed"
    message = "The audit store cannot record this access, so no record is shown. Try again shortly."


class InternalError(LcrError):
    pass


def all_errors() -> list[type[LcrError]]:
    """Every error class, for the docs test and the OpenAPI description."""
    seen: list[type[LcrError]] = []
    stack: list[type[LcrError]] = [LcrError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: (c.status, c.code))
