"""The demo upstream pages searches and $everything as HAPI FHIR JPA does, and the sidecar reads every page.

HAPI: 20 entries a page unless `_count` says otherwise, a `next` link
`{base}?_getpages=<id>&_getpagesoffset=20&_count=20&_bundletype=searchset` while more remain,
`fullUrl` on every entry, 410 for a page id it does not hold.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from demo_upstream import create_app
from demo_upstream.app import DEFAULT_DATA_DIR
from sidecar import errors
from sidecar.identifiers import PatientIdentifiers
from sidecar.upstream import FhirUpstream

NHS = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.fixture
def client() -> Any:
    return create_app({"TESTING": True}).test_client()


def get(client: Any, url: str, status: int = 200) -> dict[str, Any]:
    response = client.get(url.removeprefix("http://localhost"))
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    return json.loads(response.get_data())


def link(bundle: dict[str, Any], relation: str) -> str | None:
    urls = [item["url"] for item in bundle["link"] if item["relation"] == relation]
    assert len(urls) <= 1
    return urls[0] if urls else None


def pages(client: Any, url: str) -> list[dict[str, Any]]:
    found = [get(client, url)]
    while (next_url := link(found[-1], "next")) is not None:
        assert len(found) < 200
        found.append(get(client, next_url))
    return found


def keys(bundle: dict[str, Any]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])]


def margaret_file_keys() -> list[str]:
    bundle = json.loads((DEFAULT_DATA_DIR / "9990000018-margaret-thompson.json").read_text())
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]]


def test_everything_comes_in_pages_of_20_with_hapi_next_links(client):
    everything = pages(client, "/fhir/Patient/mthompson/$everything")
    record = [key for page in everything for key in keys(page)]
    assert len(record) > 40  # so there are three pages or more
    assert sorted(record) == sorted(set(margaret_file_keys()))
    assert [len(keys(p)) for p in everything] == [20] * (len(record) // 20) + (
        [len(record) % 20] if len(record) % 20 else []
    )
    assert record[0] == "Patient/mthompson"
    for n, page in enumerate(everything):
        next_url = link(page, "next")
        if n + 1 == len(everything):
            assert next_url is None
            continue
        parts = urlsplit(next_url)
        assert (parts.scheme, parts.netloc, parts.path) == ("http", "localhost", "/fhir")  # {base}?_getpages=…
        query = parse_qs(parts.query)
        assert query["_getpagesoffset"] == [str(20 * (n + 1))] and query["_count"] == ["20"]
        assert query["_bundletype"] == ["searchset"] and query["_getpages"][0]
        assert page["type"] == "searchset"
    for n, page in enumerate(everything[1:], start=1):
        assert parse_qs(urlsplit(link(page, "previous")).query)["_getpagesoffset"] == [str(20 * (n - 1))]
    assert link(everything[0], "previous") is None
    for page in everything:
        for entry in page["entry"]:
            resource = entry["resource"]
            assert entry["fullUrl"] == f"http://localhost/fhir/{resource['resourceType']}/{resource['id']}"


def test_count_sets_the_page_size(client):
    total = len(set(margaret_file_keys()))
    assert len(pages(client, "/fhir/Patient/mthompson/$everything?_count=7")) == math.ceil(total / 7)
    [one] = pages(client, "/fhir/Patient/mthompson/$everything?_count=5000")  # lowered to 1000: one page
    assert len(keys(one)) == total
    empty = get(client, "/fhir/Patient/mthompson/$everything?_count=0")
    assert "entry" not in empty and empty["total"] == total and link(empty, "next") is None


def test_search_pages_too(client):
    url = f"/fhir/Patient?identifier={NHS}|&_count=2"
    found = pages(client, url)
    assert [keys(p) for p in found] == [
        ["Patient/mthompson", "Patient/abennett"],
        ["Patient/eclarke", "Patient/fexample-a"],
        ["Patient/fexample-b", "Patient/whughes"],
    ]
    duplicate = pages(client, f"/fhir/Patient?identifier={NHS}|9990000042&birthdate=1950-01-20&_count=1")
    assert [keys(p) for p in duplicate] == [
        ["Patient/fexample-a"],
        ["Patient/fexample-b"],
    ]  # the second registration is on page 2


def test_a_page_link_is_answered_by_any_instance(client):
    first = get(client, "/fhir/Patient/mthompson/$everything")
    other = create_app({"TESTING": True}).test_client()  # another worker: the page id carries the query
    assert keys(get(other, link(first, "next"))) == keys(get(client, link(first, "next")))


@pytest.mark.parametrize(
    "url, status",
    [
        ("/fhir?_getpages=nonsense&_getpagesoffset=20", 410),
        ("/fhir?_getpages=eyJ4IjoxfQ&_getpagesoffset=20", 410),  # {"x":1}
        ("/fhir?_getpages=eyJldmVyeXRoaW5nIjoibm9ib2R5In0&_getpagesoffset=20", 404),  # {"everything":"nobody"}
        ("/fhir", 404),
        ("/fhir?_getpages=eyJldmVyeXRoaW5nIjoibXRob21wc29uIn0&_getpagesoffset=x", 400),
        ("/fhir/Patient/mthompson/$everything?_count=-1", 400),
    ],
)
def test_bad_page_requests_are_operation_outcomes(client, url, status):
    body = get(client, url, status)
    assert body["resourceType"] == "OperationOutcome"


def test_a_page_past_the_end_is_empty(client):
    body = get(client, "/fhir?_getpages=eyJldmVyeXRoaW5nIjoibXRob21wc29uIn0&_getpagesoffset=5000&_count=20")
    assert "entry" not in body and link(body, "next") is None


def test_answers_are_compact_json_like_hapi_without_pretty(client):
    raw = client.get("/fhir/Patient/mthompson/$everything").get_data()
    assert raw.startswith(b'{"resourceType":"Bundle",') and b'": ' not in raw[:2000] and b"\n" not in raw


# -- the sidecar's client against the served demo upstream ------------------------------------


def test_the_sidecar_reads_every_page_of_a_served_record(upstream):
    client = FhirUpstream(upstream.url + "/fhir", 5.0, 50_000_000)
    try:
        margaret = PatientIdentifiers("9990000018", "1938-04-12")
        found = client.find_patient(margaret)
        record = client.everything(found["id"], margaret)
    finally:
        client.close()
    total = len(set(margaret_file_keys()))
    assert record.pages == math.ceil(total / 20) >= 3
    assert sorted(f"{r['resourceType']}/{r['id']}" for r in record.resources) == sorted(set(margaret_file_keys()))
    assert all(url and url.startswith(upstream.url + "/fhir/") for url in record.full_urls)


def test_the_sidecar_sees_a_duplicate_registration_on_any_page(upstream):
    client = FhirUpstream(upstream.url + "/fhir", 5.0, 50_000_000)
    try:
        with pytest.raises(errors.NoMatchingRecord):
            client.find_patient(PatientIdentifiers("9990000042", "1950-01-20"))
    finally:
        client.close()
