"""Second round of attack cases: readable text in elements the free-text rule treats as
structured, in elements kept whole, and on the Bundle entry itself. One resident per case
(`tests.attacks.world`), each carrying a unique canary where a level must not see it."""

from __future__ import annotations

from typing import Any

from ..attacks.world import ACT, ADMIN, BELOW_MANAGER, SCT, SENIOR, Case, Resident

NEEDLES: dict[str, Any] = {}
# Case id -> fullUrl to serve a case's resource under (by resource id), for Bundle-level cases.
FULL_URLS: dict[str, Any] = {}


def _mh_text(r: Resident) -> str:
    return f"schizophrenia-{r.canary}"


# -- strings in elements listed as structured, in valid R4 shapes --------------------------

STRUCTURED = [
    Case(
        "encounter-identifier-value",
        BELOW_MANAGER,
        lambda r: [r.encounter(identifier=[{"system": "https://mh-trust.example/Id/episode", "value": _mh_text(r)}])],
        "Encounter.identifier.value (an Identifier's value is free to hold words)",
    ),
    Case(
        "encounter-length-unit",
        BELOW_MANAGER,
        lambda r: [r.encounter(length={"value": 45, "unit": f"minutes with the crisis team {r.canary}"})],
        "Encounter.length (a Duration) whose human-readable unit is text",
    ),
    Case(
        "flag-meta-profile",
        BELOW_MANAGER,
        lambda r: [r.flag(meta={"profile": [f"https://mh-trust.example/StructureDefinition/section-2-{r.canary}"]})],
        "meta.profile naming what the resource is about",
    ),
    Case(
        "flag-meta-source-not-gp",
        BELOW_MANAGER,
        lambda r: [r.flag(meta={"source": f"https://mh-trust.example/psychiatric-ward/{r.canary}"})],
        "meta.source on a non-GP host naming a psychiatric ward",
    ),
    Case(
        "flag-meta-versionId",
        BELOW_MANAGER,
        lambda r: [r.flag(meta={"versionId": _mh_text(r)})],
        "meta.versionId is an id, words allowed",
    ),
    Case(
        "header-photo-url",
        BELOW_MANAGER,
        lambda r: [
            r.patient.update(
                photo=[
                    {
                        "contentType": "image/png",
                        "url": f"https://mh-trust.example/photos/psychosis-unit-{r.canary}.png",
                    }
                ]
            )
            or r.flag()
        ],
        "the header Patient's photo URL naming the ward",
    ),
    Case(
        "reference-type-words",
        BELOW_MANAGER,
        lambda r: [
            r.encounter(
                reasonReference=[
                    {"reference": f"Flag/{r.control_id}", "type": f"https://mh-trust.example/crisis-plan-{r.canary}"}
                ]
            )
        ],
        "Reference.type (a uri) on a kept reference, carrying words",
    ),
    Case(
        "appointment-participant-type-coding-unknown-system-value",
        BELOW_MANAGER,
        lambda r: [
            r.appointment(
                participant=[
                    {"actor": r.subject(), "status": "accepted"},
                    {
                        "status": "accepted",
                        "type": [{"coding": [{"system": "https://example.org/x", "code": "X", "value": r.canary}]}],
                    },
                ]
            )
        ],
        "a coding in an unknown system that carries a `value`, so it is taken for a Quantity and kept",
    ),
]

# -- shapes R4 does not define, under structured element names -----------------------------

STRUCTURED_SHAPES = [
    Case(
        "flag-code-as-string",
        BELOW_MANAGER,
        lambda r: [r.flag(code=f"Under section 3 for {r.canary}")],
        "Flag.code written as a string, not a CodeableConcept",
    ),
    Case(
        "flag-category-as-string",
        BELOW_MANAGER,
        lambda r: [r.flag(category=f"mental health {r.canary}")],
        "Flag.category as a string",
    ),
    Case(
        "encounter-type-as-strings",
        BELOW_MANAGER,
        lambda r: [r.encounter(type=[f"psychiatric admission {r.canary}"])],
        "Encounter.type as a list of strings",
    ),
    Case(
        "reference-as-list-of-strings",
        BELOW_MANAGER,
        lambda r: [r.flag(author={"reference": [f"Condition/schizophrenia-{r.canary}"]})],
        "a Reference whose reference is a list of strings is neither masked nor removed",
    ),
    Case(
        "flag-code-quantity-shaped",
        BELOW_MANAGER,
        lambda r: [r.flag(code={"value": f"schizophrenia {r.canary}", "code": "x"})],
        "Flag.code with a string `value`: read as a Quantity, kept whole",
    ),
    Case(
        "flag-status-text",
        BELOW_MANAGER,
        lambda r: [r.flag(status=f"active - sectioned {r.canary}")],
        "a status that is not a code",
    ),
    Case(
        "flag-invented-date-element",
        BELOW_MANAGER,
        lambda r: [r.flag(diagnosisDate=f"schizophrenia {r.canary}")],
        "an element named ...Date is kept whatever it holds",
    ),
]

