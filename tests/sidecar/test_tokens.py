"""Bearer-token verification: every refusal is a 401 OperationOutcome with its audit row."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sidecar.tokens import MAX_CLAIM_CHARS

from ..seed_table import FULL


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _other_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _alg_none(token: Callable[..., str]) -> str:
    claims = jwt.decode(token("registered_manager"), options={"verify_signature": False})
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'care-app-test-1'})}.{_b64(claims)}."


def _hs256_with_public_key(token: Callable[..., str], jwks: dict[str, Any]) -> str:
    # Key confusion: sign with HMAC using the public key's text as the secret.
    claims = jwt.decode(token("registered_manager"), options={"verify_signature": False})
    header = {"alg": "HS256", "typ": "JWT", "kid": "care-app-test-1"}
    import hashlib
    import hmac

    signing_input = f"{_b64(header)}.{_b64(claims)}"
    secret = json.dumps(jwks).encode()
    signature = (
        base64.urlsafe_b64encode(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )
    return f"{signing_input}.{signature}"


def _raised_level(token: Callable[..., str]) -> str:
    header, payload, signature = token("admin").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["lcr_access_level"] = "registered_manager"
    return f"{header}.{_b64(claims)}.{signature}"


CASES: dict[str, tuple[Callable[..., str], str]] = {
    "missing": (lambda t, j: "", "token-missing"),
    "not-a-jwt": (lambda t, j: "hello", "token-invalid"),
    "forged-other-key": (lambda t, j: t("registered_manager", private_key=_other_key()), "token-invalid"),
    "expired": (lambda t, j: t("registered_manager", now=time.time() - 3600), "token-expired"),
    "not-yet-valid": (lambda t, j: t("registered_manager", extra={"nbf": int(time.time()) + 3600}), "token-invalid"),
    "alg-none": (lambda t, j: _alg_none(t), "token-invalid"),
    "hs256-key-confusion": (lambda t, j: _hs256_with_public_key(t, j), "token-invalid"),
    "wrong-audience": (lambda t, j: t("registered_manager", audience="someone-else"), "token-invalid"),
    "wrong-issuer": (lambda t, j: t("registered_manager", issuer="https://evil.example"), "token-invalid"),
    "too-long-lived": (lambda t, j: t("registered_manager", lifetime=3600), "token-invalid"),
    "unknown-kid": (lambda t, j: t("registered_manager", kid="who-knows"), "token-invalid"),
    "tampered-level": (lambda t, j: _raised_level(t), "token-invalid"),
    "oversized": (lambda t, j: t("registered_manager", extra={"pad": "x" * 10000}), "token-invalid"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_tokens_get_401_and_an_audit_row(client, token, jwks_file, audit_rows, case):
    make, code = CASES[case]
    bearer = make(token, json.loads(jwks_file.read_text()))
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    response = client.post("/v1/record", json=FULL, headers=headers)
    assert response.status_code == 401, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["details"]["coding"][0]["code"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    row = audit_rows()[-1]
    assert (row["outcome"], row["http_status"], row["error_code"]) == ("unauthenticated", 401, code)
    assert row["subject_id"] is None and row["opa_input"] is None
    if bearer:
        assert bearer not in json.dumps(row)  # the raw token is never stored


def test_valid_token_claims_become_subject_without_extras(client, token, audit_rows):
    response = client.post(
        "/v1/record",
        json=FULL,
        headers={"Authorization": f"Bearer {token('admin', extra={'favourite_colour': 'blue'})}"},
    )
    assert response.status_code == 200
    subject = json.loads(audit_rows()[-1]["opa_input"])["subject"]
    assert subject["sub"] == "staff-0002" and subject["lcr_access_level"] == "admin"
    assert "favourite_colour" not in subject


def test_missing_access_level_is_a_token_error(client, token, audit_rows):
    # The policy would also deny (access_level_missing); the token is refused first.
    response = client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token(None)}"})
    assert response.status_code == 401
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == "token-invalid"
    assert audit_rows()[-1]["error_code"] == "token-invalid"


# -- the claims the decision and the audit row rest on --------------------------------------

_MISSING = object()
_BAD_VALUES = {
    "missing": _MISSING,
    "empty": "",
    "whitespace": " \t ",
    "not-a-string": 12345,
    "null": None,
    "a-list": ["staff-0002"],
    "an-object": {"value": "staff-0002"},
    "too-long": "x" * (MAX_CLAIM_CHARS + 1),
}
_CLAIMS = ("sub", "name", "requesting_organization", "reason_for_request", "lcr_access_level", "iss", "aud")


def _with_claim(token: Callable[..., str], private_pem: bytes, claim: str, value: Any) -> str:
    claims = jwt.decode(token("admin"), options={"verify_signature": False})
    if value is _MISSING:
        del claims[claim]
    else:
        claims[claim] = value
    # Signed as JSON text (PyJWT's own encode refuses some of these values before signing).
    return jwt.api_jws.encode(
        json.dumps(claims).encode(), private_pem, algorithm="RS256", headers={"kid": "care-app-test-1"}
    )


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        pytest.param(c, v, id=f"{c}-{k}")
        for c in _CLAIMS
        for k, v in _BAD_VALUES.items()
        if not (c == "aud" and k == "a-list")
    ]
    + [
        pytest.param("aud", [], id="aud-empty-list"),
        pytest.param("aud", ["lcr-sidecar", ""], id="aud-list-with-an-empty-string"),
        pytest.param("aud", ["lcr-sidecar", 7], id="aud-list-with-a-number"),
        pytest.param("jti", "", id="jti-empty"),
        pytest.param("jti", 7, id="jti-not-a-string"),
        pytest.param("lcr_audit_role", "", id="lcr_audit_role-empty"),
        pytest.param("lcr_audit_role", ["auditor"], id="lcr_audit_role-a-list"),
        pytest.param("lcr_audit_role", "a" * (MAX_CLAIM_CHARS + 1), id="lcr_audit_role-too-long"),
        pytest.param("requesting_practitioner", {"id": float("nan")}, id="requesting_practitioner-nan"),
        pytest.param("requesting_practitioner", [float("inf")], id="requesting_practitioner-infinity"),
        pytest.param(
            "requesting_practitioner", [[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]], id="requesting_practitioner-too-deep"
        ),
    ],
)
def test_a_claim_the_decision_or_row_rests_on_must_be_a_bounded_nonempty_string(
    client, token, private_pem, audit_rows, claim, value
):
    bearer = _with_claim(token, private_pem, claim, value)
    response = client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {bearer}"})
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == "token-invalid"
    row = audit_rows()[-1]
    assert (row["outcome"], row["http_status"], row["error_code"]) == ("unauthenticated", 401, "token-invalid")
    assert row["subject_id"] is None and row["opa_input"] is None


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        pytest.param("name", "n" * MAX_CLAIM_CHARS, id="name-at-the-bound"),
        pytest.param("sub", "s" * MAX_CLAIM_CHARS, id="sub-at-the-bound"),
        pytest.param("aud", ["someone-else", "lcr-sidecar"], id="aud-a-list-with-ours"),
        pytest.param(
            "requesting_practitioner",
            {"resourceType": "Practitioner", "identifier": [{"value": "G123"}]},
            id="practitioner-object",
        ),
    ],
)
def test_valid_claim_shapes_still_pass(client, token, private_pem, audit_rows, claim, value):
    bearer = _with_claim(token, private_pem, claim, value)
    response = client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {bearer}"})
    assert response.status_code == 200, response.get_json()
    subject = json.loads(audit_rows()[-1]["opa_input"])["subject"]
    assert subject[claim] == value


def test_a_name_with_a_lone_surrogate_is_audited_escaped(client, token, private_pem, audit_rows):
    """A JavaScript client that cuts a name in the middle of an emoji: a valid token, decided
    on and audited with the surrogate as its escape (it was a 503 and no row, and failed the
    other rows of its group commit)."""
    bearer = _with_claim(token, private_pem, "name", "x\ud800")
    response = client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {bearer}"})
    assert response.status_code == 200, response.get_json()
    row = audit_rows()[-1]
    assert row["decision_id"] == response.headers["X-Decision-Id"]
    assert row["subject_name"] == "x\\ud800"
    assert json.loads(row["opa_input"])["subject"]["name"] == "x\\ud800"


def test_lone_surrogates_anywhere_in_the_claims_are_escaped(token, private_pem, app):
    bearer = _with_claim(token, private_pem, "requesting_practitioner", {"name\udfff": ["\ud83d", "ok 😀"]})
    claims = app.extensions["lcr"].tokens.verify(f"Bearer {bearer}")
    assert claims["requesting_practitioner"] == {"name\\udfff": ["\\ud83d", "ok 😀"]}
    json.dumps(claims, ensure_ascii=False).encode("utf-8")  # every string is text now


def test_a_token_used_again_is_still_checked_for_expiry(client, token, audit_rows, monkeypatch):
    bearer = token("admin", lifetime=60)
    headers = {"Authorization": f"Bearer {bearer}"}
    assert client.post("/v1/record", json=FULL, headers=headers).status_code == 200
    assert client.post("/v1/record", json=FULL, headers=headers).status_code == 200  # from the verified cache
    later = time.time() + 60 + 31  # past exp and the 30 s leeway
    monkeypatch.setattr(time, "time", lambda: later)
    response = client.post("/v1/record", json=FULL, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == "token-expired"
    assert [r["outcome"] for r in audit_rows()][-3:] == ["allowed", "allowed", "unauthenticated"]


def test_a_verified_token_changed_by_one_character_is_verified_afresh(client, token):
    bearer = token("admin")
    assert client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
    header, payload, signature = bearer.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    assert client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
