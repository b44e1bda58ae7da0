"""JSON shapes the policy does not expect are read as absent instead of failing closed: a security label written as a
string, `meta` as a list, a narrative `div` or a `display` that is a list.

Fails until fixed: each parameter is a confirmed leak at the level in its id.
"""

from __future__ import annotations

import pytest

from . import cases
from .conftest import assert_not_shown


@pytest.mark.parametrize(("case", "level"), [p for case in cases.SHAPES for p in case.levels()])
def test_unexpected_shape_not_shown(attack_world, token, case, level):
    assert_not_shown(attack_world, token(level), case, level)
