"""Faults, each under concurrent load (issue #5): the sidecar as deployed (gunicorn, 2 workers),
a real OPA and the demo upstream, 8 client threads sending record requests throughout.

Every scenario runs three phases on one stream of traffic: healthy, the fault switched on
while the requests flow, then the fault cleared and nothing restarted by the test. The
faults are real where that is portable: OPA and the upstream killed (SIGKILL) and started
again on their port, both gunicorn workers killed with SIGKILL, the audit file's write lock
held by another connection. The rest come from a fault-injecting proxy (faultproxy.py) in
front of OPA and of the upstream: slow beyond the timeout, a closed connection, HTTP 500,
garbage, invalid JSON, JSON of the wrong shape (the decision, or only the redaction after an
allow), no result, a body larger than the sidecar accepts, a $everything without the resident.

"Out of space" is a stand-in: the running sidecar workers' RLIMIT_FSIZE is lowered to 0
(prlimit(2), allowed on one's own processes without privileges), so every write to a file
fails with EFBIG, and SQLite's commit fails the way it does on a full disk (a failed write:
SQLITE_IOERR_WRITE here, SQLITE_FULL for ENOSPC), on any Linux CI machine. A real full
filesystem needs a mount (tmpfs, loop device), which CI containers do not allow.

"Read-only" is the audit file's write lock held by another connection (BEGIN EXCLUSIVE)
for the whole fault: the sidecar cannot commit a single row, which is what a read-only
store is to it. chmod does not stop root (the tests run as root here) and `chattr +i`
needs CAP_LINUX_IMMUTABLE, which containers lack.

What is asserted, for every answer of every phase:

* a 200 is a FHIR Bundle, and its X-Decision-Id names an audit row with outcome `allowed`,
  an OPA result with `allow: true`, the SHA-256 of exactly the body that was sent and the
  number of resources in it; the resources are those of a healthy answer at that level
  (or, when sections were asked for, a subset of them);
* anything else is a FHIR OperationOutcome with a stable code from the sidecar's code
  system, holding no record content (no name, no entry, no date of birth);
* while the fault is on (requests sent after it was switched on and answered before it was
  cleared), each answer has the fault's expected status and code, e.g. 503
  policy-unavailable; around the switches an answer is either the healthy or the fault one
  (and, while a restarted OPA has not yet reached its bundle server, 503 policy-stale);
* after the fault is cleared, service resumes by itself within RECOVERY_BOUND seconds and
  then every answer is the healthy one for AFTER seconds;
* the audit trail: every answer has its row (same status and code) except a 503
  audit-unavailable, which by design may have none (the row could not be written: that is
  why the answer is a 503); no row exists for a request nobody was answered, so
  rows == answers − audit-unavailable answers without a row. With a worker killed, a
  request whose connection was cut got no answer but may have been committed just before
  the kill, so there: every answered request has its row and
  answered ≤ rows ≤ answered + cut.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import resource
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from .. import processes
from ..seed_table import FULL, LEVELS
from .faultproxy import FaultProxy
from .load import BAD_INPUT, HEALTHY, MIX, SEE_RECORD, Answer, RecordLoad

BEFORE = 1.0  # seconds of healthy traffic first
DURING = 2.0  # seconds with the fault on
AFTER = 1.0  # seconds every answer must be healthy once recovered
RECOVERY_BOUND = 20.0  # generous: from the fault cleared to service resumed
MIN_ANSWERS = 12  # at least this many answers in the healthy phases


# -- the stacks ----------------------------------------------------------------------------------


@dataclass
class Stack:
    sidecar: processes.Process
    audit_db: Path
    run: Path
    opa: Any = None  # the stack's own OPA (direct stack), which a scenario kills and restarts
    upstream: Any = None
    opa_proxy: FaultProxy | None = None
    upstream_proxy: FaultProxy | None = None

    @property
    def url(self) -> str:
        return self.sidecar.url

    def head(self) -> int:
        with sqlite3.connect(self.audit_db, timeout=30) as db:
            return int(db.execute("select coalesce(max(seq), 0) from decisions").fetchone()[0])

    def rows_after(self, seq: int) -> dict[str, dict[str, Any]]:
        db = sqlite3.connect(self.audit_db, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            return {r["decision_id"]: dict(r) for r in db.execute("select * from decisions where seq > ?", (seq,))}
        finally:
            db.close()

    def workers(self) -> list[int]:
        return processes.children(self.sidecar.proc.pid)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, opa: Any, upstream: Any, jwks_file: Path) -> Iterator[Stack]:
    """The session's OPA and upstream, each behind a fault proxy."""
    run = tmp_path_factory.mktemp("faults-proxied")
    opa_proxy, upstream_proxy = FaultProxy(opa.url), FaultProxy(upstream.url)
    audit_db = run / "audit.db"
    # Timeouts long enough that a healthy call on a busy 2-core machine never meets them, short
    # enough that a slow backend fails requests quickly; a 2 MB limit for the huge body.
    env = processes.sidecar_env(
        opa_proxy.url,
        upstream_proxy.url,
        audit_db,
        jwks_file,
        OPA_TIMEOUT_SECONDS=1.0,
        UPSTREAM_TIMEOUT_SECONDS=2.0,
        UPSTREAM_MAX_BYTES=2_000_000,
    )
    sidecar = processes.start_sidecar(run, env)
    yield Stack(sidecar, audit_db, run, opa_proxy=opa_proxy, upstream_proxy=upstream_proxy)
    sidecar.stop()
    opa_proxy.close()
    upstream_proxy.close()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory, bundle_server: Any, jwks_file: Path) -> Iterator[Stack]:
    """Its own OPA and upstream (killed and restarted by the scenarios), no proxy."""
    run = tmp_path_factory.mktemp("faults-direct")
    own_opa = processes.start_opa(bundle_server.url, run)
    own_upstream = processes.start_upstream(run)
    audit_db = run / "audit.db"
    # A shorter busy timeout than the default 2 s, so that a locked store fails requests sooner.
    env = processes.sidecar_env(
        own_opa.url, own_upstream.url, audit_db, jwks_file, OPA_TIMEOUT_SECONDS=1.0, AUDIT_BUSY_TIMEOUT_MS=1000
    )
    sidecar = processes.start_sidecar(run, env)
    stack = Stack(sidecar, audit_db, run, opa=own_opa, upstream=own_upstream)
    yield stack
    sidecar.stop()
    stack.opa.kill()  # OPA's own shutdown waits seconds for its decision-log upload
    stack.upstream.stop()


