"""The application factory: settings, then resources, then routes. All wiring is here."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

import audit_store

from . import audit_trail, errors, metrics, settings
from .breaker import CircuitBreaker
from .policy import PolicyClient
from .readiness import ReadinessProbe
from .record import Services, audited_error, bp
from .tokens import TokenVerifier
from .upstream import FhirUpstream


def create_app(test_config: dict[str, Any] | None = None, config_file: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(settings.load(config_file))
    if test_config:
        app.config.update(test_config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    app.extensions["lcr"] = Services(
        tokens=TokenVerifier.from_settings(app.config),
        policy=PolicyClient(
            app.config["OPA_URL"],
            float(app.config["OPA_TIMEOUT_SECONDS"]),
            redact_timeout=float(app.config["OPA_REDACT_TIMEOUT_SECONDS"]),
            cache_entries=int(app.config["REDACT_CACHE_ENTRIES"]),
            breaker=_breaker(app.config),
        ),
        upstream=FhirUpstream.from_settings(app.config),
        audit=audit_store.init_app(app),
        readiness=ReadinessProbe(
            app.config["OPA_URL"],
            app.config["AUDIT_DB"],
            float(app.config["BUNDLE_MAX_AGE_SECONDS"]),
            float(app.config["READINESS_INTERVAL_SECONDS"]),
            float(app.config["OPA_TIMEOUT_SECONDS"]),
        ),
        shadow=(
            PolicyClient(app.config["SHADOW_OPA_URL"], float(app.config["SHADOW_TIMEOUT_SECONDS"]), breaker=_breaker(app.config))
            if app.config["SHADOW_OPA_URL"]
            else None
        ),
    )
    app.register_blueprint(bp)
    app.register_blueprint(audit_trail.bp)

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
        return audited_error(f"http:{request.method}", errors.RouteNotFound())

    @app.errorhandler(MethodNotAllowed)
    def method_not_allowed(exc: MethodNotAllowed) -> Response:
        return audited_error(f"http:{request.method}", errors.MethodNotAllowed(), allow=exc.valid_methods)

    return app


def _breaker(config: Any) -> CircuitBreaker:
    return CircuitBreaker(int(config["OPA_BREAKER_FAILURES"]), float(config["OPA_BREAKER_COOL_OFF_SECONDS"]))
