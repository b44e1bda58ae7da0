"""The fetch: every page of the search and of $everything, or a 502/504 — never part of a record.

Each misbehaving upstream is a real HTTP server in the test (a `ThreadingHTTPServer`, or a
raw socket server for the trickle): next links to another host, port, scheme or path,
userinfo tricks, loops, endless pages, too many bytes across pages, a second registration on
page 2, a header Patient with another NHS number, a server sending one byte every 0.2 s.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sidecar import errors
from sidecar.identifiers import PatientIdentifiers
from sidecar.upstream import FetchedRecord, FhirUpstream

NHS = "https://fhir.nhs.uk/Id/nhs-number"
RESIDENT = PatientIdentifiers("9434765919", "1960-01-01")


def patient(pid: str = "p1", nhs: str = "9434765919", dob: str = "1960-01-01") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "identifier": [{"system": NHS, "value": nhs}], "birthDate": dob}


def flags(n: int, subject: str = "p1") -> list[dict[str, Any]]:
    return [
        {"resourceType": "Flag", "id": f"f{i}", "status": "active", "subject": {"reference": f"Patient/{subject}"}}
        for i in range(n)
    ]


# -- a small FHIR server ---------------------------------------------------------------------

Responder = Callable[[http.server.BaseHTTPRequestHandler], None]


class Stub:
    """A FHIR server on 127.0.0.1 answering from `routes`: exact `path?query` first, then the path.

    A route is a body (dict → JSON, bytes as they are) with a status, or a function writing
    the answer itself. Every request's target is in `hits`.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, tuple[int, bytes] | Responder] = {}
        self.hits: list[str] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                stub.hits.append(self.path)
                route = stub.routes.get(self.path) or stub.routes.get(self.path.partition("?")[0])
                if route is None:
                    route = (404, json.dumps({"resourceType": "OperationOutcome", "issue": []}).encode())
                if callable(route):
                    route(self)
                    return
                status, body = route
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.root = f"http://{host}:{self.port}"
        self.base = self.root + "/fhir"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def add(self, target: str, body: dict[str, Any] | bytes | Responder, status: int = 200) -> None:
        if callable(body):
            self.routes[target] = body
        else:
            self.routes[target] = (status, body if isinstance(body, bytes) else json.dumps(body).encode())

    def pages(
        self,
        first: str,
        resources: list[dict[str, Any]],
        size: int = 20,
        search_id: str = "s1",
        next_url: Callable[[int], str] | None = None,
    ) -> None:
        """Serve `resources` as HAPI pages them: `first`, then `{base}?_getpages=…&_getpagesoffset=N&_count=size`."""
        make_next = next_url or (
            lambda offset: f"{self.base}?_getpages={search_id}&_getpagesoffset={offset}&_count={size}"
        )
        chunks = [resources[i : i + size] for i in range(0, len(resources), size)] or [[]]
        for n, chunk in enumerate(chunks):
            offset = n * size
            bundle = searchset(chunk, self.base)
            if n + 1 < len(chunks):
                bundle["link"].append({"relation": "next", "url": make_next(offset + size)})
            target = first if n == 0 else make_next(offset).removeprefix(self.root)
            self.add(target, bundle)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def searchset(resources: list[dict[str, Any]], base: str, full_urls: bool = True) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": base}],
    }
    if resources:
        bundle["entry"] = [
            {**({"fullUrl": f"{base}/{r['resourceType']}/{r['id']}"} if full_urls else {}), "resource": r}
            for r in resources
        ]
    return bundle


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.close()


@pytest.fixture
def elsewhere() -> Iterator[Stub]:
    """Another server the upstream's links must never reach."""
    server = Stub()
    yield server
    server.close()


def upstream_for(stub: Stub, **kw: Any) -> FhirUpstream:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("max_bytes", 5_000_000)
    return FhirUpstream(stub.base, kw.pop("timeout"), kw.pop("max_bytes"), **kw)


EVERYTHING = "/fhir/Patient/p1/$everything"


# -- paging ----------------------------------------------------------------------------------


