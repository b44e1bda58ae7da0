"""Build the care app's roster of service users into a signed OPA bundle (root `roster`).

    python -m bundles.roster ROSTER.json                 # → var/bundles, dev signing key
    python -m bundles.roster ROSTER.json --out DIR --signing-key KEY.pem --key-id prod-2026

The roster says who each care service's service users are, so the access policy can allow
a record only for someone the requesting care service looks after (docs/relationships.md).
The care app publishes it as JSON (ROSTER.json):

    {"care_services": {"VM101": [
        {"nhs_number": "9990000018", "family_name": "Thompson", "status": "resident", "start": "2024-03-11"},
        {"nhs_number": "9990000026", "status": "discharged", "start": "2023-01-09", "end": "2026-11-20"}]}}

and this command writes `<out>/archive/<revision>.tar.gz` (kept, so a logged decision can be
replayed against the roster it was made with) and publishes it as `<out>/serve/roster.tar.gz`.
The revision is `roster-sha256-…`, a hash of the roster's content: the same roster always
gets the same revision, and the revision is also in the data (`data.roster.revision`), so
every decision reports the roster it used.

Only the shape is checked here (ODS-code keys, valid NHS numbers once per care service, ISO
dates, text); what a status means and which dates make someone a current service user is the
policy's (policies/lcr/access). The roster is personal data: the files are written readable
by their owner only (0600), and nothing here logs its content.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from sidecar.identifiers import nhs_number_check_digit_ok

from .build import DEFAULT_KEY_ID, DEV_SIGNING_KEY, ROOT, publish_bundle, sign_and_archive

ROSTER_BUNDLE_NAME = "roster.tar.gz"
REVISION_PREFIX = "roster-sha256-"
#: an ODS code: upper-case letters and digits (3 to 10 characters, covering sites and services)
_ODS_CODE = re.compile(r"[A-Z0-9]{3,10}", re.ASCII)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_NHS_NUMBER = re.compile(r"[0-9]{10}", re.ASCII)
_FIELDS = ("status", "start", "end", "family_name")
MAX_TEXT = 256


class RosterInvalid(ValueError):
    """The roster file is not in the published shape; the message names the first problem."""


def normalise(roster: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """The roster as the policy reads it: {ODS code: {NHS number: {status, start, end, family_name}}}.

    roster: the published JSON (see the module docstring). Missing `end` and `family_name`
    become null. Raises RosterInvalid for anything not in that shape.
    """
    if not isinstance(roster, dict) or not isinstance(roster.get("care_services"), dict):
        raise RosterInvalid("the roster must be an object with a 'care_services' object")
    services: dict[str, dict[str, dict[str, Any]]] = {}
    for ods, users in roster["care_services"].items():
        if not _ODS_CODE.fullmatch(ods):
            raise RosterInvalid("a care service key is not an ODS code (A-Z, 0-9)")
        if not isinstance(users, list):
            raise RosterInvalid(f"care service {ods}: service users must be a list")
        entries: dict[str, dict[str, Any]] = {}
        for n, user in enumerate(users):
            where = f"care service {ods}, service user {n}"
            if not isinstance(user, dict) or set(user) - {"nhs_number", *_FIELDS}:
                raise RosterInvalid(f"{where}: expected an object with nhs_number, {', '.join(_FIELDS)}")
            nhs = user.get("nhs_number")
            if not isinstance(nhs, str) or not _NHS_NUMBER.fullmatch(nhs) or not nhs_number_check_digit_ok(nhs):
                raise RosterInvalid(f"{where}: nhs_number must be 10 digits with a valid check digit")
            if nhs in entries:
                raise RosterInvalid(f"{where}: the same NHS number twice in one care service")
            status = user.get("status")
            if not isinstance(status, str) or not 0 < len(status) <= MAX_TEXT:
                raise RosterInvalid(f"{where}: status must be text")
            for name in ("start", "end"):
                value = user.get(name)
                if value is not None and (not isinstance(value, str) or not _ISO_DATE.fullmatch(value)):
                    raise RosterInvalid(f"{where}: {name} must be a date (YYYY-MM-DD) or null")
            family = user.get("family_name")
            if family is not None and (not isinstance(family, str) or not 0 < len(family) <= MAX_TEXT):
                raise RosterInvalid(f"{where}: family_name must be text or null")
            entries[nhs] = {name: user.get(name) for name in _FIELDS}
        services[ods] = entries
    return services


def revision_of(services: dict[str, Any]) -> str:
    """`roster-sha256-<20 hex>` over the normalised roster's canonical JSON."""
    text = json.dumps(services, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return REVISION_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:20]


def build(
    roster: Any,
    out: Path,
    opa: str | None = None,
    signing_key: Path | None = None,
    key_id: str | None = None,
    publish: bool = True,
) -> str:
    """Sign, archive and (by default) publish the roster; returns its revision.

    roster: the published JSON, already parsed. Raises RosterInvalid for a roster not in the
    published shape (nothing is written then), subprocess.CalledProcessError if `opa build` fails.
    """
    signing_key = signing_key or Path(os.environ.get("LCR_BUNDLE_SIGNING_KEY", DEV_SIGNING_KEY))
    key_id = key_id or os.environ.get("LCR_BUNDLE_SIGNING_KEY_ID", DEFAULT_KEY_ID)
    services = normalise(roster)
    revision = revision_of(services)
    archive = out / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    archived = archive / f"{revision}.tar.gz"
    if not archived.exists():  # a revision, once archived, is never rewritten
        with tempfile.TemporaryDirectory() as tmp:
            stage = Path(tmp) / "bundle"
            (stage / "roster").mkdir(parents=True)
            (stage / ".manifest").write_text(json.dumps({"roots": ["roster"], "revision": revision}))
            data = {"revision": revision, "care_services": services}
            (stage / "roster" / "data.json").write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
            sign_and_archive(stage, revision, archived, opa, signing_key, key_id, mode=0o600)
    if publish:
        publish_bundle(archived, out / "serve", ROSTER_BUNDLE_NAME)
    return revision


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roster", type=Path, help="the roster JSON the care app publishes")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "var" / "bundles", help="output folder (serve/ and archive/)"
    )
    parser.add_argument(
        "--signing-key", type=Path, help="PEM private key (default $LCR_BUNDLE_SIGNING_KEY or the DEV key)"
    )
    parser.add_argument(
        "--key-id", help=f"key id OPA verifies with (default $LCR_BUNDLE_SIGNING_KEY_ID or {DEFAULT_KEY_ID})"
    )
    parser.add_argument("--no-publish", action="store_true", help="archive only; do not replace serve/roster.tar.gz")
    args = parser.parse_args(argv)
    try:
        roster = json.loads(args.roster.read_text(encoding="utf-8"))
        print(build(roster, args.out, signing_key=args.signing_key, key_id=args.key_id, publish=not args.no_publish))
    except (OSError, ValueError) as exc:  # RosterInvalid and JSON errors; never echo the content
        sys.exit(f"roster not built: {exc if isinstance(exc, RosterInvalid) else type(exc).__name__}")


if __name__ == "__main__":
    main()
