"""Hypothesis strategies for what a care app (or an attacker) puts in a request body."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

# The demo residents (demo_upstream/residents/): identifiers that reach the whole pipeline.
DEMO_RESIDENTS = [
    ("9990000018", "1938-04-12"),
    ("9990000026", "1945-11-02"),
    ("9990000034", "1941-07-15"),
    ("9990000042", "1950-01-20"),
    ("9990000050", "1936-09-30"),
]
WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
MAX_AGE_YEARS = 130


def check_digit(nine: str) -> int | None:
    check = 11 - sum(int(d) * w for d, w in zip(nine, WEIGHTS, strict=False)) % 11
    check = 0 if check == 11 else check
    return None if check == 10 else check


@st.composite
def valid_digits(draw: st.DrawFn) -> str:
    """Any 10-digit NHS number with a correct Modulus 11 check digit."""
    nine = draw(st.text("0123456789", min_size=9, max_size=9).filter(lambda s: check_digit(s) is not None))
    return nine + str(check_digit(nine))


@st.composite
def typed(draw: st.DrawFn, digits: st.SearchStrategy[str]) -> str:
    """As people type it: 3-3-4 with nothing, spaces or hyphens between the groups (one kind)."""
    d = draw(digits)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return f"{d[:3]}{sep}{d[3:6]}{sep}{d[6:]}"


def nhs_numbers() -> st.SearchStrategy[str]:
    """Valid NHS numbers, half of them the demo residents' (so lookups find someone)."""
    return typed(st.one_of(st.sampled_from([n for n, _ in DEMO_RESIDENTS]), valid_digits()))


def moments() -> st.SearchStrategy[str]:
    """ISO 8601 date-times as the Audit Trail filters take them (a year the UTC form can hold)."""
    offsets = st.sampled_from(["Z", "+00:00", "+01:00", "-05:00", ""])
    return st.builds(
        lambda moment, offset: moment.isoformat(timespec="seconds") + offset,
        st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(9999, 12, 30)),
        offsets,
    )


def plausible_dobs() -> st.SearchStrategy[str]:
    """Dates of birth the sidecar accepts: not in the future, not more than 130 years ago."""
    today = dt.date.today()
    oldest = dt.date(today.year - MAX_AGE_YEARS, 1, 1)
    return st.one_of(
        st.sampled_from([d for _, d in DEMO_RESIDENTS]),
        st.dates(min_value=oldest, max_value=today).map(dt.date.isoformat),
    )


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def hostile_strings() -> st.SearchStrategy[str]:
    """Strings that look like identifiers but are not quite, and plain junk."""
    near_digits = st.text(alphabet="0123456789 -\t\n\u00a0\u0660\u0661\uff10\uff11", min_size=0, max_size=16)
    near_dates = st.builds(
        lambda y, m, d, sep, tail: f"{y}{sep}{m}{sep}{d}{tail}",
        st.integers(-1, 99999).map(str),
        st.integers(-1, 14).map(lambda n: f"{n:02d}"),
        st.integers(-1, 40).map(lambda n: f"{n:02d}"),
        st.sampled_from(["-", "/", "", "--"]),
        st.sampled_from(["", "\n", " ", "T00:00:00Z", "Z", "\x00"]),
    )
    return st.one_of(st.text(max_size=40), near_digits, near_dates, typed(valid_digits()), plausible_dobs())


def identifier_values() -> st.SearchStrategy[Any]:
    """What may sit under "nhs_number" or "dob": a hostile string, or any JSON value."""
    return st.one_of(hostile_strings(), JSON)
