"""Concurrent record requests against a served sidecar, every answer checked as it arrives.

Each client thread keeps one kept-alive connection (a `requests.Session`) and sends
`POST /v1/record` for the demo resident Margaret Thompson, cycling through a mix of kinds:
the three access levels that see a record, `no_access` (a denial) and an invalid NHS
number (bad input). What the client thread can check alone it checks at once (a 200 is a
FHIR Bundle; anything else is an OperationOutcome with a stable code and no record
content); the test then matches every answer with its audit row.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import requests

from ..seed_table import FULL

ERROR_CODE_SYSTEM = "https://lcr-sidecar.example/CodeSystem/error-code"
SEE_RECORD = ("admin", "senior_carer", "registered_manager")
BAD_INPUT = "bad-input"
# Round robin: every client thread starts at another place in it.
MIX = (
    "admin",
    "senior_carer",
    "registered_manager",
    "no_access",
    "admin",
    "senior_carer",
    "registered_manager",
    BAD_INPUT,
)
# What must never be in an answer that is not an allowed record: the resident's name, any
# Bundle entry, her date of birth or a clinical resource.
RECORD_CONTENT = (b"Margaret", b"Thompson", b'"entry"', b"1938-04-12", b"AllergyIntolerance", b"MedicationStatement")

HEALTHY: dict[str, tuple[int, str | None]] = {
    **{level: (200, None) for level in SEE_RECORD},
    "no_access": (403, "access-denied"),
    BAD_INPUT: (400, "nhs-number-invalid"),
}


@dataclass
class Answer:
    kind: str
    sent: float
    done: float
    status: int | None  # None: no HTTP answer (the connection was cut)
    code: str | None = None  # the OperationOutcome's stable code
    decision_id: str | None = None
    sha256: str | None = None
    resources: frozenset[str] | None = None  # "Type/id" of a 200's entries
    sections: tuple[str, ...] | None = None  # what was asked for, when sections were sent
    problem: str | None = None  # a check the client thread could make that failed
    text: str | None = None  # the OperationOutcome's text (says which failure, e.g. "(TimeoutError)")

    @property
    def healthy(self) -> bool:
        return (self.status, self.code) == HEALTHY[self.kind]


Sections = Callable[[str], "tuple[str, ...] | None"]


@dataclass
class RecordLoad:
    url: str
    tokens: dict[str, str]  # level → bearer token
    threads: int = 8
    sections: Sections | None = None  # kind → the sections to ask for (None: the whole record)
    mix: tuple[str, ...] = MIX
    timeout: float = 60.0
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.threads)]

    def start(self) -> RecordLoad:
        for t in self._workers:
            t.start()
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=self.timeout + 5)
            assert not t.is_alive(), "a client thread did not finish"
        return list(self.answers)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def _client(self, index: int) -> None:
        kinds: Iterator[str] = itertools.islice(itertools.cycle(self.mix), index, None)
        session = requests.Session()
        try:
            while not self._stop.is_set():
                answer = self._one(session, next(kinds))
                with self._lock:
                    self.answers.append(answer)
        finally:
            session.close()

    def _one(self, session: requests.Session, kind: str) -> Answer:
        body: dict[str, object] = dict(FULL)
        level = "admin" if kind == BAD_INPUT else kind
        if kind == BAD_INPUT:
            body["nhs_number"] = "1234567890"  # fails the Modulus 11 check
        sections = self.sections(kind) if self.sections else None
        if sections is not None:
            body["sections"] = list(sections)
        sent = time.monotonic()
        try:
            r = session.post(
                self.url + "/v1/record",
                json=body,
                headers={"Authorization": f"Bearer {self.tokens[level]}"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            session.close()  # start again on a new connection
            return Answer(kind, sent, time.monotonic(), None, problem=None if _cut(exc) else f"client error {exc!r}")
        answer = Answer(
            kind,
            sent,
            time.monotonic(),
            r.status_code,
            decision_id=r.headers.get("X-Decision-Id"),
            sha256=hashlib.sha256(r.content).hexdigest(),
            sections=sections,
        )
        answer.problem = _check(r, answer)
        return answer


def _cut(exc: requests.RequestException) -> bool:
    # A serving process killed mid-request: the connection reset or closed before or while the
    # answer came (a body cut short is no answer either), not a timeout.
    return isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)) and not isinstance(
        exc, requests.Timeout
    )


def _check(r: requests.Response, answer: Answer) -> str | None:
    """What one answer must be, seen from the client alone; the problem, or None."""
    if not answer.decision_id:
        return "no X-Decision-Id"
    try:
        body = json.loads(r.content)
    except ValueError:
        return f"HTTP {r.status_code} body is not JSON: {r.content[:200]!r}"
    if r.status_code == 200:
        if r.headers.get("Content-Type", "").split(";")[0] != "application/fhir+json":
            return f"200 with Content-Type {r.headers.get('Content-Type')}"
        if (
            not isinstance(body, dict)
            or body.get("resourceType") != "Bundle"
            or not isinstance(body.get("entry"), list)
        ):
            return f"200 without a Bundle: {r.content[:200]!r}"
        resources = [e["resource"] for e in body["entry"]]
        answer.resources = frozenset(f"{res['resourceType']}/{res['id']}" for res in resources)
        if body.get("total") != len(resources) or len(answer.resources) != len(resources):
            return "Bundle total does not count its entries"
        if [res["resourceType"] for res in resources].count("Patient") != 1:
            return "a record without exactly one Patient"
        return None
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return f"HTTP {r.status_code} is not an OperationOutcome: {r.content[:200]!r}"
    try:
        coding = body["issue"][0]["details"]["coding"][0]
    except (KeyError, IndexError, TypeError):
        return f"OperationOutcome without a coded issue: {r.content[:200]!r}"
    if coding.get("system") != ERROR_CODE_SYSTEM or not isinstance(coding.get("code"), str):
        return f"OperationOutcome code not from the sidecar's code system: {coding}"
    answer.code = coding["code"]
    answer.text = str(body["issue"][0]["details"].get("text"))[:200]
    leaked = [s.decode() for s in RECORD_CONTENT if s in r.content]
    if leaked:
        return f"HTTP {r.status_code} {answer.code} carries record content: {leaked}"
    return None
