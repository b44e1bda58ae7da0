"""The cases of this folder's tests, built together into one data dir for one upstream.

TABLE: every base case alone and with each applicable transform alone (test_metamorphic).
PROBES: the faults 1–4 and 7 of issue 9, each as the (base, forms, level) that showed it
(test_probes). POOL: random combinations of transforms for the no-over-disclosure
property (test_property): the demo upstream loads its residents when it starts, so the
combinations hypothesis draws from are generated up front.
"""

from __future__ import annotations

from typing import NamedTuple

from . import metamorph as m


class Probe(NamedTuple):
    id: str
    base: str
    forms: tuple[str, ...]
    level: str

    @property
    def case(self) -> str:
        return m.case_name(self.base, self.forms)


TABLE = m.single_form_cases()

_P = Probe
PROBES = [
    # 1. Nested content goes out with its container.
    _P("f1-encounter-contains-schizophrenia-condition", "mh-condition", ("contained-in-encounter",), m.ADMIN),
    _P("f1-flag-contains-psy-labelled-resource", "mh-flag-psy", ("contained-in-flag",), m.ADMIN),
    _P("f1-encounter-reasoncode", "mh-condition", ("moved-encounter-reasoncode",), m.ADMIN),
    _P("f1-diagnosis-condition-display", "mh-condition", ("encounter-diagnosis-reference",), m.ADMIN),
    _P("f1-narrative-text-div", "mh-condition", ("text-narrative",), m.ADMIN),
    _P("f1-extension", "mh-condition", ("moved-extension",), m.ADMIN),
    _P("f1-composition-section-text-and-entry-display", "mh-condition", ("text-composition-section",), m.SENIOR),
    _P("f1-bare-reference-to-withheld-condition", "mh-condition", ("text-reference-to-target",), m.ADMIN),
    # 2. Unrecognised forms of a sensitive signal fail open.
    _P("f2-psy-label-system-oid", "mh-flag-psy", ("act-oid",), m.ADMIN),
    _P("f2-psy-label-system-stu3", "mh-flag-psy", ("act-stu3",), m.ADMIN),
    _P("f2-psy-label-no-system", "mh-flag-psy", ("act-no-system",), m.ADMIN),
    _P("f2-psy-label-lower-case", "mh-flag-psy", ("act-lower-case",), m.ADMIN),
    _P("f2-confidentiality-V", "plain-flag", ("conf-V",), m.ADMIN),
    _P("f2-psychiatry-servicetype-sct-oid", "psychiatry-encounter", ("sct-oid",), m.ADMIN),
    _P("f2-psychiatry-servicetype-sct-https", "psychiatry-encounter", ("sct-https",), m.ADMIN),
    _P("f2-psychiatry-servicetype-sct-trailing-slash", "psychiatry-encounter", ("sct-trailing-slash",), m.ADMIN),
    _P("f2-psychiatry-in-encounter-type", "psychiatry-encounter", ("moved-encounter-type",), m.ADMIN),
    _P("f2-psychiatry-in-appointment-servicetype", "psychiatry-encounter", ("moved-appointment-servicetype",), m.ADMIN),
    _P("f2-condition-icd10-F20-9", "mh-condition", ("icd10-F20-9",), m.SENIOR),
    _P("f2-condition-sct-370143000", "mh-condition", ("sct-370143000-major-depressive-disorder",), m.SENIOR),
    # 3. GP-sourced detection bypassed by reference forms.
    _P("f3-contained-gp", "gp-condition", ("gp-ref-contained",), m.SENIOR),
    _P("f3-urn-uuid-gp", "gp-condition", ("gp-ref-urn-uuid",), m.SENIOR),
    _P("f3-identifier-only-ods-code", "gp-condition", ("gp-ref-identifier",), m.SENIOR),
    _P(
        "f3-author-practitionerrole-gp",
        "gp-condition",
        ("carrier-composition-author", "gp-ref-practitionerrole"),
        m.SENIOR,
    ),
    _P(
        "f3-medicationstatement-informationsource",
        "gp-condition",
        ("carrier-medicationstatement-informationsource",),
        m.SENIOR,
    ),
    _P("f3-encounter-serviceprovider", "gp-condition", ("carrier-encounter-serviceprovider",), m.ADMIN),
    _P("f3-meta-source-upper-case-host", "gp-condition", ("carrier-meta-source-upper-host",), m.SENIOR),
    _P("f3-ods-role-system-RO76", "gp-condition", ("gp-role-ods-RO76",), m.SENIOR),
    _P("f3-organisation-role-76", "gp-condition", ("gp-role-org-role-76",), m.SENIOR),
    # 4. Other people's data; the resident's own Patient skips classification.
    _P("f4-second-patients-flag", "plain-flag", ("subject-other-relative",), m.ADMIN),
    _P("f4-second-patient-withheld-from-manager", "plain-flag", ("second-patient",), m.MANAGER),
    _P("f4-condition-subject-someone-else", "plain-condition", ("subject-someone-else",), m.SENIOR),
    _P("f4-resident-patient-psy-label", "mh-patient-psy", (), m.ADMIN),
    _P("f4-resident-patient-contains-condition", "mh-condition", ("contained-in-patient",), m.ADMIN),
    # 7. Classification gaps: every MedicationRequest intent has a section.
    *(
        _P(
            f"f7-medicationrequest-intent-{intent}",
            "medication-request",
            (f"intent-{intent}",) if intent != "order" else (),
            m.SENIOR,
        )
        for intent in (
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        )
    ),
]

POOL = m.random_combinations(160)


def all_cases() -> list[tuple[str, tuple[str, ...]]]:
    return [*TABLE, *((p.base, p.forms) for p in PROBES), *POOL]
