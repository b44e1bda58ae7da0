"""Every setting of the sidecar in one table: type, default, help, and how it is loaded.

Order of precedence (last wins): the defaults below, the YAML file named by
`LCR_SIDECAR_CONFIG` (or passed to `create_app`), environment variables
`LCR_SIDECAR_<NAME>`, then a test override. Each value is converted once, to its setting's
type, as it is loaded: a value that is not of that type, an unknown setting in the file or
an unknown `LCR_SIDECAR_*` variable (a typo) stops start-up with a message that names it.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "LCR_SIDECAR_"
#: the one LCR_SIDECAR_* variable that is not a setting: the YAML file to load
CONFIG_VARIABLE = ENV_PREFIX + "CONFIG"
ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting that cannot be used; start-up stops with this message."""


@dataclass(frozen=True)
class Type:
    """A setting's type: its name for messages, and how a value (from YAML, a test, or an
    environment variable's text) becomes one."""

    name: str
    convert: Callable[[Any], Any]  # raises ValueError or TypeError when the value is not one
    from_text: Callable[[str], Any]


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(value)
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(value)
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(value)
    return os.fspath(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None or value == "" else _str(value)


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(value)
    return list(value)


INT = Type("an integer", _int, lambda text: _int(json.loads(text)))
FLOAT = Type("a number", _float, lambda text: _float(json.loads(text)))


def _text(text: str) -> str:
    """An environment variable's text as it is (a JSON string such as `"x"` as its value)."""
    if text.startswith('"'):
        try:
            value = json.loads(text)
        except ValueError:
            return text
        return value if isinstance(value, str) else text
    return text


STR = Type("a string", _str, _text)
OPTIONAL_STR = Type(
    "a string or nothing", _optional_str, lambda text: None if text == "null" else _optional_str(_text(text))
)
STR_LIST = Type("a JSON list of strings", _str_list, lambda text: _str_list(json.loads(text)))


@dataclass(frozen=True)
class Setting:
    name: str
    type: Type
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("OPA_URL", STR, "http://127.0.0.1:8181", "Base URL of the OPA server's REST API."),
    Setting("OPA_TIMEOUT_SECONDS", FLOAT, 0.5, "Give up on OPA after this long and fail closed (503)."),
    Setting(
        "OPA_REDACT_TIMEOUT_SECONDS",
        FLOAT,
        5.0,
        "Give up on OPA's redaction of a fetched record after this long (503); a big record takes longer than a "
        "decision.",
    ),
    Setting(
        "REDACT_CACHE_ENTRIES",
        INT,
        256,
        "Redaction answers kept per process, keyed by policy revision and the whole question (0 = off).",
    ),
    Setting(
        "REDACT_FACTS_CACHE_ENTRIES",
        INT,
        8192,
        "Resources whose facts (what the redaction policy read from each) are kept per process, keyed by policy "
        "revision and the resource's content (0 = off).",
    ),
    Setting(
        "SHADOW_OPA_URL",
        STR,
        "",
        "OPA serving a candidate bundle to evaluate on live traffic without enforcing it; empty = off.",
    ),
    Setting(
        "SHADOW_TIMEOUT_SECONDS", FLOAT, 0.2, "Give up on the shadow OPA after this long (the request is unaffected)."
    ),
    Setting(
        "BUNDLE_MAX_AGE_SECONDS",
        FLOAT,
        600,
        "Not ready (503 policy-stale) when OPA has not reached the bundle server for this long.",
    ),
    Setting("READINESS_INTERVAL_SECONDS", FLOAT, 1.0, "How often each process re-checks readiness in the background."),
    Setting(
        "READINESS_RECHECK_WAIT_SECONDS",
        FLOAT,
        0.025,
        "While not ready, a request waits at most this long for a fresh readiness check before its 503.",
    ),
    Setting(
        "OPA_BREAKER_FAILURES",
        INT,
        1,
        "OPA failures to answer in a row (timeout, refused) that open the circuit: questions are then refused at "
        "once (503).",
    ),
    Setting(
        "OPA_BREAKER_COOL_OFF_SECONDS",
        FLOAT,
        1.0,
        "How long the circuit stays open before one request may try OPA again.",
    ),
    Setting("UPSTREAM_URL", STR, "http://127.0.0.1:8090/fhir", "Base URL of the LCR FHIR R4 API."),
    Setting(
        "UPSTREAM_TIMEOUT_SECONDS",
        FLOAT,
        5.0,
        "Give up when one connect to, or one read from, the LCR FHIR API waits this long (504).",
    ),
    Setting(
        "UPSTREAM_MAX_BYTES",
        INT,
        50_000_000,
        "Refuse a search or a record whose pages together are larger than this (502).",
    ),
    Setting(
        "UPSTREAM_MAX_PAGES",
        INT,
        200,
        "Refuse a search or record the LCR FHIR API pages into more than this many pages (502); UPSTREAM_MAX_BYTES "
        "bounds all of a record's pages together.",
    ),
    Setting(
        "UPSTREAM_DEADLINE_SECONDS",
        FLOAT,
        20.0,
        "Give up on a whole fetch — the search and every page of the record — after this long (504); "
        "UPSTREAM_TIMEOUT_SECONDS still bounds each connect and read.",
    ),
    Setting(
        "AUDIT_DB",
        STR,
        str(ROOT / "var" / "audit.db"),
        "SQLite file of the audit store (when AUDIT_STORE_URL is unset); the DEV-ONLY checkpoint key is kept beside "
        "it.",
    ),
    Setting(
        "AUDIT_STORE_URL",
        OPTIONAL_STR,
        None,
        "Where the audit log is: `sqlite:///PATH` (one host) or `postgresql://USER@HOST:PORT/DB` (a fleet of "
        "replicas, one log); unset: the SQLite file AUDIT_DB.",
    ),
    Setting(
        "AUDIT_POOL_SIZE",
        INT,
        4,
        "PostgreSQL only: connections each worker keeps for reading the audit log (the Audit Trail endpoint); the "
        "writer has one more of its own.",
    ),
    Setting(
        "AUDIT_CHECKPOINT_KEY_FILE",
        OPTIONAL_STR,
        None,
        "Ed25519 private key (PEM) that signs audit checkpoints; unset: a DEV-ONLY key is generated beside AUDIT_DB.",
    ),
    Setting(
        "AUDIT_CHECKPOINT_EVERY",
        INT,
        1000,
        "Sign the audit chain head every this many rows (0: only with `lcr-audit checkpoint`).",
    ),
    Setting(
        "HISTORY_WINDOW_SECONDS",
        INT,
        3600,
        "The caller's recent answers from the audit store (input.history) cover this long; the policy's "
        "identifier-probing cool-off reads them.",
    ),
    Setting(
        "AUDIT_BUSY_TIMEOUT_MS",
        INT,
        2000,
        "Wait this long for a locked, unreachable or slow audit store (a connection, the chain's lock, a statement) "
        "before failing closed.",
    ),
    Setting("TOKEN_ISSUER", STR, "https://care-app.dev.lcr.example", "Expected `iss` of care-app tokens."),
    Setting("TOKEN_AUDIENCE", STR, "lcr-sidecar", "Expected `aud` of care-app tokens."),
    Setting(
        "TOKEN_JWKS_FILE",
        STR,
        str(ROOT / "dev" / "keys" / "care-app-dev.jwks.json"),
        "JWKS file of the care app's public signing keys (the default is a DEV-ONLY key).",
    ),
    Setting("TOKEN_ALGORITHMS", STR_LIST, ["RS256", "ES256"], "Accepted signature algorithms (asymmetric only)."),
    Setting("TOKEN_MAX_LIFETIME_SECONDS", INT, 300, "Refuse tokens whose exp - iat exceeds this."),
    Setting("TOKEN_LEEWAY_SECONDS", INT, 30, "Clock skew allowed when checking exp/iat/nbf."),
    Setting("TOKEN_MAX_BYTES", INT, 8192, "Refuse bearer tokens longer than this."),
    Setting("DOB_MAX_AGE_YEARS", INT, 130, "Refuse dates of birth further back than this."),
    Setting("MAX_BODY_BYTES", INT, 16_384, "Refuse request bodies larger than this (413)."),
)

DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS}
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def _converted(setting: Setting, value: Any, where: str, text: bool = False) -> Any:
    try:
        return setting.type.from_text(value) if text else setting.type.convert(value)
    except (TypeError, ValueError):
        raise SettingsError(
            f"{where}: {setting.name} must be {setting.type.name}, not {value!r}; see README 'Settings'"
        ) from None


def _unknown(names: set[str], where: str, prefix: str = "") -> None:
    if not names:
        return
    hints = []
    for name in sorted(names):
        close = difflib.get_close_matches(name[len(prefix) :], list(BY_NAME), n=1)
        hints.append(f"{name} (did you mean {prefix}{close[0]}?)" if close else name)
    raise SettingsError(f"unknown settings in {where}: {', '.join(hints)}; see README 'Settings'")


def load(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Defaults, then the YAML file, then the environment, then `overrides` (a test's), each
    converted to its setting's type. Names in `overrides` that are not settings (Flask's
    own, such as TESTING) pass through unchanged."""
    env = os.environ if environ is None else environ
    values = {s.name: s.type.convert(s.default) for s in SETTINGS}
    path = config_file or env.get(CONFIG_VARIABLE)
    if path:
        with open(path, encoding="utf-8") as fh:
            from_file = yaml.safe_load(fh) or {}
        _unknown(set(from_file) - set(BY_NAME), str(path))
        for name, value in from_file.items():
            values[name] = _converted(BY_NAME[name], value, str(path))
    _unknown(
        {key for key in env if key.startswith(ENV_PREFIX) and key != CONFIG_VARIABLE}
        - {ENV_PREFIX + name for name in BY_NAME},
        "the environment",
        ENV_PREFIX,
    )
    for name, setting in BY_NAME.items():
        raw = env.get(ENV_PREFIX + name)
        if raw is not None:
            values[name] = _converted(setting, raw, ENV_PREFIX + name, text=True)
    for name, value in (overrides or {}).items():
        values[name] = _converted(BY_NAME[name], value, "test config") if name in BY_NAME else value
    return values
