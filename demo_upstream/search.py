"""`GET Patient?…` search with FHIR token and date semantics.

Parameters: `identifier` (token `system|value`, `|value`, `system|` or `value`), `birthdate`
(date, prefixes eq ne gt lt ge le) and `_id`. A comma inside one value means OR; repeating a
parameter means AND; an empty value is ignored (FHIR search rules). Anything else is a 400,
as HAPI FHIR answers.

Dates are compared as ranges (FHIR R4 search, "date"): `1941-07` is the whole of July 1941.
With `eq` a stored birthDate matches only when its range lies inside the searched range, so
a stored partial date "1941-07" does not match a search for 1941-07-15, while a stored
1941-07-15 does match a search for 1941-07.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable, Iterable

from .errors import InvalidRequest
from .store import Store

SEARCH_PARAMETERS = ("_id", "birthdate", "identifier")

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_PREFIXED_DATE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(.*)$")

# Half-open [start, end) ranges of days, as ordinals.
Range = tuple[int, int]

# How a stored range r compares with the searched range p, per prefix (FHIR R4 §3.1.1.4.3).
_COMPARE: dict[str, Callable[[Range, Range], bool]] = {
    "eq": lambda r, p: p[0] <= r[0] and r[1] <= p[1],
    "ne": lambda r, p: not (p[0] <= r[0] and r[1] <= p[1]),
    "gt": lambda r, p: r[1] > p[1],
    "lt": lambda r, p: r[0] < p[0],
    "ge": lambda r, p: r[1] > p[1] or (p[0] <= r[0] and r[1] <= p[1]),
    "le": lambda r, p: r[0] < p[0] or (p[0] <= r[0] and r[1] <= p[1]),
}


def search_patients(store: Store, args: Iterable[tuple[str, str]]) -> list[str]:
    """Ids of the Patients matching every parameter, in load order."""
    tokens: list[tuple[str, list[str]]] = []
    dates: list[list[tuple[str, Range]]] = []
    for name, raw in args:
        _check_name(name)
        alternatives = [v for v in raw.split(",") if v]
        if not alternatives:
            continue  # FHIR: an empty parameter value is ignored
        if name == "birthdate":
            dates.append([_parse_search_date(v) for v in alternatives])
        else:
            tokens.append((name, alternatives))

    # Token parameters are dictionary lookups; the date filter then runs on what is left.
    candidates: list[str] | None = None
    for name, alternatives in tokens:
        matched: set[str] = set()
        for value in alternatives:
            matched.update(_id_lookup(store, value) if name == "_id" else _identifier_lookup(store, value))
        candidates = [pid for pid in (store.patient_ids if candidates is None else candidates) if pid in matched]
    result = store.patient_ids if candidates is None else candidates
    for wanted in dates:
        result = [pid for pid in result if _birthdate_matches(store, pid, wanted)]
    return list(result)


def _check_name(name: str) -> None:
    base, _, modifier = name.partition(":")
    if base not in SEARCH_PARAMETERS:
        raise InvalidRequest(
            f'Unknown search parameter "{name}" for resource type "Patient". '
            f"Valid search parameters for this search are: [{', '.join(SEARCH_PARAMETERS)}]"
        )
    if modifier:
        raise InvalidRequest(
            f'Search modifier ":{modifier}" on "{base}" is not supported by this server; search without it'
        )


def _id_lookup(store: Store, value: str) -> list[str]:
    return [value] if store.patient(value) is not None else []


def _identifier_lookup(store: Store, token: str) -> list[str]:
    if "|" not in token:
        return store.by_identifier_value.get(token, [])
    system, value = token.split("|", 1)
    if value:
        return store.by_identifier.get((system, value), [])
    # "system|": any identifier in that system (a scan: not a lookup the sidecar makes)
    return [pid for (sys_, _), ids in store.by_identifier.items() if sys_ == system for pid in ids]


def _parse_search_date(raw: str) -> tuple[str, Range]:
    match = _PREFIXED_DATE.match(raw)
    assert match is not None  # the pattern matches any string
    prefix, text = match.group(1) or "eq", match.group(2)
    if prefix not in _COMPARE:
        raise InvalidRequest(
            f'Date prefix "{prefix}" is not supported by this server; use one of {", ".join(_COMPARE)}'
        )
    date_range = date_range_of(text)
    if date_range is None:
        raise InvalidRequest(
            f'Invalid date/time format: "{raw}" (expected YYYY, YYYY-MM or YYYY-MM-DD with an optional prefix)'
        )
    return prefix, date_range


def _birthdate_matches(store: Store, patient_id: str, alternatives: list[tuple[str, Range]]) -> bool:
    patient = store.patient(patient_id) or {}
    stored = date_range_of(patient.get("birthDate"))
    if stored is None:
        return False  # no (or an unreadable) birthDate never matches a date search
    return any(_COMPARE[prefix](stored, wanted) for prefix, wanted in alternatives)


def date_range_of(value: object) -> Range | None:
    """The days a FHIR date covers, as a half-open ordinal range; None if it is not a date."""
    match = _DATE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day = int(match.group(1)), match.group(2), match.group(3)
    try:
        if day is not None:
            first = last = dt.date(year, int(month), int(day))
        elif month is not None:
            first = dt.date(year, int(month), 1)
            last = first.replace(day=calendar.monthrange(year, int(month))[1])
        else:
            first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
    except ValueError:
        return None
    return first.toordinal(), last.toordinal() + 1
