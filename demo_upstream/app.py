"""The demo upstream: a read-only FHIR R4 server over the resident files, answering as HAPI would.

    GET /fhir/metadata                      CapabilityStatement
    GET /fhir/Patient?identifier=…&birthdate=…   searchset Bundle
    GET /fhir/Patient/<id>                  the Patient, or 404 OperationOutcome
    GET /fhir/Patient/<id>/$everything      searchset Bundle: Patient, compartment, referenced
    GET /fhir?_getpages=…&_getpagesoffset=N&_count=M   a further page of either
    anything else                           404 OperationOutcome

Searches and `$everything` are paged as HAPI FHIR JPA pages them: at most `_count` entries
a page (default 20, at most 1000), a `next` link `{base}?_getpages=<id>&_getpagesoffset=20
&_count=20&_bundletype=searchset` while more remain, `fullUrl` on every entry. The page id
encodes the query itself (the data never changes), so any worker answers any page.

Run it with `python -m demo_upstream` or `gunicorn 'demo_upstream.app:create_app()'`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from . import store as store_module
from .errors import FhirError, InvalidRequest, ResourceNotFound, UnknownEndpoint, operation_outcome
from .search import SEARCH_PARAMETERS, search_patients
from .store import Store

FHIR_JSON = "application/fhir+json; charset=utf-8"
FHIR_VERSION = "4.0.1"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "residents"
EXTENSION = "demo_upstream.store"
PREFIX = "/fhir"
DEFAULT_PAGE_SIZE = 20  # HAPI FHIR JPA's default
MAX_PAGE_SIZE = 1000  # a larger _count is lowered to this, as HAPI lowers it to its maximum

bp = Blueprint("fhir", __name__, url_prefix=PREFIX)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then DEMO_UPSTREAM_* environment variables, then test_config."""
    app = Flask(__name__)
    # No automatic OPTIONS answers: every method but GET (and HEAD) is a 404, like any other path.
    app.config.from_mapping(DATA_DIR=str(DEFAULT_DATA_DIR), PROVIDE_AUTOMATIC_OPTIONS=False)
    app.config.from_prefixed_env("DEMO_UPSTREAM")  # DEMO_UPSTREAM_DATA_DIR → DATA_DIR
    if test_config is not None:
        app.config.from_mapping(test_config)
    # Load at startup, so a malformed file stops the server instead of failing requests.
    app.extensions[EXTENSION] = store_module.load(str(app.config["DATA_DIR"]))
    app.register_blueprint(bp)
    _count_calls(app)
    app.register_error_handler(FhirError, _render_fhir_error)
    app.register_error_handler(HTTPException, _render_http_error)
    return app


def _count_calls(app: Flask) -> None:
    """Count the FHIR requests this process served: `GET /_demo/calls` → {"fhir_requests": n}.

    Lets tests check that a request the policy refuses never reached the LCR (the
    relationship rule is decided before any lookup). Not part of the FHIR API.
    """
    lock, served = threading.Lock(), [0]

    @app.before_request
    def counted() -> None:
        if request.path.startswith(PREFIX):
            with lock:
                served[0] += 1

    @app.get("/_demo/calls")
    def calls() -> dict[str, int]:
        return {"fhir_requests": served[0]}


def _store() -> Store:
    return current_app.extensions[EXTENSION]


@bp.get("/metadata")
def metadata() -> Response:
    return fhir_response(capability_statement())


@bp.get("/Patient")
def search() -> Response:
    args = [(name, value) for name, value in request.args.items(multi=True) if name != "_count"]
    return _page({"search": args}, 0)


@bp.get("/Patient/<patient_id>")
def read(patient_id: str) -> Response:
    return fhir_response(_patient_or_404(patient_id))


@bp.get("/Patient/<patient_id>/$everything")
def everything(patient_id: str) -> Response:
    return _page({"everything": patient_id}, 0)


@bp.get("")
def further_page() -> Response:
    """`GET {base}?_getpages=<id>&_getpagesoffset=N`: a further page of a search or $everything."""
    page_id = request.args.get("_getpages")
    if page_id is None:
        raise UnknownEndpoint(f"This server does not support GET {request.path} without _getpages")
    query = _decode_page_id(page_id)
    offset = _non_negative_int("_getpagesoffset", request.args.get("_getpagesoffset", "0"))
    return _page(query, offset)