@pytest.fixture(scope="module")
def tokens(token: Callable[..., str]) -> Callable[[], dict[str, str]]:
    """Fresh tokens per scenario (they live 5 minutes)."""
    return lambda: {level: token(level) for level in (*SEE_RECORD, "no_access")}


@pytest.fixture(scope="module")
def healthy_records(proxied: Stack, token: Callable[..., str]) -> dict[str, frozenset[str]]:
    """What a healthy sidecar shows at each level: the resources a 200 must have."""
    shown = {}
    for level in SEE_RECORD:
        r = requests.post(
            proxied.url + "/v1/record", json=FULL, headers={"Authorization": f"Bearer {token(level)}"}, timeout=30
        )
        assert r.status_code == 200, r.text[:300]
        shown[level] = frozenset(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json()["entry"])
    # The seed's promise (README): admin sees alerts, appointments and encounters; each level more.
    assert {key.split("/")[0] for key in shown["admin"]} <= {
        "Patient",
        "Flag",
        "Appointment",
        "Encounter",
        "Organization",
        "Practitioner",
    }
    assert shown["admin"] < shown["senior_carer"] < shown["registered_manager"]
    return shown


# -- one scenario: healthy → fault → cleared, under load ---------------------------------------------


Expect = dict[str, tuple[int, str | None]]


def fault_expect(status: int, code: str, kinds: tuple[str, ...]) -> Expect:
    """The healthy answers, with `kinds` answered (status, code) instead."""
    return {**HEALTHY, **{kind: (status, code) for kind in kinds}}


POLICY_DOWN = fault_expect(503, "policy-unavailable", (*SEE_RECORD, "no_access"))  # bad input is refused before OPA


def upstream_down(status: int, code: str) -> Expect:
    return fault_expect(status, code, SEE_RECORD)  # a denial never fetches


AUDIT_DOWN = fault_expect(503, "audit-unavailable", (*SEE_RECORD, "no_access", BAD_INPUT))  # no row, no answer