# -- free text under kept_under elements ----------------------------------------------------


def _unknown_ext(r: Resident) -> list[dict[str, Any]]:
    return [{"url": "https://mh-trust.example/StructureDefinition/note", "valueString": f"Sectioned {r.canary}"}]


KEPT_UNDER = [
    Case(
        "header-address-unknown-extension",
        BELOW_MANAGER,
        lambda r: [r.patient.update(address=[{"city": "London", "extension": _unknown_ext(r)}]) or r.flag()],
        "an unknown extension inside Patient.address (unknown extensions are removed below registered manager)",
    ),
    Case(
        "header-name-unknown-extension",
        BELOW_MANAGER,
        lambda r: [r.patient.update(name=[{"family": "Resident", "extension": _unknown_ext(r)}]) or r.flag()],
        "an unknown extension inside Patient.name",
    ),
    Case(
        "encounter-invented-name-element",
        BELOW_MANAGER,
        lambda r: [r.encounter(hospitalization={"name": {"note": f"detained under section 2 {r.canary}"}})],
        "any element named `name`, at any depth, keeps its free text",
    ),
    Case(
        "flag-address-element-with-reason",
        BELOW_MANAGER,
        lambda r: [r.flag(address={"text": f"Psychiatric intensive care unit {r.canary}"})],
        "an `address` element where R4 has none",
    ),
    Case(
        "header-contact-name-text",
        BELOW_MANAGER,
        lambda r: [
            r.patient.update(contact=[{"name": {"text": f"Care coordinator, community mental health team {r.canary}"}}])
            or r.flag()
        ],
        "Patient.contact.name.text naming the mental-health team",
    ),
    Case(
        "header-telecom-value",
        BELOW_MANAGER,
        lambda r: [r.patient.update(telecom=[{"system": "other", "value": f"crisis line {r.canary}"}]) or r.flag()],
        "Patient.telecom.value with words",
    ),
]

# -- supporting resources carrying clinical text -----------------------------------------


def _support(r: Resident, rtype: str, **fields: Any) -> list[dict[str, Any]]:
    support = {"resourceType": rtype, "id": r.id("support"), **fields}
    if rtype == "Location":
        enc = r.encounter(location=[{"location": {"reference": f"Location/{support['id']}"}}])
    else:
        enc = (
            r.encounter(serviceProvider={"reference": f"{rtype}/{support['id']}"})
            if rtype == "Organization"
            else r.appointment(
                participant=[
                    {"actor": r.subject(), "status": "accepted"},
                    {"actor": {"reference": f"{rtype}/{support['id']}"}, "status": "accepted"},
                ]
            )
        )
    return [enc, support]


SUPPORTING = [
    Case(
        "location-name-psychiatric-ward",
        BELOW_MANAGER,
        lambda r: _support(r, "Location", status="active", name=f"Psychiatric intensive care unit {r.canary}"),
        "an admin-visible Encounter's Location named for a psychiatric ward",
    ),
    Case(
        "organization-name-mental-health",
        BELOW_MANAGER,
        lambda r: _support(
            r,
            "Organization",
            name=f"Early Intervention in Psychosis Team {r.canary}",
            type=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
        ),
        "an admin-visible Encounter's serviceProvider named for a psychosis service",
    ),
    Case(
        "healthcareservice-name-mental-health",
        BELOW_MANAGER,
        lambda r: _support(r, "HealthcareService", active=True, name=f"Community Mental Health Team {r.canary}"),
        "an Appointment participant HealthcareService named for a mental-health team",
    ),
    Case(
        "device-deviceName-clinical",
        BELOW_MANAGER,
        lambda r: _support(r, "Device", deviceName=[{"name": f"ECT machine {r.canary}", "type": "user-friendly-name"}]),
        "an Appointment participant Device named for electroconvulsive therapy",
    ),
]

# -- Bundle level ------------------------------------------------------------------------

NEEDLES["entry-fullurl-words"] = lambda r: r.canary
FULL_URLS["entry-fullurl-words"] = lambda r: {
    r.id("flag"): f"https://mh-trust.example/fhir/Flag/schizophrenia-{r.canary}"
}
NEEDLES["entry-fullurl-urn"] = lambda r: r.canary
FULL_URLS["entry-fullurl-urn"] = lambda r: {r.id("flag"): f"urn:x-note:sectioned-{r.canary}"}

