"""A small FHIR stub serving fixed `$everything` pages, so Bundle-level shapes the demo
upstream refuses (chosen `fullUrl`s, the same id twice with different content, entries
without a resource) can be served: search by NHS number, then pages of entries linked by
`next`."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Stub:
    def __init__(self) -> None:
        self.patients: dict[str, dict[str, Any]] = {}  # nhs number -> header Patient
        self.pages: dict[str, list[list[dict[str, Any]]]] = {}  # patient id -> pages of entries
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub._answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, patient: dict[str, Any], pages: list[list[dict[str, Any]]]) -> None:
        """pages: Bundle entries per page (each {"fullUrl": ..., "resource": ...} or any shape)."""
        number = patient["identifier"][0]["value"]
        self.patients[number] = patient
        self.pages[patient["id"]] = pages

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(parsed.query)
        body: dict[str, Any] | None = None
        if parsed.path == "/fhir/Patient" and "identifier" in query:
            number = query["identifier"][0].split("|")[-1]
            patient = self.patients.get(number)
            entries = (
                [{"fullUrl": f"{self.url}/Patient/{patient['id']}", "resource": patient, "search": {"mode": "match"}}]
                if patient
                else []
            )
            body = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
        elif parsed.path.startswith("/fhir/Patient/") and parsed.path.endswith("/$everything"):
            body = self._page(urllib.parse.unquote(parsed.path.split("/")[3]), 0)
        elif parsed.path == "/fhir/page":
            body = self._page(query["id"][0], int(query["n"][0]))
        if body is None:
            handler.send_response(404)
            data = b'{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}'
        else:
            handler.send_response(200)
            data = json.dumps(body).encode()
        handler.send_header("Content-Type", "application/fhir+json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _page(self, patient_id: str, n: int) -> dict[str, Any] | None:
        pages = self.pages.get(patient_id)
        if pages is None or n >= len(pages):
            return None
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": pages[n], "link": []}
        if n + 1 < len(pages):
            bundle["link"].append({"relation": "next", "url": f"{self.url}/page?id={patient_id}&n={n + 1}"})
        return bundle
