"""Every attack case, by family. `hide` lists the levels the case was seen to leak to (a
Condition is never shown to an admin anyway; another person's record leaked to registered
managers only). Each builder returns the case's resources for one resident
(`world.Resident`) and may edit its header Patient; the canary is `r.canary` unless the
case names another needle (`NEEDLES`)."""

from __future__ import annotations

import base64
import random
from typing import Any

from demo_upstream.generate import valid_nhs_number

from .world import (
    ACT,
    ADMIN,
    BELOW_MANAGER,
    DAR,
    EVERY_LEVEL,
    GP_SOURCE,
    ICD10,
    LOINC,
    MANAGER,
    NHS_NUMBER,
    ODS_CODE,
    ORG_ROLE,
    ROLE_CODE,
    SCT,
    SENIOR,
    Case,
    Resident,
)

# Needles other than the canary itself (what must not appear in the raw body).
NEEDLES: dict[str, Any] = {}


def _schizophrenia(r: Resident, role: str = "mh") -> dict[str, Any]:
    return r.condition(SCT, "58214004", role=role)


# -- contained resources ----------------------------------------------------------------


def _contained_object(r: Resident) -> list[dict[str, Any]]:
    # `contained` holding one resource as an object, not a list of them.
    return [r.encounter(contained=_schizophrenia(r, "contained-mh"))]


def _contained_object_in_flag(r: Resident) -> list[dict[str, Any]]:
    labelled = r.flag(
        "contained-psy",
        meta={"security": [{"system": ACT, "code": "PSY"}]},
        code={"coding": [{"system": SCT, "code": "225915006", "display": r.canary}]},
    )
    return [r.flag(contained=labelled)]


def _contained_object_in_header(r: Resident) -> list[dict[str, Any]]:
    r.patient["contained"] = _schizophrenia(r, "header-mh")
    return []


def _contained_nested_psy(r: Resident) -> list[dict[str, Any]]:
    # A contained Flag that itself contains a PSY-labelled Flag: the inner label is never read.
    inner = r.flag(
        "inner-psy",
        meta={"security": [{"system": ACT, "code": "PSY"}]},
        code={"coding": [{"system": SCT, "code": "225915006", "display": r.canary}]},
    )
    outer = r.flag("outer", contained=[inner])
    return [r.encounter(contained=[outer])]


def _contained_string(r: Resident) -> list[dict[str, Any]]:
    return [r.flag(contained=f"Seen by the crisis team {r.canary}")]


def _contained_condition(r: Resident, subject: dict[str, Any] | None) -> list[dict[str, Any]]:
    condition = r.condition(SCT, "38341003", role="contained-htn")  # hypertension: an ordinary diagnosis
    if subject is None:
        condition.pop("subject")
    else:
        condition["subject"] = subject
    return [r.encounter(contained=[condition])]


CONTAINED = [
    Case(
        "contained-object-schizophrenia-in-encounter",
        BELOW_MANAGER,
        _contained_object,
        "Encounter.contained is one object (a Condition SNOMED 58214004), not a list",
    ),
    Case(
        "contained-object-psy-flag-in-flag",
        BELOW_MANAGER,
        _contained_object_in_flag,
        "Flag.contained is one PSY-labelled Flag as an object",
    ),
    Case(
        "contained-object-schizophrenia-in-header",
        BELOW_MANAGER,
        _contained_object_in_header,
        "the header Patient's contained is one schizophrenia Condition as an object",
    ),
    Case(
        "contained-in-contained-psy-label",
        BELOW_MANAGER,
        _contained_nested_psy,
        "a PSY label on a resource contained in a contained resource",
    ),
    Case("contained-as-string", EVERY_LEVEL, _contained_string, "Flag.contained is a string"),
    Case(
        "contained-condition-subject-group",
        (SENIOR, MANAGER),
        lambda r: _contained_condition(r, {"reference": f"Group/{r.id('group')}"}),
        "contained Condition whose subject is a Group (withheld at top level, not in the compartment)",
    ),
    Case(
        "contained-condition-subject-other-hospital-number",
        (SENIOR, MANAGER),
        lambda r: _contained_condition(
            r, {"identifier": {"system": "https://hospital.example/Id/mrn", "value": "H-77231"}, "display": "J. Other"}
        ),
        "contained Condition whose subject is someone named only by a hospital number",
    ),
    Case(
        "contained-condition-no-subject",
        (SENIOR, MANAGER),
        lambda r: _contained_condition(r, None),
        "contained Condition that names no subject (withheld at top level)",
    ),
]


