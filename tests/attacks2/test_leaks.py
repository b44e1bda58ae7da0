"""Readable text the redaction leaves in place below registered manager: strings in
elements the free-text rule treats as structured, free text under elements kept whole,
supporting resources named for a mental-health service, and the Bundle entry's fullUrl.

Fails until fixed: each parameter is a confirmed leak at the level in its id.
"""

from __future__ import annotations

import pytest

from . import cases
from .conftest import assert_not_shown


@pytest.mark.parametrize(("case", "level"), [p for case in cases.LEAKS for p in case.levels()])
def test_not_shown(attack2_world, token, case, level):
    assert_not_shown(attack2_world, token(level), case, level)
