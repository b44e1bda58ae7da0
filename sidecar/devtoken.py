"""Mint short-lived care-app tokens with the DEV-ONLY key, for `make run` and manual tries.

    python -m sidecar.devtoken --level senior_carer --nhs-number 9990000018
    python -m sidecar.devtoken --level registered_manager --org VM101 --nhs-number 9990000026 --lifetime 300

A token is bound to the resident it is minted for (`requested_record`, as GP Connect's
tokens are): the sidecar refuses it for anyone else (403 token-patient-mismatch).

Production tokens are signed by the care app with its own private key; the sidecar only
ever holds public keys.
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from .identifiers import NHS_NUMBER_SYSTEM
from .settings import DEFAULTS, ROOT

DEV_PRIVATE_KEY = ROOT / "dev" / "keys" / "care-app-dev-private.pem"
DEV_KID = "care-app-dev-1"

DEMO_STAFF = {
    "no_access": ("staff-0001", "Nia Noaccess"),
    "admin": ("staff-0002", "Adam Admin"),
    "senior_carer": ("staff-0003", "Sara Senior"),
    "registered_manager": ("staff-0004", "Rita Manager"),
}


def mint(
    level: str | None,
    *,
    org: str = "VM101",
    sub: str | None = None,
    name: str | None = None,
    lifetime: int = 300,
    now: float | None = None,
    private_key: str | bytes | None = None,
    kid: str = DEV_KID,
    algorithm: str = "RS256",
    issuer: str = DEFAULTS["TOKEN_ISSUER"],
    audience: str = DEFAULTS["TOKEN_AUDIENCE"],
    extra: dict[str, Any] | None = None,
    nhs_number: str | None = None,
) -> str:
    """A signed care-app token; bound to `nhs_number` (10 digits) when given."""
    iat = int(now if now is not None else time.time())
    default_sub, default_name = DEMO_STAFF.get(level or "", ("staff-0099", "Demo Staff"))
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": sub or default_sub,
        "name": name or default_name,
        "iat": iat,
        "exp": iat + lifetime,
        "jti": str(uuid.uuid4()),
        "requesting_organization": org,
        "reason_for_request": "directcare",
    }
    if level is not None:
        claims["lcr_access_level"] = level
    if nhs_number is not None:
        claims["requested_record"] = requested_record(nhs_number)
    claims.update(extra or {})
    key = private_key if private_key is not None else Path(DEV_PRIVATE_KEY).read_bytes()
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def requested_record(nhs_number: str) -> dict[str, Any]:
    """The `requested_record` claim naming one resident by NHS number (GP Connect's shape)."""
    return {"resourceType": "Patient", "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", required=True, help="lcr_access_level claim, e.g. senior_carer")
    parser.add_argument("--org", default="VM101", help="care service ODS code (requesting_organization)")
    parser.add_argument("--nhs-number", help="bind the token to this resident (requested_record), e.g. 9990000018")
    parser.add_argument("--lifetime", type=int, default=300, help="seconds until exp (the sidecar refuses > 300)")
    args = parser.parse_args(argv)
    print(mint(args.level, org=args.org, lifetime=args.lifetime, nhs_number=args.nhs_number))


if __name__ == "__main__":
    main()
