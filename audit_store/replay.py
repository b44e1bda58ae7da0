"""Replay logged decisions against the policy that made them, and a candidate policy's impact.

replay: each selected decision's stored `opa_input` is evaluated again by a real OPA loaded
with the decision's own archived bundle (`<archive>/<policy_revision>.tar.gz`, signature
verified), and the answer is compared with the stored `opa_result`:
reproduced / diverged (with the reason) / unreplayable (with the reason: no input because the
request ended before the policy was asked, no stored result, revision not archived, …).

impact: the same decisions against a candidate (a policy folder or a bundle .tar.gz), compared
with what was decided at the time: which decisions would widen (access granted, sections
gained) or narrow (access revoked, sections lost), grouped by access level, section and care
service.

How it stays fast and flat:
- rows stream out of SQLite, grouped there (GROUP BY spills to disk, not to Python memory);
- with `dedupe` (the default), decisions that agree on every `input` path the policy can
  read (opa.input_footprint: found in the compiled policy, not assumed) are one group and
  are evaluated once; the stored result of every decision is still compared one by one,
  per group of identical stored results;
- inputs go to OPA in chunks of `chunk` per HTTP call, `jobs` calls in flight (OPA uses
  every core), with the request body spliced from the stored JSON text.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .opa import UNDEFINED, OpaError, OpaServer, bundle_revision_of, input_footprint
from .queries import Filters, dialect_of
from .store import TABLE

DEFAULT_ENTRYPOINT = "lcr/access/decision"
REPLAYABLE = "opa_input IS NOT NULL AND opa_result IS NOT NULL AND json_valid(opa_input)"
#: the roster a decision was made with: the decision itself names it (`roster_revision`)
ROSTER_REVISION = "(CASE WHEN json_valid(opa_result) THEN json_extract(opa_result, '$.roster_revision') END)"
#: the same on PostgreSQL (lcr_json_valid is created by the store's migrations, pg.py)
PG_REPLAYABLE = "opa_input IS NOT NULL AND opa_result IS NOT NULL AND lcr_json_valid(opa_input)"


PG_ROSTER_REVISION = "(CASE WHEN lcr_json_valid(opa_result) THEN opa_result::jsonb ->> 'roster_revision' END)"


def _replayable(conn: Any) -> str:
    return PG_REPLAYABLE if dialect_of(conn) == "postgresql" else REPLAYABLE


def _roster_revision(conn: Any) -> str:
    return PG_ROSTER_REVISION if dialect_of(conn) == "postgresql" else ROSTER_REVISION


NO_INPUT = "no decision input: the request ended before the policy was asked"
NO_RESULT = "no stored result: the policy did not answer at the time"
BAD_INPUT = "stored opa_input is not valid JSON"
NO_REVISION = "no policy revision recorded"


class ReplayError(RuntimeError):
    """Replay could not run at all (no OPA, no candidate)."""


@dataclass
class EvalError:
    message: str


@dataclass
class Group:
    first_seq: int
    count: int
    opa_input: str
    opa_result: str
    access_level: str | None
    care_service: str | None
    key: tuple[Any, ...]


# -- evaluation engine ------------------------------------------------------------------


class Engine:
    """Sends groups' inputs to one OPA in chunks, `jobs` requests in flight."""

    def __init__(self, server: OpaServer, entrypoint: str, jobs: int = 2, chunk: int = 2000) -> None:
        self.server = server
        self.entrypoint = entrypoint
        self.jobs = max(1, jobs)
        self.chunk = max(1, chunk)
        self.evaluations = 0

    def run(self, groups: Iterator[Group], handle: Callable[[Group, Any], None]) -> None:
        lock = threading.Lock()
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="replay") as pool:
            in_flight: set[Future[list[tuple[Group, Any]]]] = set()

            def drain(block: bool) -> None:
                done, _ = (
                    wait(in_flight, return_when=FIRST_COMPLETED)
                    if block
                    else (set(f for f in in_flight if f.done()), None)
                )
                for future in done:
                    in_flight.discard(future)
                    results = future.result()
                    with lock:
                        self.evaluations += len(results)
                        for group, result in results:
                            handle(group, result)

            batch: list[Group] = []
            for group in groups:
                batch.append(group)
                if len(batch) >= self.chunk:
                    while len(in_flight) >= self.jobs * 2:  # bounded: memory stays flat
                        drain(block=True)
                    in_flight.add(pool.submit(self._evaluate, batch))
                    batch = []
                    drain(block=False)
            if batch:
                in_flight.add(pool.submit(self._evaluate, batch))
            while in_flight:
                drain(block=True)

    def _evaluate(self, batch: list[Group]) -> list[tuple[Group, Any]]:
        try:
            results = self.server.evaluate([g.opa_input for g in batch], self.entrypoint)
        except OpaError as exc:
            if len(batch) == 1:
                return [(batch[0], EvalError(str(exc)))]
            # One input OPA cannot evaluate (a conflict error, say) must not sink its chunk.
            half = len(batch) // 2
            return self._evaluate(batch[:half]) + self._evaluate(batch[half:])
        return list(zip(batch, results, strict=False))


