"""The demo upstream: a read-only FHIR R4 server over the resident files, answering as HAPI would.

    GET /fhir/metadata                      CapabilityStatement
    GET /fhir/Patient?identifier=…&birthdate=…   searchset Bundle
    GET /fhir/Patient/<id>                  the Patient, or 404 OperationOutcome
    GET /fhir/Patient/<id>/$everything      searchset Bundle: Patient, compartment, referenced
    anything else                           404 OperationOutcome

Run it with `python -m demo_upstream` or `gunicorn 'demo_upstream.app:create_app()'`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from . import store as store_module
from .errors import FhirError, ResourceNotFound, UnknownEndpoint, operation_outcome
from .search import SEARCH_PARAMETERS, search_patients
from .store import Store

FHIR_JSON = "application/fhir+json; charset=utf-8"
FHIR_VERSION = "4.0.1"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "residents"
EXTENSION = "demo_upstream.store"
PREFIX = "/fhir"

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
    app.register_error_handler(FhirError, _render_fhir_error)
    app.register_error_handler(HTTPException, _render_http_error)
    return app


def _store() -> Store:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


@bp.get("/metadata")
def metadata() -> Response:
    return fhir_response(capability_statement())


@bp.get("/Patient")
def search() -> Response:
    ids = search_patients(_store(), request.args.items(multi=True))
    return fhir_response(searchset([(patient, "match") for patient in _store().patients(ids)]))


@bp.get("/Patient/<patient_id>")
def read(patient_id: str) -> Response:
    return fhir_response(_patient_or_404(patient_id))


@bp.get("/Patient/<patient_id>/$everything")
def everything(patient_id: str) -> Response:
    _patient_or_404(patient_id)
    return fhir_response(searchset(_store().everything(patient_id)))


def _patient_or_404(patient_id: str) -> dict[str, Any]:
    patient = _store().patient(patient_id)
    if patient is None:
        raise ResourceNotFound(f"Resource Patient/{patient_id} is not known")
    return patient


def searchset(found: list[tuple[dict[str, Any], str]]) -> dict[str, Any]:
    base = request.url_root.rstrip("/") + PREFIX
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": _now()},
        "type": "searchset",
        "total": len(found),
        "link": [{"relation": "self", "url": request.url}],
    }
    if found:  # HAPI leaves `entry` out of an empty searchset
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": mode},
            }
            for resource, mode in found
        ]
    return bundle


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
                            {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}
                        ],
                    }
                ],
            }
        ],
    }


def fhir_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type=FHIR_JSON)


def _render_fhir_error(error: FhirError) -> Response:
    return fhir_response(error.outcome(), error.status)


def _render_http_error(error: HTTPException) -> Response:
    # Werkzeug's routing errors (no such path; a method other than GET) are things this
    # server does not implement: answer them in FHIR, as a 404 like an unknown endpoint.
    status = error.code or 500
    if status in (404, 405):
        unknown = UnknownEndpoint(f"This server does not support {request.method} {request.path}; it serves "
                                  "GET /fhir/metadata, /fhir/Patient?…, /fhir/Patient/<id> and /fhir/Patient/<id>/$everything")
        return _render_fhir_error(unknown)
    return fhir_response(operation_outcome("processing", error.description or error.name), status)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
