"""NHS number (Modulus 11) and date-of-birth parsing, with DOMAIN.md's known examples."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar import errors
from sidecar.identifiers import format_nhs_number, nhs_number_check_digit_ok, parse_dob, parse_nhs_number

TODAY = dt.date(2026, 11, 25)


@pytest.mark.parametrize(
    "value",
    [
        "9990000018",
        "9990000026",
        "9990000034",
        "9990000042",
        "9990000050",
        "9434765919",
        "9876543210",
        "4010232137",
        "943 476 5919",
        "943-476-5919",
        "  9434765919  ",
    ],
)
def test_valid_nhs_numbers(value):
    assert parse_nhs_number(value) == value.strip().replace(" ", "").replace("-", "")


@pytest.mark.parametrize(
    "value",
    [
        "1234567890",
        "9991234560",
        "9876544321",
        "0000000001",
        "943476591",
        "94347659190",
        "9434 765919",
        "943.476.5919",
        "abcdefghij",
        "９４３４７６５９１９",
        9434765919,
        ["9434765919"],
        # separators: one kind, in both 3-3-4 places, one at a time
        "999 000-0018",
        "999-000 0018",
        "943 4765919",
        "943476-5919",
        "943  476  5919",
        "943--476--5919",
        # whitespace other than spaces around it, or between the groups
        "\t9434765919",
        "9434765919\n",
        "943\t476\t5919",
        "943\u00a0476\u00a05919",
        "\u20039434765919",
        "9434765919\u3000",
        # digits other than ASCII ones (str.isdigit and \\d accept them)
        "\u0669\u0664\u0663\u0664\u0667\u0666\u0665\u0669\u0661\u0669",
        "\u096f\u096a\u0969\u096a\u096d\u096c\u096b\u096f\u0967\u096f",
        "943476591\u0669",
        "\U0001d7eb434765919",
    ],
)
def test_invalid_nhs_numbers(value):
    with pytest.raises(errors.NhsNumberInvalid):
        parse_nhs_number(value)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_nhs_number(value):
    with pytest.raises(errors.NhsNumberMissing):
        parse_nhs_number(value)


@given(st.text(max_size=40))
def test_nhs_number_parser_never_crashes_and_only_accepts_checked_digits(text):
    try:
        digits = parse_nhs_number(text)
    except errors.InvalidRequest:
        return
    assert len(digits) == 10 and digits.isascii() and digits.isdigit() and nhs_number_check_digit_ok(digits)
    typed = text.strip(" ")
    assert typed in (digits, f"{digits[:3]} {digits[3:6]} {digits[6:]}", f"{digits[:3]}-{digits[3:6]}-{digits[6:]}")


@given(
    st.sampled_from(["9434765919", "943 476 5919", "943-476-5919"]),
    st.integers(0, 11),
    st.sampled_from(" -\t\n\u00a0\u2003٩９"),
)
def test_any_other_character_anywhere_is_refused(valid, at, extra):
    candidate = valid[:at] + extra + valid[at:]
    if candidate.strip(" ") in ("9434765919", "943 476 5919", "943-476-5919"):
        return  # a space added around the number
    with pytest.raises(errors.NhsNumberInvalid):
        parse_nhs_number(candidate)


@given(st.integers(min_value=0, max_value=999_999_999))
def test_exactly_one_check_digit_or_none_completes_nine_digits(stem):
    nine = f"{stem:09d}"
    valid = [d for d in "0123456789" if nhs_number_check_digit_ok(nine + d)]
    assert len(valid) <= 1


def test_display_form():
    assert format_nhs_number("9434765919") == "943 476 5919"


@pytest.mark.parametrize(
    "value, error",
    [
        ("1938-02-30", errors.DobInvalid),
        ("1938-4-12", errors.DobInvalid),
        ("12/04/1938", errors.DobInvalid),
        ("1938-04", errors.DobInvalid),
        (19380412, errors.DobInvalid),
        ("2026-11-26", errors.DobInFuture),
        ("1890-01-01", errors.DobTooOld),
        (None, errors.DobMissing),
        ("", errors.DobMissing),
        ("   ", errors.DobMissing),
        ("\t1938-04-12", errors.DobInvalid),
        ("1938-04-12\n", errors.DobInvalid),
        ("1938-04-12\u3000", errors.DobInvalid),
        ("\u0661\u0669\u0663\u0668-04-12", errors.DobInvalid),
        ("１９３８-０４-１２", errors.DobInvalid),
        ("1938-04-1\u0662", errors.DobInvalid),
        ("19380412", errors.DobInvalid),
        ("1938-W15-2", errors.DobInvalid),
        ("1938-04-12T00:00", errors.DobInvalid),
        ("+1938-04-12", errors.DobInvalid),
    ],
)
def test_invalid_dates_of_birth(value, error):
    with pytest.raises(error):
        parse_dob(value, TODAY, 130)


def test_valid_dates_of_birth():
    assert parse_dob("1938-04-12", TODAY, 130) == "1938-04-12"
    assert parse_dob("2026-11-25", TODAY, 130) == "2026-11-25"  # born today is possible
    assert parse_dob(" 1938-04-12  ", TODAY, 130) == "1938-04-12"  # spaces around it, as typed


@given(st.text(max_size=20))
def test_dob_parser_never_crashes_and_only_accepts_ascii_dates(text):
    try:
        dob = parse_dob(text, TODAY, 130)
    except errors.InvalidRequest:
        return
    assert text.strip(" ") == dob and dob.isascii()
