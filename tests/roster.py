"""The test suite's roster of service users: who each care service looks after.

Every seed resident lives at Rosewood House (VM101) and Thames View (VM102), the two
enabled London care homes the tests ask from, so tests that are not about the care
relationship see their resident allowed; tests that are (test_relationship.py) publish
their own. Worlds that generate residents admit them (`admit`) and wait for OPA to load
the new roster, as a care app's admission does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from bundles import roster as roster_bundle

#: the demo upstream's residents, and 943 476 5919: a resident the LCR has no record of (the
#: relationship holds, so the request reaches the LCR and gets its generic 404)
SEED_RESIDENTS = ("9990000018", "9990000026", "9990000034", "9990000042", "9990000050", "9434765919")
HOMES = ("VM101", "VM102")


class Roster:
    def __init__(self, out: Path, opa_binary: str) -> None:
        self.out = out
        self.opa_binary = opa_binary
        self.services: dict[str, dict[str, dict[str, Any]]] = {
            ods: {nhs: {"status": "resident", "start": "2024-01-01"} for nhs in SEED_RESIDENTS} for ods in HOMES
        }
        self.revision = ""

    def document(self) -> dict[str, Any]:
        """The roster JSON as the care app publishes it."""
        return {
            "care_services": {
                ods: [{"nhs_number": nhs, **entry} for nhs, entry in users.items()]
                for ods, users in self.services.items()
            }
        }

    def publish(self) -> str:
        self.revision = roster_bundle.build(self.document(), self.out, opa=self.opa_binary)
        return self.revision

    def admit(self, nhs_numbers: list[str], opa_urls: list[str], homes: tuple[str, ...] = HOMES) -> str:
        """Make these residents of `homes`, publish, and wait until every OPA decides with it."""
        for ods in homes:
            for nhs in nhs_numbers:
                self.services.setdefault(ods, {})[nhs] = {"status": "resident", "start": "2024-01-01"}
        revision = self.publish()
        for url in opa_urls:
            wait_for_roster(url, revision)
        return revision


def publish_seed_roster(out: Path, opa_binary: str) -> str:
    """Publish the seed roster into a bundle folder of a test's own (serve/roster.tar.gz)."""
    return Roster(out, opa_binary).publish()


def wait_for_roster(opa_url: str, revision: str, timeout: float = 30.0) -> float:
    """Seconds until OPA at opa_url serves roster `revision` (data.roster.revision)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            got = requests.get(f"{opa_url}/v1/data/roster/revision", timeout=2).json().get("result")
        except (requests.RequestException, ValueError):
            got = None
        if got == revision:
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"OPA at {opa_url} did not load roster {revision} within {timeout}s")
