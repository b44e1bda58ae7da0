"""The LCR FHIR R4 API: find the resident, then fetch their record with $everything.

Only standard FHIR calls, so any FHIR server (HAPI, the LCR itself, the demo upstream)
answers them unchanged.
"""

from __future__ import annotations

import os
import re
from typing import Any

import requests

from . import errors, fastjson, metrics
from .identifiers import PatientIdentifiers

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
_FULL_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class FhirUpstream:
    def __init__(self, base_url: str, timeout: float, max_bytes: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._session = requests.Session()  # kept-alive connections to the LCR
        self._session.headers["Accept"] = "application/fhir+json"
        # requests reads proxy and CA settings from the environment on every call (≈ 0.5 ms
        # of CPU); every call goes to the same host, so read them once.
        self._session.proxies = requests.utils.get_environ_proxies(self.base_url)
        self._session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def find_patient(self, patient: PatientIdentifiers) -> dict[str, Any]:
        """The one Patient matching NHS number and full date of birth, or NoMatchingRecord."""
        bundle = self._get(
            "search",
            "/Patient",
            {"identifier": f"{NHS_NUMBER_SYSTEM}|{patient.nhs_number}", "birthdate": patient.dob},
        )
        matches = [
            r for r in _resources(bundle)
            if r.get("resourceType") == "Patient" and _is_match(r, patient)
        ]
        # Zero or several matches (a duplicate registration) are the same answer: no
        # record. A partial stored birth date cannot confirm a match either.
        if len(matches) != 1 or not isinstance(matches[0].get("id"), str):
            raise errors.NoMatchingRecord()
        return matches[0]

    def everything(self, patient_id: str) -> list[dict[str, Any]]:
        bundle = self._get("everything", f"/Patient/{patient_id}/$everything", None)
        resources = _resources(bundle)
        if not all(isinstance(r.get("resourceType"), str) for r in resources):
            raise errors.UpstreamInvalid()
        # $everything always holds the Patient itself: an answer without it is not this
        # resident's record (nor valid FHIR), and shown redacted it would pass for an empty one.
        if not any(r["resourceType"] == "Patient" and r.get("id") == patient_id for r in resources):
            raise errors.UpstreamInvalid()
        return resources

    def _get(self, call: str, path: str, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            with metrics.UPSTREAM_SECONDS.labels(call).time(), self._session.get(
                self.base_url + path, params=params, timeout=self.timeout, stream=True
            ) as response:
                if response.status_code == 404 and params is None:
                    raise errors.NoMatchingRecord()
                if response.status_code != 200:
                    raise errors.UpstreamUnavailable(
                        f"The London Care Record service answered HTTP {response.status_code}; try again shortly."
                    )
                body = _read_capped(response, self.max_bytes)
        except requests.Timeout:
            raise errors.UpstreamTimeout() from None
        except requests.RequestException:
            raise errors.UpstreamUnavailable() from None
        try:
            bundle = fastjson.loads(body)
        except ValueError:
            raise errors.UpstreamInvalid() from None
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise errors.UpstreamInvalid()
        return bundle


def _read_capped(response: requests.Response, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=65536):
        size += len(chunk)
        if size > max_bytes:
            raise errors.UpstreamInvalid("The London Care Record service sent a record larger than the sidecar accepts.")
        chunks.append(chunk)
    return b"".join(chunks)


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise errors.UpstreamInvalid()
    resources = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise errors.UpstreamInvalid()
        resources.append(resource)
    return resources


def _is_match(resource: dict[str, Any], patient: PatientIdentifiers) -> bool:
    # Re-check what the server matched on: the sidecar must not trust a lenient search.
    birth_date = resource.get("birthDate")
    if not isinstance(birth_date, str) or not _FULL_DATE.match(birth_date) or birth_date != patient.dob:
        return False
    identifiers = resource.get("identifier") or []
    return any(
        isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM and i.get("value") == patient.nhs_number
        for i in identifiers
    )
