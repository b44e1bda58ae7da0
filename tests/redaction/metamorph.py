"""Metamorphic generator for the redaction: sensitive resources and their equivalent forms.

A **case** is a base case (one sensitive resource in a resident's record) plus a list of
transform ids (its forms). `World.build(base, forms)` makes a `Record`: a resident's whole
record as the demo upstream serves it, with every sensitive part carrying a unique canary
string (`CANARY-<hex>`, in ids, displays, narrative, notes), and the oracle — one `Part` per
thing whose presence or absence the tests check, with the levels that must see it (`show`)
and the levels that must not (`hide`; any other level is unconstrained). `problems()` checks
one response against a record for one access level.

Every record also holds positive controls (a plain Flag every level must see, a plain
AllergyIntolerance from senior_carer up, the resident's Patient header), so a test that
only checks absence cannot pass on an empty answer.

Canaries are derived from the case id (uuid5), so a run is reproducible and every case's
canaries are unique across the data dir.

Adding a transform
------------------
Write a function `(record) -> record` and register it::

    @transform("sct-upper-case", group="code", needs={"snomed-signal"}, stage=20)
    def _sct_upper(rec: Record) -> Record:
        for coding in rec.signal_codings():
            coding["system"] = coding["system"].upper()
        return rec

- `needs`: tags the record must carry when the transform's turn comes (a base's `tags`,
  changed by earlier transforms: a transform that moves the target into `contained`
  removes "top-level", one that drops the GP reference removes "gp-ref"). `World.build`
  raises `NotApplicable` otherwise; the single-form table only lists transforms whose
  `needs` are within the base's tags.
- `group`: a combination takes at most one transform of a group.
- `stage`: a combination applies its transforms in stage order (then registry order):
  10 replace or retype the target, 20 respell codes and references, 30 add labels,
  40 name another person, 50 contain, 60 add free-text or extension carriers, 70 paging.
- Change the oracle along with the record: `rec.target_part` (the sensitive resource),
  `rec.add_part(...)` for anything new that must or must not leave. Put a canary from
  `rec.canary(name)` into every new sensitive string, and only ids or known-system code
  displays where a level must *see* the canary (free text is removed below
  registered_manager).

Adding a base case
------------------
Write `(rec) -> None` that fills `rec.target` (and `rec.add(...)` it), sets
`rec.target_part`, `rec.name` (words free text uses to name it) and, for coded signals,
`rec.signal_codes`; register it with `@base("id", tags={...})`. Tags say which transforms
apply (see the `needs` of each). Then every applicable single form is in the table.
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo_upstream.generate import valid_nhs_number

ADMIN, SENIOR, MANAGER = "admin", "senior_carer", "registered_manager"
LEVELS = (ADMIN, SENIOR, MANAGER)
ALL = frozenset(LEVELS)
NOBODY: frozenset[str] = frozenset()
BELOW_MANAGER = frozenset({ADMIN, SENIOR})
MANAGER_ONLY = frozenset({MANAGER})
FROM_SENIOR = frozenset({SENIOR, MANAGER})

SCT = "http://snomed.info/sct"
SCT_OID = "urn:oid:2.16.840.1.113883.6.96"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_OID = "urn:oid:2.16.840.1.113883.5.4"
ACT_STU3 = "http://hl7.org/fhir/v3/ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
DMD = "https://dmd.nhs.uk"
ORG_ROLE = "https://fhir.nhs.uk/CodeSystem/organisation-role"
ODS_ROLE = "https://digital.nhs.uk/services/organisation-data-service/CodeSystem/ODSOrganisationRole"
ODS_CODE = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
RFC3986 = "urn:ietf:rfc:3986"
GP_SOURCE = "https://gp.lcr.example/fhir/Condition/1"  # gp_source_prefixes in the bundle data
XHTML = "http://www.w3.org/1999/xhtml"
# Extension URLs no policy knows.
UNKNOWN_EXT = "https://example.org/fhir/StructureDefinition/care-note"
RELATED_EXT = "https://example.org/fhir/StructureDefinition/related-record"
DIAGNOSIS_EXT = "https://example.org/fhir/StructureDefinition/related-diagnosis"
MODIFIER_EXT = "https://example.org/fhir/StructureDefinition/do-not-act-on"
LINKED_EXT = "https://example.org/fhir/StructureDefinition/linked-record-of"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"  # core, Reference(Any)

MH_LABELS = ("PSY", "MH", "BH", "PSYTHPN", "EMOTDIS")
PAGE = 20  # HAPI's default $everything page size

# Who sees a clean resource of a type, by its section (docs/sections.md).
SEES: dict[str, frozenset[str]] = {
    "Flag": ALL,
    "Appointment": ALL,
    "Encounter": ALL,
    "Patient": ALL,
    "Condition": FROM_SENIOR,
    "AllergyIntolerance": FROM_SENIOR,
    "Procedure": FROM_SENIOR,
    "MedicationStatement": FROM_SENIOR,
    "MedicationRequest": FROM_SENIOR,
    "Composition": FROM_SENIOR,
}

_NS = uuid.UUID("5b3d7f0e-9a61-4c1e-b7f2-2f6f3c9e4a10")


class NotApplicable(Exception):
    """A transform's needs are not met by the record at its turn."""


# -- the oracle -------------------------------------------------------------------------


@dataclass
class Part:
    """Something whose presence is checked. `show`: levels that must see it (every key an
    entry of the answer, the canary somewhere in the body); `hide`: levels that must not
    (neither the canary nor any token anywhere in the raw body)."""

    name: str
    canary: str | None
    show: frozenset[str]
    hide: frozenset[str]
    keys: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()

    def withhold_from(self, levels: Iterable[str]) -> None:
        levels = frozenset(levels)
        self.show -= levels
        self.hide |= levels