# -- other people ------------------------------------------------------------------------


def _gp(r: Resident) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": r.id("gp"),
        "identifier": [{"system": ODS_CODE, "value": "Y9" + r.short[:4].upper()}],
        "type": [{"coding": [{"system": ORG_ROLE, "code": "RO76", "display": "GP PRACTICE"}]}],
        "name": "Example Medical Practice",
    }


def _linked_patient(r: Resident, **fields: Any) -> dict[str, Any]:
    number = valid_nhs_number(random.Random(r.short))
    return {
        "resourceType": "Patient",
        "id": r.id("linked"),
        "identifier": [{"system": NHS_NUMBER, "value": number}],
        "name": [{"family": r.canary, "given": ["Other"]}],
        "birthDate": "1941-02-03",
        "link": [{"other": r.subject(), "type": "seealso"}],
        **fields,
    }


def _linked_patient_gp_org(r: Resident) -> list[dict[str, Any]]:
    gp = _gp(r)
    return [_linked_patient(r, managingOrganization={"reference": f"Organization/{gp['id']}"}), gp]


def _linked_patient_gp_meta_source(r: Resident) -> list[dict[str, Any]]:
    return [_linked_patient(r, meta={"source": GP_SOURCE})]


def _linked_patient_unknown_org(r: Resident) -> list[dict[str, Any]]:
    # A managing organisation the record does not hold counts as GP-sourced.
    return [_linked_patient(r, managingOrganization={"reference": f"Organization/{r.id('absent-org')}"})]


OTHER_PEOPLE = [
    Case(
        "linked-patient-managed-by-gp",
        (MANAGER,),
        _linked_patient_gp_org,
        "another person's Patient (Patient.link to the resident) managed by a GP practice",
    ),
    Case(
        "linked-patient-gp-meta-source",
        (MANAGER,),
        _linked_patient_gp_meta_source,
        "another person's Patient whose meta.source is a GP source",
    ),
    Case(
        "linked-patient-managed-by-unknown-org",
        (MANAGER,),
        _linked_patient_unknown_org,
        "another person's Patient managed by an Organization the record does not hold",
    ),
]


# -- code forms --------------------------------------------------------------------------


def _condition(system: str, code: str):
    return lambda r: [r.condition(system, code)]


def _reason(code: str):
    return lambda r: [r.encounter(reasonCode=[{"coding": [{"system": SCT, "code": code, "display": r.canary}]}])]