def _json_path(path: tuple[str, ...]) -> str:
    return "$" + "".join('."' + p.replace("'", "''") + '"' for p in path)


def key_columns(footprint: list[tuple[str, ...]] | None, dialect: str = "sqlite") -> list[str]:
    """SQL for the grouping key: the footprint's values as JSON text (NULL when absent)."""
    if footprint is None:
        return ["opa_input"]
    if not footprint:
        return ["1"]  # the policy reads nothing of input: one evaluation answers all
    if dialect == "postgresql":
        # Only compared for equality: jsonb's own text form is as good a key as SQLite's.
        return [f"((opa_input::jsonb #> '{_pg_path(p)}')::text)" for p in footprint]
    return [f"(opa_input -> '{_json_path(p)}')" for p in footprint]


def _pg_path(path: tuple[str, ...]) -> str:
    """A text[] literal for #>: each element double-quoted, quotes and backslashes escaped."""
    parts = ('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in path)
    return ("{" + ",".join(parts) + "}").replace("'", "''")


def stream_groups(
    conn: sqlite3.Connection, where: str, params: list[Any], footprint: list[tuple[str, ...]] | None, dedupe: bool
) -> Iterator[Group]:
    dialect = dialect_of(conn)
    replayable = _replayable(conn)
    keys = key_columns(footprint if dedupe else None, dialect)
    key_sql = ", ".join(f"{k} AS k{i}" for i, k in enumerate(keys))
    if dedupe and dialect == "postgresql":
        # PostgreSQL has no bare columns in a GROUP BY: group, then read each group's first row.
        group_by = ", ".join(f"k{i}" for i in range(len(keys)))
        outer = ", ".join(f"g.k{i}" for i in range(len(keys)))
        sql = (
            f"SELECT g.s, g.n, d.opa_input, d.opa_result, d.access_level, d.care_service, {outer} FROM "
            f"(SELECT min(seq) AS s, count(*) AS n, {key_sql} "
            f"FROM {TABLE} WHERE ({where}) AND {replayable} "
            f"GROUP BY {group_by}, opa_result, access_level, care_service) g JOIN {TABLE} d ON d.seq = g.s"
        )
    elif dedupe:
        group_by = ", ".join(f"k{i}" for i in range(len(keys)))
        sql = (
            f"SELECT min(seq), count(*), opa_input, opa_result, access_level, care_service, {key_sql} "
            f"FROM {TABLE} WHERE ({where}) AND {replayable} "
            f"GROUP BY {group_by}, opa_result, access_level, care_service"
        )
    else:
        sql = (
            f"SELECT seq, 1, opa_input, opa_result, access_level, care_service, {key_sql} "
            f"FROM {TABLE} WHERE ({where}) AND {replayable} ORDER BY seq"
        )
    cursor = conn.execute(sql, params)
    while True:
        rows = cursor.fetchmany(1000)
        if not rows:
            return
        for r in rows:
            yield Group(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6:]))


Revisions = tuple[str | None, str | None]  # (policy revision, roster revision)


