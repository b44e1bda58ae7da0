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


def _questions(app: Any) -> list[dict[str, Any]]:
    """Record the input of every redaction question the app's PolicyClient puts to OPA."""
    policy = app.extensions["lcr"].policy
    inputs: list[dict[str, Any]] = []
    query = policy._query

    def recorded(package: str, rule: str, input_data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if rule == "result":
            inputs.append(input_data)
        return query(package, rule, input_data, *args, **kwargs)

    policy._query = recorded
    return inputs


LEVEL_ORDER = ("registered_manager", "admin", "senior_carer", "registered_manager")


def test_facts_of_resources_seen_before_are_sent_instead_of_them(make_app, token):
    """The facts the policy read from a resource stand in for it in later questions (the same
    record at another level): the same answers as asking with every resource whole."""
    plain = make_app(REDACT_CACHE_ENTRIES=0, REDACT_FACTS_CACHE_ENTRIES=0)
    facts = make_app(REDACT_CACHE_ENTRIES=0, REDACT_FACTS_CACHE_ENTRIES=4096)
    asked = _questions(facts)
    for level in LEVEL_ORDER:
        assert _entries(_record(facts, token, level, FULL)) == _entries(_record(plain, token, level, FULL))
    first, *later = asked
    assert all(r is not None for r in first["resources"]) and not any(first["facts"])
    # registered managers are shown free text: only the facts go, no resource
    assert all(f is not None for f in later[0]["facts"])
    # below registered manager: a resource goes whole the first time its free text may be needed
    assert any(r is not None for r in later[0]["resources"])
    assert all(f is not None for f in later[1]["facts"])
    assert all(r is None for r in later[2]["resources"]) and all(f is not None for f in later[2]["facts"])


def test_facts_are_not_mixed_with_another_policy_revision(make_app, token):
    """When OPA answers under another revision than the facts were read under, the question
    is asked again with the resources themselves."""
    app = make_app(REDACT_CACHE_ENTRIES=0, REDACT_FACTS_CACHE_ENTRIES=4096)
    policy = app.extensions["lcr"].policy
    expected = _entries(_record(app, token, "senior_carer", FULL))
    asked = _questions(app)
    query = policy._query

    def other_revision(package: str, rule: str, *args: Any, **kwargs: Any) -> Any:
        result, revision = query(package, rule, *args, **kwargs)
        return result, (revision + "-next" if rule == "result" else revision)

    policy._query = other_revision
    assert _entries(_record(app, token, "senior_carer", FULL)) == expected
    assert len(asked) == 2
    assert any(asked[0]["facts"]) and "facts" not in asked[1] and all(r is not None for r in asked[1]["resources"])