CODE_FORMS = [
    # SNOMED 26929004 (Alzheimer's) and 230270009 (frontotemporal dementia) are registered
    # manager only; the same diseases in ICD-10 chapter G are not.
    Case(
        "icd10-G30.9-alzheimers-condition",
        (SENIOR,),
        _condition(ICD10, "G30.9"),
        "Alzheimer's disease coded ICD-10 G30.9 (SNOMED 26929004 is mental_health)",
    ),
    Case(
        "icd10-G30.1-late-onset-alzheimers-condition",
        (SENIOR,),
        _condition(ICD10, "G30.1"),
        "late-onset Alzheimer's disease, ICD-10 G30.1",
    ),
    Case(
        "icd10-G31.0-frontotemporal-dementia-condition",
        (SENIOR,),
        _condition(ICD10, "G31.0"),
        "frontotemporal dementia coded ICD-10 G31.0 (SNOMED 230270009 is mental_health)",
    ),
    # Mental disorders (<< 74732009) missing from the curated value set.
    Case(
        "sct-35252006-paranoid-schizophrenia-condition",
        (SENIOR,),
        _condition(SCT, "35252006"),
        "paranoid schizophrenia",
    ),
    Case("sct-310495003-mild-depression-condition", (SENIOR,), _condition(SCT, "310495003"), "mild depression"),
    Case("sct-310496002-moderate-depression-condition", (SENIOR,), _condition(SCT, "310496002"), "moderate depression"),
    Case(
        "sct-35252006-paranoid-schizophrenia-encounter-reason",
        (ADMIN,),
        _reason("35252006"),
        "Encounter.reasonCode paranoid schizophrenia",
    ),
    Case(
        "sct-310495003-mild-depression-encounter-reason",
        (ADMIN,),
        _reason("310495003"),
        "Encounter.reasonCode mild depression",
    ),
    # A recognised system is enough to keep a display, whatever the code says.
    Case(
        "sct-expression-with-term-display-kept",
        BELOW_MANAGER,
        lambda r: [r.flag(code={"coding": [{"system": SCT, "code": "58214004 |Schizophrenia|", "display": r.canary}]})],
        "a SNOMED code written with its term (compositional grammar) is not a signal, its display is kept",
    ),
    Case(
        "sct-unlisted-code-display-kept",
        BELOW_MANAGER,
        lambda r: [r.flag(code={"coding": [{"system": SCT, "code": "0", "display": r.canary}]})],
        "a display on a SNOMED code that is not a concept is kept as if controlled terminology",
    ),
    Case(
        "unknown-system-code-value-kept",
        BELOW_MANAGER,
        lambda r: [
            r.encounter(
                hospitalization={
                    "dischargeDisposition": {
                        "coding": [{"system": "https://example.org/CodeSystem/local-discharge", "code": r.canary}]
                    }
                }
            )
        ],
        "the code of a coding in a system the policy cannot read is kept (only its display is removed)",
    ),
    Case(
        "meta-tag-code-value-kept",
        BELOW_MANAGER,
        lambda r: [r.flag(meta={"tag": [{"system": "https://example.org/CodeSystem/tags", "code": r.canary}]})],
        "meta.tag code in an unknown system",
    ),
]


# -- free text the free-text rule does not list -------------------------------------------


def _b64(r: Resident) -> str:
    return base64.b64encode(f"Admitted under section 2 {r.canary}".encode()).decode()


NEEDLES["docref-attachment-data-base64"] = _b64

