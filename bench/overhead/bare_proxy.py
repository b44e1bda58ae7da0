"""The baseline: a bare pass-through proxy on the sidecar's server stack.

    gunicorn --workers 2 'bench.overhead.bare_proxy:create_app("http://127.0.0.1:8090/fhir")'

Same stack as the sidecar (gunicorn + Flask, same worker count and class, a kept-alive
`requests.Session` to the LCR) and the same upstream work: the Patient search by NHS
number and birth date, then `Patient/{id}/$everything`, each followed through every
`Bundle.link` `next` page, read with the sidecar's JSON reader (numbers keep their text),
and the whole record returned as one searchset Bundle of the upstream's entries. Nothing
else: no token check, no identifier validation, no check of where a `next` link points,
no policy, no redaction, no audit. What the sidecar costs on top of this is the price of
authorization.
"""

from __future__ import annotations

import json
import os
from typing import Any

import requests
from flask import Flask, Response, request

from sidecar import fastjson
from sidecar.identifiers import NHS_NUMBER_SYSTEM

MAX_PAGES = 1000  # a loop guard only


def create_app(upstream_url: str | None = None) -> Flask:
    app = Flask(__name__)
    base = (upstream_url or os.environ["BARE_PROXY_UPSTREAM_URL"]).rstrip("/")
    session = requests.Session()
    session.headers["Accept"] = "application/fhir+json"
    # requests reads proxy and CA settings from the environment on every call (≈ 0.5 ms
    # of CPU); every call goes to the same host, so read them once.
    session.proxies = requests.utils.get_environ_proxies(base)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False

    def all_entries(url: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The entries of every page, following `next` links as the upstream gives them."""
        entries: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            response = session.get(url, params=params, timeout=5)
            response.raise_for_status()
            page = fastjson.loads_fhir(response.content)
            entries.extend(page.get("entry") or [])
            url = next((link["url"] for link in page.get("link") or [] if link.get("relation") == "next"), "")
            params = None
            if not url:
                return entries
        raise RuntimeError(f"more than {MAX_PAGES} pages")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/record")
    def record() -> Response:
        body = json.loads(request.get_data())
        found = all_entries(
            base + "/Patient",
            {"identifier": f"{NHS_NUMBER_SYSTEM}|{body['nhs_number']}", "birthdate": body["dob"]},
        )
        if len(found) != 1:
            return Response(b'{"resourceType":"OperationOutcome"}', status=404, mimetype="application/fhir+json")
        entries = all_entries(f"{base}/Patient/{found[0]['resource']['id']}/$everything")
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
        return Response(fastjson.dumps(bundle), status=200, mimetype="application/fhir+json")

    return app