@dataclass
class Result:
    answers: list[Answer]
    rows: dict[str, dict[str, Any]]
    injecting: float
    fault_on: float
    fault_off: float
    cleared: float
    recovered: float
    during: list[Answer] = field(default_factory=list)
    cut: int = 0

    @property
    def recovery_seconds(self) -> float:
        return self.recovered - self.cleared


def run_scenario(
    stack: Stack,
    tokens: dict[str, str],
    inject: Callable[[], None],
    clear: Callable[[], None],
    expect: Expect,
    healthy_records: dict[str, frozenset[str]],
    *,
    sections: Callable[[str], tuple[str, ...] | None] | None = None,
    may_cut: bool = False,
    mix: tuple[str, ...] = MIX,
    transitional: frozenset[tuple[int, str]] = frozenset(),
    clears_itself: bool = False,
    during: float = DURING,
) -> Result:
    head = stack.head()
    load = RecordLoad(stack.url, tokens, threads=8, sections=sections, mix=mix).start()
    try:
        _wait(lambda: len(load.snapshot()) >= MIN_ANSWERS, BEFORE, 30, "healthy traffic")
        injecting = time.monotonic()  # healthy until here …
        inject()
        fault_on = time.monotonic()  # … the fault is fully on from here
        time.sleep(during)
        fault_off = time.monotonic()
        clear()
        # A fault that clears itself (a killed worker replaced by gunicorn): recovery counts from the fault.
        cleared = fault_on if clears_itself else time.monotonic()
        recovered = _wait_recovered(load, cleared)
    finally:
        answers = load.stop()
    rows = stack.rows_after(head)
    result = Result(answers, rows, injecting, fault_on, fault_off, cleared, recovered)
    _check(result, expect, healthy_records, may_cut, transitional)
    return result


def _wait(done: Callable[[], bool], at_least: float, at_most: float, what: str) -> None:
    started = time.monotonic()
    time.sleep(at_least)
    while not done():
        assert time.monotonic() - started < at_most, f"no {what} within {at_most}s"
        time.sleep(0.05)


def _wait_recovered(load: RecordLoad, cleared: float) -> float:
    """When service resumed: after the last unhealthy answer, AFTER seconds of healthy ones."""
    deadline = cleared + RECOVERY_BOUND + AFTER
    while True:
        answers = load.snapshot()
        bad = [a.done for a in answers if not a.healthy]
        resumed = max([cleared, *bad])
        streak = [a for a in answers if a.sent > resumed]
        if time.monotonic() - resumed >= AFTER and len(streak) >= MIN_ANSWERS:
            assert resumed - cleared <= RECOVERY_BOUND, (
                f"service resumed {resumed - cleared:.1f}s after the fault cleared"
            )
            return resumed
        last = sorted(answers, key=lambda a: a.done)[-5:]
        assert time.monotonic() < deadline, (
            f"not recovered within {RECOVERY_BOUND}s of the fault clearing; last answers: "
            + ", ".join(f"{a.kind} {a.status} {a.code}" for a in last)
        )
        time.sleep(0.1)


def _check(
    result: Result,
    expect: Expect,
    healthy_records: dict[str, frozenset[str]],
    may_cut: bool,
    transitional: frozenset[tuple[int, str]],
) -> None:
    problems = [f"{a.kind} {a.status}: {a.problem}" for a in result.answers if a.problem]
    assert not problems, problems[:5]
    before = [a for a in result.answers if a.done < result.injecting]
    result.during = [a for a in result.answers if a.sent > result.fault_on and a.done < result.fault_off]
    after = [a for a in result.answers if a.sent > result.recovered]
    assert len(before) >= MIN_ANSWERS and all(a.healthy for a in before), _summary(before)
    assert len(after) >= MIN_ANSWERS and all(a.healthy for a in after), _summary(after)
    # While the fault is on: its status, exactly (a cut connection only where a worker is killed).
    assert result.during, "no request was answered while the fault was on"
    wrong = [a for a in result.during if (a.status, a.code) != expect[a.kind] and not (may_cut and a.status is None)]
    assert not wrong, _summary(wrong)
    # Around the switches: the healthy answer or the fault's (or a stated transitional one), nothing else.
    for a in result.answers:
        assert (
            a.healthy
            or (a.status, a.code) == expect[a.kind]
            or (may_cut and a.status is None)
            or (a.status, a.code) in transitional
            and expect[a.kind] != HEALTHY[a.kind]
        ), _summary([a])
    _check_audit(result, healthy_records, may_cut)


