"""Mental-health signals in code forms the policy does not read as such: ICD-10 chapter G dementias (the same diseases
in SNOMED are registered-manager only), mental disorders outside the curated SNOMED value set, displays kept on
codes that are not concepts, and codes of unknown systems that are left in place.

Fails until fixed: each parameter is a confirmed leak at the level in its id.
"""

from __future__ import annotations

import pytest

from . import cases
from .conftest import assert_not_shown


@pytest.mark.parametrize(("case", "level"), [p for case in cases.CODE_FORMS for p in case.levels()])
def test_code_form_not_shown(attack_world, token, case, level):
    assert_not_shown(attack_world, token(level), case, level)