FREE_TEXT = [
    Case("appointment-description", BELOW_MANAGER, lambda r: [r.appointment(description=r.canary)]),
    Case("appointment-patientInstruction", BELOW_MANAGER, lambda r: [r.appointment(patientInstruction=r.canary)]),
    Case(
        "header-photo-title",
        BELOW_MANAGER,
        lambda r: [r.patient.update(photo=[{"contentType": "image/png", "title": r.canary}]) or r.flag()],
    ),
    Case(
        "flag-known-extension-valueString",
        BELOW_MANAGER,
        lambda r: [r.flag(extension=[{"url": DAR, "valueString": r.canary}])],
        "an extension with the one known URL carrying free text",
    ),
    Case(
        "header-known-extension-valueString",
        BELOW_MANAGER,
        lambda r: [r.patient.update(extension=[{"url": DAR, "valueString": r.canary}]) or r.flag()],
    ),
    Case(
        "flag-known-modifierExtension-valueString",
        BELOW_MANAGER,
        lambda r: [r.flag(modifierExtension=[{"url": DAR, "valueString": r.canary}])],
    ),
    Case("docref-description", (SENIOR,), lambda r: [r.document(description=r.canary)]),
    Case(
        "docref-attachment-title",
        (SENIOR,),
        lambda r: [r.document(content=[{"attachment": {"contentType": "text/plain", "title": r.canary}}])],
    ),
    Case(
        "docref-attachment-data-base64",
        (SENIOR,),
        lambda r: [r.document(content=[{"attachment": {"contentType": "text/plain", "data": _b64(r)}}])],
    ),
    Case("observation-valueString", (SENIOR,), lambda r: [r.observation(valueString=r.canary)]),
    Case(
        "observation-component-valueString",
        (SENIOR,),
        lambda r: [
            r.observation(
                component=[{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueString": r.canary}]
            )
        ],
    ),
    Case("careplan-title", (SENIOR,), lambda r: [r.care_plan(title=r.canary)]),
    Case("careplan-description", (SENIOR,), lambda r: [r.care_plan(description=r.canary)]),
    Case(
        "careplan-activity-detail-description",
        (SENIOR,),
        lambda r: [r.care_plan(activity=[{"detail": {"status": "scheduled", "description": r.canary}}])],
    ),
    Case("composition-title", (SENIOR,), lambda r: [r.composition(title=r.canary)]),
    Case("composition-section-title", (SENIOR,), lambda r: [r.composition(section=[{"title": r.canary}])]),
]


# -- supporting resources read only for signals and labels --------------------------------


def _psychiatrist(r: Resident) -> list[dict[str, Any]]:
    practitioner = {
        "resourceType": "Practitioner",
        "id": r.id("practitioner"),
        "name": [{"family": "Doctor"}],
        "qualification": [{"code": {"coding": [{"system": SCT, "code": "80584001", "display": r.canary}]}}],
    }
    return [
        r.encounter(participant=[{"individual": {"reference": f"Practitioner/{practitioner['id']}"}}]),
        practitioner,
    ]


def _psychiatric_location(r: Resident) -> list[dict[str, Any]]:
    location = {
        "resourceType": "Location",
        "id": r.id("location"),
        "status": "active",
        "type": [{"coding": [{"system": ROLE_CODE, "code": "PSYCHF", "display": r.canary}]}],
    }
    return [r.encounter(location=[{"location": {"reference": f"Location/{location['id']}"}}]), location]


SUPPORTING = [
    Case(
        "practitioner-qualified-psychiatrist",
        BELOW_MANAGER,
        _psychiatrist,
        "an admin-visible Encounter's Practitioner, qualification SNOMED 80584001 (psychiatrist)",
    ),
    Case(
        "location-psychiatric-facility",
        BELOW_MANAGER,
        _psychiatric_location,
        "an admin-visible Encounter's Location typed v3-RoleCode PSYCHF (psychiatric care facility)",
    ),
]


# -- JSON shapes the policy does not expect ----------------------------------------------


def _flag_display(r: Resident, **fields: Any) -> dict[str, Any]:
    return r.flag(code={"coding": [{"system": SCT, "code": "225915006", "display": r.canary}]}, **fields)


SHAPES = [
    Case("meta-security-as-string-psy", BELOW_MANAGER, lambda r: [_flag_display(r, meta={"security": "PSY"})]),
    Case(
        "meta-as-list-with-psy-label",
        BELOW_MANAGER,
        lambda r: [_flag_display(r, meta=[{"security": [{"system": ACT, "code": "PSY"}]}])],
    ),
    Case(
        "narrative-div-as-list",
        BELOW_MANAGER,
        lambda r: [r.flag(text={"status": "generated", "div": [f"<div>{r.canary}</div>"]})],
    ),
    Case(
        "reference-display-as-list",
        BELOW_MANAGER,
        lambda r: [r.flag(author={"reference": f"Patient/atk-{r.short}", "display": [r.canary]})],
    ),
]

ALL = CONTAINED + OTHER_PEOPLE + CODE_FORMS + FREE_TEXT + SUPPORTING + SHAPES
