"""Another person's Patient (a linked record, as `$everything` returns it) must never leave (docs/sections.md: 'Other
Patient resources in $everything never leave'); made GP-sourced, it is counted under gp_records and reaches
registered managers.

Fails until fixed: each parameter is a confirmed leak at the level in its id.
"""

from __future__ import annotations

import pytest

from . import cases
from .conftest import assert_not_shown


@pytest.mark.parametrize(("case", "level"), [p for case in cases.OTHER_PEOPLE for p in case.levels()])
def test_other_persons_patient_not_shown(attack_world, token, case, level):
    assert_not_shown(attack_world, token(level), case, level)
