"""The application factory: settings, then resources, then routes. All wiring is here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

import audit_store

from . import audit_trail, errors, metrics, pipeline, record, settings
from .breaker import CircuitBreaker
from .pipeline import Access, Services
from .policy import PolicyClient
from .readiness import ReadinessProbe
from .steps import verify_caller
from .tokens import TokenVerifier
from .upstream import FhirUpstream


def create_app(test_config: dict[str, Any] | None = None, config_file: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(settings.load(config_file, overrides=test_config))

    audit = audit_store.init_app(app)
    app.extensions["lcr"] = Services(
        tokens=TokenVerifier.from_settings(app.config),
        policy=PolicyClient(
            app.config["OPA_URL"],
            app.config["OPA_TIMEOUT_SECONDS"],
            redact_timeout=app.config["OPA_REDACT_TIMEOUT_SECONDS"],
            cache_entries=app.config["REDACT_CACHE_ENTRIES"],
            breaker=_breaker(app.config),
            facts_cache_entries=int(app.config["REDACT_FACTS_CACHE_ENTRIES"]),
        ),
        upstream=FhirUpstream.from_settings(app.config),
        audit=audit,
        readiness=ReadinessProbe(
            app.config["OPA_URL"],
            audit,
            app.config["BUNDLE_MAX_AGE_SECONDS"],
            app.config["READINESS_INTERVAL_SECONDS"],
            app.config["OPA_TIMEOUT_SECONDS"],
        ),
        shadow=(
            PolicyClient(
                app.config["SHADOW_OPA_URL"], app.config["SHADOW_TIMEOUT_SECONDS"], breaker=_breaker(app.config)
            )
            if app.config["SHADOW_OPA_URL"]
            else None
        ),
    )
    app.register_blueprint(record.bp)
    app.register_blueprint(audit_trail.bp)
    app.wsgi_app = _GuardedBody(app.wsgi_app)  # type: ignore[method-assign]  # Flask's documented way to wrap the WSGI app in middleware

    @app.before_request
    def refuse_oversize_head() -> Response | None:
        """The sidecar's own limits on the request head, below gunicorn's (gunicorn_conf.py),
        so that an oversize URL or header set is refused here, with a code and an audit row."""
        error = _oversize_head(request.environ)
        if error is None:
            return None
        access = pipeline.begin(_action())
        if error.status != 414 and request.headers.get("Authorization"):
            try:
                verify_caller(access)  # only so the row says who sent it; the answer is the same
            except errors.LcrError:
                pass
        _note_method(access)
        return pipeline.finish(access, error)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Alive: the process answers. Says nothing about OPA or the audit store."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> tuple[dict[str, Any], int]:
        """Ready: OPA up with a verified, recent bundle and the audit store writable."""
        verdict = app.extensions["lcr"].readiness.check()
        return verdict.as_json(), 200 if verdict.ready else 503

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    @app.errorhandler(NotFound)
    def not_found(_: NotFound) -> Response:
        return _refused(errors.RouteNotFound())

    @app.errorhandler(MethodNotAllowed)
    def method_not_allowed(exc: MethodNotAllowed) -> Response:
        response = _refused(errors.MethodNotAllowed())
        if exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    return app


# -- the request's method: a fixed set of labels ------------------------------------------

# Methods of HTTP (RFC 9110) and WebDAV's common ones; any other token a client sends is
# `http:other` in /metrics and the row's action, so a client cannot mint labels (an
# NHS-number-shaped method used to become one). The raw method is kept only in the row.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_ENDPOINT_ACTIONS = {
    "record.record": "record.read",
    "record.menu": "menu.read",
    "audit_trail.audit_trail": "audit.read",
}
RAW_METHOD_MAX = 32


def method_label(method: str) -> str:
    return f"http:{method}" if method in KNOWN_METHODS else "http:other"


def _action() -> str:
    """The audit action of a request refused before its endpoint ran."""
    rule = request.url_rule
    if rule is not None and request.method == "POST" and rule.endpoint in _ENDPOINT_ACTIONS:
        return _ENDPOINT_ACTIONS[rule.endpoint]
    return method_label(request.method)


def raw_method(method: str) -> str:
    """The method as sent, for the audit row only: escaped to printable ASCII, bounded."""
    escaped = method.encode("unicode_escape", "backslashreplace").decode("ascii")
    return escaped if len(escaped) <= RAW_METHOD_MAX else escaped[: RAW_METHOD_MAX - 1] + "…"


def _refused(error: errors.LcrError) -> Response:
    """For requests that never reached an endpoint (unknown route, wrong method)."""
    access = pipeline.begin(_action())
    _note_method(access)
    return pipeline.finish(access, error)


def _note_method(access: Access) -> None:
    if request.method not in KNOWN_METHODS and access.event.opa_input is None:
        # No question went to OPA for such a request: the row's input holds what was sent.
        access.event.opa_input = {"request": {"method": raw_method(request.method)}}


# -- the request head: the sidecar's own limits ----------------------------------------------

# Below gunicorn's (gunicorn_conf.py: limit_request_line 8190, limit_request_fields 200,
# limit_request_field_size 32768), so these refusals reach the audited path.
MAX_TARGET_BYTES = 4096  # path and query; the care app sends identifiers in the body
MAX_HEADER_FIELDS = 100
MAX_HEADER_FIELD_BYTES = 16384  # a bearer token of TOKEN_MAX_BYTES (8192) fits twice
MAX_HEADER_BYTES = 32768


def _oversize_head(environ: dict[str, Any]) -> errors.LcrError | None:
    target = environ.get("RAW_URI")  # gunicorn: the request target as sent
    if target is None:
        target = environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", "")
    if len(target) > MAX_TARGET_BYTES:
        return errors.UriTooLong()
    fields = 0
    total = 0
    for key, value in environ.items():
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if not isinstance(value, str) or (key in ("CONTENT_TYPE", "CONTENT_LENGTH") and not value):
                continue
            fields += 1
            size = len(key) - (5 if key.startswith("HTTP_") else 0) + 2 + len(value)
            total += size
            if size > MAX_HEADER_FIELD_BYTES:
                return errors.HeadersTooLarge()
    if fields > MAX_HEADER_FIELDS or total > MAX_HEADER_BYTES:
        return errors.HeadersTooLarge()
    return None


# -- the request body: framing faults are the caller's -------------------------------------


class _GuardedBody:
    """WSGI middleware: a body whose framing is broken (a chunk size `zz`, a missing chunk
    terminator, a connection closed or stalled mid-body) raises `BodyFramingInvalid` where
    the endpoint reads it, so it is a 400 with its audit row, never a 500.

    Under gunicorn the body stream already ends where its framing says (Content-Length or
    the last chunk), so it is marked terminated: Werkzeug then reads it as it is rather
    than wrapping it in a stream that turns a short body into an exception of its own.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        stream = environ.get("wsgi.input")
        if stream is not None and "gunicorn.socket" in environ:
            length = environ.get("CONTENT_LENGTH") or ""
            environ["wsgi.input"] = _FramedInput(stream, int(length) if length.isdigit() else None)
            environ["wsgi.input_terminated"] = True
        return self.app(environ, start_response)


class _FramedInput:
    def __init__(self, stream: Any, length: int | None) -> None:
        self._stream = stream
        self._missing = length  # bytes the Content-Length still promises

    def _count(self, data: bytes, size: int | None = None) -> bytes:
        if self._missing is not None:
            self._missing -= len(data)
            if self._missing > 0 and (not data or size is None or size < 0 or len(data) < size):
                raise errors.BodyFramingInvalid()  # the connection ended before the body did
        return data

    def _guard(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except errors.LcrError:
            raise
        except Exception as exc:  # gunicorn's InvalidChunkSize, NoMoreData, a read timeout, …
            logging.getLogger("lcr.sidecar").info("request body unreadable: %s", type(exc).__name__)
            raise errors.BodyFramingInvalid() from None

    def read(self, size: int | None = None) -> bytes:
        return self._count(self._guard(self._stream.read, size), size)

    def readline(self, size: int | None = None) -> bytes:
        line: bytes = self._guard(self._stream.readline, size)
        return self._count(line, len(line) if line.endswith(b"\n") else size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> _FramedInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def _breaker(config: Any) -> CircuitBreaker:
    return CircuitBreaker(config["OPA_BREAKER_FAILURES"], config["OPA_BREAKER_COOL_OFF_SECONDS"])
