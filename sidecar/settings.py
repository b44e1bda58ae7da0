"""Every setting of the sidecar in one table: default, help, and how it is loaded.

Order of precedence (last wins): the defaults below, the YAML file named by
`LCR_SIDECAR_CONFIG` (or passed to `create_app`), environment variables
`LCR_SIDECAR_<NAME>` (values parsed as JSON when they parse, like Flask's
`from_prefixed_env`), then a test override.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "LCR_SIDECAR_"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("OPA_URL", "http://127.0.0.1:8181", "Base URL of the OPA server's REST API."),
    Setting("OPA_TIMEOUT_SECONDS", 0.5, "Give up on OPA after this long and fail closed (503)."),
    Setting("OPA_REDACT_TIMEOUT_SECONDS", 5.0, "Give up on OPA's redaction of a fetched record after this long (503); a big record takes longer than a decision."),
    Setting("REDACT_CACHE_ENTRIES", 256, "Redaction answers kept per process, keyed by policy revision and the whole question (0 = off)."),
    Setting("SHADOW_OPA_URL", "", "OPA serving a candidate bundle to evaluate on live traffic without enforcing it; empty = off."),
    Setting("SHADOW_TIMEOUT_SECONDS", 0.2, "Give up on the shadow OPA after this long (the request is unaffected)."),
    Setting("BUNDLE_MAX_AGE_SECONDS", 600, "Not ready (503 policy-stale) when OPA has not reached the bundle server for this long."),
    Setting("READINESS_INTERVAL_SECONDS", 1.0, "How often each process re-checks readiness in the background."),
    Setting(
        "READINESS_RECHECK_WAIT_SECONDS",
        0.025,
        "While not ready, a request waits at most this long for a fresh readiness check before its 503.",
    ),
    Setting("OPA_BREAKER_FAILURES", 1, "OPA failures to answer in a row (timeout, refused) that open the circuit: questions are then refused at once (503)."),
    Setting("OPA_BREAKER_COOL_OFF_SECONDS", 1.0, "How long the circuit stays open before one request may try OPA again."),
    Setting("UPSTREAM_URL", "http://127.0.0.1:8090/fhir", "Base URL of the LCR FHIR R4 API."),
    Setting("UPSTREAM_TIMEOUT_SECONDS", 5.0, "Give up when one connect to, or one read from, the LCR FHIR API waits this long (504)."),
    Setting("UPSTREAM_MAX_BYTES", 50_000_000, "Refuse a search or a record whose pages together are larger than this (502)."),
    Setting("UPSTREAM_MAX_PAGES", 200, "Refuse a search or record the LCR FHIR API pages into more than this many pages (502); UPSTREAM_MAX_BYTES bounds all of a record's pages together."),
    Setting("UPSTREAM_DEADLINE_SECONDS", 20.0, "Give up on a whole fetch — the search and every page of the record — after this long (504); UPSTREAM_TIMEOUT_SECONDS still bounds each connect and read."),
    Setting("AUDIT_DB", str(ROOT / "var" / "audit.db"), "SQLite file of the audit store."),
    Setting(
        "AUDIT_CHECKPOINT_KEY_FILE",
        None,
        "Ed25519 private key (PEM) that signs audit checkpoints; unset: a DEV-ONLY key is generated beside AUDIT_DB.",
    ),
    Setting("AUDIT_CHECKPOINT_EVERY", 1000, "Sign the audit chain head every this many rows (0: only with `lcr-audit checkpoint`)."),
    Setting(
        "HISTORY_WINDOW_SECONDS",
        3600,
        "The caller's recent answers from the audit store (input.history) cover this long; the policy's identifier-probing cool-off reads them.",
    ),
    Setting("AUDIT_BUSY_TIMEOUT_MS", 2000, "Wait this long for a locked audit store before failing closed."),
    Setting("TOKEN_ISSUER", "https://care-app.dev.lcr.example", "Expected `iss` of care-app tokens."),
    Setting("TOKEN_AUDIENCE", "lcr-sidecar", "Expected `aud` of care-app tokens."),
    Setting(
        "TOKEN_JWKS_FILE",
        str(ROOT / "dev" / "keys" / "care-app-dev.jwks.json"),
        "JWKS file of the care app's public signing keys (the default is a DEV-ONLY key).",
    ),
    Setting("TOKEN_ALGORITHMS", ["RS256", "ES256"], "Accepted signature algorithms (asymmetric only)."),
    Setting("TOKEN_MAX_LIFETIME_SECONDS", 300, "Refuse tokens whose exp - iat exceeds this."),
    Setting("TOKEN_LEEWAY_SECONDS", 30, "Clock skew allowed when checking exp/iat/nbf."),
    Setting("TOKEN_MAX_BYTES", 8192, "Refuse bearer tokens longer than this."),
    Setting("DOB_MAX_AGE_YEARS", 130, "Refuse dates of birth further back than this."),
    Setting("MAX_BODY_BYTES", 16_384, "Refuse request bodies larger than this (413)."),
)

DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS}


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def load(config_file: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Defaults, then the YAML file, then the environment."""
    values = dict(DEFAULTS)
    path = config_file or os.environ.get("LCR_SIDECAR_CONFIG")
    if path:
        with open(path, encoding="utf-8") as fh:
            from_file = yaml.safe_load(fh) or {}
        unknown = set(from_file) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown settings in {path}: {sorted(unknown)}; see README 'Settings'")
        values.update(from_file)
    for name in DEFAULTS:
        raw = os.environ.get(ENV_PREFIX + name)
        if raw is not None:
            values[name] = _parse(raw)
    return values
