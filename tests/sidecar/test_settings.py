"""Settings: each converted once to its type; a typo or a wrong type stops start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar import settings
from sidecar.settings import SETTINGS, SettingsError, load


def test_defaults_are_of_their_types():
    values = load(environ={})
    for setting in SETTINGS:
        assert setting.type.convert(values[setting.name]) == values[setting.name]
    assert isinstance(values["BUNDLE_MAX_AGE_SECONDS"], float)


def test_environment_values_are_converted_once():
    values = load(
        environ={
            "LCR_SIDECAR_MAX_BODY_BYTES": "100",
            "LCR_SIDECAR_OPA_TIMEOUT_SECONDS": "2",
            "LCR_SIDECAR_OPA_URL": "http://opa:8181",
            "LCR_SIDECAR_TOKEN_ALGORITHMS": '["ES256"]',
            "LCR_SIDECAR_AUDIT_CHECKPOINT_KEY_FILE": "",
        }
    )
    assert values["MAX_BODY_BYTES"] == 100
    assert values["OPA_TIMEOUT_SECONDS"] == 2.0 and isinstance(values["OPA_TIMEOUT_SECONDS"], float)
    assert values["OPA_URL"] == "http://opa:8181"
    assert values["TOKEN_ALGORITHMS"] == ["ES256"]
    assert values["AUDIT_CHECKPOINT_KEY_FILE"] is None


def test_an_unknown_variable_stops_start_up_naming_it():
    with pytest.raises(SettingsError, match="LCR_SIDECAR_OPA_TIMEOUT .did you mean LCR_SIDECAR_OPA_TIMEOUT_SECONDS"):
        load(environ={"LCR_SIDECAR_OPA_TIMEOUT": "1"})


def test_the_config_file_variable_is_not_a_setting_but_is_known(tmp_path: Path):
    path = tmp_path / "sidecar.yaml"
    path.write_text("MAX_BODY_BYTES: 2048\n")
    assert load(environ={"LCR_SIDECAR_CONFIG": str(path)})["MAX_BODY_BYTES"] == 2048


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("MAX_BODY_BYTES", "1.5"),
        ("MAX_BODY_BYTES", "lots"),
        ("OPA_TIMEOUT_SECONDS", "true"),
        ("TOKEN_ALGORITHMS", "RS256"),
    ],
)
def test_a_value_of_the_wrong_type_stops_start_up(name: str, raw: str):
    with pytest.raises(SettingsError, match=f"LCR_SIDECAR_{name}: {name} must be"):
        load(environ={f"LCR_SIDECAR_{name}": raw})


def test_file_settings_are_checked_too(tmp_path: Path):
    path = tmp_path / "sidecar.yaml"
    path.write_text("MAX_BODY_BYTES: '2048'\n")
    with pytest.raises(SettingsError, match="MAX_BODY_BYTES must be an integer"):
        load(path, environ={})
    path.write_text("MAX_BODY_BYTE: 2048\n")
    with pytest.raises(SettingsError, match="did you mean MAX_BODY_BYTES"):
        load(path, environ={})


def test_overrides_are_converted_and_others_pass_through():
    values = load(overrides={"BUNDLE_MAX_AGE_SECONDS": 2, "TESTING": True}, environ={})
    assert values["BUNDLE_MAX_AGE_SECONDS"] == 2.0 and isinstance(values["BUNDLE_MAX_AGE_SECONDS"], float)
    assert values["TESTING"] is True
    assert settings.BY_NAME["MAX_BODY_BYTES"].type is settings.INT
