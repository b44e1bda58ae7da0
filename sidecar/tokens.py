"""Verify the care app's bearer token and turn its claims into `input.subject`.

The sidecar holds only public keys (a JWKS file); the token itself is never logged or
stored — only the verified claims the decision depends on. Those claims (REQUIRED_TEXT_CLAIMS)
must each be a non-empty, not only-whitespace string of at most MAX_CLAIM_CHARS (256)
characters, so that every decision and every audit row names who asked, for which care
service, why and at which level; a token without them is refused (401 token-invalid). A lone
UTF-16 surrogate in any kept claim is replaced by its escape (`\\ud800`) before anything
else sees the claims (_escaped).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, cast

import jwt

from audit_store.events import storable_text

from . import errors
from .identifiers import NHS_NUMBER_SYSTEM, parse_nhs_number
from .lru import Lru

# The claims the policy may depend on; anything else in the token is dropped so the
# audit row holds exactly what the decision saw.
SUBJECT_CLAIMS = (
    "iss",
    "sub",
    "aud",
    "iat",
    "exp",
    "jti",
    "name",
    "requesting_organization",
    "requesting_practitioner",
    "reason_for_request",
    "lcr_access_level",
    "lcr_audit_role",
    "requested_record",
)

#: the longest value (in characters) of a claim the decision or the audit row depends on
MAX_CLAIM_CHARS = 256
#: claims the decision and the audit row depend on: each must be present and a non-empty,
#: not only-whitespace string of at most MAX_CLAIM_CHARS (`aud`: such a string, or a list
#: of them that includes the configured audience); anything else is 401 token-invalid
REQUIRED_TEXT_CLAIMS = (
    "iss",
    "aud",
    "sub",
    "name",
    "requesting_organization",
    "reason_for_request",
    "lcr_access_level",
)
#: claims that, when present, must be such strings too (`lcr_audit_role` is read by the
#: Audit Trail policy, `jti` is stored in the row's input)
OPTIONAL_TEXT_CLAIMS = ("jti", "lcr_audit_role")
#: the other kept claims (requesting_practitioner) may be JSON objects, at most this deep
MAX_CLAIM_DEPTH = 16


@dataclass(frozen=True)
class TokenVerifier:
    keys: dict[str, jwt.PyJWK]
    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    max_lifetime_seconds: int
    leeway_seconds: int
    max_bytes: int
    #: tokens already verified, until they expire: a care app sends the same token with
    #: every request of a session, and checking it again costs ≈ 1 ms of CPU (PyJWT)
    verified: Lru[str, tuple[dict[str, Any], float]] = field(default_factory=lambda: Lru(1024))

    @classmethod
    def from_settings(cls, config: dict[str, Any]) -> TokenVerifier:
        with open(config["TOKEN_JWKS_FILE"], encoding="utf-8") as fh:
            jwks = jwt.PyJWKSet.from_dict(json.load(fh))
        keys = {key.key_id: key for key in jwks.keys if key.key_id}
        if not keys:
            raise ValueError(f"{config['TOKEN_JWKS_FILE']}: no keys with a 'kid'")
        return cls(
            keys=keys,
            issuer=config["TOKEN_ISSUER"],
            audience=config["TOKEN_AUDIENCE"],
            algorithms=tuple(config["TOKEN_ALGORITHMS"]),
            max_lifetime_seconds=config["TOKEN_MAX_LIFETIME_SECONDS"],
            leeway_seconds=config["TOKEN_LEEWAY_SECONDS"],
            max_bytes=config["TOKEN_MAX_BYTES"],
        )

    def verify(self, authorization: str | None) -> dict[str, Any]:
        token = _bearer(authorization)
        if len(token) > self.max_bytes:
            raise errors.Unauthenticated("The bearer token is too long.")
        cached = self.verified.get(token)
        if cached is not None:
            claims, exp = cached
            if time.time() > exp + self.leeway_seconds:
                raise errors.TokenExpired()
            return dict(claims)
        claims = self._verify(token)
        self.verified.put(token, (claims, claims["exp"]))
        return dict(claims)

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise errors.Unauthenticated("The bearer token is not a JWT.") from None
        key = self.keys.get(str(header.get("kid")))
        if key is None:
            raise errors.Unauthenticated("The token's signing key (kid) is not one the sidecar trusts.")
        if header.get("alg") not in self.algorithms or header.get("alg") != key.algorithm_name:
            raise errors.Unauthenticated("The token's algorithm is not accepted for its key.")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise errors.TokenExpired() from None
        except jwt.PyJWTError as exc:
            raise errors.Unauthenticated(f"The bearer token was refused: {exc}.") from None
        iat, exp = claims["iat"], claims["exp"]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (iat, exp))
        if not numeric:
            raise errors.Unauthenticated("The token's iat and exp must be NumericDate numbers.")
        if exp - iat > self.max_lifetime_seconds:
            raise errors.Unauthenticated(
                f"The token lives longer than {self.max_lifetime_seconds} s; issue short-lived tokens."
            )
        kept = {name: claims[name] for name in SUBJECT_CLAIMS if name in claims}
        _check_claims(kept)
        if "requested_record" in kept:
            requested_nhs_number(kept)  # a malformed claim is refused once, when the token is first seen
        return cast(dict[str, Any], _escaped(kept))


def requested_nhs_number(claims: dict[str, Any]) -> str | None:
    """The NHS number of the resident the token was minted for (10 digits), or None.

    The claim is modelled on GP Connect's `requested_record` (a FHIR Patient naming the
    record by identifier): {"resourceType": "Patient", "identifier": [{"system":
    "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}]}, the value in any form
    identifiers.parse_nhs_number accepts. Whether it must be present and match the request
    is the policy's (token_binding). Raises errors.Unauthenticated when the claim is there
    but is not exactly one valid NHS number in that shape.
    """
    claim = claims.get("requested_record")
    if claim is None:
        return None
    identifiers = claim.get("identifier") if isinstance(claim, dict) else None
    if not isinstance(claim, dict) or claim.get("resourceType") != "Patient" or not isinstance(identifiers, list):
        raise errors.Unauthenticated("The token's 'requested_record' claim is not a Patient with identifiers.")
    values = [i.get("value") for i in identifiers if isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM]
    if len(values) != 1:
        raise errors.Unauthenticated("The token's 'requested_record' claim must name exactly one NHS number.")
    try:
        return parse_nhs_number(values[0])
    except errors.InvalidRequest:
        raise errors.Unauthenticated("The token's 'requested_record' NHS number is not valid.") from None


def _check_claims(claims: dict[str, Any]) -> None:
    """Refuse a token whose claims the decision or the audit row cannot rest on."""
    for name in REQUIRED_TEXT_CLAIMS:
        if name not in claims:
            raise errors.Unauthenticated(f"The token has no '{name}' claim.")
    for name in (*REQUIRED_TEXT_CLAIMS, *OPTIONAL_TEXT_CLAIMS):
        if name not in claims:
            continue
        value = claims[name]
        values = value if name == "aud" and isinstance(value, list) and value else [value]
        for item in values:
            problem = _text_problem(item)
            if problem:
                raise errors.Unauthenticated(f"The token's '{name}' claim {problem}.")
    for name, value in claims.items():
        if not _plain_json(value, MAX_CLAIM_DEPTH):
            raise errors.Unauthenticated(
                f"The token's '{name}' claim is not plain JSON (NaN or Infinity, or nested deeper than "
                f"{MAX_CLAIM_DEPTH})."
            )


def _escaped(value: Any) -> Any:
    """The claims with every lone UTF-16 surrogate replaced by its escape (`x\\ud800`).

    A JSON string may hold one (`"x\\ud800"`: a JavaScript client that cut a name in the
    middle of an emoji), but it is not text: no UTF-8 encoder takes it, not OPA's input, not
    the audit store. Escaped here, the decision, the logs and the audit row all see the same
    value, which still says what was presented.
    """
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    if isinstance(value, dict):
        return {storable_text(k): _escaped(v) for k, v in value.items()}
    return value


def _text_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "is not a string"
    if not value.strip():
        return "is empty"
    if len(value) > MAX_CLAIM_CHARS:
        return f"is longer than {MAX_CLAIM_CHARS} characters"
    return None


def _plain_json(value: Any, depth: int) -> bool:
    """No NaN or Infinity (not JSON, though Python's parser takes them), bounded nesting."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, dict)):
        if depth <= 0:
            return False
        items = value.values() if isinstance(value, dict) else value
        return all(_plain_json(item, depth - 1) for item in items)
    return True


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise errors.TokenMissing()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.TokenMissing()
    return token.strip()
