"""Environment overrides and secrets: env beats files, secrets never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.loader import load_config

HOTLINE = ("service:\n  database_url: sqlite+aiosqlite:///var/file.db\n"
           "ami:\n  port: 5038\n  secret: from-file\n")


def test_env_overrides_win_over_files(write_config) -> None:
    directory = write_config(hotline=HOTLINE, queues="wrapup_seconds: 5\n")
    cfg = load_config(directory, {
        "HOTLINE_AMI__PORT": "6038",
        "HOTLINE_AMI__SECRET": "from-env",
        "HOTLINE_SERVICE__DATABASE_URL": "postgresql+asyncpg://u:pw@db/hotline",
        "HOTLINE_QUEUES__WRAPUP_SECONDS": "30",
        "HOTLINE_QUEUES__PAUSE_REASONS": '["小休", "培训"]',
        "HOTLINE_STATS__INTERVAL_MINUTES": "30",
        "UNRELATED": "x",
    })
    assert cfg.ami.port == 6038
    assert cfg.ami.secret is not None and cfg.ami.secret.get_secret_value() == "from-env"
    assert cfg.service.database_url.get_secret_value() == "postgresql+asyncpg://u:pw@db/hotline"
    assert cfg.queues.wrapup_seconds == 30
    assert cfg.queues.pause_reasons == ("小休", "培训")
    assert cfg.stats.interval_minutes == 30


def test_file_values_apply_without_env(write_config) -> None:
    cfg = load_config(write_config(hotline=HOTLINE), {})
    assert cfg.ami.secret is not None and cfg.ami.secret.get_secret_value() == "from-file"
    assert cfg.service.database_url.get_secret_value() == "sqlite+aiosqlite:///var/file.db"


def test_bad_env_value_names_the_variable(write_config) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(), {"HOTLINE_AMI__PORT": "high", "HOTLINE_AMII__HOST": "x",
                                     "HOTLINE_AMI__HOTS": "x"})
    lines = str(info.value).splitlines()
    assert any(line.startswith("env: HOTLINE_AMI__PORT: ami.port: Input should be a valid "
                               "integer") for line in lines)
    assert any(line.startswith("env: HOTLINE_AMII__HOST: unknown section 'amii'")
               for line in lines)
    assert "env: HOTLINE_AMI__HOTS: ami.hots: unknown key; did you mean 'host'?" in lines
    assert len(lines) == 3


def test_agent_tokens_from_env_and_file(write_config, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("# seat tokens\n1001=file-token-1001\n1002=file-token-1002\n",
                          encoding="utf-8")
    cfg = load_config(write_config(), {
        "HOTLINE_AGENT_TOKENS_FILE": str(token_file),
        "HOTLINE_AGENT_TOKENS": "1002=env-token-1002, 1003=env-token-1003",
    })
    tokens = {k: v.get_secret_value() for k, v in cfg.service.agent_tokens.items()}
    assert tokens == {"1001": "file-token-1001", "1002": "env-token-1002",
                      "1003": "env-token-1003"}


def test_malformed_agent_tokens_are_reported_without_the_token(write_config) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(), {"HOTLINE_AGENT_TOKENS": "1001=good-token-1,sekrit-no-eq,"
                                                             "1002=short"})
    text = str(info.value)
    assert "env: HOTLINE_AGENT_TOKENS: entry 2: must be name=secret (1001=token, app-id=key)" in text
    assert "service.agent_tokens.1002: token must be at least 8" in text
    assert "sekrit" not in text and "short" not in text.replace("token must", "")


SECRETS = {
    "HOTLINE_AMI__SECRET": "ami-SECRET-value-1",
    "HOTLINE_SERVICE__ADMIN_TOKEN": "admin-TOKEN-value-2",
    "HOTLINE_SERVICE__DATABASE_URL": "postgresql+asyncpg://hotline:DB-PASS-3@db:5432/hotline",
    "HOTLINE_AGENT_TOKENS": "1001=agent-TOKEN-value-4",
}


def test_secrets_never_appear_in_repr_str_or_json(write_config) -> None:
    cfg = load_config(write_config(), SECRETS)
    shown = " ".join([repr(cfg), str(cfg), cfg.model_dump_json(), repr(cfg.ami),
                      str(cfg.service), repr(cfg.model_dump())])
    for needle in ("SECRET-value-1", "TOKEN-value-2", "DB-PASS-3", "TOKEN-value-4"):
        assert needle not in shown
    assert cfg.ami.secret is not None and cfg.ami.secret.get_secret_value() == "ami-SECRET-value-1"
    assert cfg.service.safe_database_url() == "postgresql+asyncpg://hotline:***@db:5432/hotline"
    assert (load_config(write_config(), {}).service.safe_database_url()
            == "sqlite+aiosqlite:///var/hotline.db")


def test_rejected_secret_is_not_echoed_in_the_error(write_config) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(), {"HOTLINE_SERVICE__ADMIN_TOKEN": "tiny7",
                                     "HOTLINE_AMI__SECRET": "line\nbreak-SECRET"})
    text = str(info.value)
    assert "service.admin_token" in text and "ami.secret" in text
    assert "tiny7" not in text and "break-SECRET" not in text