def test_every_page_of_everything_is_fetched_like_hapi_pages_it(stub):
    record = [patient(), *flags(44)]
    stub.pages(EVERYTHING, record)
    fetched = upstream_for(stub).everything("p1", RESIDENT)
    assert isinstance(fetched, FetchedRecord)
    assert fetched.pages == 3
    assert [r["id"] for r in fetched.resources] == [r["id"] for r in record]
    assert fetched.full_urls == [f"{stub.base}/{r['resourceType']}/{r['id']}" for r in record]
    assert stub.hits[1:] == [
        "/fhir?_getpages=s1&_getpagesoffset=20&_count=20",
        "/fhir?_getpages=s1&_getpagesoffset=40&_count=20",
    ]


def test_entries_without_full_url_are_none(stub):
    bundle = searchset([patient(), *flags(2)], stub.base, full_urls=False)
    bundle["entry"][1]["fullUrl"] = "urn:uuid:0d9bc8a4-7f11-4d4f-9b41-3c1e0a7d5e10"
    stub.add(EVERYTHING, bundle)
    fetched = upstream_for(stub).everything("p1", RESIDENT)
    assert fetched.full_urls == [None, "urn:uuid:0d9bc8a4-7f11-4d4f-9b41-3c1e0a7d5e10", None]
    assert fetched.pages == 1


def test_a_next_link_under_the_base_path_and_relative_links_are_followed(stub):
    stub.pages(
        EVERYTHING,
        [patient(), *flags(5)],
        size=2,
        next_url=lambda offset: f"{stub.base}/Patient/p1/$everything?page={offset}",
    )
    assert len(upstream_for(stub).everything("p1", RESIDENT).resources) == 6
    relative = searchset([patient()], stub.base)
    relative["link"].append({"relation": "next", "url": "$everything?page=2"})
    stub.add(EVERYTHING, relative)
    stub.add(EVERYTHING + "?page=2", searchset(flags(1), stub.base))
    assert len(upstream_for(stub).everything("p1", RESIDENT).resources) == 2


def test_scheme_and_host_compare_case_insensitively_and_default_ports_are_the_same_port():
    upstream = FhirUpstream("https://LCR.example.nhs.uk/fhir/R4/", 1.0, 1000)
    for url in [
        "https://lcr.example.nhs.uk/fhir/R4?_getpages=x",
        "HTTPS://LCR.EXAMPLE.NHS.UK:443/fhir/R4/Patient/p1",
        "https://lcr.example.nhs.uk/fhir/R4/",
        "https://lcr.example.nhs.uk/fhir/R4#frag",
    ]:
        assert upstream._on_base(url), url


@pytest.mark.parametrize(
    "url",
    [
        "http://lcr.example.nhs.uk/fhir/R4?_getpages=x",  # another scheme
        "https://lcr.example.nhs.uk:8443/fhir/R4?_getpages=x",  # another port
        "https://evil.example/fhir/R4?_getpages=x",  # another host
        "https://lcr.example.nhs.uk.evil.example/fhir/R4",  # a host that only starts the same
        "https://lcr.example.nhs.uk@evil.example/fhir/R4",  # userinfo: the host is evil.example
        "https://lcr.example.nhs.uk:443@evil.example/fhir/R4",
        "https://user:pw@lcr.example.nhs.uk/fhir/R4",  # userinfo at all
        "https://lcr.example.nhs.uk/fhir/R4x?_getpages=x",  # a path that only starts the same
        "https://lcr.example.nhs.uk/fhir?_getpages=x",  # above the base path
        "https://lcr.example.nhs.uk/admin",
        "https://lcr.example.nhs.uk/fhir/R4/../../admin",  # dot segments, plain or encoded
        "https://lcr.example.nhs.uk/fhir/R4/%2e%2e/%2E%2E/admin",
        "https://lcr.example.nhs.uk/fhir/R4/..%2f..%2fadmin",
        "https://lcr.example.nhs.uk/fhir/R4\\..\\admin",
        "https://lcr.example.nhs.uk/fhir/R4/Patient?x=1\n@evil.example",
        "https://lcr.example.nhs.uk\t@evil.example/fhir/R4",
        "file:///etc/passwd",
        "ftp://lcr.example.nhs.uk/fhir/R4",
        "javascript:alert(1)",
        "https:///fhir/R4",
        "https://lcr.example.nhs.uk:99999/fhir/R4",
        "https://lcr.example.nhs.uk:-1/fhir/R4",
    ],
)
def test_anything_off_the_base_is_refused(url):
    assert not FhirUpstream("https://lcr.example.nhs.uk/fhir/R4", 1.0, 1000)._on_base(url)


