"""Attack cases against the record path: one resident per case, each carrying a unique
canary string where a level must not see it.

A `Case` builds a resident's record (the header Patient, a plain control Flag that every
level sees, and the case's own resources) and names the levels from which the canary must
be absent in the raw response body. `conftest.attack_world` writes every case's resident
into one data dir, serves it with the demo upstream and asks the real sidecar app (real
OPA, built bundle) for it; the tests assert a 200 with the control present and no canary.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo_upstream.generate import valid_nhs_number

ADMIN, SENIOR, MANAGER = "admin", "senior_carer", "registered_manager"
BELOW_MANAGER = (ADMIN, SENIOR)
EVERY_LEVEL = (ADMIN, SENIOR, MANAGER)

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS_CODE = "https://fhir.nhs.uk/Id/ods-organization-code"
ORG_ROLE = "https://fhir.nhs.uk/CodeSystem/organisation-role"
DAR = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"  # the one known extension
GP_SOURCE = "https://gp.lcr.example/fhir/Patient/1"  # gp_source_prefixes in the bundle data

_NS = uuid.UUID("0d7b4a52-3e1f-4c55-9d0a-6a3f1c2b8e71")


@dataclass
class Resident:
    case_id: str
    nhs_number: str
    dob: str
    short: str = ""
    patient: dict[str, Any] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def canary(self) -> str:
        return "CANARY-" + uuid.uuid5(_NS, self.case_id).hex

    @property
    def control_id(self) -> str:
        return self.id("control")

    def id(self, role: str) -> str:
        return f"{role}-{self.short}"

    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.patient['id']}"}

    def request(self) -> dict[str, str]:
        return {"nhs_number": self.nhs_number, "dob": self.dob}

    # -- builders of ordinary resources, each naming the resident

    def flag(self, role: str = "flag", **fields: Any) -> dict[str, Any]:
        return {
            "resourceType": "Flag",
            "id": self.id(role),
            "status": "active",
            "subject": self.subject(),
            "code": {"coding": [{"system": SCT, "code": "225915006", "display": "Falls risk"}]},
            **fields,
        }

    def encounter(self, role: str = "encounter", **fields: Any) -> dict[str, Any]:
        return {
            "resourceType": "Encounter",
            "id": self.id(role),
            "status": "finished",
            "class": {"system": ACT, "code": "AMB"},
            "subject": self.subject(),
            **fields,
        }

    def appointment(self, role: str = "appointment", **fields: Any) -> dict[str, Any]:
        return {
            "resourceType": "Appointment",
            "id": self.id(role),
            "status": "booked",
            "participant": [{"actor": self.subject(), "status": "accepted"}],
            **fields,
        }

    def condition(self, system: str, code: str, role: str = "condition", **fields: Any) -> dict[str, Any]:
        return {
            "resourceType": "Condition",
            "id": self.id(role),
            "subject": self.subject(),
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "code": {"coding": [{"system": system, "code": code, "display": self.canary}]},
            **fields,
        }

    def document(self, role: str = "document", **fields: Any) -> dict[str, Any]:
        # A discharge summary: senior carers and registered managers see it.
        return {
            "resourceType": "DocumentReference",
            "id": self.id(role),
            "status": "current",
            "subject": self.subject(),
            "type": {"coding": [{"system": SCT, "code": "373942005", "display": "Discharge summary"}]},
            "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/{self.id('binary')}"}}],
            **fields,
        }

    def observation(self, role: str = "observation", **fields: Any) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": self.id(role),
            "status": "final",
            "subject": self.subject(),
            "category": [{"coding": [{"system": OBS_CAT, "code": "vital-signs"}]}],
            "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
            **fields,
        }

    def care_plan(self, role: str = "careplan", **fields: Any) -> dict[str, Any]:
        return {
            "resourceType": "CarePlan",
            "id": self.id(role),
            "status": "active",
            "intent": "plan",
            "subject": self.subject(),
            **fields,
        }

    def composition(self, role: str = "composition", **fields: Any) -> dict[str, Any]:
        # A care plan document: senior carers and registered managers see it.
        return {
            "resourceType": "Composition",
            "id": self.id(role),
            "status": "final",
            "subject": self.subject(),
            "type": {"coding": [{"system": SCT, "code": "734163000", "display": "Care plan"}]},
            "date": "2025-01-01",
            "author": [self.subject()],
            "title": "Care plan",
            **fields,
        }

    def bundle(self) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in [self.patient, *self.resources]],
        }


@dataclass(frozen=True)
class Case:
    id: str
    hide: tuple[str, ...]  # levels from which the canary must be absent
    build: Callable[[Resident], Iterable[dict[str, Any]]]  # the case's resources (may edit r.patient)
    why: str = ""

    def param(self) -> Any:
        import pytest

        return pytest.param(self, id=self.id)

    def levels(self) -> list[Any]:
        """(case, level) params, one per level the canary must be hidden from."""
        import pytest

        return [pytest.param(self, level, id=f"{self.id}@{level}") for level in self.hide]


class World:
    def __init__(self, seed: int = 41) -> None:
        self.rng = random.Random(seed)
        self.taken: set[str] = set()
        self.residents: dict[str, Resident] = {}

    def _nhs_number(self) -> str:
        while True:
            number = valid_nhs_number(self.rng)
            if number not in self.taken and not number.startswith("99900000"):  # clear of the demo residents
                self.taken.add(number)
                return number

    def add(self, case: Case) -> Resident:
        if case.id in self.residents:
            return self.residents[case.id]
        short = uuid.uuid5(_NS, case.id).hex[:12]
        r = Resident(
            case.id,
            self._nhs_number(),
            f"19{30 + int(short[:2], 16) % 30}-{1 + int(short[2:4], 16) % 12:02d}-{1 + int(short[4:6], 16) % 28:02d}",
            short=short,
        )
        r.patient = {
            "resourceType": "Patient",
            "id": f"atk-{short}",
            "identifier": [{"system": NHS_NUMBER, "value": r.nhs_number}],
            "name": [{"use": "official", "family": "Resident", "given": ["Test"]}],
            "gender": "female",
            "birthDate": r.dob,
        }
        r.resources = [r.flag("control")]
        r.resources.extend(case.build(r))
        self.residents[case.id] = r
        return r

    def write(self, data_dir: Path) -> None:
        for n, r in enumerate(self.residents.values()):
            (data_dir / f"{n:04d}-{r.short}.json").write_text(json.dumps(r.bundle()))
