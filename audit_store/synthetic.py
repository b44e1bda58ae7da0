"""A synthetic decision log shaped like the sidecar's, with every decision made by a real OPA.

For benchmarks, tests and demos: care services from the policy data, staff with an LCR
access level each, residents with valid 999-range NHS numbers, the left-hand menu and the
record fetch, now and then a section request, an ineligible service, or a request that
fails before the policy is asked. The decisions come from OPA evaluating the archived
bundle (each distinct combination of what the policy reads evaluated once, in batches), so a
replay against the same revision must reproduce every one of them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import shutil
import tempfile
import uuid
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .events import AuditEvent, canonical_json, utc_timestamp
from .opa import UNDEFINED, OpaServer, input_footprint
from .replay import DEFAULT_ENTRYPOINT
from .store import AuditStore

LONDON = zoneinfo.ZoneInfo("Europe/London")
SERVICES = {  # ODS code → share of traffic (the policy data decides who may use the LCR)
    "VM101": 0.44,
    "VM102": 0.44,
    "VM201": 0.05,
    "VM301": 0.04,
    "VM401": 0.03,
}
LEVELS = {"admin": 0.3, "senior_carer": 0.5, "registered_manager": 0.15, "no_access": 0.05}
SECTIONS_BY_LEVEL = {
    "admin": ["alerts", "appointments", "visits_encounters"],
    "senior_carer": ["alerts", "allergies", "medications", "care_plans", "vital_signs", "lab_results", "appointments"],
    "registered_manager": ["mental_health", "gp_records", "alerts", "endoscopy", "medications"],
    "no_access": ["alerts"],
}
FIRST = [
    "Ada",
    "Ben",
    "Chen",
    "Dee",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivo",
    "Jo",
    "Kai",
    "Lena",
    "Mo",
    "Nia",
    "Oli",
    "Pia",
]
LAST = ["Carer", "Okafor", "Singh", "Murphy", "Nowak", "Patel", "Evans", "Kowalski", "Ahmed", "Jones"]


def nhs_numbers() -> Iterator[str]:
    """Valid NHS numbers in the 999 test range (Modulus 11), in order."""
    for n in range(1_000_000):
        body = f"999{n:06d}"
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=False))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:  # 10: a number that is never issued
            yield body + str(check)


@dataclass
class Person:
    sub: str
    name: str
    service: str
    level: str


def _weighted(rng: random.Random, table: dict[str, float]) -> str:
    return rng.choices(list(table), weights=list(table.values()))[0]


def _people(rng: random.Random, per_service: int) -> dict[str, list[Person]]:
    staff: dict[str, list[Person]] = {}
    for service in SERVICES:
        staff[service] = [
            Person(
                f"{service}-staff-{i:03d}", f"{rng.choice(FIRST)} {rng.choice(LAST)}", service, _weighted(rng, LEVELS)
            )
            for i in range(per_service)
        ]
    return staff


def _residents(rng: random.Random, per_service: int) -> dict[str, list[tuple[str, str]]]:
    numbers = nhs_numbers()
    return {
        service: [
            (next(numbers), f"19{rng.randint(20, 50)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}")
            for _ in range(per_service)
        ]
        for service in SERVICES
    }


def roster(seed: int = 0, staff_per_service: int = 30, residents_per_service: int = 60) -> dict[str, Any]:
    """The roster (bundles/roster.py's published shape) of the residents events() asks about:
    most are residents, every tenth was discharged months before the log starts, so
    requests for them are denied (no_legitimate_relationship)."""
    rng = random.Random(seed)
    _people(rng, staff_per_service)
    residents = _residents(rng, residents_per_service)
    return {
        "care_services": {
            service: [
                {"nhs_number": nhs, "status": "resident", "start": "2024-01-01"}
                if i % 10
                else {"nhs_number": nhs, "status": "discharged", "start": "2024-01-01", "end": "2026-06-30"}
                for i, (nhs, _) in enumerate(people)
            ]
            for service, people in residents.items()
        }
    }


def events(
    n: int,
    seed: int = 0,
    staff_per_service: int = 30,
    residents_per_service: int = 60,
    failures: float = 0.02,
    start: dt.datetime | None = None,
) -> Iterator[AuditEvent]:
    """n events without their decisions (decide() fills those in)."""
    rng = random.Random(seed)
    staff = _people(rng, staff_per_service)
    residents = _residents(rng, residents_per_service)
    moment = start or dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for _ in range(n):
        moment += dt.timedelta(milliseconds=rng.randint(1, 400))
        stamp = utc_timestamp(moment)
        service = _weighted(rng, SERVICES)
        person = rng.choice(staff[service])
        nhs, dob = rng.choice(residents[service])
        action = "record.read" if rng.random() < 0.6 else "menu.read"
        decision_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        client = f"10.{list(SERVICES).index(service)}.0.{rng.randint(2, 250)}"
        event = AuditEvent(decision_id=decision_id, time=stamp, action=action, client=client)
        if rng.random() < failures:  # stopped before the policy: bad token or identifiers
            if rng.random() < 0.5:
                event.outcome, event.http_status, event.error_code = "unauthenticated", 401, "token-expired"
            else:
                event.outcome, event.http_status, event.error_code = "invalid-request", 400, "nhs-number-invalid"
                _who(event, person)
            yield event
            continue
        _who(event, person)
        event.nhs_number = nhs
        roll = rng.random()
        if roll < 0.85:
            sections: list[str] = []
        elif roll < 0.97:
            sections = sorted(
                set(rng.sample(SECTIONS_BY_LEVEL[person.level], k=min(2, len(SECTIONS_BY_LEVEL[person.level]))))
            )
        else:
            sections = ["not_a_section"]
        event.sections_requested = sections
        iat = int(moment.timestamp()) - rng.randint(0, 120)
        event.opa_input = {
            "subject": {
                "sub": person.sub,
                "name": person.name,
                "requesting_organization": service,
                "reason_for_request": "directcare" if rng.random() < 0.995 else "research",
                "lcr_access_level": person.level,
                "iss": "https://care-app.dev.lcr.example",
                "aud": "lcr-sidecar",
                "iat": iat,
                "exp": iat + 300,
                "jti": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            },
            "patient": {"nhs_number": nhs, "dob": dob},
            # Tokens bound to the resident; now and then one minted for someone else.
            "requested_record": {"nhs_number": nhs if rng.random() < 0.99 else rng.choice(residents[service])[0]},
            "action": action,
            "sections": sections,
            "request": {
                "id": decision_id,
                "time": stamp,
                "date": moment.astimezone(LONDON).date().isoformat(),
                "client": client,
                "purpose": "directcare",
            },
        }
        event.reason_for_request = event.opa_input["subject"]["reason_for_request"]
        event.latency_ms = round(rng.uniform(3, 40), 3)
        yield event


def _archive_roster(document: dict[str, Any], archive: Path, opa: str) -> Path:
    from bundles import roster as roster_bundle  # the release tooling, as replay's candidate build uses

    with tempfile.TemporaryDirectory(prefix="lcr-roster-") as tmp:
        revision = roster_bundle.build(document, Path(tmp), opa=opa, publish=False)
        target = archive / f"{revision}.tar.gz"
        if not target.exists():
            shutil.copy(Path(tmp) / "archive" / f"{revision}.tar.gz", target)
    return target


def _who(event: AuditEvent, person: Person) -> None:
    event.subject_id, event.subject_name = person.sub, person.name
    event.care_service, event.access_level = person.service, person.level


def _project(value: dict[str, Any], footprint: list[tuple[str, ...]] | None) -> str:
    if footprint is None:
        return canonical_json(value)
    out = []
    for path in footprint:
        node: Any = value
        for part in path:
            node = node.get(part, UNDEFINED) if isinstance(node, dict) else UNDEFINED
            if node is UNDEFINED:
                break
        out.append("\0undefined" if node is UNDEFINED else canonical_json(node))
    return "\x1f".join(out)


def decide(
    chunk: list[AuditEvent],
    server: OpaServer,
    revision: str,
    footprint: list[tuple[str, ...]] | None,
    cache: dict[str, Any],
    rng: random.Random,
) -> None:
    """Fill in each event's decision from OPA (each distinct policy-relevant input once)."""
    keyed = [(e, _project(e.opa_input, footprint)) for e in chunk if e.opa_input is not None]
    todo: dict[str, AuditEvent] = {}
    for e, key in keyed:
        if key not in cache and key not in todo:
            todo[key] = e
    if todo:
        results = server.evaluate([canonical_json(e.opa_input) for e in todo.values()], DEFAULT_ENTRYPOINT)
        cache.update(zip(todo, results, strict=False))
    for e, key in keyed:
        result = cache[key]
        if result is UNDEFINED:
            raise RuntimeError(f"the policy gives no decision for {e.opa_input}")
        e.policy_revision = revision
        e.opa_result = result
        e.reasons = list(result.get("reasons", []))
        e.sections_allowed = list(result.get("sections", []))
        if result.get("allow"):
            e.outcome, e.http_status = "allowed", 200
            if e.action == "record.read":
                e.sections_returned = {s: rng.randint(0, 6) for s in e.sections_allowed if rng.random() < 0.6}
                e.resources_returned = sum(e.sections_returned.values()) + 1
                e.resources_withheld = rng.randint(0, 30)
        else:
            e.outcome = "denied"
            e.http_status = 200 if e.action == "menu.read" else 403
            e.error_code = "access-denied"
        e.response_sha256 = hashlib.sha256(json.dumps([e.decision_id, e.outcome]).encode()).hexdigest()


def generate(
    store: AuditStore,
    n: int,
    bundle: Path,
    revision: str,
    opa: str,
    *,
    seed: int = 0,
    failures: float = 0.02,
    chunk: int = 5000,
    verification_key: Path | None = None,
    key_id: str | None = None,
    progress: Any = None,
) -> int:
    """Append n synthetic decisions made by `bundle` (archived as `revision`) to the store.

    The decisions are made with the roster of roster(seed), signed with the DEV key (or
    $LCR_BUNDLE_SIGNING_KEY) and archived beside `bundle`, where replay looks for it.
    """
    rng = random.Random(seed + 1)
    cache: dict[str, Any] = {}
    written = 0
    roster_file = _archive_roster(roster(seed), bundle.parent, opa)
    with OpaServer(
        bundle, opa, verification_key=verification_key, key_id=key_id, extra_bundles=[roster_file]
    ) as server:
        footprint = input_footprint(server.policies(), DEFAULT_ENTRYPOINT)
        batch: list[AuditEvent] = []
        for event in events(n, seed=seed, failures=failures):
            batch.append(event)
            if len(batch) >= chunk:
                decide(batch, server, revision, footprint, cache, rng)
                store.append_many(batch)
                written += len(batch)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            decide(batch, server, revision, footprint, cache, rng)
            store.append_many(batch)
            written += len(batch)
            if progress:
                progress(len(batch))
    return written