@pytest.mark.parametrize(
    "make_link",
    [
        pytest.param(lambda s, e: f"{e.base}?_getpages=s1&_getpagesoffset=20", id="other-port"),
        pytest.param(lambda s, e: f"http://127.0.0.1:{s.port}@127.0.0.1:{e.port}/fhir?_getpages=s1", id="userinfo"),
        pytest.param(lambda s, e: f"//127.0.0.1:{e.port}/fhir?_getpages=s1", id="network-path-reference"),
        pytest.param(lambda s, e: f"{s.root}/other?_getpages=s1", id="other-path"),
        pytest.param(lambda s, e: f"{s.base}/../other?_getpages=s1", id="dot-segments"),
        pytest.param(lambda s, e: "file:///etc/passwd", id="file"),
    ],
)
def test_a_next_link_off_the_base_is_a_502_and_never_fetched(stub, elsewhere, make_link):
    first = searchset([patient(), *flags(19)], stub.base)
    first["link"].append({"relation": "next", "url": make_link(stub, elsewhere)})
    stub.add(EVERYTHING, first)
    elsewhere.add("/fhir", searchset(flags(1, subject="p1"), elsewhere.base))
    with pytest.raises(errors.UpstreamInvalid):
        upstream_for(stub).everything("p1", RESIDENT)
    assert elsewhere.hits == []
    assert stub.hits == [EVERYTHING]


