"""Numbers leave exactly as they came: `fastjson.loads_fhir` keeps each number's text, `dumps` writes it.

FHIR decimals keep their precision in their text (`37.50` is not `37.5`), `1e400` is a legal
decimal, and integers may be wider than 64 bits: each must come back byte for byte, from the
parser alone and through the served sidecar.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo_upstream import create_app as create_demo_upstream
from sidecar import fastjson
from sidecar.fastjson import JsonNumber

from .test_upstream import Stub

# The examples, then the edges of what orjson reads or writes differently.
LEXEMES = [
    "37.50",
    "1.2E+2",
    "0.12345678901234567",
    "98.600",
    "1e400",
    "98765432109876543210",
    "-1e400",
    "1E-400",
    "-0",
    "-0.0",
    "0.0",
    "1e16",
    "1E16",
    "1.0e5",
    "120.0",
    "100000000000000000000.0",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "1" * 400,
    "5",
    "0",
    "-7",
    "61.4",
    "18446744073709551615",
    "-9223372036854775808",
    "1e-7",
    "2.5e-05",
]
JSON_NUMBER = st.from_regex(r"\A-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,4})?\Z")


def documents(lexeme: str) -> list[bytes]:
    """The number in the places and spacings an upstream may write it."""
    return [
        f'{{"value":{lexeme}}}'.encode(),
        f'{{"a":[{lexeme},{lexeme}],"b":{{"c":{lexeme}}}}}'.encode(),
        f'{{"value": {lexeme}}}'.encode(),
        f'{{\n  "value" : {lexeme} ,\n  "x": [ {lexeme} ]\n}}'.encode(),
        f"[{lexeme}]".encode(),
    ]


def lexemes_in(raw: bytes) -> list[str]:
    return re.findall(r"-?[0-9][0-9.eE+\-]*", raw.decode())


@pytest.mark.parametrize("lexeme", LEXEMES)
def test_every_number_comes_back_as_written(lexeme):
    for doc in documents(lexeme):
        out = fastjson.dumps(fastjson.loads_fhir(doc))
        assert lexemes_in(out) == lexemes_in(doc), doc


@given(JSON_NUMBER, st.booleans())
def test_any_json_number_comes_back_as_written(lexeme, spaced):
    doc = (f'{{"value": {lexeme}, "x": [{lexeme}]}}' if spaced else f'{{"value":{lexeme},"x":[{lexeme}]}}').encode()
    assert lexemes_in(fastjson.dumps(fastjson.loads_fhir(doc))) == [lexeme, lexeme]


@pytest.mark.parametrize("lexeme", LEXEMES)
def test_the_value_is_the_number(lexeme):
    [value] = fastjson.loads_fhir(f"[{lexeme}]".encode())
    if isinstance(value, JsonNumber):
        assert value.text == lexeme
        assert value == float(lexeme)
    else:
        assert type(value) in (int, float) and value == json.loads(lexeme)


def test_orjsons_own_values_when_every_number_is_already_in_its_form():
    doc = b'{"resourceType":"Observation","valueQuantity":{"value":61.4},"n":5,"x":[1e-7,120.0]}'
    assert fastjson.loads_fhir(doc) == orjson.loads(doc)
    assert not any(isinstance(v, JsonNumber) for v in (fastjson.loads_fhir(doc)["x"]))


def test_plain_integers_stay_integers_and_decimals_stay_numbers():
    value = fastjson.loads_fhir(b'{"a": 5, "b": 37.50, "c": 98765432109876543210, "d": true, "e": null}')
    assert value["a"] == 5 and type(value["a"]) is int
    assert isinstance(value["b"], float) and value["b"] == 37.5 and value["b"] > 37
    assert isinstance(value["c"], JsonNumber) and value["c"].text == "98765432109876543210"
    assert value["d"] is True and value["e"] is None
    assert math.isinf(fastjson.loads_fhir(b"[1e400]")[0])


def test_a_json_number_survives_copy_deepcopy_and_pickle():
    number = JsonNumber("37.50")
    record = {"valueQuantity": {"value": number}}
    for copied in (
        copy.copy(number),
        copy.deepcopy(record)["valueQuantity"]["value"],
        pickle.loads(pickle.dumps(number)),
    ):
        assert isinstance(copied, JsonNumber) and copied.text == "37.50"
    assert repr(number) == "JsonNumber('37.50')"
    assert fastjson.dumps(copy.deepcopy(record)) == b'{"valueQuantity":{"value":37.50}}'


@pytest.mark.parametrize(
    "doc",
    [
        b"[NaN]",
        b"[Infinity]",
        b"[-Infinity]",
        b'{"a": NaN}',
        b"[1e400, NaN]",
        b'["\\ud800"]',
        b'[1e400, "\\udc00"]',
        b'{"a": "\\ud800"}',  # lone surrogates
        b"\xff",
        b'["\xed\xa0\x80"]',
        b"\xef\xbb\xbf[1]",  # not UTF-8, an encoded surrogate, a BOM
        b"[1] x",
        b"[1e400] x",
        b"",
        b"[01]",
        b"[1.]",
        b"[.5]",
        b"[+1]",
        b"[" * 2000 + b"]" * 2000,
        b"[1e400," + b"[" * 1100 + b"]" * 1100 + b"]",
    ],
)
def test_what_is_not_strict_json_is_refused(doc):
    for raw in (doc, doc.replace(b",", b", ")):
        with pytest.raises(ValueError):
            fastjson.loads_fhir(raw)


def test_strings_that_look_like_numbers_are_left_alone():
    doc = b'{"text":"37.50, 1e400 and -0","t":"2025-06-10T09:10:00.000+01:00","v":37.50}'
    assert fastjson.dumps(fastjson.loads_fhir(doc)) == doc


# -- writing ---------------------------------------------------------------------------------


def test_wide_integers_from_token_claims_still_write():
    claims = {"sub": "x", "n": 2**70, "m": -(2**70), "f": 1e-7, "s": 'é\n"', "l": [1, None, True, False]}
    assert json.loads(fastjson.dumps(claims)) == claims
    assert (
        fastjson.dumps(claims) == b'{"sub":"x","n":1180591620717411303424,"m":-1180591620717411303424,'
        b'"f":1e-7,"s":"\xc3\xa9\\n\\"","l":[1,null,true,false]}'
    )


def test_wide_integers_and_kept_numbers_write_together():
    value = {"claims": {"n": 2**70}, "record": fastjson.loads_fhir(b'{"v": 37.50, "w": 1e400}')}
    assert fastjson.dumps(value) == b'{"claims":{"n":1180591620717411303424},"record":{"v":37.50,"w":1e400}}'


def test_the_fallback_writes_what_the_standard_library_would_for_odd_keys():
    assert json.loads(fastjson.dumps({1: 2**70, None: 1, False: 2, 2.5: 3})) == {
        "1": 2**70,
        "null": 1,
        "false": 2,
        "2.5": 3,
    }


def test_nothing_else_is_serialisable():
    with pytest.raises(TypeError):
        fastjson.dumps({"x": object()})
    with pytest.raises(TypeError):
        fastjson.dumps({"x": object(), "n": 2**70})


# -- through the served sidecar --------------------------------------------------------------

WRITTEN = {
    "@value@": "37.50",
    "@low@": "98.600",
    "@high@": "1.2E+2",
    "@precise@": "0.12345678901234567",
    "@huge@": "1e400",
    "@wide@": "98765432109876543210",
}


def margaret_with_numbers() -> list[dict[str, Any]]:
    """Margaret's record as the demo upstream serves it, her pulse written with awkward numbers."""
    served = (
        create_demo_upstream({"TESTING": True}).test_client().get("/fhir/Patient/mthompson/$everything?_count=1000")
    )
    resources = [e["resource"] for e in served.get_json()["entry"]]
    pulse = next(r for r in resources if r["id"] == "mt-obs-pulse")
    pulse["valueQuantity"]["value"] = "@value@"
    pulse["referenceRange"] = [
        {"low": {"value": "@low@"}, "high": {"value": "@high@"}},
        {"low": {"value": "@precise@"}, "high": {"value": "@huge@"}},
        {"low": {"value": "@wide@"}},
    ]
    return resources


