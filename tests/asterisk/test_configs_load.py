"""The Asterisk configs in ``docker/asterisk/``, as ``hotline asterisk render`` writes them
from ``config/defaults`` (queues, dialplan, ``pjsip.conf`` with its 100 endpoints) plus the
hand-written ones (``manager.conf`` ...), load in a real Asterisk 22.5 without an error.

The only edit is the PJSIP transport, rebound from ``0.0.0.0:5060`` to ``127.0.0.1:<free
port>`` (tests keep SIP off the network, and only one Asterisk per host could bind 5060);
``test_the_loaded_files_are_the_committed_ones`` proves nothing else differs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.asterisk.harness import (
    GENERATED,
    PROJECT_ASTERISK,
    REPO,
    Asterisk,
    HarnessAmi,
)

PROJECT_FILES = frozenset({
    "pjsip.conf", "pjsip_secrets.conf", "queues.conf", "extensions.conf",
    "extensions_queues.conf", "extensions-asr.conf", "manager.conf", "manager_secrets.conf",
    "features.conf", "confbridge.conf"})
# Source files of the modules that read the project's configs: any ERROR/WARNING from them
# is a config problem. (Dozens of other modules autoload and complain about their own missing
# config files; those say nothing about ours.)
PROJECT_SOURCES = re.compile(
    r"\b(app_queue|pbx_config|pbx|manager|config|chan_pjsip|res_pjsip\w*|config_\w+|"
    r"app_confbridge|conf_config_parser|features_config|tcptls|app_audiosocket|"
    r"res_audiosocket|app_chanspy|app_mixmonitor|pbx_variables)\.c:")
MISSING_FILE = re.compile(
    r"(?:Unable to load config(?: file)?|Missing config file|No such configuration file|"
    r"Configuration file|unable to load config:?) '?([\w.-]+\.conf)'?")


@pytest.fixture(scope="module")
def hotline_config_dir() -> Path:
    """The packaged defaults: what ``docker/asterisk/`` is rendered from (100 seats)."""
    return REPO / "config" / "defaults"


def config_problems(console: str) -> list[str]:
    """ERROR/WARNING lines about the project's configs or from the modules reading them."""
    problems = []
    for line in console.splitlines():
        if "ERROR[" not in line and "WARNING[" not in line:
            continue
        missing = MISSING_FILE.search(line)
        if missing and missing[1] not in PROJECT_FILES:
            continue
        if PROJECT_SOURCES.search(line) or any(name in line for name in PROJECT_FILES):
            problems.append(line)
    return problems


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text, flags=re.MULTILINE))


def test_the_loaded_files_are_the_committed_ones(asterisk: Asterisk) -> None:
    """What runs is docker/asterisk/ itself: the fresh render equals the committed files,
    except the transport's bind address."""
    for name in GENERATED:
        loaded = (asterisk.confdir / name).read_text(encoding="utf-8")
        committed = (PROJECT_ASTERISK / name).read_text(encoding="utf-8")
        if name == "pjsip.conf":
            committed = committed.replace("bind = 0.0.0.0:5060\n",
                                          f"bind = 127.0.0.1:{asterisk.sip_port}\n")
        assert loaded == committed, name
    for name in ("manager.conf", "features.conf", "confbridge.conf", "extensions-asr.conf"):
        loaded = (asterisk.confdir / name).read_text(encoding="utf-8")
        committed = (PROJECT_ASTERISK / name).read_text(encoding="utf-8")
        assert loaded == committed.replace("\nport = 5038\n", f"\nport = {asterisk.ami_port}\n")


def test_no_errors_from_the_project_configs(asterisk: Asterisk) -> None:
    console = asterisk.console_log.read_text(encoding="utf-8")
    assert "Asterisk Ready" in asterisk.full_log.read_text(encoding="utf-8")
    assert config_problems(console) == []


def test_modules_the_service_relies_on_are_running(asterisk: Asterisk) -> None:
    for module in ("app_queue", "pbx_config", "chan_pjsip", "res_pjsip", "app_confbridge",
                   "app_chanspy", "app_mixmonitor", "app_audiosocket", "res_audiosocket",
                   "app_read", "app_userevent"):
        out = asterisk.cli(f"module show like {module}.so")
        assert re.search(rf"^{module}\.so\s.*\sRunning\s", out, re.MULTILINE), out


def test_dialplan_contexts_load(asterisk: Asterisk) -> None:
    entry = asterisk.cli("dialplan show queue-entry")
    assert "Queue(12345,t,,,120)" in entry and "Queue(enterprise,t,,,120)" in entry
    assert "Set(__TRANSFER_CONTEXT=departments)" in entry
    for context, must in (("incoming", "Goto(queue-entry,12345,1)"),
                          ("departments", "_8XXX"),
                          ("threeway", "ConfBridge(${EXTEN:5})"),
                          ("survey", "UserEvent(SurveyResult"),
                          ("from-seats", "Include =>"),
                          ("seats", "Dial(PJSIP/${EXTEN},,t)"),
                          ("incoming-asr", "AudioSocket("),
                          ("asr-tap", "AudioSocket(${EXTEN},${ASR_SERVER})")):
        out = asterisk.cli(f"dialplan show {context}")
        assert f"Context '{context}' created by 'pbx_config'" in out, out
        assert must in out, (context, out)
    assert "ASR_SERVER=127.0.0.1:9092" in asterisk.cli("dialplan show globals")