def test_a_redirect_is_not_followed(stub, elsewhere):
    def redirect(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", elsewhere.base + "/Patient/p1/$everything")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    stub.add(EVERYTHING, redirect)
    with pytest.raises(errors.UpstreamUnavailable):
        upstream_for(stub).everything("p1", RESIDENT)
    assert elsewhere.hits == []


def test_a_next_link_back_to_a_page_already_read_is_a_loop(stub):
    first = searchset([patient()], stub.base)
    first["link"].append({"relation": "next", "url": f"{stub.base}?_getpages=s1&_getpagesoffset=20"})
    second = searchset(flags(1), stub.base)
    second["link"].append({"relation": "next", "url": f"{stub.base}?_getpages=s1&_getpagesoffset=20"})
    stub.add(EVERYTHING, first)
    stub.add("/fhir?_getpages=s1&_getpagesoffset=20", second)
    with pytest.raises(errors.UpstreamInvalid):
        upstream_for(stub).everything("p1", RESIDENT)
    assert len(stub.hits) == 2


def test_a_next_link_to_the_first_page_is_a_loop(stub):
    first = searchset([patient()], stub.base)
    first["link"].append({"relation": "next", "url": f"{stub.base}/Patient/p1/$everything"})
    stub.add(EVERYTHING, first)
    with pytest.raises(errors.UpstreamInvalid):
        upstream_for(stub).everything("p1", RESIDENT)
    assert len(stub.hits) == 1


def test_pages_that_never_end_stop_at_max_pages(stub):
    def endless(handler: http.server.BaseHTTPRequestHandler) -> None:
        n = len(stub.hits)
        bundle = searchset([patient()] if n == 1 else flags(1), stub.base)
        bundle["link"].append({"relation": "next", "url": f"{stub.base}?_getpages=s1&_getpagesoffset={n * 20}"})
        body = json.dumps(bundle).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    stub.add(EVERYTHING, endless)
    stub.add("/fhir", endless)
    with pytest.raises(errors.UpstreamInvalid, match="more than 5 pages"):
        upstream_for(stub, max_pages=5).everything("p1", RESIDENT)
    assert len(stub.hits) == 5


def test_max_bytes_bounds_all_pages_together(stub):
    padded = [{**f, "note": [{"text": "x" * 4000}]} for f in flags(30)]
    stub.pages(EVERYTHING, [patient(), *padded], size=10)  # 3 pages of ≈ 40 KB each
    assert upstream_for(stub, max_bytes=200_000).everything("p1", RESIDENT).pages == 4
    with pytest.raises(errors.UpstreamInvalid, match="larger"):
        upstream_for(stub, max_bytes=100_000).everything("p1", RESIDENT)


def test_page_two_failing_fails_the_whole_record(stub):
    stub.pages(EVERYTHING, [patient(), *flags(25)])
    stub.add("/fhir?_getpages=s1&_getpagesoffset=20&_count=20", b"gone", status=410)
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        upstream_for(stub).everything("p1", RESIDENT)
    assert type(caught.value) is errors.UpstreamUnavailable and caught.value.status == 502


def test_a_missing_page_two_is_not_a_missing_record(stub):
    stub.pages(EVERYTHING, [patient(), *flags(25)])
    del stub.routes["/fhir?_getpages=s1&_getpagesoffset=20&_count=20"]  # 404 on page 2
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        upstream_for(stub).everything("p1", RESIDENT)
    assert caught.value.status == 502


@pytest.mark.parametrize(
    "link",
    [
        pytest.param("not a list", id="link-not-a-list"),
        pytest.param(["x"], id="link-not-objects"),
        pytest.param([{"relation": "next", "url": 7}], id="url-not-a-string"),
        pytest.param(
            [{"relation": "next", "url": "http://a/fhir"}, {"relation": "next", "url": "http://b/fhir"}], id="two-nexts"
        ),
    ],
)
def test_unreadable_links_are_502(stub, link):
    stub.add(EVERYTHING, {**searchset([patient()], stub.base), "link": link})
    with pytest.raises(errors.UpstreamInvalid):
        upstream_for(stub).everything("p1", RESIDENT)


def test_a_full_url_that_is_not_a_string_is_502(stub):
    bundle = searchset([patient()], stub.base)
    bundle["entry"][0]["fullUrl"] = 7
    stub.add(EVERYTHING, bundle)
    with pytest.raises(errors.UpstreamInvalid):
        upstream_for(stub).everything("p1", RESIDENT)


def test_unknown_patient_on_the_first_page_is_no_matching_record(stub):
    with pytest.raises(errors.NoMatchingRecord):
        upstream_for(stub).everything("p1", RESIDENT)


# -- search ----------------------------------------------------------------------------------

SEARCH = "/fhir/Patient"


def test_search_sends_the_identifiers(stub):
    stub.add(SEARCH, searchset([patient()], stub.base))
    assert upstream_for(stub).find_patient(RESIDENT)["id"] == "p1"
    [hit] = stub.hits
    assert (
        hit == "/fhir/Patient?identifier=https%3A%2F%2Ffhir.nhs.uk%2FId%2Fnhs-number%7C9434765919&birthdate=1960-01-01"
    )


@pytest.mark.parametrize(
    "entries, page_size",
    [
        pytest.param([patient(), patient()], 20, id="same-id-twice-on-a-page"),
        pytest.param(
            [patient(), *[{"resourceType": "OperationOutcome", "id": f"o{i}"} for i in range(20)], patient()],
            20,
            id="same-id-again-on-page-2",
        ),
        pytest.param([patient()] * 3, 1, id="same-id-on-every-page"),
    ],
)
def test_identical_search_entries_are_one_match(stub, entries, page_size):
    stub.pages(SEARCH, entries, size=page_size)
    assert upstream_for(stub).find_patient(RESIDENT)["id"] == "p1"


@pytest.mark.parametrize(
    "entries, page_size",
    [
        pytest.param([patient("p1"), patient("p2")], 20, id="two-registrations"),
        pytest.param(
            [patient("p1"), *[{"resourceType": "OperationOutcome", "id": f"o{i}"} for i in range(19)], patient("p2")],
            20,
            id="second-registration-on-page-2",
        ),
        pytest.param([], 20, id="none"),
        pytest.param([patient(dob="1960-01")], 20, id="partial-birth-date"),
        pytest.param([patient(nhs="9990000018")], 20, id="other-nhs-number"),
        pytest.param([{**patient(), "id": None}], 20, id="no-id"),
    ],
)
def test_anything_but_one_registration_is_no_matching_record(stub, entries, page_size):
    stub.pages(SEARCH, entries, size=page_size)
    with pytest.raises(errors.NoMatchingRecord):
        upstream_for(stub).find_patient(RESIDENT)
    assert len(stub.hits) == (len(entries) + page_size - 1) // page_size or 1


@pytest.mark.parametrize("pid", ["..", ".", "a/b", "p1?x=1", "x" * 65, ""])
def test_a_matched_id_that_is_not_a_fhir_id_is_502(stub, pid):
    stub.add(SEARCH, searchset([{**patient(), "id": pid}], stub.base))
    with pytest.raises(errors.UpstreamInvalid):
        upstream_for(stub).find_patient(RESIDENT)


def test_search_pages_are_bounded_too(stub):
    stub.pages(SEARCH, [patient()] * 6, size=1)
    with pytest.raises(errors.UpstreamInvalid):
        upstream_for(stub, max_pages=5).find_patient(RESIDENT)


def test_a_search_that_is_not_found_is_an_upstream_failure_not_no_record(stub):
    stub.add(SEARCH, b'{"resourceType": "OperationOutcome"}', status=404)
    with pytest.raises(errors.UpstreamUnavailable):
        upstream_for(stub).find_patient(RESIDENT)


# -- the header Patient ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(patient(nhs="9990000018"), id="other-nhs-number"),
        pytest.param(patient(dob="1960-01-02"), id="other-birth-date"),
        pytest.param(patient(dob="1960-01"), id="partial-birth-date"),
        pytest.param(
            {**patient(), "identifier": [{"system": "https://example.org/other", "value": "9434765919"}]},
            id="other-system",
        ),
        pytest.param({**patient(), "identifier": "9434765919"}, id="identifier-not-a-list"),
        pytest.param({k: v for k, v in patient().items() if k != "birthDate"}, id="no-birth-date"),
    ],
)
def test_a_header_patient_that_is_not_the_resident_is_502(stub, header):
    stub.add(EVERYTHING, searchset([header, *flags(2)], stub.base))
    with pytest.raises(errors.UpstreamInvalid):
        upstream_for(stub).everything("p1", RESIDENT)