def _check_audit(result: Result, healthy_records: dict[str, frozenset[str]], may_cut: bool) -> None:
    rows = result.rows
    answered = [a for a in result.answers if a.status is not None]
    result.cut = len(result.answers) - len(answered)
    without_row = []
    for a in answered:
        row = rows.get(a.decision_id)  # type: ignore[arg-type]  # answered requests carry their decision id
        if row is None:
            # Only an answer saying the audit store could not take the row may lack one.
            assert (a.status, a.code) == (503, "audit-unavailable"), f"{a.kind} {a.status} {a.code} has no audit row"
            without_row.append(a)
            continue
        assert (row["http_status"], row["error_code"]) == (a.status, a.code), (row, a)
        if a.status == 200:
            opa_result = json.loads(row["opa_result"])
            assert row["outcome"] == "allowed" and opa_result["allow"] is True, row
            assert row["response_sha256"] == a.sha256, "the row does not hash the body that was sent"
            assert row["resources_returned"] == len(a.resources or ()), row
            assert row["access_level"] == a.kind, row
            # Only sections the level may see (the seed's table, not the policy's data).
            assert set(json.loads(row["sections_returned"])) <= LEVELS[a.kind] | {"patient", "supporting"}, row
            if a.sections is None:
                assert a.resources == healthy_records[a.kind], f"{a.kind} shown other resources than when healthy"
            else:
                assert a.resources is not None and a.resources <= healthy_records[a.kind], "more than the whole record"
        elif a.status == 403:
            assert row["outcome"] == "denied" and json.loads(row["opa_result"])["allow"] is False, row
        elif a.code in ("policy-unavailable", "policy-stale"):
            assert row["outcome"] == "policy-unavailable", row
    answered_ids = {a.decision_id for a in answered}
    orphans = set(rows) - answered_ids
    if may_cut:
        # A worker killed after its commit, before its answer left: a row nobody received.
        assert len(orphans) <= result.cut, f"{len(orphans)} rows for unanswered requests, only {result.cut} cut"
        assert len(answered) - len(without_row) <= len(rows) <= len(answered) - len(without_row) + result.cut
    else:
        assert not orphans, f"{len(orphans)} audit rows for requests nobody was answered"
        assert len(rows) == len(answered) - len(without_row)


def _summary(answers: list[Answer]) -> str:
    counts: dict[tuple[str, int | None, str | None], int] = {}
    for a in answers:
        counts[(a.kind, a.status, a.code)] = counts.get((a.kind, a.status, a.code), 0) + 1
    unhealthy = sorted({a.text for a in answers if a.text and not a.healthy})[:3]
    return (
        f"{len(answers)} answers: "
        + ", ".join(f"{k}: {n}" for k, n in sorted(counts.items(), key=str))
        + (f"; unhealthy ones said {unhealthy}" if unhealthy else "")
    )


def _report(name: str, result: Result) -> None:
    print(
        f"\n{name}: {len(result.answers)} answers, {len(result.rows)} rows, {result.cut} cut; during the fault "
        f"{_summary(result.during)}; resumed {result.recovery_seconds:.2f}s after clearing"
    )


# -- faults behind the proxies ----------------------------------------------------------------------

SOMEONE_ELSE = json.dumps(
    {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "someone-else"}},
            {
                "resource": {
                    "resourceType": "AllergyIntolerance",
                    "id": "a1",
                    "patient": {"reference": "Patient/someone-else"},
                }
            },
        ],
    }
).encode()

