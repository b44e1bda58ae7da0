"""docs/openapi.yaml stays the sidecar's API: same routes, same stable error codes."""

from __future__ import annotations

from typing import Any

import schemathesis

from sidecar import errors

from .conftest import OPENAPI, documented_codes

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


def test_description_loads_and_lists_every_operation():
    schema = schemathesis.openapi.from_path(str(OPENAPI))
    labels = {op.ok().label for op in schema.get_all_operations()}
    assert {"POST /v1/record", "POST /v1/menu", "GET /healthz"} <= labels


def test_every_route_of_the_app_is_described_with_its_methods(app: Any, openapi: dict[str, Any]):
    served = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        served[rule.rule] = {m.lower() for m in rule.methods or ()} & HTTP_METHODS
    described = {path: set(ops) & HTTP_METHODS for path, ops in openapi["paths"].items()}
    assert described == served


def test_every_stable_error_code_is_described_under_its_status(openapi: dict[str, Any]):
    in_code: dict[int, set[str]] = {}
    for cls in errors.all_errors():
        in_code.setdefault(cls.status, set()).add(cls.code)
    assert documented_codes(openapi) == in_code


def test_every_error_response_of_the_api_is_an_operation_outcome(openapi: dict[str, Any]):
    responses = openapi["components"]["responses"]
    for path, operations in openapi["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            assert operation["security"] if "security" in operation else openapi["security"], (method, path)
            for status, response in operation["responses"].items():
                if status == "200":
                    continue
                resolved = responses[response["$ref"].rsplit("/", 1)[1]]
                ((media_type, content),) = resolved["content"].items()
                assert media_type == "application/fhir+json"
                assert content["schema"]["$ref"] == f"#/components/schemas/Outcome{status}", (method, path, status)
                assert "X-Decision-Id" in resolved["headers"]
