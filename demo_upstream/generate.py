"""Random synthetic records for property-based tests.

    rng = random.Random(7)
    nhs = valid_nhs_number(rng)                       # "999…" with a valid Modulus 11 check digit
    bundle = random_record(rng, "res-1", nhs, "1940-02-29", size=40)
    bundle, labels = random_labelled_record(rng, "res-1", nhs, "1940-02-29", size=40)

A record is a collection Bundle: the resident's Patient, four supporting resources (a GP
practice, an NHS trust, a look-alike "GP" whose RO76 code is in the wrong code system, and a
Practitioner), then `size` resources drawn from TEMPLATES. Each drawn resource may then be
changed by the modifiers below; every table pairs a value with the sections docs/sections.md
says it adds, so `labels` records what each resource was built to match (by construction:
there is no classifier here). Decoys (values that add nothing) sit in the same tables.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

from sidecar.identifiers import NHS_NUMBER_SYSTEM

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
ORG_ROLE = "https://fhir.nhs.uk/CodeSystem/organisation-role"
LOCAL = "https://example.org/lcr-demo/CodeSystem/local"

#: docs/sections.md's precedence, most restrictive first; labels list sections in this order.
PRECEDENCE = (
    "mental_health",
    "endoscopy",
    "additional_gp_reports",
    "gp_records",
    "clinical_correspondence",
    "clinical_document_reports",
    "community_information",
    "discharge_summaries",
    "maternity",
    "social_care",
    "letters",
    "care_plans",
    "progress_notes",
    "referrals",
    "lab_results",
    "vital_signs",
    "social_history",
    "diagnoses",
    "allergies",
    "family_history",
    "issued_medications",
    "medications",
    "procedures",
    "alerts",
    "appointments",
    "visits_encounters",
)

#: Pseudo-section of a resource no level may see (an unmapped security label): withheld from everyone.
WITHHELD = "withheld"

#: Placeholder for a reference to this record's Patient inside the skeletons below.
SUBJECT = {"reference": "Patient/{patient}"}


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"system": system, "code": code, "display": display}


@dataclass(frozen=True)
class Template:
    name: str
    sections: tuple[str, ...]  # what the skeleton matches before any modifier
    resource: dict[str, Any]
    weight: int = 1  # relative chance of being drawn


def _t(name: str, sections: list[str], resource: dict[str, Any], weight: int = 1) -> Template:
    return Template(name, tuple(sections), resource, weight)


_ATTACHMENT = [{"attachment": {"contentType": "application/pdf", "url": "https://lcr-demo.invalid/doc.pdf"}}]
_LAB = [_cc(OBS_CAT, "laboratory", "Laboratory")]

# fmt: off
#: Every template, one row each: name, sections the skeleton matches, the resource skeleton
#: (and a weight: documents are drawn more often because most modifiers apply to them).
TEMPLATES: tuple[Template, ...] = (
    _t("flag", ["alerts"], {"resourceType": "Flag", "status": "active", "code": _cc(SCT, "129839007", "At risk for falls"), "subject": SUBJECT}),
    _t("appointment", ["appointments"], {"resourceType": "Appointment", "status": "booked", "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T10:30:00Z", "participant": [{"actor": SUBJECT, "status": "accepted"}]}),
    _t("encounter", ["visits_encounters"], {"resourceType": "Encounter", "status": "finished", "class": _coding(ACT, "AMB", "ambulatory"), "subject": SUBJECT}),
    _t("episode-of-care", [], {"resourceType": "EpisodeOfCare", "status": "active", "patient": SUBJECT}),
    _t("document", [], {"resourceType": "DocumentReference", "status": "current", "subject": SUBJECT, "content": _ATTACHMENT}, weight=12),
    _t("composition", [], {"resourceType": "Composition", "status": "final", "type": {"text": "Document"}, "subject": SUBJECT, "date": "2025-01-01", "author": [{"display": "Unknown"}], "title": "Document"}, weight=4),
    _t("allergy", ["allergies"], {"resourceType": "AllergyIntolerance", "code": _cc(SCT, "91936005", "Allergy to penicillin"), "patient": SUBJECT}),
    _t("condition", ["diagnoses"], {"resourceType": "Condition", "code": _cc(SCT, "38341003", "Hypertensive disorder"), "subject": SUBJECT}),
    _t("condition-dementia", ["mental_health", "diagnoses"], {"resourceType": "Condition", "code": _cc(SCT, "52448006", "Dementia"), "subject": SUBJECT}),
    _t("condition-mental-disorder", ["mental_health", "diagnoses"], {"resourceType": "Condition", "code": _cc(SCT, "74732009", "Mental disorder"), "subject": SUBJECT}),
    _t("condition-depression", ["mental_health", "diagnoses"], {"resourceType": "Condition", "code": _cc(SCT, "35489007", "Depressive disorder"), "subject": SUBJECT}),
    _t("condition-schizophrenia", ["mental_health", "diagnoses"], {"resourceType": "Condition", "code": _cc(SCT, "58214004", "Schizophrenia"), "subject": SUBJECT}),
    _t("condition-anxiety", ["mental_health", "diagnoses"], {"resourceType": "Condition", "code": _cc(SCT, "197480006", "Anxiety disorder"), "subject": SUBJECT}),
    _t("condition-bipolar", ["mental_health", "diagnoses"], {"resourceType": "Condition", "code": _cc(SCT, "13746004", "Bipolar disorder"), "subject": SUBJECT}),
    _t("family-history", ["family_history"], {"resourceType": "FamilyMemberHistory", "status": "completed", "patient": SUBJECT, "relationship": _cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "MTH", "mother")}),
    _t("medication-order", ["issued_medications"], {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "medicationCodeableConcept": {"text": "Amlodipine 5mg tablets"}, "subject": SUBJECT}),
    _t("medication-plan", ["medications"], {"resourceType": "MedicationRequest", "status": "active", "intent": "plan", "medicationCodeableConcept": {"text": "Paracetamol 500mg tablets"}, "subject": SUBJECT}),
    _t("medication-proposal", ["medications"], {"resourceType": "MedicationRequest", "status": "active", "intent": "proposal", "medicationCodeableConcept": {"text": "Vitamin D"}, "subject": SUBJECT}),
    _t("medication-dispense", ["issued_medications"], {"resourceType": "MedicationDispense", "status": "completed", "medicationCodeableConcept": {"text": "Amlodipine 5mg tablets"}, "subject": SUBJECT}),
    _t("medication-statement", ["medications"], {"resourceType": "MedicationStatement", "status": "active", "medicationCodeableConcept": {"text": "Paracetamol 500mg tablets"}, "subject": SUBJECT}),
    _t("medication", ["medications"], {"resourceType": "Medication", "code": {"text": "Amlodipine 5mg tablets"}}),
    _t("observation-lab", ["lab_results"], {"resourceType": "Observation", "status": "final", "category": _LAB, "code": _cc(LOINC, "718-7", "Hemoglobin [Mass/volume] in Blood"), "subject": SUBJECT}),
    _t("observation-vital", ["vital_signs"], {"resourceType": "Observation", "status": "final", "category": [_cc(OBS_CAT, "vital-signs", "Vital Signs")], "code": _cc(LOINC, "29463-7", "Body weight"), "subject": SUBJECT}),
    _t("observation-social", ["social_history"], {"resourceType": "Observation", "status": "final", "category": [_cc(OBS_CAT, "social-history", "Social History")], "code": _cc(LOINC, "72166-2", "Tobacco smoking status"), "subject": SUBJECT}),
    _t("observation-lab-and-vital", ["lab_results", "vital_signs"], {"resourceType": "Observation", "status": "final", "category": [*_LAB, _cc(OBS_CAT, "vital-signs", "Vital Signs")], "code": _cc(LOINC, "2708-6", "Oxygen saturation in Arterial blood"), "subject": SUBJECT}),
    _t("observation-survey", [], {"resourceType": "Observation", "status": "final", "category": [_cc(OBS_CAT, "survey", "Survey")], "code": _cc(LOINC, "44261-6", "PHQ-9 total score"), "subject": SUBJECT}),
    _t("observation-uncategorised", [], {"resourceType": "Observation", "status": "final", "code": _cc(LOINC, "8302-2", "Body height"), "subject": SUBJECT}),
    _t("observation-lab-wrong-system", [], {"resourceType": "Observation", "status": "final", "category": [_cc(LOCAL, "laboratory", "Laboratory")], "code": _cc(LOINC, "718-7", "Hemoglobin"), "subject": SUBJECT}),
    _t("diagnostic-report-lab", ["lab_results"], {"resourceType": "DiagnosticReport", "status": "final", "category": [_cc(V2_0074, "LAB", "Laboratory")], "code": _cc(LOINC, "58410-2", "CBC panel"), "subject": SUBJECT}),
    _t("diagnostic-report-radiology", [], {"resourceType": "DiagnosticReport", "status": "final", "category": [_cc(V2_0074, "RAD", "Radiology")], "code": _cc(LOINC, "36643-5", "XR Chest 2 Views"), "subject": SUBJECT}),
    _t("diagnostic-report-endoscopy", ["endoscopy"], {"resourceType": "DiagnosticReport", "status": "final", "code": _cc(LOINC, "27895-2", "Gastrointestinal endoscopy study"), "subject": SUBJECT}),
    _t("diagnostic-report-egd-lab", ["endoscopy", "lab_results"], {"resourceType": "DiagnosticReport", "status": "final", "category": [_cc(V2_0074, "LAB", "Laboratory")], "code": _cc(SCT, "76009000", "Esophagogastroduodenoscopy"), "subject": SUBJECT}),
    _t("specimen", ["lab_results"], {"resourceType": "Specimen", "type": _cc(SCT, "119297000", "Blood specimen"), "subject": SUBJECT}),
    _t("care-plan", ["care_plans"], {"resourceType": "CarePlan", "status": "active", "intent": "plan", "category": [_cc(SCT, "734163000", "Care plan")], "subject": SUBJECT}),
    _t("care-plan-crisis", ["mental_health", "care_plans"], {"resourceType": "CarePlan", "status": "active", "intent": "plan", "category": [_cc(SCT, "736253002", "Mental health crisis plan")], "subject": SUBJECT}),
    _t("procedure", ["procedures"], {"resourceType": "Procedure", "status": "completed", "code": _cc(SCT, "52734007", "Total replacement of hip"), "subject": SUBJECT}),
    _t("procedure-endoscopy", ["endoscopy", "procedures"], {"resourceType": "Procedure", "status": "completed", "code": _cc(SCT, "423827005", "Endoscopy"), "subject": SUBJECT}),
    _t("procedure-colonoscopy", ["endoscopy", "procedures"], {"resourceType": "Procedure", "status": "completed", "code": _cc(SCT, "73761001", "Colonoscopy"), "subject": SUBJECT}),
    _t("procedure-egd", ["endoscopy", "procedures"], {"resourceType": "Procedure", "status": "completed", "code": _cc(SCT, "76009000", "Esophagogastroduodenoscopy"), "subject": SUBJECT}),
    _t("service-request", ["referrals"], {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "code": _cc(SCT, "306142005", "Referral to physiotherapist"), "subject": SUBJECT}),
    _t("immunization", [], {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "Influenza vaccine"}, "patient": SUBJECT, "occurrenceDateTime": "2025-10-01"}),
    _t("location", [], {"resourceType": "Location", "status": "active", "name": "Day room"}),
    _t("practitioner", [], {"resourceType": "Practitioner", "name": [{"family": "Sample", "given": ["Alex"]}]}),
)

_WEIGHTS = [t.weight for t in TEMPLATES]

#: Modifier tables: (value, sections it adds).
DOCUMENT_TYPES: tuple[tuple[dict[str, Any], tuple[str, ...]], ...] = (
    (_cc(SCT, "373942005", "Discharge summary"), ("discharge_summaries",)),
    (_cc(LOINC, "18842-5", "Discharge summary"), ("discharge_summaries",)),
    (_cc(SCT, "823751000000102", "Letter"), ("letters",)),
    (_cc(LOINC, "26442-4", "Obstetrical summary"), ("maternity",)),
    (_cc(SCT, "734163000", "Care plan"), ("care_plans",)),
    (_cc(LOINC, "11506-3", "Progress note"), ("progress_notes",)),
    (_cc(SCT, "25611000000107", "Referral letter"), ("referrals",)),
    (_cc(SCT, "371525003", "Clinical procedure report"), ("clinical_document_reports",)),
    (_cc(SCT, "721981007", "Diagnostic studies report"), ("clinical_document_reports",)),
    (_cc(SCT, "722124004", "Radiology studies report"), ("clinical_document_reports",)),
    (_cc(LOINC, "11488-4", "Consult note"), ("clinical_correspondence",)),
    (_cc(LOINC, "27895-2", "Gastrointestinal endoscopy study"), ("endoscopy",)),
    (_cc(SCT, "736253002", "Mental health crisis plan"), ("mental_health",)),
    (_cc(LOINC, "34133-9", "Summary of episode note"), ()),           # decoy: not a listed type
    (_cc(LOCAL, "MISC-42", "Miscellaneous"), ()),                       # decoy: local code system
    (_cc(SCT, "18842-5", "Discharge summary"), ()),                     # decoy: LOINC code, SNOMED system
    (_cc(LOINC, "373942005", "Discharge summary"), ()),                 # decoy: SNOMED code, LOINC system
)
CARE_SETTINGS: tuple[tuple[dict[str, Any], tuple[str, ...]], ...] = (
    (_cc(SCT, "310134006", "Social services"), ("social_care",)),
    (_cc(SCT, "310063007", "Obstetrics service"), ("maternity",)),
    (_cc(SCT, "714088003", "Midwifery service"), ("maternity",)),
    (_cc(SCT, "413294000", "Community health services"), ("community_information",)),
    (_cc(SCT, "310030000", "Endoscopy service"), ("endoscopy",)),
    (_cc(SCT, "394587001", "Psychiatry"), ("mental_health",)),
    (_cc(SCT, "722162001", "Psychology"), ("mental_health",)),
    (_cc(SCT, "394802001", "General medicine"), ()),                    # decoy
    (_cc(SCT, "700221004", "Care of elderly service"), ()),             # decoy
    (_cc(LOCAL, "310134006", "Social services"), ()),                   # decoy: right code, wrong system
)
SECURITY_LABELS: tuple[tuple[dict[str, Any], tuple[str, ...]], ...] = (
    (_coding(ACT, "PSY", "psychiatry information sensitivity"), ("mental_health",)),
    (_coding(ACT, "MH", "mental health information sensitivity"), ("mental_health",)),
    (_coding(ACT, "BH", "behavioral health information sensitivity"), ("mental_health",)),
    (_coding(ACT, "PSYTHPN", "psychotherapy note information sensitivity"), ("mental_health",)),
    (_coding(ACT, "EMOTDIS", "emotional disturbance information sensitivity"), ("mental_health",)),
    (_coding(CONFIDENTIALITY, "N", "normal"), ()),                      # decoy: an ordinary label
    (_coding(CONFIDENTIALITY, "R", "restricted"), (WITHHELD,)),        # not mapped by the policy: fail closed
    (_coding(ACT, "ETH", "substance abuse information sensitivity"), ("mental_health",)),
    (_coding(LOCAL, "PSY", "psychiatry"), (WITHHELD,)),                 # a label in an unknown system: fail closed
)
#: Organizations a source field may point at: (id suffix, is it a GP practice in this record?).
#: The GP practice is drawn half the time, a decoy otherwise.
SOURCES: tuple[tuple[str, bool], ...] = (
    ("org-gp", True),
    ("org-trust", False),
    ("org-lookalike-gp", False),  # RO76, but in a local code system
    ("org-not-in-record", True),  # dangling: its source cannot be known, so it counts as a GP's
)
#: Where each type keeps the fields the GP-sourced rule reads, and their shape.
SOURCE_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "DocumentReference": (("custodian", "reference"), ("author", "list")),
    "Composition": (("author", "list"), ("custodian", "reference")),
    "Condition": (("recorder", "reference"), ("asserter", "reference")),
    "AllergyIntolerance": (("recorder", "reference"), ("asserter", "reference")),
    "MedicationRequest": (("requester", "reference"),),
    "ServiceRequest": (("requester", "reference"), ("performer", "list")),
    "Procedure": (("performer", "actor-list"),),
    "Observation": (("performer", "list"),),
    "DiagnosticReport": (("performer", "list"),),
}
#: Where each type keeps its care setting, and its shape.
CARE_SETTING_FIELDS: dict[str, tuple[str, str]] = {
    "Encounter": ("serviceType", "concept"),
    "DocumentReference": ("context.practiceSetting", "concept"),
    "EpisodeOfCare": ("type", "list"),
    "Composition": ("category", "list"),
}
DOCUMENT_TYPE_FIELDS = {"DocumentReference": "type", "Composition": "type"}
#: Supporting resources are never labelled or given sources (docs/sections.md: always withheld).
UNMODIFIED_TYPES = {"Patient", "Practitioner", "Organization", "Location"}
# fmt: on

P_DOCUMENT_TYPE = 0.8
P_CARE_SETTING = 0.4
P_SOURCE = 0.5
P_SECURITY_LABEL = 0.15


def valid_nhs_number(rng: random.Random) -> str:
    """A random NHS number in the synthetic 999 range with a valid Modulus 11 check digit."""
    while True:
        digits = [9, 9, 9, *(rng.randrange(10) for _ in range(6))]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=False)) % 11
        if check == 11:
            check = 0
        if check != 10:  # a check digit of 10 is never issued
            return "".join(map(str, digits)) + str(check)


def random_record(rng: random.Random, patient_id: str, nhs_number: str, birth_date: str, size: int) -> dict[str, Any]:
    """A collection Bundle: the Patient, 4 supporting resources and `size` random resources."""
    return random_labelled_record(rng, patient_id, nhs_number, birth_date, size)[0]


def random_labelled_record(
    rng: random.Random, patient_id: str, nhs_number: str, birth_date: str, size: int
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """As random_record, plus the sections each resource was built to match.

    Labels have the shape of tests/fixtures/expected_sections.json:
    {"Flag/res-1-flag-000": {"sections": ["alerts"], "primary": "alerts"}, ...}.
    """
    resources: list[tuple[dict[str, Any], set[str] | None]] = [
        (_patient(patient_id, nhs_number, birth_date), None),
        *((r, set()) for r in _supporting(patient_id)),
    ]
    for n in range(size):
        template = rng.choices(TEMPLATES, weights=_WEIGHTS)[0]
        filled = _fill(template.resource, patient_id)
        resource = {"resourceType": filled.pop("resourceType"), "id": f"{patient_id}-{template.name}-{n:03d}", **filled}
        sections = set(template.sections)
        if resource["resourceType"] not in UNMODIFIED_TYPES:
            sections |= _modify(rng, resource, patient_id)
        resources.append((resource, sections))

    bundle = {
        "resourceType": "Bundle",
        "id": f"{patient_id}-random",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:lcr-demo:{r['resourceType']}/{r['id']}", "resource": r} for r, _ in resources],
    }
    labels: dict[str, dict[str, Any]] = {}
    for resource, built in resources:
        key = f"{resource['resourceType']}/{resource['id']}"
        if built is None:  # the resident's own Patient: the header of the view
            labels[key] = {"sections": [], "primary": "patient"}
        else:
            ordered = sorted(built, key=lambda s: -1 if s == WITHHELD else PRECEDENCE.index(s))
            labels[key] = {"sections": ordered, "primary": ordered[0] if ordered else None}
    return bundle, labels


def _modify(rng: random.Random, resource: dict[str, Any], patient_id: str) -> set[str]:
    rtype = resource["resourceType"]
    added: set[str] = set()
    if rtype in DOCUMENT_TYPE_FIELDS and rng.random() < P_DOCUMENT_TYPE:
        value, sections = rng.choice(DOCUMENT_TYPES)
        resource[DOCUMENT_TYPE_FIELDS[rtype]] = copy.deepcopy(value)
        added.update(sections)
    if rtype in CARE_SETTING_FIELDS and rng.random() < P_CARE_SETTING:
        value, sections = rng.choice(CARE_SETTINGS)
        path, shape = CARE_SETTING_FIELDS[rtype]
        _set_path(resource, path, [copy.deepcopy(value)] if shape == "list" else copy.deepcopy(value))
        added.update(sections)
    if rtype in SOURCE_FIELDS and rng.random() < P_SOURCE:
        field, shape = rng.choice(SOURCE_FIELDS[rtype])
        suffix, is_gp = SOURCES[0] if rng.random() < 0.5 else rng.choice(SOURCES[1:])
        reference = {"reference": f"Organization/{patient_id}-{suffix}"}
        resource[field] = {"list": [reference], "actor-list": [{"actor": reference}]}.get(shape, reference)
        if is_gp:
            added.add("gp_records")
            if rtype in ("DocumentReference", "Composition"):
                added.add("additional_gp_reports")
    if rng.random() < P_SECURITY_LABEL:
        label, sections = rng.choice(SECURITY_LABELS)
        resource.setdefault("meta", {}).setdefault("security", []).append(copy.deepcopy(label))
        added.update(sections)
    if rtype == "DocumentReference" and rng.random() < P_SECURITY_LABEL:
        label, sections = rng.choice(SECURITY_LABELS)
        resource["securityLabel"] = [{"coding": [copy.deepcopy(label)]}]
        added.update(sections)
    return added


def _set_path(resource: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = resource
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _fill(skeleton: Any, patient_id: str) -> Any:
    """A deep copy of a skeleton with SUBJECT pointing at this record's Patient."""
    if isinstance(skeleton, dict):
        if skeleton == SUBJECT:
            return {"reference": f"Patient/{patient_id}"}
        return {key: _fill(value, patient_id) for key, value in skeleton.items()}
    if isinstance(skeleton, list):
        return [_fill(item, patient_id) for item in skeleton]
    return skeleton


def _patient(patient_id: str, nhs_number: str, birth_date: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "name": [{"family": "Generated", "given": ["Test"]}],
        "birthDate": birth_date,
    }


def _supporting(patient_id: str) -> list[dict[str, Any]]:
    def org(suffix: str, name: str, system: str, code: str, display: str) -> dict[str, Any]:
        return {
            "resourceType": "Organization",
            "id": f"{patient_id}-{suffix}",
            "name": name,
            "type": [{"coding": [_coding(system, code, display)]}],
        }

    return [
        org("org-gp", "Generated GP Practice", ORG_ROLE, "RO76", "GP PRACTICE"),
        org("org-trust", "Generated NHS Trust", ORG_ROLE, "RO197", "NHS TRUST"),
        org("org-lookalike-gp", "Look-alike GP", LOCAL, "RO76", "GP PRACTICE"),
        {"resourceType": "Practitioner", "id": f"{patient_id}-practitioner", "name": [{"family": "Generated"}]},
    ]
