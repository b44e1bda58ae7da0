"""Access monitoring for privacy officers: the alert rules over a window of the decision log.

    report = run("var/audit.db", since=None, until=None, opa=opa_binary())   # the last 24 hours

The rules, their thresholds, severities and the care services' working hours are Rego and
data in the policy bundle (`policies/lcr/alerts`, package `lcr.alerts`); the residents'
family names come from the roster bundle (`data.roster`) when there is one. This module
only reads the log and hands it to a real OPA (`opa.OpaServer`, the same way replay does):

1. OPA says how far back the history goes (`data.lcr.alerts.history_since` for the window);
2. the window's rows are read as they are stored, a few columns each (`ROW_FIELDS`), and
   the history as request counts per staff member and care service, by action and UTC hour;
3. OPA evaluates `data.lcr.alerts.report` over that input and returns the alerts.

Nothing here decides what is suspicious. The resident's NHS number goes to OPA (the roster
is keyed by it) over a private unix socket, and never into an alert.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .opa import UNDEFINED, OpaError, OpaServer
from .queries import QueryError, connect, normalise_time
from .store import TABLE

DEFAULT_BUNDLE = Path("var/bundles/serve/lcr.tar.gz")
DEFAULT_ROSTER = Path("var/bundles/serve/roster.tar.gz")
DEFAULT_WINDOW = dt.timedelta(hours=24)
REPORT = "lcr/alerts/report"
HISTORY_SINCE = "lcr/alerts/history_since"
ROSTER_REVISION = "roster/revision"

#: what the rules see of each row in the window
ROW_FIELDS: tuple[str, ...] = (
    "seq",
    "time",
    "subject_id",
    "subject_name",
    "care_service",
    "action",
    "outcome",
    "error_code",
    "reasons",
    "nhs_number",
)


class AlertsError(RuntimeError):
    """The alerts could not be computed (no bundle, OPA failed, a bundle without the rules)."""


@dataclass
class AlertReport:
    since: str
    until: str
    history_since: str
    time_zone: str
    rows: int
    history_buckets: int
    policy_revision: str | None
    roster_revision: str | None
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": {"since": self.since, "until": self.until, "time_zone": self.time_zone},
            "history_since": self.history_since,
            "rows": self.rows,
            "history_buckets": self.history_buckets,
            "policy_revision": self.policy_revision,
            "roster_revision": self.roster_revision,
            "alerts": self.alerts,
        }


def window(since: str | None, until: str | None, now: dt.datetime | None = None) -> tuple[str, str]:
    """The window in the stored form: until defaults to now, since to DEFAULT_WINDOW before until.
    A date alone means the start of that day for since and the end of it for until (UTC)."""
    try:
        end = (
            normalise_time(until, end_of_day=True)
            if until
            else normalise_time(now or dt.datetime.now(dt.UTC), end_of_day=False)
        )
        if since:
            start = normalise_time(since, end_of_day=False)
        else:
            start = normalise_time(
                dt.datetime.fromisoformat(end.replace("Z", "+00:00")) - DEFAULT_WINDOW, end_of_day=False
            )
    except QueryError as exc:
        raise AlertsError(str(exc)) from None
    if start >= end:
        raise AlertsError(f"the window is empty: since {start} is not before until {end}")
    return start, end


def window_rows(conn: sqlite3.Connection, since: str, until: str) -> list[dict[str, Any]]:
    """The rows of [since, until), in seq order, with ROW_FIELDS only (reasons as JSON)."""
    sql = f"SELECT {', '.join(ROW_FIELDS)} FROM {TABLE} WHERE time >= ? AND time < ? ORDER BY seq"
    rows = []
    for values in conn.execute(sql, (since, until)):
        row = dict(zip(ROW_FIELDS, values, strict=False))
        try:
            row["reasons"] = json.loads(row["reasons"]) if row["reasons"] else []
        except ValueError:
            pass  # kept as stored; the rules read only lists
        rows.append(row)
    return rows


def history(conn: sqlite3.Connection, since: str, until: str) -> list[dict[str, Any]]:
    """Requests in [since, until) counted per action and UTC hour, one entry per staff member
    and care service: {"subject_id", "care_service", "counts": [{"hour", "action", "count"}]}."""
    sql = (
        f"SELECT subject_id, care_service, action, substr(time, 1, 13) || ':00:00Z' AS hour, count(*) "
        f"FROM {TABLE} WHERE time >= ? AND time < ? AND subject_id IS NOT NULL "
        f"GROUP BY subject_id, care_service, action, hour ORDER BY subject_id, care_service, hour, action"
    )
    staff: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for subject_id, care_service, action, hour, n in conn.execute(sql, (since, until)):
        staff.setdefault((subject_id, care_service), []).append({"hour": hour, "action": action, "count": n})
    return [{"subject_id": s, "care_service": c, "counts": counts} for (s, c), counts in staff.items()]


def run(
    db: str | os.PathLike[str],
    since: str | None,
    until: str | None,
    *,
    opa: str,
    bundle: Path = DEFAULT_BUNDLE,
    roster: Path | None = None,
    verification_key: Path | None = None,
    key_id: str | None = None,
    now: dt.datetime | None = None,
) -> AlertReport:
    """Evaluate the alert rules of `bundle` (with the `roster` bundle, if given) over the window."""
    start, end = window(since, until, now)
    if not Path(db).exists():
        raise AlertsError(f"no audit store at {db}")
    for path, what in ((bundle, "policy bundle"), (roster, "roster bundle")):
        if path is not None and not Path(path).is_file():
            raise AlertsError(f"no {what} at {path}")
    extra = (Path(roster),) if roster is not None else ()
    try:
        with OpaServer(
            Path(bundle), opa, verification_key=verification_key, key_id=key_id, extra_bundles=extra
        ) as server:
            revisions = server.revisions()
            scope = json.dumps({"window": {"since": start, "until": end}})
            [history_since] = server.evaluate([scope], HISTORY_SINCE)
            if not isinstance(history_since, str):
                raise AlertsError(
                    f"the policy bundle {bundle} has no alert rules (data.lcr.alerts): built before they existed?"
                )
            [roster_revision] = server.evaluate(["{}"], ROSTER_REVISION) if roster is not None else [UNDEFINED]
            with connect(db) as conn:
                rows = window_rows(conn, start, end)
                buckets = history(conn, normalise_time(history_since, end_of_day=False), start)
            body = json.dumps(
                {"window": {"since": start, "until": end}, "rows": rows, "history": buckets}, separators=(",", ":")
            )
            [report] = server.evaluate([body], REPORT)
    except (OpaError, sqlite3.Error, QueryError) as exc:
        raise AlertsError(str(exc)) from None
    if not isinstance(report, dict) or not isinstance(report.get("alerts"), list):
        raise AlertsError(f"the policy bundle {bundle} gave no alert report")
    return AlertReport(
        since=start,
        until=end,
        history_since=history_since,
        time_zone=str(report.get("time_zone")),
        rows=len(rows),
        history_buckets=sum(len(h["counts"]) for h in buckets),
        policy_revision=revisions.get(str(bundle)) or _only(revisions, exclude=extra),
        roster_revision=roster_revision if isinstance(roster_revision, str) else None,
        alerts=report["alerts"],
    )


def _only(revisions: dict[str, str], exclude: tuple[Path, ...]) -> str | None:
    others = [rev for name, rev in revisions.items() if name not in {str(p) for p in exclude}]
    return others[0] if len(others) == 1 else None
