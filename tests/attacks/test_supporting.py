"""Supporting resources are tainted only by mental-health signals and labels: a psychiatrist's qualification or a
psychiatric facility's type goes with an admin-visible Encounter.

Fails until fixed: each parameter is a confirmed leak at the level in its id.
"""

from __future__ import annotations

import pytest

from . import cases
from .conftest import assert_not_shown


@pytest.mark.parametrize(("case", "level"), [p for case in cases.SUPPORTING for p in case.levels()])
def test_supporting_resource_not_shown(attack_world, token, case, level):
    assert_not_shown(attack_world, token(level), case, level)
