"""Tested docs: every setting and every error code is in the README; every deny reason,
decision field and action the policies can produce is in the decision contract; every
`lcr-audit` command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from audit_store.cli import cli
from sidecar.errors import all_errors
from sidecar.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
AUDIT_README = (ROOT / "audit_store" / "README.md").read_text()
CONTRACT = (ROOT / "docs" / "decision-contract.md").read_text()
ACCESS_POLICY = ROOT / "policies" / "lcr" / "access"


def _policy_source(package: str) -> str:
    """The Rego of one package (its test files left out)."""
    sources = [p.read_text() for p in sorted((ROOT / "policies").rglob("*.rego")) if not p.name.endswith("_test.rego")]
    return "\n".join(s for s in sources if re.search(rf"^package {re.escape(package)}$", s, re.M))


def deny_reasons() -> list[str]:
    """Every deny reason the access decision can produce: each `reasons contains "<code>"` rule head."""
    return sorted(set(re.findall(r'^reasons contains "([a-z_]+)"', _policy_source("lcr.access"), re.M)))


def decision_fields() -> list[str]:
    """The keys of the access decision's object (`decision := {...}`)."""
    block = re.search(r"^decision := \{(.*?)^\}", _policy_source("lcr.access"), re.M | re.S)
    assert block, "no decision := {...} in package lcr.access"
    return re.findall(r'^\s*"([a-z_]+)":', block.group(1), re.M)


def actions() -> list[str]:
    data = yaml.safe_load((ROOT / "policies" / "lcr" / "config" / "data.yaml").read_text())
    return list(data["actions"])


def test_the_policy_sources_are_read():
    assert len(deny_reasons()) >= 15 and "no_legitimate_relationship" in deny_reasons()
    assert {"allow", "sections", "reasons", "audit_scope"} <= set(decision_fields())
    assert "audit.read" in actions()


@pytest.mark.parametrize("name", [s.name for s in SETTINGS])
def test_every_setting_is_documented(name):
    assert f"`{name}`" in README


@pytest.mark.parametrize("code", sorted({e.code for e in all_errors()}))
def test_every_error_code_is_documented(code):
    assert f"`{code}`" in README


@pytest.mark.parametrize("reason", deny_reasons())
def test_every_deny_reason_is_in_the_contract(reason):
    assert f"| `{reason}` |" in CONTRACT


@pytest.mark.parametrize("field", decision_fields())
def test_every_decision_field_is_in_the_contract(field):
    assert f'"{field}":' in CONTRACT, "in the contract's example result"
    assert field == "allow" or f"`{field}`" in CONTRACT, "and described"


@pytest.mark.parametrize("action", actions())
def test_every_action_is_in_the_contract(action):
    assert f"`{action}`" in CONTRACT


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_lcr_audit_command_is_documented(command):
    mentioned = re.compile(rf"`(lcr-audit )?{re.escape(command)}[` ]")
    assert mentioned.search(README) or mentioned.search(AUDIT_README)
