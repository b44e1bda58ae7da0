"""Test tokens that know how to be minted again for another resident."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar.errors import LcrError
from sidecar.identifiers import parse_nhs_number


class BoundToken(str):
    """A test token (a str), which can be minted again bound to another resident.

    The care app mints a token per resident view, bound to that resident
    (`requested_record`); helpers that post for a given resident call `bound_to`.
    """

    def __new__(cls, value: str, remint: Callable[[str], str]) -> BoundToken:
        made = super().__new__(cls, value)
        made._remint = remint  # type: ignore[attr-defined]  # an attribute of this str subclass
        return made

    def bound_to(self, nhs_number: Any) -> str:
        """The same token bound to `nhs_number` (any valid form); itself for an invalid one,
        so a request with an invalid NHS number still gets its 400."""
        try:
            parse_nhs_number(nhs_number)
        except LcrError:
            return self
        return self._remint(nhs_number)  # type: ignore[attr-defined]  # set in __new__ on a str subclass


def bound_to(bearer: str, nhs_number: Any) -> str:
    return bearer.bound_to(nhs_number) if isinstance(bearer, BoundToken) else bearer