@dataclass
class Record:
    case_id: str
    base: str
    forms: tuple[str, ...]
    base_url: str  # the upstream's FHIR base, for absolute references
    nhs_number: str
    dob: str
    world: World
    short: str = ""
    patient: dict[str, Any] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)  # top level, file order
    parts: dict[str, Part] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    target: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # words free text uses for the target
    signal_codes: set[str] = field(default_factory=set)  # codes of the coded signal
    gp: dict[str, Any] | None = None  # the GP Organization
    gp_ref: dict[str, Any] | None = None  # the Reference that makes the target GP-sourced
    ods_code: str = ""

    # -- building helpers

    def canary(self, name: str) -> str:
        return "CANARY-" + uuid.uuid5(_NS, f"{self.case_id}#{name}").hex

    def local_id(self, role: str) -> str:
        return f"{role}-{self.short}"

    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.patient['id']}"}

    def add(self, resource: dict[str, Any], at: int | None = None) -> dict[str, Any]:
        if at is None:
            self.resources.append(resource)
        else:
            self.resources.insert(at, resource)
        return resource

    def add_part(
        self,
        name: str,
        canary: str | None,
        show: Iterable[str],
        hide: Iterable[str] = (),
        keys: Iterable[str] = (),
        tokens: Iterable[str] = (),
    ) -> Part:
        part = Part(name, canary, frozenset(show), frozenset(hide), tuple(keys), tuple(tokens))
        self.parts[name] = part
        return part

    @property
    def target_part(self) -> Part:
        return self.parts["target"]

    def replace_target(self, new: dict[str, Any]) -> None:
        """Swap the target for `new`, where it is (top level or contained)."""
        holder = self.holder()
        top_level = holder is self.target
        if top_level:
            self.resources[self.index(holder)] = new
        else:
            holder["contained"] = [new if r is self.target else r for r in holder["contained"]]
        self.target = new
        self.target_part.keys = (key(new),) if top_level else ()

    def index(self, resource: dict[str, Any]) -> int:
        """Position of a top-level resource (by identity: two resources may be equal)."""
        return next(i for i, r in enumerate(self.resources) if r is resource)

    def holder(self) -> dict[str, Any]:
        """The top-level resource that is or contains the target."""
        for resource in self.resources:
            if resource is self.target or any(c is self.target for c in resource.get("contained", [])):
                return resource
        raise AssertionError(f"{self.case_id}: target not in the record")

    def signal_codings(self) -> Iterator[dict[str, Any]]:
        """Every coding in the target (any depth) whose code is the coded signal."""
        for coding in codings(self.target):
            if coding.get("code") in self.signal_codes:
                yield coding

    def mh_labels(self) -> Iterator[dict[str, Any]]:
        for coding in self.target.get("meta", {}).get("security", []):
            if str(coding.get("code", "")).upper() in MH_LABELS:
                yield coding

    # -- output

    def bundle(self) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in self.resources],
        }

    def request(self) -> dict[str, str]:
        return {"nhs_number": self.nhs_number, "dob": self.dob}