# (proxy, mode, settings, expected answers)
PROXY_FAULTS = {
    # OPA: slower than the sidecar's timeout (1 s here), on every endpoint (readiness too).
    "opa-slow": ("opa", "slow", {"delay": 3.0}, POLICY_DOWN),
    # OPA's decision answers: not JSON; JSON of the wrong shape (readiness still passes).
    "opa-garbage": ("opa", "body", {"match": "/v1/data/", "body": b"\x00\x9c garbage <html>"}, POLICY_DOWN),
    "opa-wrong-shape": (
        "opa",
        "body",
        {"match": "/v1/data/lcr/access", "body": b'{"result": {"allow": "yes", "sections": "all"}}'},
        POLICY_DOWN,
    ),
    "opa-no-result": ("opa", "body", {"match": "/v1/data/", "body": b"{}"}, POLICY_DOWN),
    # LCR upstream.
    "upstream-slow": ("upstream", "slow", {"delay": 5.0}, upstream_down(504, "upstream-timeout")),
    "upstream-closes-connection": ("upstream", "close", {}, upstream_down(502, "upstream-unavailable")),
    "upstream-http-500": ("upstream", "status", {"status": 500}, upstream_down(502, "upstream-unavailable")),
    "upstream-invalid-json": (
        "upstream",
        "body",
        {"body": b'{"resourceType": "Bundle", "entry": [{"resource": '},
        upstream_down(502, "upstream-invalid-response"),
    ),
    "upstream-not-fhir": (
        "upstream",
        "body",
        {"body": b'{"hello": "world", "entry": []}'},
        upstream_down(502, "upstream-invalid-response"),
    ),
    "upstream-huge-body": ("upstream", "huge", {"size": 8_000_000}, upstream_down(502, "upstream-invalid-response")),
    # The search finds her; $everything answers a Bundle without her Patient (someone else's).
    "upstream-everything-without-patient": (
        "upstream",
        "body",
        {"match": "/fhir/Patient/", "body": SOMEONE_ELSE},
        upstream_down(502, "upstream-invalid-response"),
    ),
}


@pytest.mark.parametrize("name", list(PROXY_FAULTS))
def test_proxy_fault_under_load(proxied, tokens, healthy_records, name):
    which, mode, settings, expect = PROXY_FAULTS[name]
    proxy = proxied.opa_proxy if which == "opa" else proxied.upstream_proxy
    assert proxy is not None
    # An upstream slower than the 2 s timeout answers one request per client thread in 2 s.
    during = 2.5 * DURING if mode == "slow" and which == "upstream" else DURING
    result = run_scenario(
        proxied, tokens(), lambda: proxy.set(mode, **settings), proxy.clear, expect, healthy_records, during=during
    )
    assert proxy.faulted > 0
    _report(name, result)


def test_everything_without_the_resident_is_502_not_an_empty_record(make_app, token, upstream):
    """Regression: a $everything answer without the resident's Patient was redacted to nothing
    and answered 200 with an empty record, as if she had none; now 502, no record."""
    proxy = FaultProxy(upstream.url)
    try:
        proxy.set("body", match="/fhir/Patient/", body=SOMEONE_ELSE)
        app = make_app(UPSTREAM_URL=proxy.url + "/fhir")
        r = app.test_client().post(
            "/v1/record", json=FULL, headers={"Authorization": f"Bearer {token('registered_manager')}"}
        )
    finally:
        proxy.close()
    assert (
        r.status_code == 502 and r.get_json()["issue"][0]["details"]["coding"][0]["code"] == "upstream-invalid-response"
    )
    assert b"entry" not in r.get_data()
    row = list(app.extensions["lcr"].audit.rows())[-1]
    assert (row["outcome"], row["http_status"], row["resources_returned"]) == ("upstream-failed", 502, 0)


def test_opa_redaction_answer_of_the_wrong_shape_under_load(proxied, tokens, healthy_records):
    """OPA allows, then its redaction answer is broken: no record leaves unredacted.

    Every request asks for a different set of sections, so no redaction answer is cached
    (REDACT_CACHE_ENTRIES) and each one is asked of OPA."""
    questions = _distinct_section_questions()
    lock = threading.Lock()

    def sections(kind: str) -> tuple[str, ...] | None:
        if kind not in questions:
            return None
        with lock:
            return next(questions[kind])

    proxy = proxied.opa_proxy
    assert proxy is not None
    broken = b'{"result": {"sections": [], "keep": "everything"}}'
    expect = fault_expect(503, "policy-unavailable", SEE_RECORD)
    result = run_scenario(
        proxied,
        tokens(),
        lambda: proxy.set("body", match="/v1/data/lcr/redact", body=broken),
        proxy.clear,
        expect,
        healthy_records,
        sections=sections,
        mix=REDACTION_MIX,
    )
    assert proxy.faulted > 0
    _report("opa-redaction-wrong-shape", result)