BUNDLE = [
    Case(
        "entry-fullurl-words",
        BELOW_MANAGER,
        lambda r: [r.flag()],
        "a kept Flag's Bundle.entry.fullUrl (not a resolvable URL) carrying words",
    ),
    Case(
        "entry-fullurl-urn",
        BELOW_MANAGER,
        lambda r: [r.flag()],
        "a kept Flag's fullUrl in an arbitrary URN scheme carrying words",
    ),
]


# Case id -> the resident's $everything pages (entries as served), for Bundle-level cases.
PAGES: dict[str, Any] = {}


# -- codings in recognised systems: the display (and, without a code pattern, the code) stays --

LOINC = "http://loinc.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"

CODINGS = [
    Case(
        "flag-code-loinc-code-with-words",
        BELOW_MANAGER,
        lambda r: [r.flag(code={"coding": [{"system": LOINC, "code": f"schizophrenia {r.canary}"}]})],
        "LOINC has no code pattern: any string in a LOINC coding's code is recognised and kept, display too",
    ),
    Case(
        "flag-code-sct-real-code-lying-display",
        BELOW_MANAGER,
        lambda r: [
            r.flag(
                code={
                    "coding": [
                        {
                            "system": SCT,
                            "code": "225915006",
                            "display": f"Falls risk - sectioned, schizophrenia {r.canary}",
                        }
                    ]
                }
            )
        ],
        "a well-shaped SNOMED code (falls risk) whose display says something else",
    ),
    Case(
        "flag-code-condition-clinical-display",
        BELOW_MANAGER,
        lambda r: [
            r.flag(code={"coding": [{"system": CLINICAL, "code": "active", "display": f"Psychosis {r.canary}"}]})
        ],
        "a coding in a recognised system without a code pattern, display free text",
    ),
]

# -- element names and non-string values ------------------------------------------------

NEEDLES["flag-invented-boolean-element-name"] = lambda r: f"detainedUnderSection2{r.short}"

ELEMENTS = [
    Case(
        "flag-invented-boolean-element-name",
        BELOW_MANAGER,
        lambda r: [r.flag(**{f"detainedUnderSection2{r.short}": True})],  # type: ignore[arg-type]  # an invented element name, passed as a keyword on purpose
        "an element the policy does not know, whose name says it, with a boolean value: keys are never removed",
    ),
    Case(
        "flag-id-spelling-diagnosis",
        BELOW_MANAGER,
        lambda r: [dict(r.flag(), id=f"schizophrenia-{r.canary[7:]}")],
        "a kept resource whose id spells the diagnosis (also in its fullUrl)",
    ),
]
NEEDLES["flag-id-spelling-diagnosis"] = lambda r: f"schizophrenia-{r.canary[7:]}"

# -- a modifierExtension below the root ------------------------------------------------------


def _mod(r: Resident) -> list[dict[str, Any]]:
    return [{"url": "https://mh-trust.example/StructureDefinition/detained", "valueCode": r.canary}]


MODIFIERS = [
    Case(
        "encounter-nested-modifierExtension",
        (ADMIN, SENIOR, "registered_manager"),
        lambda r: [r.encounter(location=[{"location": {"display": "Ward 7"}, "modifierExtension": _mod(r)}])],
        "a modifierExtension in Encounter.location (any modifierExtension withholds its resource from everyone)",
    ),
    Case(
        "header-name-modifierExtension",
        (ADMIN, SENIOR, "registered_manager"),
        lambda r: [r.patient.update(name=[{"family": "Resident", "modifierExtension": _mod(r)}]) or r.flag()],
        "a modifierExtension in the header Patient's name",
    ),
]

# -- medication text kept whole for senior carers ----------------------------------------------


def _med(r: Resident, **dosage: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "id": r.id("medstatement"),
        "status": "active",
        "subject": r.subject(),
        "medicationCodeableConcept": {
            "coding": [{"system": "https://dmd.nhs.uk", "code": "322236009", "display": "Paracetamol 500mg tablets"}]
        },
        "dosage": [{"text": "1 tablet when required", **dosage}],
    }


MEDICATION = [
    Case(
        "medstatement-dosage-asNeeded-text",
        (SENIOR,),
        lambda r: [_med(r, asNeededCodeableConcept={"text": f"when hearing voices {r.canary}"})],
        "dosage.asNeededCodeableConcept.text is the reason for taking it, kept as 'how to take'",
    ),
    Case(
        "medstatement-dosage-unknown-extension",
        (SENIOR,),
        lambda r: [_med(r, extension=_unknown_ext(r))],
        "an unknown extension inside dosage (unknown extensions are removed below registered manager)",
    ),
]


