"""Verify the care app's bearer token and turn its claims into `input.subject`.

The sidecar holds only public keys (a JWKS file); the token itself is never logged or
stored — only the verified claims the decision depends on.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from . import errors
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
)


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
    def from_settings(cls, config: dict[str, Any]) -> "TokenVerifier":
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
            max_lifetime_seconds=int(config["TOKEN_MAX_LIFETIME_SECONDS"]),
            leeway_seconds=int(config["TOKEN_LEEWAY_SECONDS"]),
            max_bytes=int(config["TOKEN_MAX_BYTES"]),
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
        return {name: claims[name] for name in SUBJECT_CLAIMS if name in claims}


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise errors.TokenMissing()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.TokenMissing()
    return token.strip()