def test_queues_load_with_their_parameters(asterisk: Asterisk) -> None:
    for queue in ("12345", "enterprise"):
        out = asterisk.cli(f"queue show {queue}")
        assert re.match(rf"^{queue} has 0 calls .* in 'rrmemory' strategy .* within 15s", out), out
        # No static members: the service adds them (QueueAdd) after it logs in.
        assert "No Members" in out


async def test_queue_params_over_ami(asterisk: Asterisk, pbx: HarnessAmi) -> None:
    params = [m for m in await pbx.queue_status("12345") if m["Event"] == "QueueParams"]
    assert len(params) == 1
    assert params[0]["Strategy"] == "rrmemory" and params[0]["ServiceLevel"] == "15"


def test_pjsip_loads_its_100_endpoints(asterisk: Asterisk) -> None:
    assert count(r"^ Endpoint:  \d{4}/\d{4}\s", asterisk.cli("pjsip show endpoints")) == 100
    assert count(r"^\s+Auth:  \d{4}-auth/\d{4}$", asterisk.cli("pjsip show auths")) == 100
    assert count(r"^\s+Aor:  \d{4}\s", asterisk.cli("pjsip show aors")) == 100
    transports = asterisk.cli("pjsip show transports")
    assert re.search(rf"transport-udp\s+udp\s.*127\.0\.0\.1:{asterisk.sip_port}$", transports,
                     re.MULTILINE), transports
    endpoint = asterisk.cli("pjsip show endpoint 1001")
    assert re.search(r"^ context\s+: from-seats$", endpoint, re.MULTILINE), endpoint
    assert re.search(r"^ device_state_busy_at\s+: 1$", endpoint, re.MULTILINE)


def _perm(out: str, which: str) -> set[str]:
    m = re.search(rf"^\s*{which} perm: (.*)$", out, re.MULTILINE)
    assert m, out
    return set(m[1].strip().split(","))


def _conf_perm(which: str) -> set[str]:
    text = (PROJECT_ASTERISK / "manager.conf").read_text(encoding="utf-8")
    m = re.search(rf"^{which} = (.*)$", text, re.MULTILINE)
    assert m
    return set(m[1].strip().split(","))


def test_manager_user_hotline_has_exactly_the_projects_privileges(asterisk: Asterisk) -> None:
    out = asterisk.cli("manager show user hotline")
    assert re.search(r"^\s*secret: <Set>$", out, re.MULTILINE)
    # "system" is read only: the Shutdown event (a PBX stop is not citizens abandoning).
    assert _perm(out, "read") == _conf_perm("read") == {"call", "agent", "user", "dialplan",
                                                        "system"}
    assert _perm(out, "write") == _conf_perm("write") == {"call", "agent", "originate",
                                                          "reporting"}
    assert "deny - 0.0.0.0/0.0.0.0" in out and "allow - 127.0.0.1/255.255.255.255" in out
    settings = asterisk.cli("manager show settings")
    assert re.search(r"^\s*Manager \(AMI\):\s+Yes\s*$", settings, re.MULTILINE), settings
    assert re.search(rf"^\s*TCP Bindaddress:\s+127\.0\.0\.1:{asterisk.ami_port}\s*$", settings,
                     re.MULTILINE), settings


async def test_hotline_user_cannot_run_commands_or_reconfigure(asterisk: Asterisk) -> None:
    """Least privilege holds on the wire, not only on paper: no CLI, config or shutdown."""
    ami = await HarnessAmi.connect(asterisk.ami_port, "hotline", asterisk.hotline_secret)
    try:
        for action, fields in (("Command", {"Command": "core show version"}),
                               ("GetConfig", {"Filename": "manager.conf"}),
                               ("Reload", {}),
                               ("MixMonitor", {"Channel": "Local/x@y", "File": "a.wav"})):
            reply = await ami.action(action, fields)
            assert reply["Response"] == "Error", (action, reply)
            assert reply["Message"] == "Permission denied", (action, reply)
        # What it is granted works: QueueStatus needs no class, CoreShowChannels needs
        # "reporting", Ping needs nothing.
        assert (await ami.action("Ping"))["Response"] == "Success"
        assert (await ami.list_action("CoreShowChannels"))[0]["Response"] == "Success"
    finally:
        await ami.close()


def test_the_error_check_sees_a_broken_config(asterisk: Asterisk, tmp_path: Path) -> None:
    """Control: the same files without ``pjsip_secrets.conf`` (auth sections without a
    password) are reported, so an empty problem list above means something."""
    broken = Asterisk(asterisk.bundle, tmp_path / "broken", asterisk.hotline_config,
                      unpacked=asterisk.unpacked)
    broken.write_configs()
    (broken.confdir / "pjsip_secrets.conf").unlink()
    broken.start()
    try:
        problems = config_problems(broken.console_log.read_text(encoding="utf-8"))
        assert any("1001-auth" in p for p in problems), problems
        assert count(r"^\s+Auth:  \d{4}-auth", broken.cli("pjsip show auths")) == 0
    finally:
        broken.stop()