def test_a_second_copy_of_the_header_patient_must_match_too(stub):
    stub.pages(EVERYTHING, [patient(), *flags(20), patient(nhs="9990000018")])
    with pytest.raises(errors.UpstreamInvalid):
        upstream_for(stub).everything("p1", RESIDENT)


def test_other_patients_are_left_to_the_policy(stub):
    linked = patient("p2", nhs="9990000018", dob="1950-05-05")
    stub.add(EVERYTHING, searchset([patient(), linked, *flags(1, subject="p2")], stub.base))
    fetched = upstream_for(stub).everything("p1", RESIDENT)
    assert [r["id"] for r in fetched.resources] == ["p1", "p2", "f0"]


def test_no_header_patient_is_502_with_or_without_identifiers(stub):
    stub.add(EVERYTHING, searchset(flags(2), stub.base))
    for identifiers in (RESIDENT, None):
        with pytest.raises(errors.UpstreamInvalid):
            upstream_for(stub).everything("p1", identifiers)


def test_without_identifiers_the_header_is_not_checked(stub):
    stub.add(EVERYTHING, searchset([patient(nhs="9990000018"), *flags(1)], stub.base))
    assert upstream_for(stub).everything("p1").pages == 1


# -- one deadline ----------------------------------------------------------------------------


class Trickle:
    """A raw HTTP server that answers every request one byte every `interval` seconds, forever."""

    def __init__(
        self, interval: float = 0.2, headers_first: bool = True, tls_files: tuple[str, str] | None = None
    ) -> None:
        self.interval, self.headers_first = interval, headers_first
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}/fhir"
        if tls_files:
            self.sock = _tls(self.sock, tls_files)
            self.base = self.base.replace("http://", "https://")
        self.stopped = threading.Event()
        self.bytes_sent = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 1000000\r\n\r\n"
            if self.headers_first:
                conn.sendall(head)
                payload = b'{"resourceType": "Bundle", "entry": [' + b" " * 999_000
            else:
                payload = head
            for byte in payload:
                if self.stopped.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                self.bytes_sent += 1

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


