"""Patient identifiers from the request body: NHS number (Modulus 11) and date of birth.

Both are required and both are checked before anything is asked or fetched; an invalid
one is a 400, never a lookup.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from . import errors

#: the identifier system of an NHS number (FHIR UK Core: https://fhir.nhs.uk/Id/nhs-number)
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"

# Ten ASCII digits, or 3-3-4 separated by spaces or by hyphens — one kind, in both places —
# as people type them; nothing else (no tabs, no other digits: `str.isdigit` and `\d` would
# take Arabic-Indic or full-width ones). Spaces around the value are trimmed, nothing more.
_NHS_NUMBER = re.compile(r"([0-9]{3})( ?)([0-9]{3})\2([0-9]{4})|([0-9]{3})-([0-9]{3})-([0-9]{4})", re.ASCII)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


@dataclass(frozen=True)
class PatientIdentifiers:
    nhs_number: str  # 10 digits, no separators
    dob: str  # YYYY-MM-DD

    def as_input(self) -> dict[str, str]:
        return {"nhs_number": self.nhs_number, "dob": self.dob}


def nhs_number_check_digit_ok(digits: str) -> bool:
    """Modulus 11 per the NHS Data Dictionary: check 11 → 0, check 10 → never issued."""
    total = sum(int(d) * w for d, w in zip(digits[:9], _WEIGHTS, strict=False))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def parse_nhs_number(value: object) -> str:
    if value is None or (isinstance(value, str) and not _trim(value)):
        raise errors.NhsNumberMissing()
    if not isinstance(value, str):
        raise errors.NhsNumberInvalid()
    match = _NHS_NUMBER.fullmatch(_trim(value))
    if not match:
        raise errors.NhsNumberInvalid()
    digits = "".join(g for n, g in enumerate(match.groups()) if g and n != 1)
    if not nhs_number_check_digit_ok(digits):
        raise errors.NhsNumberInvalid()
    return digits


def parse_dob(value: object, today: dt.date, max_age_years: int) -> str:
    if value is None or (isinstance(value, str) and not _trim(value)):
        raise errors.DobMissing()
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(_trim(value)):
        raise errors.DobInvalid()
    try:
        dob = dt.date.fromisoformat(_trim(value))
    except ValueError:
        raise errors.DobInvalid() from None
    if dob > today:
        raise errors.DobInFuture()
    if today.year - dob.year > max_age_years:
        raise errors.DobTooOld()
    return dob.isoformat()


def _trim(value: str) -> str:
    # Spaces only: `str.strip()` would also take tabs, line breaks and Unicode spaces.
    return value.strip(" ")


def format_nhs_number(digits: str) -> str:
    """Display form, 943 476 5919."""
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}"
