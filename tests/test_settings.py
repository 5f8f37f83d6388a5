"""Settings errors name the variable and the allowed values; exit codes are the documented ones."""

from __future__ import annotations

import re

import pytest

from service.cli import main
from service.errors import InputError, ModelError, SettingsError, StandpointError
from service.pipeline import build_pipeline
from service.settings import Settings, get_settings, load_settings
from tests.conftest import ROOT, SEEDS


@pytest.mark.parametrize(
    ("env", "value", "allowed"),
    [
        ("STANDPOINT_BATCH_SIZE", "-1", "an integer from 1 to 256"),
        ("STANDPOINT_BATCH_SIZE", "many", "an integer from 1 to 256"),
        ("STANDPOINT_PORT", "70000", "an integer from 1 to 65535"),
        ("STANDPOINT_QUEUE_SIZE", "0", "an integer of 1 or more"),
        ("STANDPOINT_REQUEST_TIMEOUT_S", "0", "a number above 0"),
        ("STANDPOINT_DTYPE", "float16", "one of 'auto', 'bfloat16', 'float32'"),
        ("STANDPOINT_THREADS", "0", "an integer of 1 or more"),
        ("STANDPOINT_HOST", "", "a text of at least 1 character"),
        ("STANDPOINT_METRICS_REQUIRE_KEY", "perhaps", "true or false"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_allowed_values(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = caught.value.message
    assert message.startswith(f"{env}={value!r}: ")
    assert allowed in message
    assert "\n" not in message and "Input should" not in message


def test_a_secret_is_named_but_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDPOINT_API_KEY", "abc")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = caught.value.message
    assert message.startswith("STANDPOINT_API_KEY (value not shown): ")
    assert "a text of at least 8 characters" in message and "abc" not in message


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDPOINT_BATCH_SIZE", "0")
    monkeypatch.setenv("STANDPOINT_PORT", "0")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "STANDPOINT_BATCH_SIZE='0'" in caught.value.message
    assert "STANDPOINT_PORT='0'" in caught.value.message


def test_get_settings_reports_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDPOINT_MAX_CHARS", "5")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError, match=r"STANDPOINT_MAX_CHARS='5': .*100 or more"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_validators_messages_still_name_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"STANDPOINT_SUMMARIZER='nope' .* is not registered"):
        build_pipeline(load_settings({"summarizer": "nope"}))
    with pytest.raises(SettingsError, match="STANDPOINT_MODEL='/no/such' is neither"):
        load_settings({"model": "/no/such"})


def test_settings_stay_a_value_error_for_code_that_builds_them() -> None:
    with pytest.raises(ValueError):
        Settings(batch_size=0)


# The command line ---------------------------------------------------------------------------
def test_a_bad_setting_exits_with_its_code_and_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STANDPOINT_BATCH_SIZE", "-1")
    assert main(["summarize", str(SEEDS[0])]) == SettingsError.exit_code == 78
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "STANDPOINT_BATCH_SIZE='-1'" in err and "an integer from 1 to 256" in err


def test_a_bad_flag_value_names_the_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "0"]) == 78
    err = capsys.readouterr().err
    assert "--port=0" in err and "STANDPOINT_PORT" in err and "1 to 65535" in err


def test_the_readme_documents_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| `(\d+)` \|", section, re.M)}
    used = {0, 130} | {
        cls.exit_code for cls in (StandpointError, InputError, ModelError, SettingsError)
    }
    assert documented == used
