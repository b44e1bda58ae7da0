"""The LCR FHIR R4 API: find the resident, then fetch their whole record with $everything.

Only standard FHIR calls, so any FHIR server (HAPI, the LCR itself, the demo upstream)
answers them unchanged.

**The whole record or none.** FHIR servers page searches and `$everything` (HAPI FHIR JPA:
20 entries a page, a `next` link `{base}?_getpages=…&_getpagesoffset=20&_count=20`, no
`total` on page 1). Every page is fetched, following `Bundle.link` `next` until there is
none, or the fetch fails as a whole (502/504) — never a partial record:

- a `next` link is followed only to the configured base (same scheme, host and port, path
  under the base's path; no userinfo, no dot segments, no redirects): anything else is a
  502 and is never fetched;
- at most `max_pages` pages per search or record, at most `max_bytes` across them, a `next`
  link already fetched (a loop) is a 502;
- one deadline bounds the whole fetch — the search, every page of `$everything`, each
  connect and each read on the socket (`deadline_seconds`; a caller passes one instant to
  both calls): an upstream trickling one byte a second cannot hold a request past it.

Numbers are read with `fastjson.loads_fhir`, so every decimal leaves as it came.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import requests
from requests.adapters import HTTPAdapter
from urllib3 import ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from . import errors, fastjson, metrics
from .identifiers import NHS_NUMBER_SYSTEM, PatientIdentifiers

_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class FetchedRecord:
    """A resident's whole `$everything` answer, every page of it, in the upstream's order."""

    resources: list[dict[str, Any]]
    #: parallel to `resources`: each entry's `fullUrl`, or None when it had none
    full_urls: list[str | None]
    pages: int


class FhirUpstream:
    def __init__(
        self,
        base_url: str,
        timeout: float,
        max_bytes: int,
        max_pages: int = 200,
        deadline_seconds: float = 20.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # each connect and each read on the socket
        self.max_bytes = max_bytes  # all pages of one search or one record together
        self.max_pages = max_pages
        self.deadline_seconds = deadline_seconds  # the whole fetch: search and every page
        self._base = _origin_and_path(self.base_url)
        if self._base is None:
            raise ValueError(f"UPSTREAM_URL {base_url!r} is not an http(s) URL without userinfo")
        self._session = requests.Session()  # kept-alive connections to the LCR
        self._session.headers["Accept"] = "application/fhir+json"
        # Each read on the socket waits at most until the request's deadline.
        adapter = _DeadlineAdapter()
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        # requests reads proxy and CA settings from the environment on every call (≈ 0.5 ms
        # of CPU); every call goes to the same host, so read them once.
        self._session.proxies = requests.utils.get_environ_proxies(self.base_url)
        self._session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._session.trust_env = False

    @classmethod
    def from_settings(cls, config: Mapping[str, Any]) -> FhirUpstream:
        return cls(
            config["UPSTREAM_URL"],
            config["UPSTREAM_TIMEOUT_SECONDS"],
            config["UPSTREAM_MAX_BYTES"],
            max_pages=config["UPSTREAM_MAX_PAGES"],
            deadline_seconds=config["UPSTREAM_DEADLINE_SECONDS"],
        )

    def close(self) -> None:
        self._session.close()

    def start_deadline(self) -> float:
        """The instant (`time.monotonic()`) by which a fetch starting now must be done."""
        return time.monotonic() + self.deadline_seconds

    def find_patient(self, patient: PatientIdentifiers, *, deadline: float | None = None) -> dict[str, Any]:
        """The one Patient matching NHS number and full date of birth, or NoMatchingRecord.

        Every page of the search is read: a second registration on page 2 is still a second
        registration. `deadline`: from `start_deadline()`, to share one with `everything`.
        """
        params = {"identifier": f"{NHS_NUMBER_SYSTEM}|{patient.nhs_number}", "birthdate": patient.dob}
        url = self.base_url + "/Patient?" + urllib.parse.urlencode(params)
        entries, _ = self._all_pages("search", url, deadline or self.start_deadline(), not_found_is_no_record=False)
        matches: dict[str, dict[str, Any]] = {}
        for resource, _full_url in entries:
            if resource.get("resourceType") == "Patient" and _is_match(resource, patient):
                pid = resource.get("id")
                if not isinstance(pid, str):
                    raise errors.NoMatchingRecord()  # cannot fetch a record without an id
                if not _FHIR_ID.fullmatch(pid) or pid in (".", ".."):
                    raise errors.UpstreamInvalid()  # not a FHIR id, and not one to put in a path
                matches.setdefault(pid, resource)
        # Zero or several matches (a duplicate registration) are the same answer: no
        # record. The same id more than once (paging, a repeated entry) is one match. A
        # partial stored birth date cannot confirm a match either.
        if len(matches) != 1:
            raise errors.NoMatchingRecord()
        return next(iter(matches.values()))

    def everything(
        self, patient_id: str, patient: PatientIdentifiers | None = None, *, deadline: float | None = None
    ) -> FetchedRecord:
        """Every page of `Patient/{id}/$everything`.

        The resident's own Patient must be in it and carry the NHS number and full birth
        date that were matched (`patient`), else the answer is not this resident's record:
        502. Other Patients (linked records) are left to the redaction policy.
        """
        url = f"{self.base_url}/Patient/{urllib.parse.quote(patient_id, safe='')}/$everything"
        entries, pages = self._all_pages(
            "everything", url, deadline or self.start_deadline(), not_found_is_no_record=True
        )
        resources = [resource for resource, _ in entries]
        if not all(isinstance(r.get("resourceType"), str) for r in resources):
            raise errors.UpstreamInvalid()
        headers = [r for r in resources if r["resourceType"] == "Patient" and r.get("id") == patient_id]
        # $everything always holds the Patient itself: an answer without it is not this
        # resident's record (nor valid FHIR), and shown redacted it would pass for an empty one.
        if not headers:
            raise errors.UpstreamInvalid()
        if patient is not None and not all(_is_match(r, patient) for r in headers):
            raise errors.UpstreamInvalid(
                "The London Care Record service answered with a record whose Patient does not carry the "
                "NHS number and date of birth that were matched; no record is shown."
            )
        return FetchedRecord(resources=resources, full_urls=[u for _, u in entries], pages=pages)

    # -- paging ------------------------------------------------------------------------

    def _all_pages(
        self, call: str, url: str, deadline: float, not_found_is_no_record: bool
    ) -> tuple[list[tuple[dict[str, Any], str | None]], int]:
        entries: list[tuple[dict[str, Any], str | None]] = []
        seen: set[str] = set()
        budget = self.max_bytes
        pages = 0
        next_url: str | None = url
        while next_url is not None:
            if next_url in seen:
                raise errors.UpstreamInvalid("The London Care Record service's pages lead back to a page already read.")
            if pages == self.max_pages:
                raise errors.UpstreamInvalid(
                    f"The London Care Record service sent more than {self.max_pages} pages; no record is shown."
                )
            seen.add(next_url)
            body = self._get(call, next_url, deadline, budget, not_found_is_no_record and pages == 0)
            budget -= len(body)
            pages += 1
            bundle = _parse_bundle(body)
            entries.extend(_entries(bundle))
            next_url = self._next_url(bundle, next_url)
        return entries, pages

    def _next_url(self, bundle: dict[str, Any], current: str) -> str | None:
        links = bundle.get("link", [])
        if not isinstance(links, list) or not all(isinstance(link, dict) for link in links):
            raise errors.UpstreamInvalid()
        nexts = [link.get("url") for link in links if link.get("relation") == "next"]
        if not nexts:
            return None
        if len(nexts) > 1 or not isinstance(nexts[0], str):
            raise errors.UpstreamInvalid()
        target = urllib.parse.urljoin(current, nexts[0]) if not _UNSAFE_URL_CHARS.search(nexts[0]) else None
        if target is None or not self._on_base(target):
            raise errors.UpstreamInvalid(
                "The London Care Record service linked its next page outside its own address; it was not fetched."
            )
        return target.partition("#")[0]

    def _on_base(self, url: str) -> bool:
        """Same scheme, host and port as UPSTREAM_URL, path at or under its path."""
        assert self._base is not None
        found = _origin_and_path(url)
        if found is None or found[0] != self._base[0]:
            return False
        path, base_path = found[1], self._base[1]
        return path == base_path or path.startswith(base_path + "/") or (base_path == "" and path.startswith("/"))

    # -- one page ------------------------------------------------------------------------

    def _get(self, call: str, url: str, deadline: float, budget: int, not_found_is_no_record: bool) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.UpstreamTimeout()
        wait = min(self.timeout, remaining)
        _current.deadline = deadline
        try:
            with (
                metrics.UPSTREAM_SECONDS.labels(call).time(),
                self._session.get(url, timeout=(wait, wait), stream=True, allow_redirects=False) as response,
            ):
                if response.status_code == 404 and not_found_is_no_record:
                    raise errors.NoMatchingRecord()
                if response.status_code != 200:
                    raise errors.UpstreamUnavailable(
                        f"The London Care Record service answered HTTP {response.status_code}; try again shortly."
                    )
                return _read_capped(response, budget)
        except requests.Timeout:
            raise errors.UpstreamTimeout() from None
        except (requests.RequestException, OSError, http.client.HTTPException):
            # A read cut short by the deadline inside the body surfaces as a connection
            # error: past the deadline, it is the deadline.
            if time.monotonic() >= deadline:
                raise errors.UpstreamTimeout() from None
            raise errors.UpstreamUnavailable() from None
        finally:
            _current.deadline = None


def _read_capped(response: requests.Response, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=65536):
        size += len(chunk)
        if size > max_bytes:
            raise errors.UpstreamInvalid(
                "The London Care Record service sent a record larger than the sidecar accepts."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_bundle(body: bytes) -> dict[str, Any]:
    try:
        bundle = fastjson.loads_fhir(body)
    except (ValueError, RecursionError, MemoryError):
        # loads_fhir refuses with ValueError; a body that still exhausts the stack or the
        # memory while being read is as unusable: 502, never a 500.
        raise errors.UpstreamInvalid() from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise errors.UpstreamInvalid()
    return bundle


def _entries(bundle: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise errors.UpstreamInvalid()
    found = []
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise errors.UpstreamInvalid()
        full_url = entry.get("fullUrl")
        if full_url is not None and not isinstance(full_url, str):
            raise errors.UpstreamInvalid()
        found.append((resource, full_url))
    return found


def _is_match(resource: dict[str, Any], patient: PatientIdentifiers) -> bool:
    # Re-check what the server matched on: the sidecar must not trust a lenient search.
    birth_date = resource.get("birthDate")
    if not isinstance(birth_date, str) or not _FULL_DATE.fullmatch(birth_date) or birth_date != patient.dob:
        return False
    identifiers = resource.get("identifier") or []
    return isinstance(identifiers, list) and any(
        isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM and i.get("value") == patient.nhs_number
        for i in identifiers
    )


def _origin_and_path(url: str) -> tuple[tuple[str, str, int], str] | None:
    """((scheme, host, port), path) of an http(s) URL, scheme and host lower case, the
    port explicit; None for anything else: another scheme, userinfo, no host, a bad port,
    dot segments (plain or percent-encoded), characters a client or server might rewrite."""
    if _UNSAFE_URL_CHARS.search(url):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or "@" in parts.netloc or not parts.hostname:
        return None
    segments = urllib.parse.unquote(parts.path).split("/")
    if "." in segments or ".." in segments:
        return None
    return (scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]), parts.path.rstrip("/")


# -- one deadline for every read on the socket -------------------------------------------
#
# requests' timeout bounds each connect and each read; a server sending a byte just inside
# it never trips it. The connections below read through `_DeadlineReader`, which gives each
# read on the socket only the time left before the request's deadline (set per thread by
# `_get`), so a trickle ends at the deadline as a timeout. Without a deadline set they
# behave exactly like urllib3's own.

_current = threading.local()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw = sock.makefile("rb", buffering=0)  # a SocketIO, counted by the socket as usual
        self._sock = sock
        self._deadline = deadline
        self._per_read = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("upstream deadline passed")
        self._sock.settimeout(remaining if self._per_read is None else min(self._per_read, remaining))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineSocket:
    """What `http.client.HTTPResponse` needs of its socket: `makefile`, reading to the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        deadline = getattr(_current, "deadline", None)
        # http.client reads the socket only through makefile(), which _DeadlineSocket has.
        super().__init__(sock if deadline is None else cast(Any, _DeadlineSocket(sock, deadline)), *args, **kwargs)


class _DeadlineHTTPConnection(HTTPConnection):
    response_class = _DeadlineResponse


class _DeadlineHTTPSConnection(HTTPSConnection):
    response_class = _DeadlineResponse


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:  # an HTTP(S) proxy; a SOCKS one keeps its own connections
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
