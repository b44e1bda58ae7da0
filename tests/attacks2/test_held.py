"""Probes of the second round that held: supporting resources named for a mental-health
service (their top-level name is removed below registered manager), a modifierExtension
below the root, and Bundle shapes (the same id on two pages with different content, a
fullUrl shared by a withheld and a kept resource, a second copy of the header, a nested
Bundle). Kept as guards: they pass today."""

from __future__ import annotations

import pytest

from . import cases
from .conftest import assert_not_shown


@pytest.mark.parametrize(("case", "level"), [p for case in cases.HELD for p in case.levels()])
def test_still_not_shown(attack2_world, token, case, level):
    assert_not_shown(attack2_world, token(level), case, level)
