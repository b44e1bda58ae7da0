"""Tested docs: every setting and every error code is in the README."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.errors import all_errors
from sidecar.settings import SETTINGS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", [s.name for s in SETTINGS])
def test_every_setting_is_documented(name):
    assert f"`{name}`" in README


@pytest.mark.parametrize("code", sorted({e.code for e in all_errors()}))
def test_every_error_code_is_documented(code):
    assert f"`{code}`" in README
