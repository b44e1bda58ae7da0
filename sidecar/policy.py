"""The two questions the sidecar asks OPA (docs/decision-contract.md).

Everything about who may see what lives in the Rego policies; this module only carries
the question over and checks the answer has the agreed shape. Any failure — OPA down,
slow, no policy loaded, an answer of the wrong shape — fails closed.

The per-request questions go over a kept-alive `http.client` connection per thread:
measured on this machine (bench/overhead/RESULTS.md) a `requests`-based call, which
opa-python-client is, costs about 1.5 ms of CPU against 0.3 ms for `http.client`.
opa-python-client serves everything else (health, config, metrics: sidecar/readiness.py).
"""

from __future__ import annotations

import hashlib
import http.client
import threading
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import orjson

from . import errors, fastjson, metrics
from .breaker import CircuitBreaker
from .lru import Lru

DECISION_PACKAGE = "lcr.access"
DECISION_RULE = "decision"
REDACT_PACKAGE = "lcr.redact"
REDACT_RULE = "result"
POLICY_BUNDLE = "lcr"
ROSTER_BUNDLE = "roster"


@dataclass(frozen=True)
class Decision:
    allow: bool
    sections: list[str]  # what to show: requested ∩ permitted
    permitted: list[str]  # everything the caller's level may see
    reasons: list[str]
    audit_scope: str | None  # audit.read only: own_care_service | all
    revision: str
    result: dict[str, Any]


@dataclass(frozen=True)
class Classification:
    sections: list[str | None]  # per resource: the section it is counted under
    keep: list[bool]  # per resource: whether it leaves
    edits: list[dict[str, Any]]  # per resource: {"remove": [path], "mask": [path], "parts": [section]}


class _ClassificationCache(Lru[bytes, Classification]):
    """Redaction answers per policy revision, keyed by everything the question contained.

    The redaction policy is a pure function of its input and the bundle (no time, no
    http.send), so the same question under the same revision always gets the same
    answer: a resident opened again, unchanged, at the same access level costs no OPA
    evaluation. Bounded (LRU); a new revision never hits the old entries.
    """

    def key(self, revision: str, question: dict[str, Any], resources: list[dict[str, Any]]) -> bytes | None:
        if not self.entries or not _cacheable(revision):
            return None  # only one identified bundle makes a stable key
        # The question but for its resources, then the resources, each serialised as a
        # whole (a JSON text ends where it ends: the two cannot run into each other). One
        # pass over the record: a view answered from here serialises no resource on its own.
        key = hashlib.sha256(fastjson.dumps([revision, question]))
        key.update(fastjson.dumps(resources))
        return key.digest()


@dataclass
class _Facts:
    """What the redaction policy read from one resource (policies/lcr/redact/facts.rego):
    its facts, and its free text once a question needed it, each as the JSON OPA sent."""

    facts: bytes
    free_text: bytes | None = None


class _FactsCache(Lru[tuple[str, bytes], _Facts]):
    """The facts of each resource the redaction policy has read, per policy revision,
    keyed by the resource's digest (its bytes as fetched, serialised once per view).

    The policy computes them from the resource alone (no caller, no other resource), so
    under the same revision the same resource always has the same facts: a resource seen
    in an earlier question — the same record at another access level, or before one of its
    resources changed — is sent to OPA as its facts, and only the record-level rules run
    for it. Bounded (LRU, in resources); a new revision never hits the old entries.
    """


@dataclass(frozen=True)
class _Resource:
    raw: bytes  # the resource as sent to OPA
    digest: bytes


def _cacheable(revision: str) -> bool:
    return revision != "unknown" and "," not in revision


