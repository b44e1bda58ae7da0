"""Metamorphic tests of the redaction: each sensitive base case in each equivalent form,
at each access level, against the real stack (OPA with the built bundle, the demo upstream
over HTTP, the sidecar's record pipeline).

Where a level must not see a part, neither its canary (the sensitive resource's id is
one) nor its signal code appears anywhere in the raw response body; where it must, the
entry and canary are there, as are the record's positive controls. Never a 500. The
oracle is the generator's (tests/redaction/metamorph.py), written from docs/sections.md
and issue 9, never the policy.
"""

from __future__ import annotations

import pytest

from . import cases
from . import metamorph as m

PARAMS = [
    pytest.param(m.case_name(base, forms), level, id=f"{m.case_name(base, forms)}.{level}")
    for base, forms in cases.TABLE
    for level in m.LEVELS
]


@pytest.mark.parametrize("case, level", PARAMS)
def test_form_at_level(redaction_world, token, case, level):
    record = redaction_world.record(case)
    # Asked twice: the second time the resources go to OPA as the facts the policy read from
    # them the first time (all of them for a registered manager; below, those whose free text
    # must go are sent whole again), since the sidecar keeps facts, not answers
    # (processes.KEEP_FACTS_ONLY; test_the_second_ask_sends_facts_not_resources).
    for ask in ("first", "again, from kept facts"):
        response = redaction_world.ask(token(level), record.request())
        found = m.problems(record, level, response.status_code, response.data)
        assert not found, f"{case} at {level} ({ask}):\n  " + "\n  ".join(found)


def test_table_covers_every_base_and_transform():
    """Every base has its identity case, and every transform appears in the table at least once."""
    bases = {base for base, forms in cases.TABLE if not forms}
    used = {f for _, forms in cases.TABLE for f in forms}
    assert bases == set(m.BASES)
    assert used == set(m.TRANSFORMS)


def test_canaries_are_unique_and_where_the_oracle_says(redaction_world):
    """The generator's own invariants: each part's canary is unique to it and present in its
    record's files; nothing the oracle hides is a string a shown part needs."""
    seen: dict[str, str] = {}
    for record in redaction_world.world.records.values():
        text = str(record.bundle())
        for part in record.parts.values():
            if part.canary:
                assert part.canary not in seen, (part.canary, seen.get(part.canary), record.case_id)
                seen[part.canary] = record.case_id
                assert part.canary in text, (record.case_id, part.name)
            assert not (part.show & part.hide), (record.case_id, part.name)


def test_every_hidden_part_is_served_by_the_upstream(redaction_world):
    """No negative check is vacuous: every canary some level must not see is in what the
    upstream serves for that resident (the sidecar is given it, and must withhold it)."""
    for base, forms in cases.TABLE:
        record = redaction_world.record(m.case_name(base, forms))
        served = "".join(redaction_world.upstream_pages(record))
        for part in record.parts.values():
            if part.hide and part.canary:
                assert part.canary in served, f"{record.case_id}: {part.name} is not in the upstream's $everything"


@pytest.mark.parametrize(
    "case, page_of_target",
    [("plain-flag.page-2-target", 2), ("mh-condition.page-3-target", 3), ("gp-condition.page-2-gp-org", 1)],
)
def test_paging_forms_land_where_they_say(redaction_world, case, page_of_target):
    """The upstream pages `$everything` 20 a page: the target is on the page its form names,
    and for page-2-gp-org the GP Organization is on a later page than the target."""
    record = redaction_world.record(case)
    pages = redaction_world.upstream_pages(record)
    on = [n + 1 for n, page in enumerate(pages) if record.target_part.canary in page]
    assert on and on[0] == page_of_target, (on, len(pages))
    if record.gp is not None and case.endswith("gp-org"):
        org = [n + 1 for n, page in enumerate(pages) if f'"id": "{record.gp["id"]}"' in page.replace('":"', '": "')]
        assert org and org[0] > page_of_target, org


def test_the_second_ask_sends_facts_not_resources(redaction_world, token):
    """What test_form_at_level's second ask checks: resources went as their kept facts."""
    policy = redaction_world.app.extensions["lcr"].policy
    asked: list[dict] = []
    query = policy._query

    def recorded(package, rule, input_data, *args, **kwargs):
        if rule == "result":
            asked.append(input_data)
        return query(package, rule, input_data, *args, **kwargs)

    policy._query = recorded
    try:
        record = redaction_world.record(m.case_name(*cases.TABLE[0]))
        for level in (m.MANAGER, m.ADMIN):
            for _ in range(2):
                assert redaction_world.ask(token(level), record.request()).status_code == 200
    finally:
        policy._query = query
    manager_again, admin_again = asked[1], asked[3]
    # A registered manager is shown free text: every resource goes as its facts alone.
    assert manager_again["resources"] and all(r is None for r in manager_again["resources"])
    assert all(f is not None for f in manager_again["facts"])
    # Below, a resource whose free text must go is sent whole again; the others as facts.
    assert any(f is not None for f in admin_again["facts"])
