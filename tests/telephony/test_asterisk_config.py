"""Rendering Asterisk config from the hotline config, and the committed docker/asterisk files.

Asterisk itself cannot run here, so the files are checked by parsing them the way Asterisk's
config parser reads them: ``[section]`` headers, ``key = value`` lines, ``;`` comments.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from config.loader import load_config
from config.schema import HotlineConfig
from telephony.asterisk_config import main, render, render_seat_secrets

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker" / "asterisk"
RENDERED = ("pjsip.conf", "queues.conf", "extensions_queues.conf")


def parse_conf(text: str) -> list[tuple[str, dict[str, list[str]]]]:
    """Sections in order, each with its keys (a key may repeat, e.g. ``permit``)."""
    sections: list[tuple[str, dict[str, list[str]]]] = []
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([^\]]+)\](\(\+\))?", line)
        if header:
            sections.append((header.group(1), {}))
            continue
        key, sep, value = line.partition("=>") if "=>" in line else line.partition("=")
        assert sep, f"not a key = value line: {raw!r}"
        assert sections, f"key outside a section: {raw!r}"
        sections[-1][1].setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture
def defaults() -> HotlineConfig:
    return load_config(None, {})


def test_pjsip_has_exactly_one_endpoint_auth_and_aor_per_seat(defaults, tmp_path: Path) -> None:
    render(defaults, tmp_path)
    sections = parse_conf((tmp_path / "pjsip.conf").read_text(encoding="utf-8"))
    by_type: dict[str, list[str]] = {}
    for name, keys in sections:
        by_type.setdefault(keys["type"][0], []).append(name)
    seats = [s.extension for s in defaults.queues.all_seats()]
    assert len(seats) == 100
    assert by_type["endpoint"] == seats
    assert by_type["aor"] == seats
    assert by_type["auth"] == [f"{s}-auth" for s in seats]
    assert by_type["transport"] == ["transport-udp"]
    endpoint = next(keys for name, keys in sections
                    if name == "1042" and keys["type"] == ["endpoint"])
    assert endpoint["auth"] == ["1042-auth"] and endpoint["aors"] == ["1042"]
    assert endpoint["callerid"] == ['"坐席1042" <1042>']
    # No password in clear: they come from the #tryinclude'd secrets file.
    assert all("password" not in keys for _, keys in sections)
    assert "#tryinclude pjsip_secrets.conf" in (tmp_path / "pjsip.conf").read_text(encoding="utf-8")


def test_queues_conf_has_every_queue_and_no_members(defaults, tmp_path: Path) -> None:
    render(defaults, tmp_path)
    sections = dict(parse_conf((tmp_path / "queues.conf").read_text(encoding="utf-8")))
    assert list(sections) == ["general", "12345", "enterprise"]
    assert sections["general"]["persistentmembers"] == ["no"]
    for queue in defaults.queues.queues:
        keys = sections[queue.name]
        assert keys["strategy"] == [queue.strategy]
        assert keys["timeout"] == [str(queue.ring_timeout)]
        assert keys["retry"] == [str(queue.retry)]
        assert keys["wrapuptime"] == [str(defaults.queues.wrapup_seconds)]
        assert keys["servicelevel"] == [str(queue.service_level_seconds)]
        assert "member" not in keys


def test_queue_entries_use_option_t_and_max_wait(defaults, tmp_path: Path) -> None:
    render(defaults, tmp_path)
    text = (tmp_path / "extensions_queues.conf").read_text(encoding="utf-8")
    for queue in defaults.queues.queues:
        assert f"Queue({queue.name},t,,,{queue.max_wait_seconds})" in text
        assert f"exten => {queue.name},1," in text


def test_render_follows_the_config(tmp_path: Path) -> None:
    (tmp_path / "queues.yaml").write_text(
        "wrapup_seconds: 7\nqueues:\n  - name: night\n    description: 夜间\n"
        "    strategy: leastrecent\n    max_wait_seconds: 300\n    seats:\n"
        '      - {extension: "3001", name: 王五}\n', encoding="utf-8")
    cfg = load_config(tmp_path, {})
    paths = render(cfg, tmp_path / "out")
    assert [p.name for p in paths] == list(RENDERED)
    pjsip = parse_conf(paths[0].read_text(encoding="utf-8"))
    assert [n for n, k in pjsip if k["type"] == ["endpoint"]] == ["3001"]
    queues = dict(parse_conf(paths[1].read_text(encoding="utf-8")))
    assert queues["night"]["strategy"] == ["leastrecent"]
    assert queues["night"]["wrapuptime"] == ["7"]
    assert "Queue(night,t,,,300)" in paths[2].read_text(encoding="utf-8")


def test_render_is_deterministic(defaults, tmp_path: Path) -> None:
    first = [p.read_bytes() for p in render(defaults, tmp_path / "a")]
    second = [p.read_bytes() for p in render(load_config(None, {}), tmp_path / "b")]
    assert first == second


def test_committed_files_equal_a_fresh_render_of_the_defaults(defaults, tmp_path: Path) -> None:
    for path in render(defaults, tmp_path):
        committed = DOCKER / path.name
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"{committed} is stale: run python -m telephony.asterisk_config "
            "--config config/defaults --out docker/asterisk")


def test_render_command_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(REPO / "config" / "defaults"), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RENDERED)
    assert main(["--config", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 1
    assert "config directory not found" in capsys.readouterr().err


def test_manager_conf_grants_no_system_command_or_config() -> None:
    sections = dict(parse_conf((DOCKER / "manager.conf").read_text(encoding="utf-8")))
    assert sections["general"]["enabled"] == ["yes"]
    assert sections["general"]["bindaddr"] == ["127.0.0.1"]
    user = sections["hotline"]
    read = set(user["read"][0].split(","))
    write = set(user["write"][0].split(","))
    forbidden = {"system", "command", "config", "all"}
    # Reading "system" only delivers events (Shutdown: a PBX stop is not callers abandoning);
    # no action needs a read class.
    assert not write & forbidden and not read & (forbidden - {"system"})
    assert read == {"call", "agent", "user", "dialplan", "system"}
    assert {"call", "agent", "originate"} <= write <= {"call", "agent", "originate", "reporting"}
    assert user["deny"] == ["0.0.0.0/0.0.0.0"] and user["permit"]
    assert "secret" not in user  # appended from manager_secrets.conf, never committed


def test_extensions_conf_has_the_contexts_the_service_uses() -> None:
    text = (DOCKER / "extensions.conf").read_text(encoding="utf-8")
    sections = dict(parse_conf(text))
    assert {"incoming", "departments", "threeway", "survey", "seats", "from-seats"} <= set(sections)
    assert "#include extensions_queues.conf" in text
    assert sections["departments"]["exten"][0].startswith("_8XXX,1,")
    assert sections["threeway"]["exten"][0] == "_room-.,1,ConfBridge(${EXTEN:5})"
    survey = " ".join(sections["survey"]["exten"] + sections["survey"]["same"])
    assert "UserEvent(SurveyResult,Ticket: ${TICKET},Rating: ${RATING}" in survey
    incoming = " ".join(sections["incoming"]["same"])
    assert "AudioSocket(${ASR_UUID}" in incoming and "Goto(queue-entry,12345,1)" in incoming
    features = dict(parse_conf((DOCKER / "features.conf").read_text(encoding="utf-8")))
    assert features["featuremap"]["atxfer"]


def test_seat_secrets_file_is_private_and_complete(defaults, tmp_path: Path) -> None:
    passwords = {s.extension: f"pw-{s.extension}-abcdefgh" for s in defaults.queues.all_seats()}
    path = render_seat_secrets(defaults, passwords, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sections = parse_conf(path.read_text(encoding="utf-8"))
    assert len(sections) == 100
    assert sections[0] == ("1001-auth", {"password": ["pw-1001-abcdefgh"]})


def test_seat_secrets_refuse_missing_or_unsafe_passwords(defaults, tmp_path: Path) -> None:
    passwords = {s.extension: f"pw-{s.extension}-abcdefgh" for s in defaults.queues.all_seats()}
    del passwords["1005"]
    passwords["1006"] = "has;semicolon-x"
    with pytest.raises(ValueError) as info:
        render_seat_secrets(defaults, passwords, tmp_path)
    assert "1005" in str(info.value) and "1006" in str(info.value)
    assert "semicolon" not in str(info.value)
    assert not (tmp_path / "pjsip_secrets.conf").exists()
