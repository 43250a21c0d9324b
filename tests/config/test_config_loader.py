"""load_config: defaults, files, environment, and errors that name file, key path and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError, ConfigIssue
from config.loader import DEFAULTS_DIR, load_config
from tests.config.conftest import WriteConfig

REPO = Path(__file__).resolve().parents[2]


def seats_yaml(extensions: list[str], indent: str = "      ") -> str:
    return "".join(f'{indent}- {{extension: "{e}", name: 坐席{e}}}\n' for e in extensions)


def one_queue(extensions: list[str], **fields: str) -> str:
    extra = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    return ('queues:\n  - name: "12345"\n    description: 测试队列\n' + extra
            + "    seats:\n" + seats_yaml(extensions))


def errors_of(directory: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(directory, env or {})
    lines = str(info.value).splitlines()
    assert lines == [str(i) for i in info.value.issues]
    return lines


# -- defaults ---------------------------------------------------------------------------------

def test_packaged_defaults_load_with_100_seats_and_two_queues() -> None:
    cfg = load_config(None, {})
    queues = cfg.queues
    assert [q.name for q in queues.queues] == ["12345", "enterprise"]
    main, enterprise = queues.queues
    assert main.strategy == "rrmemory" and main.ring_timeout == 15
    assert [s.extension for s in queues.all_seats()] == [str(n) for n in range(1001, 1101)]
    assert queues.seat("1042") is not None and queues.seat("1042").name == "坐席1042"
    assert len(enterprise.seats) == 10 and {s.penalty for s in enterprise.seats} == {1}
    # The 10 enterprise seats are also in 12345: multi-queue membership.
    assert len(queues.memberships()) == 110
    assert queues.pause_reasons == ("小休", "午休", "培训", "会议", "就餐")
    assert cfg.stats.service_level_seconds == 15
    assert cfg.service.name == "12345 政务服务便民热线"
    assert cfg.ami.port == 5038


def test_demo_config_uses_local_channels_like_the_traces() -> None:
    cfg = load_config(REPO / "config" / "demo", {})
    queues = cfg.queues
    seat = queues.seat("1001")
    assert seat is not None
    assert queues.interface_for(seat) == "Local/1001@seats/n"
    assert queues.state_interface_for(seat) == "Local/1001@seats"
    assert queues.member_name_for(seat) == "seat-1001"
    assert cfg.ami.host == "127.0.0.1" and cfg.ami.secret is not None
    assert len(queues.all_seats()) == 100


def test_config_dir_from_env_when_no_path(write_config) -> None:
    directory = write_config(queues=one_queue(["2001"]))
    cfg = load_config(None, {"HOTLINE_CONFIG_DIR": str(directory)})
    assert [s.extension for s in cfg.queues.all_seats()] == ["2001"]
    assert load_config(None, {}).queues.seat("1001") is not None  # packaged one otherwise
    assert DEFAULTS_DIR.is_dir()


def test_missing_files_mean_section_defaults(write_config) -> None:
    cfg = load_config(write_config(), {})
    assert cfg.queues.queues == ()
    assert cfg.service.http_port == 8080
    assert cfg.queues.interface_template == "PJSIP/{extension}"


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    lines = errors_of(tmp_path / "nowhere")
    assert lines == [f"{tmp_path / 'nowhere'}: config directory not found"]


# -- errors: file, key path, reason -----------------------------------------------------------

def test_duplicate_seat_message_is_exact(write_config) -> None:
    extensions = [str(2000 + n) for n in range(38)]
    extensions[37] = extensions[12]
    lines = errors_of(write_config(queues=one_queue(extensions)))
    assert lines == ["queues.yaml: queues[0].seats[37].extension: duplicate of seats[12]"]


def test_unknown_key_suggests_the_right_one(write_config) -> None:
    directory = write_config(
        queues=one_queue(["2001"], strategey="rrmemory"),
        hotline="ami:\n  secrte: x\nservce: {}\n")
    lines = errors_of(directory)
    assert "queues.yaml: queues[0].strategey: unknown key; did you mean 'strategy'?" in lines
    assert "hotline.yaml: ami.secrte: unknown key; did you mean 'secret'?" in lines
    assert "hotline.yaml: servce: unknown section; did you mean 'service'?" in lines


def test_bad_strategy_names_the_choices(write_config) -> None:
    (line,) = errors_of(write_config(queues=one_queue(["2001"], strategy="roundrobin")))
    assert line.startswith("queues.yaml: queues[0].strategy: ")
    assert "'rrmemory'" in line and "'roundrobin'" in line


def test_line_break_in_pause_reason_is_refused(write_config) -> None:
    directory = write_config(queues='pause_reasons: ["小休", "午休\\r\\nX"]\n')
    (line,) = errors_of(directory)
    assert line.startswith("queues.yaml: pause_reasons[1]: not safe for Asterisk: ")
    assert "control character" in line


def test_yaml_syntax_error_has_line_and_column(write_config) -> None:
    directory = write_config(queues="queues:\n  - name: x\n   description: y\n")
    (line,) = errors_of(directory)
    assert line.startswith("queues.yaml: YAML syntax error at line 3, column 4")


def test_duplicate_yaml_key_is_an_error_not_a_silent_overwrite(write_config) -> None:
    directory = write_config(hotline="ami:\n  port: 5038\n  port: 5039\n")
    (line,) = errors_of(directory)
    assert "duplicate key 'port' (first at line 2)" in line and "line 3" in line


def test_wrong_type_and_bad_values(write_config) -> None:
    queues = one_queue(["2001", "8001", "12345", "abc"], ring_timeout="soon")
    queues += '  - name: "bad name"\n    description: 企业\n    seats: []\n'
    lines = errors_of(write_config(queues=queues, hotline="service:\n  http_port: 70000\n"))
    assert any(line.startswith("queues.yaml: queues[0].ring_timeout: Input should be a valid "
                               "integer") for line in lines)
    assert any(line.startswith("queues.yaml: queues[0].seats[1].extension: 8XXX numbers are "
                               "reserved for departments") for line in lines)
    assert any(line.startswith("queues.yaml: queues[0].seats[2].extension: 12345 is the "
                               "hotline's own number") for line in lines)
    assert any(line.startswith("queues.yaml: queues[0].seats[3].extension: must be 2 to 10 "
                               "digits") for line in lines)
    assert any(line.startswith("queues.yaml: queues[1].name: not safe for Asterisk: not a valid "
                               "queue") for line in lines)
    assert any(line.startswith("hotline.yaml: service.http_port: Input should be less than or "
                               "equal to 65535") for line in lines)
    assert len(lines) == 6


def test_every_error_of_both_files_is_reported(write_config) -> None:
    directory = write_config(
        hotline="ami:\n  port: high\nstats:\n  interval_minutes: 7\n",
        queues=one_queue(["2001"], strategy="roundrobin") + "wrapup_seconds: -1\n")
    lines = errors_of(directory)
    files_paths = sorted(line.split(": ")[0] + ": " + line.split(": ")[1] for line in lines)
    assert files_paths == ["hotline.yaml: ami.port", "hotline.yaml: stats.interval_minutes",
                           "queues.yaml: queues[0].strategy", "queues.yaml: wrapup_seconds"]


def test_same_extension_needs_the_same_name_in_every_queue(write_config) -> None:
    queues = one_queue(["2001"]) + (
        '  - name: other\n    description: 其他\n    seats:\n'
        '      - {extension: "2001", name: 张三}\n')
    (line,) = errors_of(write_config(queues=queues))
    assert line == ("queues.yaml: queues[1].seats[0].name: "
                    "seat 2001 is named '坐席2001' in queues[0].seats[0]")


def test_duplicate_queue_name_and_pause_reason(write_config) -> None:
    queues = one_queue(["2001"]) + '  - {name: "12345", description: 又一个}\n'
    queues += "pause_reasons: [小休, 午休, 小休]\n"
    lines = errors_of(write_config(queues=queues))
    assert sorted(lines) == ["queues.yaml: pause_reasons[2]: duplicate of pause_reasons[0]",
                             "queues.yaml: queues[1].name: duplicate of queues[0]"]


def test_templates_must_use_extension_and_stay_ami_safe(write_config) -> None:
    directory = write_config(queues=(
        'interface_template: "PJSIP/{ext}"\n'
        'state_interface_template: "PJSIP/{extension} x"\n'
        'member_name_template: "seat"\n'))
    lines = errors_of(directory)
    assert sorted(line.split(": ")[1] for line in lines) == [
        "interface_template", "member_name_template", "state_interface_template"]
    assert any("no other placeholder" in line for line in lines)
    assert any("expands to a value not safe for Asterisk" in line for line in lines)


def test_ami_cross_field_checks_name_the_key(write_config) -> None:
    lines = errors_of(write_config(hotline="ami:\n  backoff_initial: 5\n  backoff_max: 1\n"))
    assert lines == ["hotline.yaml: ami.backoff_max: must not be smaller than backoff_initial"]


def test_extension_with_leading_zero_stays_a_string(write_config) -> None:
    # YAML 1.1 would read an unquoted 0123 as octal 83.
    directory = write_config(queues=(
        'queues:\n  - name: q\n    description: 测试\n    seats:\n'
        '      - {extension: 0123, name: A}\n      - {extension: 2001, name: B}\n'))
    cfg = load_config(directory, {})
    assert [s.extension for s in cfg.queues.all_seats()] == ["0123", "2001"]


def test_seat_interface_override_and_templates(write_config) -> None:
    directory = write_config(queues=(
        'state_interface_template: "PJSIP/phone{extension}"\n'
        'queues:\n  - name: q\n    description: 测试\n    seats:\n'
        '      - {extension: "2001", name: A, interface: "PJSIP/desk-a"}\n'
        '      - {extension: "2002", name: B, penalty: 3}\n'))
    queues = load_config(directory, {}).queues
    a, b = queues.all_seats()
    assert queues.interface_for(a) == "PJSIP/desk-a"
    assert queues.interface_for(b) == "PJSIP/2002"
    assert queues.state_interface_for(b) == "PJSIP/phone2002"
    assert queues.memberships() == {("q", "PJSIP/desk-a", 0), ("q", "PJSIP/2002", 3)}
    # A seat with its own interface is its own device: not the template's "PJSIP/phone2001"
    # (with the template's device Asterisk saw the seat idle while it rang).
    assert queues.state_interface_for(a) == "PJSIP/desk-a"


def test_own_local_interface_is_its_own_device_unless_told_otherwise(
        write_config: WriteConfig) -> None:
    directory = write_config(queues=(
        'interface_template: "Local/{extension}@seats/n"\n'
        'state_interface_template: "Local/{extension}@seats"\n'
        'queues:\n  - name: q\n    description: 测试\n    seats:\n'
        '      - {extension: "2001", name: A, interface: "Local/2001@desk-phones/n"}\n'
        '      - {extension: "2002", name: B, interface: "Local/2002@desk-phones/n",\n'
        '         state_interface: "PJSIP/2002"}\n'
        '      - {extension: "2003", name: C}\n'))
    queues = load_config(directory, {}).queues
    a, b, c = queues.all_seats()
    assert queues.state_interface_for(a) == "Local/2001@desk-phones"
    assert queues.state_interface_for(b) == "PJSIP/2002"
    assert queues.state_interface_for(c) == "Local/2003@seats"


def test_issue_without_key_path_formats_without_it() -> None:
    assert str(ConfigIssue("queues.yaml", "", "boom")) == "queues.yaml: boom"



def test_departments_are_8xxx_and_unique(write_config: WriteConfig) -> None:
    bad_number = write_config(queues="departments:\n  - {number: '1234', name: 水务}\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad_number, env={})
    assert "queues.yaml: departments[0].number: department numbers are 8XXX" in str(err.value)
    duplicate = write_config(queues="departments:\n  - {number: '8001', name: 水务}\n"
                                    "  - {number: '8001', name: 电力}\n")
    with pytest.raises(ConfigError) as err:
        load_config(duplicate, env={})
    assert "departments[1].number: duplicate of departments[0]" in str(err.value)
