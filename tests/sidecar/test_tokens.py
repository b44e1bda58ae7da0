"""Bearer-token verification: every refusal is a 401 OperationOutcome with its audit row."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..seed_table import FULL


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _other_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


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
    signature = base64.urlsafe_b64encode(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
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
        "/v1/record", json=FULL,
        headers={"Authorization": f"Bearer {token('admin', extra={'favourite_colour': 'blue'})}"},
    )
    assert response.status_code == 200
    subject = json.loads(audit_rows()[-1]["opa_input"])["subject"]
    assert subject["sub"] == "staff-0002" and subject["lcr_access_level"] == "admin"
    assert "favourite_colour" not in subject


def test_missing_access_level_is_a_policy_deny_not_a_token_error(client, token, audit_rows):
    response = client.post("/v1/record", json=FULL, headers={"Authorization": f"Bearer {token(None)}"})
    assert response.status_code == 403
    assert "access_level_missing" in json.loads(audit_rows()[-1]["reasons"])


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