class SearchGone(FhirError):
    """An unknown page id: HAPI answers 410 for a search it no longer (or never) held."""

    status = 410
    code = "not-found"


def _page(query: dict[str, Any], offset: int) -> Response:
    found = _run(query)
    count = min(_non_negative_int("_count", request.args.get("_count", str(DEFAULT_PAGE_SIZE))), MAX_PAGE_SIZE)
    return fhir_response(searchset(found, offset, count, _encode_page_id(query)))


def _run(query: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    if "search" in query:
        ids = search_patients(_store(), [tuple(arg) for arg in query["search"]])
        return [(patient, "match") for patient in _store().patients(ids)]
    _patient_or_404(query["everything"])
    return _store().everything(query["everything"])


def _encode_page_id(query: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(query, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_page_id(page_id: str) -> dict[str, Any]:
    try:
        query = json.loads(base64.urlsafe_b64decode(page_id + "=" * (-len(page_id) % 4)))
    except (ValueError, binascii.Error):
        query = None
    valid = (
        isinstance(query, dict)
        and len(query) == 1
        and (
            isinstance(query.get("everything"), str)
            or (
                isinstance(query.get("search"), list)
                and all(
                    isinstance(a, list) and len(a) == 2 and all(isinstance(x, str) for x in a) for a in query["search"]
                )
            )
        )
    )
    if not valid:
        raise SearchGone(f'Search ID "{page_id}" does not exist and may have expired')
    return query


def _non_negative_int(name: str, raw: str) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise InvalidRequest(f'Invalid {name} value "{raw}": expected a whole number')
    return int(raw)


def _patient_or_404(patient_id: str) -> dict[str, Any]:
    patient = _store().patient(patient_id)
    if patient is None:
        raise ResourceNotFound(f"Resource Patient/{patient_id} is not known")
    return patient


def searchset(
    found: list[tuple[dict[str, Any], str]], offset: int = 0, count: int | None = None, page_id: str | None = None
) -> dict[str, Any]:
    """One page of a searchset Bundle: `found[offset:offset + count]`, with HAPI's links."""
    base = request.url_root.rstrip("/") + PREFIX
    count = len(found) if count is None else count
    page = found[offset : offset + count]
    links = [{"relation": "self", "url": request.url}]
    if page_id is not None and count and offset + count < len(found):
        links.append({"relation": "next", "url": _page_url(base, page_id, offset + count, count)})
    if page_id is not None and count and offset > 0:
        links.append({"relation": "previous", "url": _page_url(base, page_id, max(0, offset - count), count)})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": _now()},
        "type": "searchset",
        "total": len(found),
        "link": links,
    }
    if page:  # HAPI leaves `entry` out of an empty searchset
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": mode},
            }
            for resource, mode in page
        ]
    return bundle


def _page_url(base: str, page_id: str, offset: int, count: int) -> str:
    return f"{base}?_getpages={page_id}&_getpagesoffset={offset}&_count={count}&_bundletype=searchset"


def capability_statement() -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _now(),
        "kind": "instance",
        "software": {"name": "LCR demo upstream", "version": "0.1.0"},
        "implementation": {
            "description": "Synthetic stand-in for the London Care Record FHIR API (demo data only)",
            "url": request.url_root.rstrip("/") + PREFIX,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": "Patient",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": name, "type": "date" if name == "birthdate" else "token"}
                            for name in SEARCH_PARAMETERS
                        ],
                        "operation": [
                            {
                                "name": "everything",
                                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                            }
                        ],
                    }
                ],
            }
        ],
    }


def fhir_response(body: dict[str, Any], status: int = 200) -> Response:
    # Compact, as HAPI answers without _pretty.
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status=status, content_type=FHIR_JSON)


def _render_fhir_error(error: FhirError) -> Response:
    return fhir_response(error.outcome(), error.status)


def _render_http_error(error: HTTPException) -> Response:
    # Werkzeug's routing errors (no such path; a method other than GET) are things this
    # server does not implement: answer them in FHIR, as a 404 like an unknown endpoint.
    status = error.code or 500
    if status in (404, 405):
        unknown = UnknownEndpoint(
            f"This server does not support {request.method} {request.path}; it serves "
            "GET /fhir/metadata, /fhir/Patient?…, /fhir/Patient/<id> and /fhir/Patient/<id>/$everything"
        )
        return _render_fhir_error(unknown)
    return fhir_response(operation_outcome("processing", error.description or error.name), status)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
