"""channels.yaml: defaults, errors named by file and key, secrets from the environment."""

from __future__ import annotations

import pytest

from config.errors import ConfigError
from config.loader import DEFAULTS_DIR, load_config
from tests.config.conftest import WriteConfig


def test_shipped_defaults_load_and_match_the_schema_defaults() -> None:
    cfg = load_config(DEFAULTS_DIR, {})
    ch = cfg.channels
    assert ch.stream.group == "router" and ch.stream.max_deliveries == 5
    assert ch.web.max_attachment_bytes == 5 * 1024 * 1024
    assert not ch.mail.enabled and ch.phone.voicemail_dir is None


def test_errors_name_channels_yaml_and_the_key(write_config: WriteConfig) -> None:
    directory = write_config(channels="web:\n  max_attachmens: 3\nnode_id: 100\n"
                                      "stream:\n  name: 'in take'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(directory, {})
    text = "\n".join(str(i) for i in caught.value.issues)
    assert "channels.yaml: web.max_attachmens: unknown key; did you mean " \
           "'max_attachments'?" in text
    assert "channels.yaml: node_id:" in text
    assert "channels.yaml: stream.name: must be 1-64 of" in text


def test_mail_enabled_needs_a_password_which_comes_from_the_environment(
        write_config: WriteConfig) -> None:
    directory = write_config(channels="mail:\n  enabled: true\n  host: imap.example.gov.cn\n")
    with pytest.raises(ConfigError) as caught:
        load_config(directory, {})
    assert "HOTLINE_CHANNELS__MAIL__PASSWORD" in str(caught.value.issues[0])
    cfg = load_config(directory, {"HOTLINE_CHANNELS__MAIL__PASSWORD": "s3cret-mailbox"})
    assert cfg.channels.mail.password is not None
    assert cfg.channels.mail.password.get_secret_value() == "s3cret-mailbox"


def test_app_keys_from_the_environment_never_echoed(write_config: WriteConfig) -> None:
    directory = write_config(channels="app:\n  clients:\n    citizen-app: {name: 市民通}\n")
    cfg = load_config(directory, {"HOTLINE_APP_KEYS":
                                  "citizen-app=key-0123456789abcdef,mini-prog=key-fedcba9876543210"})
    clients = cfg.channels.app.clients
    assert clients["citizen-app"].name == "市民通"
    assert clients["citizen-app"].secret is not None
    assert clients["mini-prog"].secret is not None
    with pytest.raises(ConfigError) as caught:
        load_config(directory, {"HOTLINE_APP_KEYS": "citizen-app=short-key"})
    text = str(caught.value.issues[0])
    assert "at least 16 characters" in text and "short-key" not in text


def test_sla_yaml_errors_name_the_file_and_year(write_config: WriteConfig) -> None:
    directory = write_config(sla="calendar:\n  years:\n    2027:\n"
                                  "      holidays: [2027-01-01]\n"
                                  "      workdays: [2027-01-01]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(directory, {})
    assert any("sla.yaml: calendar.years" in str(i) and "2027" in str(i)
               for i in caught.value.issues)


def test_units_yaml_errors_name_the_key(write_config: WriteConfig) -> None:
    directory = write_config(units="competences: {noise: {name: 噪音}}\nunits:\n"
                                    "  - {id: city, name: 市, level: city}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(directory, {})
    assert "units.yaml: units[0].competences: unit 'city' (市) has no competence" in str(
        caught.value)


def test_shipped_routing_yaml_is_the_models_defaults() -> None:
    from config.routing import RoutingConfig
    assert load_config(DEFAULTS_DIR, {}).routing == RoutingConfig()


def test_routing_rule_errors_name_the_rule(write_config: WriteConfig) -> None:
    directory = write_config(routing="classify:\n  rules:\n    - {name: 坏规则, patterns: ['(未闭合']}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(directory, {})
    assert "routing.yaml: classify.rules[0]" in str(caught.value)


def test_a_rule_or_token_naming_an_unknown_unit_is_refused(write_config: WriteConfig) -> None:
    units = (DEFAULTS_DIR / "units.yaml").read_text(encoding="utf-8")
    directory = write_config(units=units, routing=(
        "classify:\n  rules:\n    - {name: 路灯, keywords: [路灯], unit: city.lights}\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(directory, {"HOTLINE_UNIT_TOKENS": "city.nowhere=token-123456"})
    text = "\n".join(str(i) for i in caught.value.issues)
    assert "routing.yaml: classify.rules[0].unit: unknown unit 'city.lights'" in text
    assert "routing.yaml: unit_tokens.city.nowhere: unknown unit" in text


def test_the_shipped_asr_yaml_is_the_model_defaults() -> None:
    """asr.yaml documents every setting; it must say what the code does without it."""
    from config.asr import AsrConfig
    assert load_config(DEFAULTS_DIR, {}).asr == AsrConfig()