# admin has too few sections (3) to ask for a new set every time: left out here.
REDACTION_MIX = ("senior_carer", "registered_manager", "no_access", "senior_carer", "registered_manager", BAD_INPUT)


def _distinct_section_questions() -> dict[str, Iterator[tuple[str, ...]]]:
    """Per level, every set of 1 to 3 of its sections, shuffled: thousands, none repeated."""
    rng = random.Random(5)
    out = {}
    for kind in ("senior_carer", "registered_manager"):
        names = sorted(LEVELS[kind])
        sets = [c for k in (1, 2, 3) for c in itertools.combinations(names, k)]
        rng.shuffle(sets)
        out[kind] = iter(sets)
    return out


# -- real processes killed, the audit store failing ---------------------------------------------------


def test_opa_killed_and_restarted_under_load(direct, tokens, bundle_server, healthy_records):
    port = int(direct.opa.url.rsplit(":", 1)[1])

    def restart() -> None:
        direct.opa = processes.start_opa(bundle_server.url, direct.run, port=port)

    # Restarted, OPA serves the bundle it persisted before it has reached the bundle server
    # again: for that moment readiness says 503 policy-stale (and then ready, by itself).
    result = run_scenario(
        direct,
        tokens(),
        direct.opa.kill,
        restart,
        POLICY_DOWN,
        healthy_records,
        transitional=frozenset({(503, "policy-stale")}),
    )
    _report("opa-killed", result)


def test_upstream_killed_and_restarted_under_load(direct, tokens, healthy_records):
    """Master and worker SIGKILLed (killing only the master leaves its worker serving)."""
    port = int(direct.upstream.url.rsplit(":", 1)[1])

    def restart() -> None:
        direct.upstream = processes.start_upstream(direct.run, port=port)

    result = run_scenario(
        direct,
        tokens(),
        direct.upstream.kill_tree,
        restart,
        upstream_down(502, "upstream-unavailable"),
        healthy_records,
    )
    _report("upstream-killed", result)


def test_audit_store_write_locked_under_load(direct, tokens, healthy_records):
    """Another connection holds the audit file's write lock: the store takes no row (read-only)."""
    blocker = sqlite3.connect(direct.audit_db, timeout=30, isolation_level=None)

    def lock() -> None:
        blocker.execute("BEGIN EXCLUSIVE")

    def unlock() -> None:
        blocker.execute("ROLLBACK")
        blocker.close()

    # Each commit waits the busy timeout before failing: few answers a second, so a longer fault.
    result = run_scenario(direct, tokens(), lock, unlock, AUDIT_DOWN, healthy_records, during=2 * DURING)
    assert all(a.code == "audit-unavailable" for a in result.during)
    _report("audit-store-locked", result)


def test_audit_store_out_of_space_under_load(direct, tokens, healthy_records):
    """Every file write of the serving processes fails (RLIMIT_FSIZE 0: EFBIG), as on a full disk."""
    workers = direct.workers()
    assert len(workers) == 2
    limits = {pid: resource.prlimit(pid, resource.RLIMIT_FSIZE) for pid in workers}

    def fill() -> None:
        for pid, (_, hard) in limits.items():
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))

    def free() -> None:
        for pid, old in limits.items():
            resource.prlimit(pid, resource.RLIMIT_FSIZE, old)

    try:
        result = run_scenario(direct, tokens(), fill, free, AUDIT_DOWN, healthy_records)
    finally:
        for pid, old in limits.items():
            try:
                resource.prlimit(pid, resource.RLIMIT_FSIZE, old)
            except ProcessLookupError:
                pass
    assert direct.workers() == workers, "a worker died of it"
    _report("audit-store-out-of-space", result)


def test_serving_processes_kill_9_under_load(direct, tokens, healthy_records):
    """Both gunicorn workers SIGKILLed at once; the master starts new ones."""
    workers = direct.workers()
    assert len(workers) == 2

    def kill() -> None:
        for pid in workers:
            os.kill(pid, signal.SIGKILL)

    result = run_scenario(
        direct, tokens(), kill, lambda: None, dict(HEALTHY), healthy_records, may_cut=True, clears_itself=True
    )
    replaced = direct.workers()
    assert len(replaced) == 2 and not set(replaced) & set(workers)
    _report("workers-kill-9", result)
