"""Property-based request bodies against the live sidecar: never a 5xx, never a stray answer.

Random JSON bodies, random raw bytes, random values (hostile strings or any JSON) for
`nhs_number`, `dob` and `sections`, random Authorization headers. Every answer is a 200 or
a 4xx the description lists; every non-200 is a FHIR OperationOutcome with a stable code
listed for its status; an identifier that breaks the README's rules is refused with its
own code, one that keeps them is never refused for it; and every request answered left
exactly one audit row.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import documented_codes, outcome_code
from .strategies import JSON, check_digit, hostile_strings, identifier_values, nhs_numbers, plausible_dobs

EXAMPLES = 80
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
ENDPOINTS = st.sampled_from(["/v1/record", "/v1/menu"])
LEVELS = st.sampled_from(["registered_manager", "senior_carer", "admin", "no_access"])
# The expected answers with OPA and the demo upstream up: 200 (menu denials and misses are
# 200s), or a caller error. 5xx would be a fault or a bug.
# The menu's 403: a token minted for another resident (token-patient-mismatch).
ALLOWED = {"/v1/record": {200, 400, 401, 403, 404, 413}, "/v1/menu": {200, 400, 401, 403, 413}}

answered = {"count": 0}


@pytest.fixture(scope="module")
def session():
    with requests.Session() as s:
        yield s


def post(session: requests.Session, url: str, data: bytes, authorization: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = session.post(url, data=data, headers=headers, timeout=10)
    answered["count"] += 1
    return response


def check_answer(response: requests.Response, endpoint: str, spec: dict[str, Any]) -> str | None:
    """The shape every answer must have; returns the error code (None for a 200)."""
    assert response.status_code in ALLOWED[endpoint], (response.status_code, response.text[:300])
    assert response.headers.get("X-Decision-Id"), response.headers
    assert response.headers.get("Cache-Control") == "no-store"
    if response.status_code == 200:
        body = response.json()
        if endpoint == "/v1/record":
            assert body["resourceType"] == "Bundle" and body["total"] == len(body["entry"])
        else:
            assert isinstance(body["record_available"], bool)
        return None
    assert response.headers["Content-Type"] == "application/fhir+json"
    code = outcome_code(response.json())
    assert code in documented_codes(spec)[response.status_code], (response.status_code, code)
    return code


# -- oracles written from the README's rules, not from sidecar/identifiers.py ----------------

_TYPED = re.compile(
    r"[0-9]{10}|[0-9]{3} [0-9]{3} [0-9]{4}|[0-9]{3}-[0-9]{3}-[0-9]{4}", re.ASCII
)  # one kind of separator


def nhs_verdict(value: Any) -> str | None:
    """None when the README says the NHS number is fine, else the code it must be refused with."""
    if value is None or (isinstance(value, str) and not value.strip(" ")):
        return "nhs-number-missing"
    if not isinstance(value, str) or not _TYPED.fullmatch(value.strip(" ")):
        return "nhs-number-invalid"
    digits = re.sub(r"[ -]", "", value.strip(" "))
    return None if check_digit(digits[:9]) == int(digits[9]) else "nhs-number-invalid"


def dob_verdict(value: Any, today: dt.date) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip(" ")):
        return "dob-missing"
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value.strip(" "), re.ASCII):
        return "dob-invalid"
    try:
        dob = dt.date.fromisoformat(value.strip())
    except ValueError:
        return "dob-invalid"
    if dob > today:
        return "dob-in-future"
    if today.year - dob.year > 130:
        return "dob-implausible"
    return None


IDENTIFIER_CODES = {
    "nhs-number-missing",
    "nhs-number-invalid",
    "dob-missing",
    "dob-invalid",
    "dob-in-future",
    "dob-implausible",
}


# -- the properties ----------------------------------------------------------------------------


@SETTINGS
@given(endpoint=ENDPOINTS, body=JSON, level=LEVELS)
def test_any_json_body(live_sidecar, token, openapi, session, endpoint, body, level):
    r = post(session, live_sidecar.url + endpoint, json.dumps(body).encode(), f"Bearer {token(level)}")
    code = check_answer(r, endpoint, openapi)
    if not isinstance(body, dict):
        assert code == "body-invalid"


@SETTINGS
@given(endpoint=ENDPOINTS, raw=st.binary(max_size=300))
def test_any_bytes_body(live_sidecar, token, openapi, session, endpoint, raw):
    r = post(session, live_sidecar.url + endpoint, raw, f"Bearer {token('senior_carer')}")
    check_answer(r, endpoint, openapi)


@SETTINGS
@given(
    endpoint=ENDPOINTS,
    level=LEVELS,
    nhs_number=st.one_of(identifier_values(), nhs_numbers()),
    dob=st.one_of(identifier_values(), plausible_dobs()),
    sections=st.one_of(st.nothing(), st.lists(st.text(max_size=70), max_size=3), JSON),
    drop=st.sampled_from([(), ("nhs_number",), ("dob",), ("sections",)]),
)
def test_random_identifiers(live_sidecar, token, openapi, session, endpoint, level, nhs_number, dob, sections, drop):
    body = {"nhs_number": nhs_number, "dob": dob, "sections": sections}
    for key in drop:
        body.pop(key)
    r = post(session, live_sidecar.url + endpoint, json.dumps(body).encode(), f"Bearer {token(level)}")
    code = check_answer(r, endpoint, openapi)
    # Identifiers are checked in order, NHS number first, before anything else is asked.
    today = dt.date.today()
    expected = nhs_verdict(body.get("nhs_number")) or dob_verdict(body.get("dob"), today)
    if expected is not None:
        assert code == expected, (body, code)
    else:
        assert code not in IDENTIFIER_CODES, (body, code)


# Printable ASCII; no leading blank (requests refuses to send such a header value).
AUTHORIZATIONS = st.one_of(
    st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.lstrip)
)


@SETTINGS
@given(endpoint=ENDPOINTS, authorization=AUTHORIZATIONS)
def test_random_authorization_is_always_401(live_sidecar, openapi, session, endpoint, authorization):
    body = json.dumps({"nhs_number": "9990000018", "dob": "1938-04-12"}).encode()
    auth = None if authorization is None else ("Bearer " + authorization if len(authorization) % 2 else authorization)
    r = post(session, live_sidecar.url + endpoint, body, auth)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer ")
    assert check_answer(r, endpoint, openapi) in {"token-missing", "token-invalid"}


@SETTINGS
@given(nhs_number=hostile_strings(), dob=hostile_strings())
def test_hostile_strings_never_reach_the_upstream(live_sidecar, token, openapi, session, nhs_number, dob):
    """An identifier that breaks the rules is a 400 before any lookup: no 404 can leak whether it exists."""
    r = post(
        session,
        live_sidecar.url + "/v1/record",
        json.dumps({"nhs_number": nhs_number, "dob": dob}).encode(),
        f"Bearer {token('registered_manager')}",
    )
    code = check_answer(r, "/v1/record", openapi)
    if nhs_verdict(nhs_number) or dob_verdict(dob, dt.date.today()):
        assert r.status_code == 400 and code in IDENTIFIER_CODES


def test_every_answered_request_left_one_audit_row(live_sidecar):
    # Last in the module: every request above was answered (no 5xx, no dropped connection).
    assert answered["count"] > 0
    assert live_sidecar.audit_count() == answered["count"]