def raw_numbers(body: dict[str, Any], spaced: bool) -> bytes:
    text = json.dumps(body, separators=None if spaced else (",", ":"))
    for placeholder, lexeme in WRITTEN.items():
        text = text.replace(f'"{placeholder}"', lexeme)
    return text.encode()


@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
def test_the_sidecar_returns_every_number_as_the_upstream_wrote_it(make_app, token, spaced):
    stub = Stub()
    try:
        resources = margaret_with_numbers()
        patient = resources[0]
        assert patient["id"] == "mthompson"
        stub.add(
            "/fhir/Patient",
            raw_numbers(
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "link": [],
                    "entry": [{"fullUrl": f"{stub.base}/Patient/mthompson", "resource": patient}],
                },
                spaced,
            ),
        )
        # $everything in pages of 20, as HAPI serves it
        pages = [resources[i : i + 20] for i in range(0, len(resources), 20)]
        for n, page in enumerate(pages):
            bundle: dict[str, Any] = {
                "resourceType": "Bundle",
                "type": "searchset",
                "link": [],
                "entry": [{"fullUrl": f"{stub.base}/{r['resourceType']}/{r['id']}", "resource": r} for r in page],
            }
            if n + 1 < len(pages):
                bundle["link"].append(
                    {"relation": "next", "url": f"{stub.base}?_getpages=p&_getpagesoffset={20 * (n + 1)}&_count=20"}
                )
            target = (
                "/fhir/Patient/mthompson/$everything"
                if n == 0
                else f"/fhir?_getpages=p&_getpagesoffset={20 * n}&_count=20"
            )
            stub.add(target, raw_numbers(bundle, spaced))
        app = make_app(UPSTREAM_URL=stub.base)
        response = app.test_client().post(
            "/v1/record",
            json={"nhs_number": "9990000018", "dob": "1938-04-12"},
            headers={"Authorization": f"Bearer {token('registered_manager')}"},
        )
    finally:
        stub.close()
    assert response.status_code == 200, response.get_data()[:500]
    assert len(stub.hits) == 1 + len(pages) >= 3
    body = response.get_data()
    [pulse] = re.findall(
        rb'\{"resourceType":"Observation","id":"mt-obs-pulse".*?"referenceRange":\[.*?\]\]?\}', body
    ) or [b""]
    assert pulse, "the pulse observation was not returned"
    for lexeme in WRITTEN.values():
        assert re.search(rb'"value":' + re.escape(lexeme.encode()) + rb"[,}]", pulse), lexeme
