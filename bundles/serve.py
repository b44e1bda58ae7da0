"""A bundle server for local runs: serves `lcr.tar.gz` with an ETag, so OPA's polls of an
unchanged bundle cost a 304 and no download.

    gunicorn 'bundles.serve:create_app("var/bundles/serve")'
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, send_from_directory


def create_app(directory: str = "var/bundles/serve") -> Flask:
    app = Flask(__name__)
    root = Path(directory).resolve()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/<path:name>")
    def bundle(name: str) -> Response:
        # max_age=0: OPA must revalidate every poll (If-None-Match → 304 when unchanged).
        response = send_from_directory(root, name, mimetype="application/gzip", etag=True, conditional=True, max_age=0)
        # The file *is* gzip; as a Content-Encoding, clients would unpack it on the way in.
        response.headers.pop("Content-Encoding", None)
        return response

    return app