@pytest.mark.parametrize("headers_first", [True, False], ids=["body-trickles", "headers-trickle"])
def test_a_trickling_upstream_ends_at_the_deadline(headers_first):
    trickle = Trickle(interval=0.2, headers_first=headers_first)
    try:
        upstream = FhirUpstream(trickle.base, 5.0, 5_000_000, deadline_seconds=1.0)
        started = time.monotonic()
        with pytest.raises(errors.UpstreamTimeout):
            upstream.everything("p1", RESIDENT)
        elapsed = time.monotonic() - started
    finally:
        trickle.close()
    print(
        f"trickle ({'body' if headers_first else 'headers'}): 504 after {elapsed:.3f} s, {trickle.bytes_sent} bytes "
        "received"
    )
    assert trickle.bytes_sent >= 3  # it did trickle: each read got a byte well inside the 5 s timeout
    assert 1.0 <= elapsed < 1.0 + 0.3


def test_one_deadline_spans_the_search_and_every_page(stub):
    def slow(body: bytes, delay: float) -> Responder:
        def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
            time.sleep(delay)
            try:
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
            except OSError:
                pass  # the sidecar gave up at its deadline

        return respond

    stub.add(SEARCH, slow(json.dumps(searchset([patient()], stub.base)).encode(), 0.4))
    first = searchset([patient()], stub.base)
    first["link"].append({"relation": "next", "url": f"{stub.base}?_getpages=s1&_getpagesoffset=20"})
    stub.add(EVERYTHING, slow(json.dumps(first).encode(), 0.4))
    stub.add("/fhir?_getpages=s1&_getpagesoffset=20", slow(json.dumps(searchset(flags(1), stub.base)).encode(), 0.4))
    upstream = upstream_for(stub, deadline_seconds=1.0)
    # Each call alone is inside the deadline (0.4 s and 0.8 s) …
    upstream.find_patient(RESIDENT)
    assert upstream.everything("p1", RESIDENT).pages == 2
    # … one fetch of both is not (1.2 s): the slow page is cut at the deadline.
    started = time.monotonic()
    deadline = upstream.start_deadline()
    found = upstream.find_patient(RESIDENT, deadline=deadline)
    with pytest.raises(errors.UpstreamTimeout):
        upstream.everything(found["id"], RESIDENT, deadline=deadline)
    assert time.monotonic() - started < 1.0 + 0.3


def test_a_deadline_already_passed_asks_nothing(stub):
    stub.add(EVERYTHING, searchset([patient()], stub.base))
    with pytest.raises(errors.UpstreamTimeout):
        upstream_for(stub).everything("p1", RESIDENT, deadline=time.monotonic() - 1)
    assert stub.hits == []


def test_the_deadline_does_not_outlive_the_request(stub):
    # A connection kept alive after a fetch with a deadline reads normally on the next one.
    stub.add(EVERYTHING, searchset([patient()], stub.base))
    upstream = upstream_for(stub, deadline_seconds=0.5)
    upstream.everything("p1", RESIDENT)
    time.sleep(0.6)
    assert upstream.everything("p1", RESIDENT).pages == 1


# -- settings and the served sidecar ---------------------------------------------------------


def test_from_settings():
    upstream = FhirUpstream.from_settings(
        {
            "UPSTREAM_URL": "http://127.0.0.1:9/fhir/",
            "UPSTREAM_TIMEOUT_SECONDS": 2,
            "UPSTREAM_MAX_BYTES": 10,
            "UPSTREAM_MAX_PAGES": 3,
            "UPSTREAM_DEADLINE_SECONDS": 4,
        }
    )
    assert (upstream.base_url, upstream.timeout, upstream.max_bytes, upstream.max_pages, upstream.deadline_seconds) == (
        "http://127.0.0.1:9/fhir",
        2.0,
        10,
        3,
        4.0,
    )


