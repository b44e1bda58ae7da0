"""No over-disclosure over the generator: random combinations of transforms (several at
once: a respelt code, inside another resident's data, contained, named in free text, on
a later page, …) applied to the base cases; for admin and senior_carer nothing the
oracle hides leaves, and the positive controls still do (so an empty answer fails).

The demo upstream loads its residents when it starts, so the combinations are generated
up front (cases.POOL, seeded) and hypothesis explores (combination, level) pairs over
them with the derandomized profile from tests/conftest.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from . import cases
from . import metamorph as m

CONTROLS = ("control-alert", "control-allergy", "control-tail")


@settings(max_examples=160, deadline=None)
@given(combination=st.sampled_from(cases.POOL), level=st.sampled_from([m.ADMIN, m.SENIOR]))
def test_nothing_sensitive_leaves_below_registered_manager(redaction_world, token, combination, level):
    record = redaction_world.record(m.case_name(*combination))
    response = redaction_world.ask(token(level), record.request())
    found = [
        p
        for p in m.problems(record, level, response.status_code, response.data)
        if p.startswith(("LEAK", "500"))
        or p.startswith(tuple(f"MISSING {c}" for c in CONTROLS))
        or p.startswith("MISSING everything")
    ]
    assert not found, f"{record.case_id} at {level}:\n  " + "\n  ".join(found)