class PolicyClient:
    def __init__(
        self,
        url: str,
        timeout: float,
        redact_timeout: float | None = None,
        cache_entries: int = 0,
        breaker: CircuitBreaker | None = None,
        facts_cache_entries: int = 0,
    ) -> None:
        parts = urlsplit(url)
        self._connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 8181)
        self._timeout = timeout
        # A big record takes OPA longer to redact than a decision: its own timeout.
        self._redact_timeout = redact_timeout or timeout
        self._cache = _ClassificationCache(cache_entries)
        self._facts = _FactsCache(facts_cache_entries)
        # (revision, permitted sections) -> whether such a caller is shown free text, as
        # the redaction policy last said: when it is, no resource's free text is needed.
        self._free_text_shown: dict[tuple[str, tuple[str, ...]], bool] = {}
        self.breaker = breaker or CircuitBreaker()
        self._local = threading.local()
        self._opened: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connection_class(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return connection

    def _post(self, path: str, body: bytes, timeout: float | None = None) -> tuple[int, bytes]:
        # One retry, and only when a kept-alive connection turns out to be closed (OPA
        # restarted): a slow OPA costs one timeout, never two, and then fails closed.
        for attempt in (1, 2):
            connection = self._connection()
            connection.timeout = timeout or self._timeout
            if connection.sock is not None:
                connection.sock.settimeout(connection.timeout)
            reused = connection.sock is not None
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                if not reused or attempt == 2:
                    raise
            except (OSError, http.client.HTTPException):
                connection.close()
                raise
        raise AssertionError("unreachable")

    def _query(
        self,
        package: str,
        rule: str,
        input_data: dict[str, Any],
        timeout: float | None = None,
        trips_breaker: bool = True,
    ) -> tuple[Any, str]:
        path = f"/v1/data/{package.replace('.', '/')}/{rule}?provenance=true"
        body = fastjson.dumps({"input": input_data})
        if not self.breaker.allow():
            metrics.OPA_REFUSED_FAST.inc()
            raise errors.PolicyUnavailable(f"{errors.PolicyUnavailable.message} (recently unreachable)")
        try:
            with metrics.OPA_SECONDS.labels(rule).time():
                status, raw = self._post(path, body, timeout)
        except (OSError, http.client.HTTPException) as exc:
            if trips_breaker:
                self.breaker.failure()
            else:
                self.breaker.inconclusive()  # e.g. a huge record timing out says nothing about OPA's health
            raise errors.PolicyUnavailable(f"{errors.PolicyUnavailable.message} ({type(exc).__name__})") from None
        self.breaker.success()  # OPA answered, whatever it said
        try:
            answer = fastjson.loads(raw) if status == 200 else None
        except ValueError:
            raise errors.PolicyUnavailable(f"{errors.PolicyUnavailable.message} (ValueError)") from None
        if not isinstance(answer, dict) or "result" not in answer:
            # Undefined result: the policy bundle is not (yet) loaded.
            raise errors.PolicyUnavailable("The access policy is not loaded; no record is shown.")
        return answer["result"], _revision(answer)

    def decide(self, input_data: dict[str, Any]) -> Decision:
        result, revision = self._query(DECISION_PACKAGE, DECISION_RULE, input_data)
        allow = result.get("allow") if isinstance(result, dict) else None
        sections = result.get("sections") if isinstance(result, dict) else None
        permitted = result.get("permitted") if isinstance(result, dict) else None
        reasons = result.get("reasons") if isinstance(result, dict) else None
        if (
            not isinstance(allow, bool)
            or not _strings(sections)
            or not _strings(permitted)
            or not _strings(reasons)
            or (allow and (reasons or not set(sections) <= set(permitted)))
        ):
            raise errors.PolicyUnavailable("The access policy gave an answer of the wrong shape; no record is shown.")
        scope = result.get("audit_scope")
        return Decision(
            allow, sections, permitted, reasons, scope if isinstance(scope, str) else None, revision, result
        )

    def classify(
        self,
        decision: Decision,
        patient: dict[str, str],
        resources: list[dict[str, Any]],
        full_urls: list[str | None],
        base_url: str,
    ) -> Classification:
        """Ask the redaction policy what of this record may leave (docs/decision-contract.md).

        patient: {"id": the matched Patient's id, "nhs_number": the matched NHS number};
        full_urls: each resource's Bundle.entry.fullUrl (or None), parallel to resources;
        base_url: the upstream FHIR base, for resolving absolute references.
        Raises errors.PolicyUnavailable when OPA cannot answer or answers the wrong shape.
        """
        question = {
            "allowed_sections": decision.sections,
            "permitted_sections": decision.permitted,
            "patient": patient,
            "base_url": base_url,
            "full_urls": full_urls,
        }
        key = self._cache.key(decision.revision, question, resources)
        cached = self._cache.get(key) if key is not None else None
        if cached is not None:
            return cached
        parts = [_resource(r) for r in resources]
        use_facts = bool(self._facts.entries) and _cacheable(decision.revision)
        classification, revision, sent_facts = self._redact(decision, question, parts, use_facts)
        if sent_facts and revision != decision.revision:
            # Facts read under the decision's revision met another one: ask again with the
            # resources themselves, never mixing two policies in one answer.
            classification, revision, _ = self._redact(decision, question, parts, use_facts=False)
        if revision != decision.revision:
            key = None  # the bundle changed between the two questions: cache under neither
        if key is not None:
            self._cache.put(key, classification)
        return classification

    def _redact(
        self, decision: Decision, question: dict[str, Any], parts: list[_Resource], use_facts: bool
    ) -> tuple[Classification, str, bool]:
        """One redaction question to OPA. With the facts cache, each resource goes as the
        facts the policy read from it before (and its free text, when the caller may need
        it removed), or whole; the answer's new facts are kept for the next question."""
        revision = decision.revision
        entries: list[_Facts | None] = [None] * len(parts)
        input_data = dict(question)
        if use_facts:
            shown = self._free_text_shown.get((revision, tuple(decision.permitted)))
            entries = [self._facts.get((revision, p.digest)) for p in parts]
            input_data["resources"] = [
                orjson.Fragment(p.raw) if e is None or (shown is not True and e.free_text is None) else None
                for p, e in zip(parts, entries, strict=True)
            ]
            input_data["facts"] = [orjson.Fragment(e.facts) if e is not None else None for e in entries]
            input_data["free_text"] = [
                orjson.Fragment(e.free_text)
                if e is not None and e.free_text is not None and shown is not True
                else None
                for e in entries
            ]
            input_data["return_facts"] = True
        else:
            input_data["resources"] = [orjson.Fragment(p.raw) for p in parts]
        result, answered = self._query(
            REDACT_PACKAGE, REDACT_RULE, input_data, self._redact_timeout, trips_breaker=False
        )
        n = len(parts)
        sections = result.get("sections") if isinstance(result, dict) else None
        keep = result.get("keep") if isinstance(result, dict) else None
        edits = result.get("edits") if isinstance(result, dict) else None
        if (
            not isinstance(sections, list)
            or not isinstance(keep, list)
            or not isinstance(edits, list)
            or len(sections) != n
            or len(keep) != n
            or len(edits) != n
            or not all(isinstance(k, bool) for k in keep)
            or not all(_edit_shaped(e) for e in edits)
        ):
            raise errors.PolicyUnavailable(
                "The redaction policy gave an answer of the wrong shape; no record is shown."
            )
        if use_facts and answered == revision:
            self._keep_facts(decision, result, parts, entries)
        sent_facts = use_facts and any(e is not None for e in entries)
        return Classification(sections, keep, edits), answered, sent_facts

    def _keep_facts(
        self, decision: Decision, result: dict[str, Any], parts: list[_Resource], entries: list[_Facts | None]
    ) -> None:
        facts, free_text, shown = result.get("facts"), result.get("free_text"), result.get("free_text_shown")
        if (
            not isinstance(facts, list)
            or not isinstance(free_text, list)
            or len(facts) != len(parts)
            or len(free_text) != len(parts)
        ):
            return  # nothing to keep; the answer itself was checked
        if isinstance(shown, bool):
            if len(self._free_text_shown) > 64:
                self._free_text_shown.clear()  # a few levels per revision; old revisions go
            self._free_text_shown[(decision.revision, tuple(decision.permitted))] = shown
        for part, entry, new, text in zip(parts, entries, facts, free_text, strict=True):
            if isinstance(new, dict):
                entry = _Facts(fastjson.dumps(new))
                self._facts.put((decision.revision, part.digest), entry)
            if entry is not None and isinstance(text, list):
                entry.free_text = fastjson.dumps(text)


def _resource(resource: dict[str, Any]) -> _Resource:
    raw = fastjson.dumps(resource)
    return _Resource(raw, hashlib.blake2b(raw, digest_size=16).digest())


def _edit_shaped(edit: Any) -> bool:
    """{"remove": [path], "mask": [path], "parts": [str]}, each path a non-empty list of
    keys and indexes. Loops, not nested all(): it runs for every resource of every answer."""
    if not isinstance(edit, dict):
        return False
    for name in ("remove", "mask"):
        paths = edit.get(name)
        if not isinstance(paths, list):
            return False
        for path in paths:
            if not isinstance(path, list) or not path:
                return False
            for step in path:
                if not isinstance(step, (str, int)):
                    return False
    return _strings(edit.get("parts"))


def _strings(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _revision(answer: dict[str, Any]) -> str:
    """The policy bundle's revision from OPA's provenance.

    With the policy bundle (`lcr`) beside the roster bundle, the policy's revision: the
    roster's is part of the decision itself (`roster_revision`), so the audit row holds both.
    Any other set of bundles is named in full (`name@revision,…`), which replay refuses.
    """
    bundles = (answer.get("provenance") or {}).get("bundles") or {}
    if POLICY_BUNDLE in bundles and set(bundles) <= {POLICY_BUNDLE, ROSTER_BUNDLE}:
        return str(bundles[POLICY_BUNDLE].get("revision") or "unknown")
    if len(bundles) == 1:
        return str(next(iter(bundles.values())).get("revision") or "unknown")
    return ",".join(f"{name}@{b.get('revision', '')}" for name, b in sorted(bundles.items())) or "unknown"