@pytest.mark.parametrize("url", ["ftp://x/fhir", "http://u@x/fhir", "x/fhir"])
def test_an_upstream_url_that_cannot_be_a_base_is_refused_at_start(url):
    with pytest.raises(ValueError):
        FhirUpstream(url, 1.0, 10)


def _wired(app: Any, deadline: float) -> None:
    assert app.extensions["lcr"].upstream.deadline_seconds == deadline, "the app builds its upstream from its settings"


def test_the_served_sidecar_answers_504_at_the_deadline_with_an_audit_row(make_app, token):
    trickle = Trickle(interval=0.2)
    try:
        app = make_app(UPSTREAM_URL=trickle.base, UPSTREAM_DEADLINE_SECONDS=1.0)
        _wired(app, 1.0)
        started = time.monotonic()
        response = app.test_client().post(
            "/v1/record",
            json={"nhs_number": "9990000018", "dob": "1938-04-12"},
            headers={"Authorization": f"Bearer {token('registered_manager')}"},
        )
        elapsed = time.monotonic() - started
    finally:
        trickle.close()
    print(f"served sidecar, trickling upstream: {response.status_code} after {elapsed:.3f} s")
    assert response.status_code == 504
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == "upstream-timeout"
    assert elapsed < 1.0 + 0.5
    row = list(app.extensions["lcr"].audit.rows())[-1]
    assert (row["outcome"], row["http_status"]) == ("upstream-failed", 504)


def test_the_served_sidecar_refuses_a_record_with_an_off_base_page(make_app, token, stub, elsewhere):
    stub.add(SEARCH, searchset([patient("mthompson", "9990000018", "1938-04-12")], stub.base))
    first = searchset([patient("mthompson", "9990000018", "1938-04-12")], stub.base)
    first["link"].append({"relation": "next", "url": f"{elsewhere.base}?_getpages=s1"})
    stub.add("/fhir/Patient/mthompson/$everything", first)
    app = make_app(UPSTREAM_URL=stub.base)
    response = app.test_client().post(
        "/v1/record",
        json={"nhs_number": "9990000018", "dob": "1938-04-12"},
        headers={"Authorization": f"Bearer {token('registered_manager')}"},
    )
    assert response.status_code == 502
    assert response.get_json()["issue"][0]["details"]["coding"][0]["code"] == "upstream-invalid-response"
    assert b"entry" not in response.get_data()
    assert elsewhere.hits == []
    row = list(app.extensions["lcr"].audit.rows())[-1]
    assert (row["outcome"], row["http_status"]) == ("upstream-failed", 502)


# -- the same over TLS (the LCR is HTTPS) ------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(folder / "cert.pem"), str(folder / "key.pem")


def _tls(server_socket: socket.socket, tls_files: tuple[str, str]) -> socket.socket:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context.wrap_socket(server_socket, server_side=True)


def test_pages_over_tls(stub, tls_files, monkeypatch):
    stub.server.socket = _tls(stub.server.socket, tls_files)
    stub.root = stub.root.replace("http://", "https://")
    stub.base = stub.root + "/fhir"
    stub.pages(EVERYTHING, [patient(), *flags(44)])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files[0])
    fetched = FhirUpstream(stub.base, 5.0, 5_000_000).everything("p1", RESIDENT)
    assert fetched.pages == 3 and len(fetched.resources) == 45


def test_a_trickling_tls_upstream_ends_at_the_deadline(tls_files, monkeypatch):
    trickle = Trickle(interval=0.2, tls_files=tls_files)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_files[0])
    try:
        started = time.monotonic()
        with pytest.raises(errors.UpstreamTimeout):
            FhirUpstream(trickle.base, 5.0, 5_000_000, deadline_seconds=1.0).everything("p1", RESIDENT)
        elapsed = time.monotonic() - started
    finally:
        trickle.close()
    print(f"trickle over TLS: 504 after {elapsed:.3f} s, {trickle.bytes_sent} bytes received")
    assert trickle.bytes_sent >= 3
    assert 1.0 <= elapsed < 1.0 + 0.3