def _categorise(conn: sqlite3.Connection, where: str, params: list[Any]) -> tuple[Counter[str], Counter[Revisions]]:
    """(unreplayable reasons → decisions, replayable decisions by policy and roster revision)."""
    unreplayable: Counter[str] = Counter()
    by_revision: Counter[Revisions] = Counter()
    sql = (
        f"SELECT policy_revision, {_roster_revision(conn)}, opa_input IS NULL, opa_result IS NULL, "
        "CASE WHEN opa_input IS NULL THEN 1 ELSE "
        f"{'lcr_json_valid(opa_input)::int' if dialect_of(conn) == 'postgresql' else 'json_valid(opa_input)'} END, "
        "count(*) "
        f"FROM {TABLE} WHERE {where} GROUP BY 1, 2, 3, 4, 5"
    )
    for revision, roster, no_input, no_result, valid, n in conn.execute(sql, params):
        if no_input:
            unreplayable[NO_INPUT] += n
        elif no_result:
            unreplayable[NO_RESULT] += n
        elif not valid:
            unreplayable[BAD_INPUT] += n
        else:
            by_revision[(revision, roster if isinstance(roster, str) else None)] += n
    return unreplayable, by_revision


def _roster_bundle(archive: Path, roster: str | None) -> Path | None:
    """The archived roster bundle a decision was made with (None: made without one)."""
    return None if roster is None else archive / f"{roster}.tar.gz"


def _roster_where(conn: Any, roster: str | None) -> str:
    if dialect_of(conn) == "postgresql":
        return f"{PG_ROSTER_REVISION} IS NOT DISTINCT FROM ?::text"
    return f"{ROSTER_REVISION} IS ?"


