"""Settings from the environment: an unusable FUNNEL_* variable is named, with its value and what it must be."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.errors import FunnelError
from engine.settings import SettingsError, get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_given_valid_variables_then_the_settings_hold_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNEL_WORKERS", "4")
    assert get_settings().workers == 4


@pytest.mark.parametrize(("name", "value", "says"), [
    ("FUNNEL_WORKERS", "0", "greater than or equal to 1"),
    ("FUNNEL_WORKERS", "65", "less than or equal to 64"),
    ("FUNNEL_WORKERS", "two", "valid integer"),
    ("FUNNEL_SMTP_TLS", "maybe", "match pattern"),
])
def test_given_an_unusable_variable_then_a_funnel_error_names_it_its_value_and_the_rule(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    # given
    monkeypatch.setenv(name, value)
    # when
    with pytest.raises(SettingsError) as raised:
        get_settings()
    # then: one of the engine's own errors (the CLI prints it as one line), naming what to fix
    assert isinstance(raised.value, FunnelError)
    assert f"{name}={value!r}" in raised.value.message and says in raised.value.message
