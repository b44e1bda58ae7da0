"""Readable text the redaction leaves in place below registered manager: strings in
elements the free-text rule treats as structured, free text under elements kept whole,
supporting resources named for a mental-health service, and the Bundle entry's fullUrl.

Each parameter was a confirmed leak at the level in its id. The ones in LIMITS are the
redaction's known limits, written down in docs/sections.md ("What free-text removal cannot
catch"): they are expected to fail (strict: one that starts passing must be moved out).
"""

from __future__ import annotations

import pytest

from . import cases
from .conftest import assert_not_shown

# Strings the policy keeps because the record needs them, and cannot read without a
# terminology server or the FHIR schema: see docs/sections.md.
LIMITS = {
    "header-photo-url": "URLs are kept (a document's attachment URL is how it is opened)",
    "header-telecom-value": "the resident's contact details are kept",
    "medstatement-dosage-asNeeded-text": "dosage instructions are kept for those who give medicines",
    "flag-meta-versionId": "ids and version ids are kept",
    "flag-id-spelling-diagnosis": "ids and version ids are kept",
    "entry-fullurl-words": "the upstream's fullUrl is kept so that references resolve",
    "entry-fullurl-urn": "the upstream's fullUrl is kept so that references resolve",
    "flag-code-sct-real-code-lying-display": "a real code's display is trusted without a terminology server",
    "flag-code-condition-clinical-display": "a real code's display is trusted without a terminology server",
    "flag-invented-boolean-element-name": "element names are not checked against the FHIR schema",
}


def _params() -> list:
    params = []
    for case in cases.LEAKS:
        for param in case.levels():
            if case.id in LIMITS:
                param = pytest.param(
                    *param.values, id=param.id, marks=pytest.mark.xfail(reason=LIMITS[case.id], strict=True)
                )
            params.append(param)
    return params


@pytest.mark.parametrize(("case", "level"), _params())
def test_not_shown(attack2_world, token, case, level):
    assert_not_shown(attack2_world, token(level), case, level)
