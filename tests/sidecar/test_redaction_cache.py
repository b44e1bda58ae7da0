"""The redaction answer is cached per policy revision and question; nothing else is."""

from __future__ import annotations

from typing import Any

from ..seed_table import FULL, SMALL


def _counting(app: Any) -> list[str]:
    """Record the rule of every question the app's PolicyClient puts to OPA."""
    policy = app.extensions["lcr"].policy
    asked: list[str] = []
    query = policy._query

    def counted(package: str, rule: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(rule)
        return query(package, rule, *args, **kwargs)

    policy._query = counted
    return asked


def _record(app: Any, token: Any, level: str, body: dict[str, str]) -> Any:
    response = app.test_client().post(
        "/v1/record", json=body, headers={"Authorization": f"Bearer {token(level, nhs_number=body['nhs_number'])}"}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"]]


def test_a_record_opened_again_is_not_redacted_again(make_app, token):
    app = make_app(REDACT_CACHE_ENTRIES=8)
    asked = _counting(app)
    first, again = _record(app, token, "senior_carer", FULL), _record(app, token, "senior_carer", FULL)
    assert asked.count("decision") == 2 and asked.count("result") == 1
    assert _entries(first) == _entries(again)
    rows = list(app.extensions["lcr"].audit.rows())
    assert [r["resources_returned"] for r in rows] == [len(first["entry"])] * 2


def test_another_level_or_resident_is_another_question(make_app, token):
    app = make_app(REDACT_CACHE_ENTRIES=8)
    asked = _counting(app)
    admin = _record(app, token, "admin", FULL)
    senior = _record(app, token, "senior_carer", FULL)
    _record(app, token, "senior_carer", SMALL)
    assert asked.count("result") == 3
    assert len(admin["entry"]) < len(senior["entry"])


def test_the_cache_is_bounded_and_can_be_off(make_app, token):
    off = make_app(REDACT_CACHE_ENTRIES=0)
    asked = _counting(off)
    _record(off, token, "admin", FULL)
    _record(off, token, "admin", FULL)
    assert asked.count("result") == 2
    one = make_app(REDACT_CACHE_ENTRIES=1)
    asked = _counting(one)
    for body in (FULL, SMALL, FULL):  # SMALL evicts FULL
        _record(one, token, "admin", body)
    assert asked.count("result") == 3