# -- Bundle level, served as chosen pages ----------------------------------------------------


def _entry(res: dict[str, Any], url: str) -> dict[str, Any]:
    return {"fullUrl": url, "resource": res}


def _psy_flag(r: Resident, role: str) -> dict[str, Any]:
    return r.flag(
        role,
        meta={"security": [{"system": ACT, "code": "PSY"}]},
        code={"coding": [{"system": SCT, "code": "225915006", "display": r.canary}]},
    )


def _dup_id_pages(r: Resident, base: str) -> list[list[dict[str, Any]]]:
    plain, labelled = r.flag("dup"), _psy_flag(r, "dup")
    ref = r.encounter(reasonReference=[{"reference": f"Flag/{plain['id']}"}])
    return [
        [_entry(r.patient, f"{base}/Patient/{r.patient['id']}"), _entry(r.resources[0], f"{base}/Flag/{r.control_id}")],
        [_entry(plain, f"{base}/Flag/{plain['id']}"), _entry(ref, f"{base}/Encounter/{ref['id']}")],
        [_entry(labelled, f"{base}/Flag/{labelled['id']}")],
    ]


def _full_url_collision_pages(r: Resident, base: str) -> list[list[dict[str, Any]]]:
    shared = "urn:uuid:" + r.canary[7:15] + "-0000-4000-8000-" + r.canary[15:27]
    condition = r.condition(SCT, "58214004", role="mh")
    plain = r.flag("plain")
    enc = r.encounter(reasonReference=[{"reference": shared}])
    return [
        [_entry(r.patient, f"{base}/Patient/{r.patient['id']}"), _entry(r.resources[0], f"{base}/Flag/{r.control_id}")],
        [_entry(condition, shared), _entry(plain, shared)],
        [_entry(enc, f"{base}/Encounter/{enc['id']}")],
    ]


def _header_copy_pages(r: Resident, base: str) -> list[list[dict[str, Any]]]:
    copy = dict(r.patient, contained=[r.condition(SCT, "58214004", role="copy-mh")])
    url = f"{base}/Patient/{r.patient['id']}"
    return [[_entry(r.patient, url), _entry(r.resources[0], f"{base}/Flag/{r.control_id}")], [_entry(copy, url)]]


def _nested_bundle_pages(r: Resident, base: str) -> list[list[dict[str, Any]]]:
    inner = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r.condition(SCT, "58214004", role="inner-mh")}],
    }
    return [
        [
            _entry(r.patient, f"{base}/Patient/{r.patient['id']}"),
            _entry(r.resources[0], f"{base}/Flag/{r.control_id}"),
            _entry(dict(inner, id=r.id("inner")), f"{base}/Bundle/{r.id('inner')}"),
        ]
    ]


PAGES.update(
    {
        "bundle-same-flag-id-twice-one-psy": _dup_id_pages,
        "bundle-fullurl-shared-by-condition-and-flag": _full_url_collision_pages,
        "bundle-header-copy-with-contained-condition": _header_copy_pages,
        "bundle-nested-bundle-entry": _nested_bundle_pages,
    }
)

BUNDLE_PAGES = [
    Case(
        "bundle-same-flag-id-twice-one-psy",
        BELOW_MANAGER,
        lambda r: [],
        "the same Flag id on two pages, one copy PSY-labelled, referenced by an Encounter",
    ),
    Case(
        "bundle-fullurl-shared-by-condition-and-flag",
        BELOW_MANAGER,
        lambda r: [],
        "a withheld Condition and a kept Flag sharing one urn:uuid fullUrl, referenced through it",
    ),
    Case(
        "bundle-header-copy-with-contained-condition",
        BELOW_MANAGER,
        lambda r: [],
        "a second copy of the header Patient on page 2 containing a schizophrenia Condition",
    ),
    Case(
        "bundle-nested-bundle-entry",
        BELOW_MANAGER,
        lambda r: [],
        "a Bundle inside $everything holding a schizophrenia Condition",
    ),
]

# Confirmed leaks (tests/attacks2/test_leaks.py), and probes that held (test_held.py).
LEAKS = STRUCTURED + STRUCTURED_SHAPES + KEPT_UNDER + BUNDLE + CODINGS + ELEMENTS + MEDICATION
HELD = SUPPORTING + MODIFIERS + BUNDLE_PAGES
ALL = LEAKS + HELD