def _stored(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def describe(stored: Any, replayed: Any) -> str:
    """Why two decisions differ, in the terms of the decision contract."""
    if isinstance(replayed, EvalError):
        return f"evaluation error: {replayed.message}"
    if replayed is UNDEFINED:
        return "the policy gives no decision (undefined)"
    if not isinstance(stored, dict) or not isinstance(replayed, dict):
        return "decision has a different shape"
    parts = []
    if stored.get("allow") != replayed.get("allow"):
        parts.append(f"allow {json.dumps(stored.get('allow'))}→{json.dumps(replayed.get('allow'))}")
    for name in ("sections", "reasons"):
        old, new = set(stored.get(name) or []), set(replayed.get(name) or [])
        if old != new:
            change = [f"+{s}" for s in sorted(new - old)] + [f"-{s}" for s in sorted(old - new)]
            parts.append(f"{name} {' '.join(change)}")
        elif stored.get(name) != replayed.get(name):
            parts.append(f"{name} order")
    for name in sorted(set(stored) | set(replayed)):
        if name not in ("allow", "sections", "reasons") and stored.get(name) != replayed.get(name):
            parts.append(f"{name} {json.dumps(stored.get(name))}→{json.dumps(replayed.get(name))}")
    return "; ".join(parts) or "decision differs"


# -- replay -------------------------------------------------------------------------------


@dataclass
class Divergence:
    revision: str
    reason: str
    decisions: int = 0
    first_seq: int = 0
    example_stored: Any = None
    example_replayed: Any = None


@dataclass
class ReplayReport:
    selected: int = 0
    reproduced: int = 0
    diverged: int = 0
    unreplayable: Counter[str] = field(default_factory=Counter)
    divergences: dict[tuple[str, str], Divergence] = field(default_factory=dict)
    revisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluations: int = 0
    opa_calls: int = 0
    seconds: float = 0.0

    @property
    def replayable(self) -> int:
        return self.reproduced + self.diverged

    def as_dict(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "reproduced": self.reproduced,
            "diverged": self.diverged,
            "unreplayable": sum(self.unreplayable.values()),
            "unreplayable_reasons": dict(self.unreplayable.most_common()),
            "divergences": [
                {
                    "revision": d.revision,
                    "reason": d.reason,
                    "decisions": d.decisions,
                    "first_seq": d.first_seq,
                    "stored": d.example_stored,
                    "replayed": None if d.example_replayed is UNDEFINED else d.example_replayed,
                }
                for d in sorted(self.divergences.values(), key=lambda d: (-d.decisions, d.first_seq))
            ],
            "revisions": self.revisions,
            "evaluations": self.evaluations,
            "opa_calls": self.opa_calls,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Options:
    opa: str
    entrypoint: str = DEFAULT_ENTRYPOINT
    jobs: int = 2
    chunk: int = 2000
    dedupe: bool = True
    verification_key: Path | None = None
    key_id: str | None = None
    progress: Callable[[int], None] | None = None
    details: IO[str] | None = None  # JSON Lines, one per diverged/changed decision
    archive: Path | None = None  # impact: where the rosters the decisions were made with are archived


def replay(conn: sqlite3.Connection, archive: Path, filters: Filters, options: Options) -> ReplayReport:
    started = time.perf_counter()
    report = ReplayReport()
    where, params = filters.where(dialect_of(conn))
    unreplayable, by_revision = _categorise(conn, where, params)
    report.unreplayable.update(unreplayable)
    report.selected = sum(unreplayable.values()) + sum(by_revision.values())
    if options.progress:
        options.progress(sum(unreplayable.values()))
    for (revision, roster), n in sorted(by_revision.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        # One entry per policy revision; a revision's decisions made with several rosters
        # are replayed roster by roster (each loaded beside the policy, as at the time).
        info: dict[str, Any] = report.revisions.setdefault(str(revision), {"decisions": 0})
        info["decisions"] += n
        if not revision or revision == "unknown":
            _skip(report, info, NO_REVISION, n, options)
            continue
        bundle = archive / f"{revision}.tar.gz"
        if "/" in revision or not bundle.is_file():
            _skip(report, info, f"revision {revision} is not in the archive ({archive})", n, options)
            continue
        roster_bundle = _roster_bundle(archive, roster)
        if roster is not None:
            info.setdefault("rosters", {})[roster] = n
            if "/" in roster or roster_bundle is None or not roster_bundle.is_file():
                _skip(report, info, f"roster revision {roster} is not in the archive ({archive})", n, options)
                continue
        bundles = [bundle] + ([roster_bundle] if roster_bundle is not None else [])
        try:
            server = OpaServer(
                bundles[0],
                options.opa,
                verification_key=options.verification_key,
                key_id=options.key_id,
                extra_bundles=bundles[1:],
            )
            server.start()
        except OpaError as exc:
            _skip(
                report, info, f"revision {revision}: the archived bundle does not load ({_first_line(exc)})", n, options
            )
            continue
        try:
            loaded = set(server.revisions().values())
            expected = {revision} | ({roster} if roster else set())
            if loaded != expected:
                _skip(
                    report,
                    info,
                    f"revision {revision}: the archive holds revision {', '.join(sorted(loaded)) or 'none'}",
                    n,
                    options,
                )
                continue
            footprint = input_footprint(server.policies(), options.entrypoint) if options.dedupe else None
            info["input_paths"] = None if footprint is None else [".".join(p) for p in footprint]
            engine = Engine(server, options.entrypoint, options.jobs, options.chunk)
            diverged: dict[tuple[Any, ...], tuple[str, Any]] = {}
            counts = Counter[str]()

            def handle(
                group: Group,
                result: Any,
                counts: Counter[str] = counts,
                revision: str = revision,
                diverged: dict[tuple[Any, ...], tuple[str, Any]] = diverged,
            ) -> None:
                # This iteration's counts, revision and divergences, bound now (the engine
                # calls back within the iteration).
                stored = _stored(group.opa_result)
                if result is not UNDEFINED and not isinstance(result, EvalError) and result == stored:
                    counts["reproduced"] += group.count
                else:
                    counts["diverged"] += group.count
                    reason = describe(stored, result)
                    d = report.divergences.get((revision, reason))
                    if d is None:
                        d = report.divergences[(revision, reason)] = Divergence(
                            revision, reason, 0, group.first_seq, stored, result
                        )
                    d.decisions += group.count
                    d.first_seq = min(d.first_seq, group.first_seq)
                    if options.details is not None:
                        diverged[(*group.key, group.opa_result, group.access_level, group.care_service)] = (
                            reason,
                            result,
                        )
                if options.progress:
                    options.progress(group.count)

            selected = f"({where}) AND policy_revision = ? AND {_roster_where(conn, roster)}"
            selected_params = [*params, revision, roster]
            engine.run(stream_groups(conn, selected, selected_params, footprint, options.dedupe), handle)
            report.reproduced += counts["reproduced"]
            report.diverged += counts["diverged"]
            report.evaluations += engine.evaluations
            report.opa_calls += server.calls
            for name, value in (
                ("reproduced", counts["reproduced"]),
                ("diverged", counts["diverged"]),
                ("evaluations", engine.evaluations),
                ("opa_calls", server.calls),
            ):
                info[name] = info.get(name, 0) + value
            if diverged and options.details is not None:
                _write_details(conn, selected, selected_params, footprint, options, diverged, "replayed")
        finally:
            server.stop()
    report.seconds = time.perf_counter() - started
    return report


def _skip(report: ReplayReport, info: dict[str, Any], reason: str, n: int, options: Options) -> None:
    report.unreplayable[reason] += n
    info["unreplayable"] = reason
    if options.progress:
        options.progress(n)


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def _write_details(
    conn: sqlite3.Connection,
    where: str,
    params: list[Any],
    footprint: list[tuple[str, ...]] | None,
    options: Options,
    changed: dict[tuple[Any, ...], tuple[str, Any]],
    label: str,
) -> None:
    """Second pass: one line per decision in a changed group (only runs when there are any)."""
    assert options.details is not None
    keys = key_columns(footprint if options.dedupe else None, dialect_of(conn))
    sql = (
        f"SELECT seq, decision_id, {', '.join(keys)}, opa_result, access_level, care_service FROM {TABLE} "
        f"WHERE ({where}) AND {_replayable(conn)} ORDER BY seq"
    )
    for row in conn.execute(sql, params):
        hit = changed.get(tuple(row[2:]))
        if hit is None:
            continue
        reason, result = hit
        line = {
            "seq": row[0],
            "decision_id": row[1],
            "access_level": row[-2],
            "care_service": row[-1],
            "reason": reason,
            "stored": _stored(row[-3]),
            label: None if result is UNDEFINED or isinstance(result, EvalError) else result,
        }
        options.details.write(json.dumps(line, sort_keys=True) + "\n")


# -- impact -------------------------------------------------------------------------------


@dataclass
class ImpactReport:
    candidate: str
    candidate_revision: str | None
    selected: int = 0
    evaluated: int = 0
    unchanged: int = 0
    widened: int = 0  # only gains (access granted and/or sections gained)
    narrowed: int = 0  # only losses
    mixed: int = 0  # gains and losses at once
    other: int = 0  # same access, different reasons/labels
    unreplayable: Counter[str] = field(default_factory=Counter)
    #: (access_level, care_service, section, change) → decisions; section "*" = the whole record
    changes: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    input_paths: list[str] | None = None
    evaluations: int = 0
    opa_calls: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return self.widened + self.narrowed + self.mixed

    def change_rows(self) -> list[dict[str, Any]]:
        return [
            {"access_level": level, "care_service": service, "section": section, "change": change, "decisions": n}
            for (level, service, section, change), n in sorted(self.changes.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "candidate_revision": self.candidate_revision,
            "selected": self.selected,
            "evaluated": self.evaluated,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "widened": self.widened,
            "narrowed": self.narrowed,
            "mixed": self.mixed,
            "reasons_only": self.other,
            "unreplayable": sum(self.unreplayable.values()),
            "unreplayable_reasons": dict(self.unreplayable.most_common()),
            "changes": self.change_rows(),
            "input_paths": self.input_paths,
            "evaluations": self.evaluations,
            "opa_calls": self.opa_calls,
            "seconds": round(self.seconds, 3),
        }


def classify(stored: Any, candidate: Any) -> tuple[bool, bool, list[tuple[str, str]]]:
    """(widened, narrowed, [(section or "*", change)]) of one decision under the candidate."""
    old = stored if isinstance(stored, dict) else {}
    new = candidate if isinstance(candidate, dict) else {}
    old_allow, new_allow = old.get("allow") is True, new.get("allow") is True
    old_sections, new_sections = set(old.get("sections") or []), set(new.get("sections") or [])
    changes: list[tuple[str, str]] = []
    if old_allow != new_allow:
        changes.append(("*", "access granted" if new_allow else "access revoked"))
    changes += [(s, "section gained") for s in sorted(new_sections - old_sections)]
    changes += [(s, "section lost") for s in sorted(old_sections - new_sections)]
    widened = any(c in ("access granted", "section gained") for _, c in changes)
    narrowed = any(c in ("access revoked", "section lost") for _, c in changes)
    return widened, narrowed, changes


def prepare_candidate(candidate: Path, opa: str, workdir: Path) -> tuple[Path, str | None]:
    """A candidate policy folder is built like a release (bundles.build); a bundle is used as is."""
    if candidate.is_dir():
        from bundles.build import build

        try:
            revision = build(workdir / "candidate", policies=candidate, opa=opa, publish=False)
        except Exception as exc:  # opa build prints why (a Rego error); show that
            raise ReplayError(f"the candidate policy folder {candidate} does not build: {exc}") from None
        return workdir / "candidate" / "archive" / f"{revision}.tar.gz", revision
    if candidate.is_file():
        return candidate, bundle_revision_of(candidate)
    raise ReplayError(f"candidate {candidate} is neither a policy folder nor a bundle file")


def impact(conn: sqlite3.Connection, candidate: Path, filters: Filters, options: Options) -> ImpactReport:
    started = time.perf_counter()
    where, params = filters.where(dialect_of(conn))
    with tempfile.TemporaryDirectory(prefix="lcr-impact-") as tmp:
        bundle, revision = prepare_candidate(candidate, options.opa, Path(tmp))
        report = ImpactReport(str(candidate), revision)
        unreplayable, by_revision = _categorise(conn, where, params)
        report.unreplayable.update(unreplayable)
        report.selected = sum(unreplayable.values()) + sum(by_revision.values())
        if options.progress:
            options.progress(sum(unreplayable.values()))
        # Each decision is asked again of the candidate with the roster it was made with.
        rosters: Counter[str | None] = Counter()
        for (_, roster), n in by_revision.items():
            rosters[roster] += n
        changed: dict[tuple[Any, ...], tuple[str, Any]] = {}
        footprint: list[tuple[str, ...]] | None = None
        for roster, n in sorted(rosters.items(), key=lambda kv: str(kv[0])):
            roster_bundle = _roster_bundle(options.archive, roster) if options.archive is not None else None
            if roster is not None and (roster_bundle is None or "/" in roster or not roster_bundle.is_file()):
                report.unreplayable[f"roster revision {roster} is not in the archive ({options.archive})"] += n
                if options.progress:
                    options.progress(n)
                continue
            try:
                server = OpaServer(
                    bundle, options.opa, workdir=Path(tmp), extra_bundles=[roster_bundle] if roster_bundle else []
                )
                server.start()
            except OpaError as exc:
                raise ReplayError(f"the candidate does not load in OPA: {_first_line(exc)}") from None
            try:
                footprint = input_footprint(server.policies(), options.entrypoint) if options.dedupe else None
                report.input_paths = None if footprint is None else [".".join(p) for p in footprint]
                engine = Engine(server, options.entrypoint, options.jobs, options.chunk)

                def handle(group: Group, result: Any) -> None:
                    n = group.count
                    report.evaluated += n
                    stored = _stored(group.opa_result)
                    new = None if result is UNDEFINED or isinstance(result, EvalError) else result
                    widened, narrowed, changes = classify(stored, new)
                    level, service = group.access_level or "(none)", group.care_service or "(none)"
                    for section, change in changes:
                        report.changes[(level, service, section, change)] += n
                    if widened and narrowed:
                        report.mixed += n
                    elif widened:
                        report.widened += n
                    elif narrowed:
                        report.narrowed += n
                    elif new == stored:
                        report.unchanged += n
                    else:
                        report.other += n
                    if options.details is not None and new != stored:
                        changed[(*group.key, group.opa_result, group.access_level, group.care_service)] = (
                            describe(stored, result),
                            result,
                        )
                    if options.progress:
                        options.progress(n)

                selected = f"({where}) AND {_roster_where(conn, roster)}"
                engine.run(stream_groups(conn, selected, [*params, roster], footprint, options.dedupe), handle)
                report.evaluations += engine.evaluations
                report.opa_calls += server.calls
            finally:
                server.stop()
        if changed and options.details is not None:
            _write_details(conn, where, params, footprint, options, changed, "candidate")
    report.seconds = time.perf_counter() - started
    return report
