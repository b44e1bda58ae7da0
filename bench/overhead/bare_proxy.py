"""The baseline: a bare pass-through proxy on the sidecar's server stack.

    gunicorn --workers 2 'bench.overhead.bare_proxy:create_app("http://127.0.0.1:8090/fhir")'

Same stack as the sidecar (gunicorn + Flask, same worker count and class, a kept-alive
`requests.Session` to the LCR) and the same upstream calls — the Patient search by NHS
number and birth date, then `Patient/{id}/$everything` — returning the bundle as the
upstream sent it. Nothing else: no token check, no identifier validation, no policy, no
redaction, no audit. What the sidecar costs on top of this is the price of authorization.
"""

from __future__ import annotations

import json
import os

import requests
from flask import Flask, Response, request

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


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

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/record")
    def record() -> Response:
        body = json.loads(request.get_data())
        search = session.get(
            base + "/Patient",
            params={"identifier": f"{NHS_NUMBER_SYSTEM}|{body['nhs_number']}", "birthdate": body["dob"]},
            timeout=5,
        )
        entries = search.json().get("entry") or []
        if len(entries) != 1:
            return Response(b'{"resourceType":"OperationOutcome"}', status=404, mimetype="application/fhir+json")
        patient_id = entries[0]["resource"]["id"]
        everything = session.get(f"{base}/Patient/{patient_id}/$everything", timeout=5)
        return Response(everything.content, status=everything.status_code, mimetype="application/fhir+json")

    return app