def key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def codings(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "code" in node and isinstance(node.get("code"), str) and ("system" in node or "display" in node):
            yield node
        for value in node.values():
            yield from codings(value)
    elif isinstance(node, list):
        for item in node:
            yield from codings(item)


def problems(record: Record, level: str, status: int, raw: bytes) -> list[str]:
    """Everything wrong with one answer for `level`: leaks (a hidden part's canary or token
    anywhere in the raw body, with the JSON paths where it was found), missing parts (a
    shown part's entry or canary absent), a 500, or no 200 where something must be shown."""
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    out: list[str] = []
    if status == 500:
        out.append("500 internal error")
    for part in record.parts.values():
        if level not in part.hide:
            continue
        for needle in [part.canary, *part.tokens]:
            if needle and needle in text:
                where = ", ".join(paths_of(body, needle)) or "raw body"
                out.append(f"LEAK {part.name} ({needle}) at {where}")
    must_show = [p for p in record.parts.values() if level in p.show]
    if must_show and status != 200:
        out.append(f"MISSING everything: status {status}, expected 200 with {', '.join(p.name for p in must_show)}")
    elif must_show:
        entries = {key(e["resource"]) for e in (body or {}).get("entry", []) if isinstance(e.get("resource"), dict)}
        for part in must_show:
            for k in part.keys:
                if k not in entries:
                    out.append(f"MISSING {part.name}: no entry {k}")
            if part.canary and part.canary not in text:
                out.append(f"MISSING {part.name}: canary {part.canary} not in the body")
    return out


def paths_of(node: Any, needle: str, path: str = "") -> list[str]:
    """JSON paths of the strings (values or keys) in `node` that contain `needle`."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}" if path else k
            if needle in k:
                found.append(here + " (key)")
            found += paths_of(v, needle, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths_of(v, needle, f"{path}[{i}]")
    elif isinstance(node, str) and needle in node:
        found.append(path)
    return found


# -- registries -------------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    id: str
    build: Callable[[Record], None]
    tags: frozenset[str]


@dataclass(frozen=True)
class Transform:
    id: str
    fn: Callable[[Record], Record]
    group: str
    needs: frozenset[str]
    stage: int
    order: int


BASES: dict[str, Base] = {}
TRANSFORMS: dict[str, Transform] = {}


def base(id: str, tags: Iterable[str]) -> Callable[[Callable[[Record], None]], Callable[[Record], None]]:
    def register(fn: Callable[[Record], None]) -> Callable[[Record], None]:
        assert id not in BASES, id
        BASES[id] = Base(id, fn, frozenset(tags))
        return fn

    return register


def transform(
    id: str, group: str, needs: Iterable[str] = (), stage: int = 20
) -> Callable[[Callable[[Record], Record]], Callable[[Record], Record]]:
    def register(fn: Callable[[Record], Record]) -> Callable[[Record], Record]:
        assert id not in TRANSFORMS and id != "identity", id
        TRANSFORMS[id] = Transform(id, fn, group, frozenset(needs), stage, len(TRANSFORMS))
        return fn

    return register


# -- the world: every record of a run, one data dir -------------------------------------


class World:
    """Builds records with unique identities (NHS numbers, ids) and writes them as resident
    files for one demo upstream whose FHIR base is `base_url`."""

    def __init__(self, base_url: str, seed: int = 9) -> None:
        self.base_url = base_url.rstrip("/")
        self.rng = random.Random(seed)
        self.taken: set[str] = set()
        self.records: dict[str, Record] = {}

    def nhs_number(self) -> str:
        while True:
            number = valid_nhs_number(self.rng)
            if number not in self.taken:
                self.taken.add(number)
                return number

    def build(self, base_id: str, forms: Iterable[str] = (), case_id: str | None = None) -> Record:
        forms = tuple(f for f in forms if f != "identity")
        case_id = case_id or case_name(base_id, forms)
        if case_id in self.records:
            return self.records[case_id]
        short = uuid.uuid5(_NS, case_id).hex[:12]
        rec = Record(
            case_id,
            base_id,
            forms,
            self.base_url,
            self.nhs_number(),
            f"19{30 + int(short[:2], 16) % 30}-{1 + int(short[2:4], 16) % 12:02d}-{1 + int(short[4:6], 16) % 28:02d}",
            self,
            short=short,
        )
        rec.patient = {
            "resourceType": "Patient",
            "id": f"res-{short}",
            "identifier": [{"system": NHS_NUMBER, "value": rec.nhs_number}],
            "name": [{"use": "official", "family": "Resident", "given": ["Test"]}],
            "gender": "female",
            "birthDate": rec.dob,
        }
        rec.add(rec.patient)
        rec.add_part("header", None, ALL, keys=[key(rec.patient)])
        _controls(rec)
        chosen = BASES[base_id]
        rec.tags = set(chosen.tags)
        chosen.build(rec)
        for t in sorted((TRANSFORMS[f] for f in forms), key=lambda t: (t.stage, t.order)):
            if not t.needs <= rec.tags:
                raise NotApplicable(f"{case_id}: {t.id} needs {sorted(t.needs - rec.tags)}")
            rec = t.fn(rec)
        self.records[case_id] = rec
        return rec

    def write(self, data_dir: Path) -> None:
        for n, rec in enumerate(self.records.values()):
            (data_dir / f"{n:04d}-{rec.short}.json").write_text(json.dumps(rec.bundle()))


def case_name(base_id: str, forms: Iterable[str]) -> str:
    return f"{base_id}.{'+'.join(forms) or 'identity'}"


def applicable(base_id: str) -> list[str]:
    """Transforms that apply to a base on their own (their needs within its tags)."""
    tags = BASES[base_id].tags
    return [t.id for t in sorted(TRANSFORMS.values(), key=lambda t: t.order) if t.needs <= tags]


def single_form_cases() -> list[tuple[str, tuple[str, ...]]]:
    """Every base with no transform, and with each applicable transform alone."""
    return [(b, ()) for b in BASES] + [(b, (t,)) for b in BASES for t in applicable(b)]


def random_combinations(count: int, seed: int = 20261129, min_forms: int = 2) -> list[tuple[str, tuple[str, ...]]]:
    """`count` distinct random (base, forms) combinations, at most one transform per group,
    every one buildable (checked with a scratch world)."""
    rng = random.Random(seed)
    scratch = World("http://127.0.0.1:1/fhir")
    groups: dict[str, list[str]] = {}
    for t in TRANSFORMS.values():
        groups.setdefault(t.group, []).append(t.id)
    out: list[tuple[str, tuple[str, ...]]] = []
    seen: set[str] = set()
    while len(out) < count:
        base_id = rng.choice(sorted(BASES))
        forms: list[str] = []
        for group in rng.sample(sorted(groups), len(groups)):
            if rng.random() >= 0.35:
                continue
            trial = [*forms, rng.choice(groups[group])]
            try:
                scratch.build(base_id, trial, case_id="scratch." + "+".join(trial) + "." + base_id)
            except NotApplicable:
                continue
            forms = trial
        forms.sort(key=lambda f: (TRANSFORMS[f].stage, TRANSFORMS[f].order))
        name = case_name(base_id, forms)
        if len(forms) >= min_forms and name not in seen:
            seen.add(name)
            out.append((base_id, tuple(forms)))
    return out


# -- resource skeletons -----------------------------------------------------------------


def _cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    cc: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text is not None:
        cc["text"] = text
    return cc


def _flag(rec: Record, id: str) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "id": id,
        "status": "active",
        "code": _cc(SCT, "129839007", "At risk for falls"),
        "subject": rec.subject(),
        "period": {"start": "2025-02-03"},
    }


def _allergy(rec: Record, id: str) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance",
        "id": id,
        "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
        "code": _cc(SCT, "91936005", "Allergy to penicillin"),
        "patient": rec.subject(),
        "recordedDate": "2024-03-01",
    }


def _encounter(rec: Record, id: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": id,
        "status": "finished",
        "class": {"system": ACT, "code": "AMB", "display": "ambulatory"},
        "subject": rec.subject(),
        "period": {"start": "2025-03-01T10:00:00+00:00", "end": "2025-03-01T11:00:00+00:00"},
    }


def _appointment(rec: Record, id: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": id,
        "status": "booked",
        "start": "2026-12-08T10:30:00+00:00",
        "end": "2026-12-08T11:00:00+00:00",
        "participant": [{"actor": rec.subject(), "status": "accepted"}],
    }


def _condition(rec: Record, id: str, code: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": id,
        "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
        "code": code,
        "subject": rec.subject(),
        "recordedDate": "2024-05-01",
    }


def _composition(rec: Record, id: str) -> dict[str, Any]:
    practitioner = rec.local_id("prac")
    if not any(r["resourceType"] == "Practitioner" and r["id"] == practitioner for r in rec.resources):
        rec.add({"resourceType": "Practitioner", "id": practitioner, "name": [{"family": "Sample", "given": ["Alex"]}]})
    return {
        "resourceType": "Composition",
        "id": id,
        "status": "final",
        "type": _cc(SCT, "373942005", "Discharge summary"),
        "subject": rec.subject(),
        "date": "2025-01-16T10:00:00+00:00",
        "author": [{"reference": f"Practitioner/{practitioner}"}],
        "title": "Discharge summary",
    }


def _div(words: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="{XHTML}"><p>{words}</p></div>'}


def _controls(rec: Record) -> None:
    """Positive controls: clean resources each level must see, each id its own canary."""
    alert = rec.add(_flag(rec, rec.canary("control-alert")))
    rec.add_part("control-alert", alert["id"], ALL, keys=[key(alert)])
    allergy = rec.add(_allergy(rec, rec.canary("control-allergy")))
    rec.add_part("control-allergy", allergy["id"], FROM_SENIOR, hide=[ADMIN], keys=[key(allergy)])


# -- base cases -------------------------------------------------------------------------

_CLINICAL = {"clinical", "top-level", "person-subject", "labelable"}


@base("mh-condition", tags=_CLINICAL | {"snomed-signal", "mh-condition", "containable", "condition-target"})
def _mh_condition(rec: Record) -> None:
    c = rec.canary("target")
    rec.target = rec.add(
        _condition(rec, c, _cc(SCT, "58214004", f"Schizophrenia {c}-display", f"Schizophrenia {c}-text"))
    )
    rec.target["note"] = [{"text": f"Under the community mental health team {c}-note"}]
    rec.target["text"] = _div(f"Schizophrenia {c}-narrative")
    rec.name, rec.signal_codes = "Schizophrenia", {"58214004"}
    rec.add_part("target", c, MANAGER_ONLY, BELOW_MANAGER, keys=[key(rec.target)], tokens=['"58214004"'])


@base("mh-flag-psy", tags=_CLINICAL | {"label-signal", "containable"})
def _mh_flag(rec: Record) -> None:
    c = rec.canary("target")
    rec.target = rec.add(_flag(rec, c))
    rec.target["meta"] = {"security": [{"system": ACT, "code": "PSY", "display": "psychiatry information sensitivity"}]}
    rec.target["code"]["coding"][0]["display"] = f"At risk for falls {c}-display"
    rec.name = "Behaviour alert"
    rec.add_part("target", c, MANAGER_ONLY, BELOW_MANAGER, keys=[key(rec.target)])


@base("gp-condition", tags=_CLINICAL | {"gp-signal", "gp-ref", "containable", "condition-target"})
def _gp_condition(rec: Record) -> None:
    c = rec.canary("target")
    rec.ods_code = f"Y{int(rec.short[:6], 16) % 100000:05d}"
    rec.gp = rec.add(
        {
            "resourceType": "Organization",
            "id": rec.local_id("gp"),
            "identifier": [{"system": ODS_CODE, "value": rec.ods_code}],
            "active": True,
            "type": [{"coding": [{"system": ORG_ROLE, "code": "RO76", "display": "GP PRACTICE"}]}],
            "name": "Riverside Medical Practice",
        }
    )
    # Every real Patient names its practice: this keeps the GP Organization in $everything
    # whatever form the target's own reference to it takes.
    rec.patient["generalPractitioner"] = [{"reference": f"Organization/{rec.gp['id']}"}]
    rec.gp_ref = {"reference": f"Organization/{rec.gp['id']}"}
    rec.target = rec.add(_condition(rec, c, _cc(SCT, "44054006", f"Type 2 diabetes mellitus {c}-display")))
    rec.target["recorder"] = rec.gp_ref
    rec.target["note"] = [{"text": f"Diagnosed at the practice {c}-note"}]
    rec.name = "Type 2 diabetes"
    rec.add_part("target", c, MANAGER_ONLY, BELOW_MANAGER, keys=[key(rec.target)])


@base("endoscopy-procedure", tags=_CLINICAL | {"snomed-signal", "containable", "condition-target"})
def _endoscopy(rec: Record) -> None:
    c = rec.canary("target")
    rec.target = rec.add(
        {
            "resourceType": "Procedure",
            "id": c,
            "status": "completed",
            "code": _cc(SCT, "73761001", f"Colonoscopy {c}-display", f"Colonoscopy {c}-text"),
            "subject": rec.subject(),
            "performedDateTime": "2023-10-05",
            "note": [{"text": f"Polyp removed {c}-note"}],
        }
    )
    rec.name, rec.signal_codes = "Colonoscopy", {"73761001"}
    rec.add_part("target", c, MANAGER_ONLY, BELOW_MANAGER, keys=[key(rec.target)], tokens=['"73761001"'])


@base("psychiatry-encounter", tags=_CLINICAL | {"snomed-signal", "psychiatry", "containable"})
def _psychiatry_encounter(rec: Record) -> None:
    c = rec.canary("target")
    rec.target = rec.add(_encounter(rec, c))
    rec.target["serviceType"] = _cc(SCT, "394587001", f"Psychiatry {c}-display")
    rec.name, rec.signal_codes = "Psychiatry clinic", {"394587001"}
    rec.add_part("target", c, MANAGER_ONLY, BELOW_MANAGER, keys=[key(rec.target)], tokens=['"394587001"'])


@base("mh-patient-psy", tags={"label-signal", "labelable", "patient-header"})
def _mh_patient(rec: Record) -> None:
    """The resident's own Patient, labelled PSY: the header is classified like any resource."""
    c = rec.canary("target")
    rec.target = rec.patient
    rec.patient["meta"] = {
        "security": [{"system": ACT, "code": "PSY", "display": "psychiatry information sensitivity"}]
    }
    rec.patient["name"][0]["family"] = f"Resident-{c}"
    rec.name = "Psychiatric history"
    rec.add_part("target", c, MANAGER_ONLY, BELOW_MANAGER, keys=[key(rec.patient)])
    rec.parts["header"].show = MANAGER_ONLY


@base("plain-flag", tags=_CLINICAL)
def _plain_flag(rec: Record) -> None:
    c = rec.canary("target")
    rec.target = rec.add(_flag(rec, c))
    rec.name = "At risk for falls"
    rec.add_part("target", c, ALL, keys=[key(rec.target)])


@base("plain-condition", tags=_CLINICAL | {"containable", "condition-target"})
def _plain_condition(rec: Record) -> None:
    c = rec.canary("target")
    rec.target = rec.add(_condition(rec, c, _cc(SCT, "38341003", "Hypertensive disorder")))
    rec.name = "Hypertension"
    rec.add_part("target", c, FROM_SENIOR, [ADMIN], keys=[key(rec.target)])


@base("medication-request", tags=_CLINICAL | {"medreq"})
def _medication_request(rec: Record) -> None:
    c = rec.canary("target")
    rec.target = rec.add(
        {
            "resourceType": "MedicationRequest",
            "id": c,
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": _cc(DMD, "322236009", "Paracetamol 500mg tablets"),
            "subject": rec.subject(),
            "authoredOn": "2025-06-10",
        }
    )
    rec.name = "Paracetamol"
    rec.add_part("target", c, FROM_SENIOR, [ADMIN], keys=[key(rec.target)])


# -- transforms: replace or retype the target (stage 10) --------------------------------


def _move_gp_ref(rec: Record, new: dict[str, Any], field_name: str, as_list: bool) -> Record:
    new[field_name] = [rec.gp_ref] if as_list else rec.gp_ref
    rec.replace_target(new)
    return rec


@transform("carrier-asserter", group="gp-carrier", needs={"gp-ref", "condition-target"}, stage=10)
def _carrier_asserter(rec: Record) -> Record:
    rec.target["asserter"] = rec.target.pop("recorder")
    return rec


@transform("carrier-medicationstatement-informationsource", group="gp-carrier", needs={"gp-ref"}, stage=10)
def _carrier_medstat(rec: Record) -> Record:
    c = rec.target_part.canary
    new = {
        "resourceType": "MedicationStatement",
        "id": c,
        "status": "active",
        "medicationCodeableConcept": _cc(DMD, "325278004", f"Metformin 500mg tablets {c}-display"),
        "subject": rec.subject(),
        "effectiveDateTime": "2025-06-10",
        "note": [{"text": f"Repeat prescription from the practice {c}-note"}],
    }
    rec.tags -= {"condition-target"}
    return _move_gp_ref(rec, new, "informationSource", as_list=False)


@transform("carrier-encounter-serviceprovider", group="gp-carrier", needs={"gp-ref"}, stage=10)
def _carrier_encounter(rec: Record) -> Record:
    new = _encounter(rec, rec.target_part.canary)  # type: ignore[arg-type]  # a transform runs only where its `needs` put a target part there
    rec.tags -= {"condition-target"}
    return _move_gp_ref(rec, new, "serviceProvider", as_list=False)


@transform("carrier-composition-author", group="gp-carrier", needs={"gp-ref"}, stage=10)
def _carrier_composition(rec: Record) -> Record:
    c = rec.target_part.canary
    new = _composition(rec, c)  # type: ignore[arg-type]  # a transform runs only where its `needs` put a target part there
    new["section"] = [{"title": "Summary", "text": _div(f"Practice summary {c}-section")}]
    rec.tags -= {"condition-target"}
    return _move_gp_ref(rec, new, "author", as_list=True)


@transform("carrier-meta-source", group="gp-carrier", needs={"gp-ref", "condition-target"}, stage=10)
def _carrier_meta_source(rec: Record) -> Record:
    del rec.target["recorder"]
    rec.target["meta"] = {"source": GP_SOURCE}
    rec.tags -= {"gp-ref"}
    return rec


@transform("carrier-meta-source-upper-host", group="gp-carrier", needs={"gp-ref", "condition-target"}, stage=10)
def _carrier_meta_source_upper(rec: Record) -> Record:
    del rec.target["recorder"]
    scheme, rest = GP_SOURCE.split("://", 1)
    host, path = rest.split("/", 1)
    rec.target["meta"] = {"source": f"{scheme.upper()}://{host.upper()}/{path}"}
    rec.tags -= {"gp-ref"}
    return rec


def _intent(value: str) -> Callable[[Record], Record]:
    def fn(rec: Record) -> Record:
        rec.target["intent"] = value
        return rec

    return fn


for _value in ("proposal", "plan", "original-order", "reflex-order", "filler-order", "instance-order", "option"):
    transform(f"intent-{_value}", group="intent", needs={"medreq"}, stage=10)(_intent(_value))


@transform("moved-encounter-type", group="move", needs={"psychiatry"}, stage=10)
def _moved_encounter_type(rec: Record) -> Record:
    rec.target["type"] = [rec.target.pop("serviceType")]
    return rec


@transform("moved-appointment-servicetype", group="move", needs={"psychiatry"}, stage=10)
def _moved_appointment(rec: Record) -> Record:
    new = _appointment(rec, rec.target_part.canary)  # type: ignore[arg-type]  # a transform runs only where its `needs` put a target part there
    new["serviceType"] = [rec.target["serviceType"]]
    rec.tags -= {"person-subject", "containable"}
    rec.replace_target(new)
    return rec


def _mh_concept(rec: Record) -> dict[str, Any]:
    return _cc(SCT, "58214004", f"Schizophrenia {rec.target_part.canary}-display")


@transform("moved-encounter-reasoncode", group="move", needs={"mh-condition"}, stage=10)
def _moved_reasoncode(rec: Record) -> Record:
    """The diagnosis as an admin Encounter's reasonCode. The Encounter may leave without it:
    its id is not a canary; the coding's display is."""
    new = _encounter(rec, rec.local_id("enc-reason"))
    new["reasonCode"] = [_mh_concept(rec)]
    rec.tags -= {"containable", "condition-target"}
    rec.replace_target(new)
    return rec


@transform("moved-extension", group="move", needs={"mh-condition"}, stage=10)
def _moved_extension(rec: Record) -> Record:
    """The diagnosis as an unknown extension's valueCodeableConcept on an admin Encounter."""
    new = _encounter(rec, rec.local_id("enc-ext"))
    new["extension"] = [{"url": DIAGNOSIS_EXT, "valueCodeableConcept": _mh_concept(rec)}]
    rec.tags -= {"containable", "condition-target"}
    rec.replace_target(new)
    return rec


# -- transforms: respell codes and references (stage 20) --------------------------------


def _respell_sct(system: str) -> Callable[[Record], Record]:
    def fn(rec: Record) -> Record:
        changed = 0
        for coding in rec.signal_codings():
            if coding.get("system") == SCT:
                coding["system"] = system
                changed += 1
        assert changed, rec.case_id
        return rec

    return fn


for _id, _system in (
    ("sct-oid", SCT_OID),
    ("sct-https", "https://snomed.info/sct"),
    ("sct-trailing-slash", SCT + "/"),
    ("sct-spaces", f"  {SCT} "),
):
    transform(_id, group="code", needs={"snomed-signal"})(_respell_sct(_system))


def _recode(rec: Record, system: str, code: str, display: str) -> Record:
    c = rec.target_part.canary
    for coding in list(rec.signal_codings()):
        coding.update({"system": system, "code": code, "display": f"{display} {c}-display"})
    rec.signal_codes = {code}
    rec.target_part.tokens = (f'"{code}"',)
    return rec


@transform("icd10-F20-9", group="code", needs={"mh-condition"})
def _icd10(rec: Record) -> Record:
    return _recode(rec, ICD10, "F20.9", "Schizophrenia, unspecified")


@transform("sct-370143000-major-depressive-disorder", group="code", needs={"mh-condition"})
def _major_depression(rec: Record) -> Record:
    return _recode(rec, SCT, "370143000", "Major depressive disorder")


@transform("sct-722162001-psychology", group="code", needs={"psychiatry"})
def _psychology(rec: Record) -> Record:
    return _recode(rec, SCT, "722162001", "Psychology")


def _label(system: str | None = ACT, code: Callable[[str], str] = lambda c: c) -> Callable[[Record], Record]:
    def fn(rec: Record) -> Record:
        labels = list(rec.mh_labels())
        assert labels, rec.case_id
        for label in labels:
            if system is None:
                label.pop("system", None)
            else:
                label["system"] = system
            label["code"] = code(label["code"])
        return rec

    return fn


transform("act-oid", group="label", needs={"label-signal"})(_label(ACT_OID))
transform("act-stu3", group="label", needs={"label-signal"})(_label(ACT_STU3))
transform("act-no-system", group="label", needs={"label-signal"})(_label(None))
transform("act-lower-case", group="label", needs={"label-signal"})(_label(code=str.lower))
for _code in MH_LABELS[1:]:
    transform(f"act-code-{_code}", group="label", needs={"label-signal"})(_label(code=lambda _, c=_code: c))  # type: ignore[misc]  # a transform runs only where its `needs` put a target part there
transform("act-code-mh-lower-oid", group="label", needs={"label-signal"})(_label(ACT_OID, lambda _: "mh"))


def _org_type(system: str, code: str) -> Callable[[Record], Record]:
    def fn(rec: Record) -> Record:
        assert rec.gp is not None
        rec.gp["type"] = [{"coding": [{"system": system, "code": code, "display": "GP PRACTICE"}]}]
        return rec

    return fn


transform("gp-role-org-role-76", group="gp-role", needs={"gp-signal"})(_org_type(ORG_ROLE, "76"))
transform("gp-role-ods-RO76", group="gp-role", needs={"gp-signal"})(_org_type(ODS_ROLE, "RO76"))


def _set_ref(rec: Record, value: dict[str, Any]) -> Record:
    assert rec.gp_ref is not None
    rec.gp_ref.clear()
    rec.gp_ref.update(value)
    return rec


@transform("gp-ref-absolute", group="gp-ref", needs={"gp-ref"})
def _ref_absolute(rec: Record) -> Record:
    return _set_ref(rec, {"reference": f"{rec.base_url}/Organization/{rec.gp['id']}"})  # type: ignore[index]  # the gp-ref transforms run only where a GP was set


@transform("gp-ref-contained", group="gp-ref", needs={"gp-ref"})
def _ref_contained(rec: Record) -> Record:
    org = copy.deepcopy(rec.gp)
    assert org is not None
    org["id"] = "gp"
    rec.target.setdefault("contained", []).append(org)
    return _set_ref(rec, {"reference": "#gp"})


@transform("gp-ref-urn-uuid", group="gp-ref", needs={"gp-ref"})
def _ref_urn_uuid(rec: Record) -> Record:
    """`urn:uuid:` naming the practice (its rfc3986 identifier; the demo upstream's fullUrls
    are its own URLs, so a resolver that only reads fullUrl cannot resolve it: then the
    reference is unresolvable, which must not show the resource either)."""
    assert rec.gp is not None
    urn = f"urn:uuid:{uuid.uuid5(_NS, rec.case_id + '#gp')}"
    rec.gp["identifier"].append({"system": RFC3986, "value": urn})
    return _set_ref(rec, {"reference": urn})


@transform("gp-ref-identifier", group="gp-ref", needs={"gp-ref"})
def _ref_identifier(rec: Record) -> Record:
    return _set_ref(rec, {"type": "Organization", "identifier": {"system": ODS_CODE, "value": rec.ods_code}})


@transform("gp-ref-practitionerrole", group="gp-ref", needs={"gp-ref"})
def _ref_practitioner_role(rec: Record) -> Record:
    assert rec.gp is not None
    role = rec.add(
        {
            "resourceType": "PractitionerRole",
            "id": rec.local_id("role"),
            "active": True,
            "organization": {"reference": f"Organization/{rec.gp['id']}"},
        }
    )
    return _set_ref(rec, {"reference": f"PractitionerRole/{role['id']}"})


# -- transforms: labels the policy does not map, modifier extensions (stage 30) ----------


def _extra_label(system: str, code: str, hidden: frozenset[str]) -> Callable[[Record], Record]:
    def fn(rec: Record) -> Record:
        rec.target.setdefault("meta", {}).setdefault("security", []).append({"system": system, "code": code})
        part = rec.target_part
        part.withhold_from(hidden)
        if hidden:  # where the label may be mapped, registered_manager is unconstrained
            part.show = NOBODY
        if rec.target is rec.patient:
            rec.parts["header"].show &= part.show
        return rec

    return fn


# V, HIV and SEX withhold from everyone; R and STD at least below registered_manager (the
# policy owner may map them to a section); N is normal and changes nothing.
for _id, _system, _code, _hidden in (
    ("conf-V", CONFIDENTIALITY, "V", ALL),
    ("conf-R", CONFIDENTIALITY, "R", BELOW_MANAGER),
    ("conf-N", CONFIDENTIALITY, "N", NOBODY),
    ("sens-HIV", ACT, "HIV", ALL),
    ("sens-SEX", ACT, "SEX", ALL),
    ("sens-STD", ACT, "STD", BELOW_MANAGER),
):
    transform(_id, group="extra-label", needs={"labelable"}, stage=30)(_extra_label(_system, _code, _hidden))


@transform("unknown-modifier-extension", group="modifier", needs={"labelable"}, stage=30)
def _modifier(rec: Record) -> Record:
    rec.target["modifierExtension"] = [{"url": MODIFIER_EXT, "valueBoolean": True}]
    rec.target_part.withhold_from(ALL)
    if rec.target is rec.patient:
        rec.parts["header"].show = NOBODY
    return rec


# -- transforms: another person's data (stage 40) ---------------------------------------


def _other_patient(rec: Record) -> dict[str, Any]:
    """A second Patient in the record (a linked record, as servers return for Patient.link),
    every string of it a canary."""
    if "other-patient" in rec.parts:
        return next(r for r in rec.resources if r["id"] == rec.parts["other-patient"].canary)
    c = rec.canary("other-patient")
    other = rec.add(
        {
            "resourceType": "Patient",
            "id": c,
            "identifier": [{"system": NHS_NUMBER, "value": rec.world.nhs_number()}],
            "name": [{"family": f"Other-{c}", "given": ["Someone"]}],
            "gender": "male",
            "birthDate": "1941-02-03",
            "link": [{"other": {"reference": f"Patient/{rec.patient['id']}"}, "type": "seealso"}],
        }
    )
    rec.add_part("other-patient", c, NOBODY, ALL, keys=[key(other)])
    return other


def _subject_field(resource: dict[str, Any]) -> str:
    return "patient" if resource["resourceType"] == "AllergyIntolerance" else "subject"


def _hook(rec: Record) -> None:
    """Keep the target in the resident's $everything although its subject is someone else:
    a reference to the resident in an element of the Patient compartment where the type
    has one, else in an extension."""
    target, resident = rec.target, rec.subject()
    field_name = {
        "Condition": "asserter",
        "Flag": "author",
        "AllergyIntolerance": "asserter",
        "MedicationRequest": "requester",
        "MedicationStatement": "informationSource",
    }.get(target["resourceType"])
    if field_name and field_name not in target:
        target[field_name] = resident
    elif target["resourceType"] == "Procedure" and "performer" not in target:
        target["performer"] = [{"actor": resident}]
    else:
        target.setdefault("extension", []).append({"url": LINKED_EXT, "valueReference": resident})


def _other_subject(form: Callable[[Record, dict[str, Any]], dict[str, Any]] | None) -> Callable[[Record], Record]:
    def fn(rec: Record) -> Record:
        if form is None:  # only a second Patient in the record
            _other_patient(rec)
            return rec
        other = _other_patient(rec)
        _hook(rec)
        rec.target[_subject_field(rec.target)] = form(rec, other)
        rec.target_part.withhold_from(ALL)
        return rec

    return fn


def _someone_else(rec: Record) -> Record:
    _hook(rec)
    rec.target[_subject_field(rec.target)] = {"reference": "Patient/someone-else"}
    rec.target_part.withhold_from(ALL)
    return rec


transform("second-patient", group="other", needs={"person-subject"}, stage=40)(_other_subject(None))
transform("subject-someone-else", group="other", needs={"person-subject"}, stage=40)(_someone_else)
transform("subject-other-relative", group="other", needs={"person-subject"}, stage=40)(
    _other_subject(lambda rec, other: {"reference": f"Patient/{other['id']}"})
)
transform("subject-other-absolute", group="other", needs={"person-subject"}, stage=40)(
    _other_subject(lambda rec, other: {"reference": f"{rec.base_url}/Patient/{other['id']}"})
)
transform("subject-other-urn-uuid", group="other", needs={"person-subject"}, stage=40)(
    _other_subject(lambda rec, other: {"reference": f"urn:uuid:{uuid.uuid5(_NS, other['id'])}"})
)
transform("subject-other-nhs-number", group="other", needs={"person-subject"}, stage=40)(
    _other_subject(lambda rec, other: {"type": "Patient", "identifier": other["identifier"][0]})
)


# -- transforms: into `contained` of an admin-visible resource (stage 50) ----------------


def _contain(container_type: str) -> Callable[[Record], Record]:
    def fn(rec: Record) -> Record:
        target = rec.target
        local = f"#{target['id']}"
        del rec.resources[rec.index(target)]
        if container_type == "Patient":
            container = rec.patient
        else:
            container = {"Encounter": _encounter, "Flag": _flag, "Appointment": _appointment}[container_type](
                rec, rec.canary("container")
            )
            rec.add(container)
        # Contained resources do not contain: the target's own contained move up with it.
        inner = target.pop("contained", [])
        container.setdefault("contained", []).extend([target, *inner])
        ref = {"reference": local}
        ttype = target["resourceType"]
        if container_type == "Encounter" and ttype in ("Condition", "Procedure", "Observation"):
            container["reasonReference"] = [ref]
        elif container_type == "Encounter" and ttype == "Encounter":
            container["partOf"] = ref
        elif container_type == "Flag" and ttype == "Encounter":
            container["encounter"] = ref
        elif container_type == "Flag":
            container.setdefault("extension", []).append({"url": FLAG_DETAIL, "valueReference": ref})
        elif container_type == "Appointment":
            container["supportingInformation"] = [ref]
        else:
            container.setdefault("extension", []).append({"url": RELATED_EXT, "valueReference": ref})
        part = rec.target_part
        part.keys = ()
        # Where the part may be seen, the container leaves with it; elsewhere the container
        # may leave without it (removed, references masked) or be withheld: unconstrained.
        shown = part.show & SEES[container_type]
        if container_type == "Patient":
            rec.parts["header"].show = shown
        else:
            rec.add_part("container", container["id"], shown, keys=[key(container)])
        rec.tags -= {"top-level", "containable"}
        rec.tags |= {"contained"}
        return rec

    return fn


for _container in ("Encounter", "Flag", "Appointment", "Patient"):
    transform(f"contained-in-{_container.lower()}", group="contain", needs={"containable", "top-level"}, stage=50)(
        _contain(_container)
    )


# -- transforms: free text, references and extensions that name it (stage 60) ------------


def _carrier(rec: Record, resource: dict[str, Any], text_canary: str | None) -> Record:
    """Add a clean carrier (its id its own canary; shown wherever its section is) and the
    free-text part it carries (registered_manager only)."""
    rec.add(resource)
    rec.add_part(
        "carrier",
        resource["id"],
        SEES[resource["resourceType"]],
        ALL - SEES[resource["resourceType"]],
        keys=[key(resource)],
    )
    if text_canary:
        rec.add_part("free-text", text_canary, MANAGER_ONLY, BELOW_MANAGER)
    return rec


@transform("text-narrative", group="text", needs={"clinical"}, stage=60)
def _text_narrative(rec: Record) -> Record:
    c = rec.canary("free-text")
    flag = _flag(rec, rec.canary("carrier"))
    flag["text"] = _div(f"Known {rec.name}: see the care plan {c}")
    return _carrier(rec, flag, c)


@transform("text-note", group="text", needs={"clinical"}, stage=60)
def _text_note(rec: Record) -> Record:
    c = rec.canary("free-text")
    allergy = _allergy(rec, rec.canary("carrier"))
    allergy["note"] = [{"text": f"Reaction noted during treatment for {rec.name} {c}"}]
    return _carrier(rec, allergy, c)


@transform("text-codeableconcept", group="text", needs={"clinical"}, stage=60)
def _text_cc(rec: Record) -> Record:
    c = rec.canary("free-text")
    flag = _flag(rec, rec.canary("carrier"))
    flag["code"]["text"] = f"{rec.name} {c}"
    return _carrier(rec, flag, c)


@transform("text-reference-display", group="text", needs={"clinical"}, stage=60)
def _text_reference_display(rec: Record) -> Record:
    c = rec.canary("free-text")
    appointment = _appointment(rec, rec.canary("carrier"))
    appointment["reasonReference"] = [{"display": f"{rec.name} {c}"}]
    return _carrier(rec, appointment, c)


@transform("text-unknown-system-display", group="text", needs={"clinical"}, stage=60)
def _text_unknown_display(rec: Record) -> Record:
    c = rec.canary("free-text")
    flag = _flag(rec, rec.canary("carrier"))
    flag["code"] = {
        "coding": [
            {"system": "https://example.org/CodeSystem/local-alerts", "code": "X1", "display": f"{rec.name} {c}"}
        ]
    }
    return _carrier(rec, flag, c)


@transform("extension-unknown", group="text", needs={"clinical"}, stage=60)
def _extension_unknown(rec: Record) -> Record:
    c = rec.canary("free-text")
    flag = _flag(rec, rec.canary("carrier"))
    flag["extension"] = [{"url": UNKNOWN_EXT, "valueString": f"{rec.name} {c}"}]
    return _carrier(rec, flag, c)


@transform("text-reference-to-target", group="text", needs={"clinical", "top-level"}, stage=60)
def _reference_to_target(rec: Record) -> Record:
    """A bare reference from an admin Appointment: where the target is withheld, the
    reference (the target's id is its canary) must be masked."""
    appointment = _appointment(rec, rec.canary("carrier"))
    appointment["supportingInformation"] = [{"reference": key(rec.target)}]
    return _carrier(rec, appointment, None)


@transform("encounter-diagnosis-reference", group="text", needs={"condition-target", "top-level"}, stage=60)
def _diagnosis_reference(rec: Record) -> Record:
    """Encounter.diagnosis.condition: a reference to the target plus a display naming it."""
    c = rec.canary("free-text")
    encounter = _encounter(rec, rec.canary("carrier"))
    encounter["diagnosis"] = [{"condition": {"reference": key(rec.target), "display": f"{rec.name} {c}"}}]
    return _carrier(rec, encounter, c)


@transform("text-composition-section", group="text", needs={"clinical", "top-level"}, stage=60)
def _composition_section(rec: Record) -> Record:
    """A discharge summary (senior_carer) whose section text and entry display name it."""
    c = rec.canary("free-text")
    composition = _composition(rec, rec.canary("carrier"))
    composition["section"] = [
        {
            "title": "Diagnoses",
            "text": _div(f"Admitted with {rec.name} {c}-section-text"),
            "entry": [{"reference": key(rec.target), "display": f"{rec.name} {c}-entry-display"}],
        }
    ]
    return _carrier(rec, composition, c)


# -- transforms: paging (stage 70) ------------------------------------------------------


def _fillers(rec: Record, count: int, at: int) -> None:
    for n in range(count):
        rec.add(_flag(rec, f"fill{n}-{rec.short}"), at=at + n)
    tail = rec.add(_flag(rec, rec.canary("control-tail")))
    rec.add_part("control-tail", tail["id"], ALL, keys=[key(tail)])


def _page_target(count: int) -> Callable[[Record], Record]:
    """`count` filler Flags before the target: it lands on page 2 (25) or 3 (45) of a
    $everything paged 20 a page; a tail control after everything."""

    def fn(rec: Record) -> Record:
        holder = rec.holder()
        at = 1 if holder is rec.patient else rec.index(holder)
        _fillers(rec, count, at)
        return rec

    return fn


transform("page-2-target", group="page", stage=70)(_page_target(PAGE + 5))
transform("page-3-target", group="page", stage=70)(_page_target(2 * PAGE + 5))


@transform("page-2-gp-org", group="page", needs={"gp-signal"}, stage=70)
def _page_gp_org(rec: Record) -> Record:
    """The GP-sourced target on page 1, the GP Organization (an `include`, after the
    compartment) on page 2."""
    holder = rec.holder()
    _fillers(rec, PAGE + 5, rec.index(holder) + 1)
    return rec
