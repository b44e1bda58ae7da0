"""schemathesis against the live sidecar (gunicorn over real HTTP, real OPA, demo upstream).

Every operation in docs/openapi.yaml, positive and negative examples, with schemathesis's
built-in checks (no 5xx; status codes, content types, headers and bodies as described;
auth enforced; schema-valid bodies accepted, schema-invalid ones refused) plus our own:
every non-200 answer of /v1/* is a FHIR OperationOutcome whose stable code is one the
description lists for that status, and carries the id of its audit row.

Bounded: MAX_EXAMPLES per operation keeps the module at about 30 s on the 2-core machine.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from .conftest import OPENAPI, documented_codes, outcome_code
from .strategies import moments, nhs_numbers, plausible_dobs

MAX_EXAMPLES = 60
LEVELS = itertools.cycle(["registered_manager", "senior_carer", "admin", "no_access"])

# Positive examples inside the domain JSON Schema cannot express (Modulus 11; a date of
# birth neither in the future nor over 130 years ago; a moment whose UTC form has a
# 4-digit year), so "schema-valid is accepted" holds; test_bodies.py and
# test_regressions.py drive the values outside it.
schemathesis.openapi.format("nhs-number", nhs_numbers())
schemathesis.openapi.format("date", plausible_dobs())
# The Audit Trail's since/until; the years at the very edge are pinned in test_regressions.py.
schemathesis.openapi.format("date-time", moments())

schema = schemathesis.openapi.from_path(str(OPENAPI))
# A schema-violating body that is also over MAX_BODY_BYTES is refused with 413 before it
# is parsed: a rejection, as described (the check's default list lacks 413).
schema.config.checks.negative_data_rejection.expected_statuses = [
    *schema.config.checks.negative_data_rejection.expected_statuses,
    "413",
]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_live_sidecar_matches_its_description(case: Any, live_sidecar: Any, token: Any, openapi: Any) -> None:
    headers = {}
    if case.path.startswith("/v1/"):
        # A fresh token per example (they live 5 minutes); rotate the access levels so
        # 200s and 403s are both checked against the description.
        headers["Authorization"] = f"Bearer {token(next(LEVELS))}"
    response = case.call_and_validate(base_url=live_sidecar.url, headers=headers, timeout=10)
    # 502/503/504 are described answers (fail closed), but with OPA and the upstream up
    # none of them is expected either.
    assert response.status_code < 500, response.text
    if case.path.startswith("/v1/"):
        assert response.headers.get("x-decision-id"), (response.status_code, response.request.method)
        if response.status_code != 200:
            code = outcome_code(response.json())
            assert code in documented_codes(openapi)[response.status_code], (response.status_code, code)
