"""A real Asterisk 22.5 for the tests: the process, its configs, a harness AMI client, the
queue_log and a TCP proxy that can cut the AMI link. The fixtures in ``conftest.py`` wrap
these; tests import the types and helpers from here.

The bundle is ``../shared/asterisk/`` beside the checkout (CI has it there), or the directory
in ``HOTLINE_ASTERISK_DIR``; its ``run-asterisk CONFDIR RUNDIR`` starts one and prints its PID
once AMI is open and Asterisk is fully booted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from config.loader import load_config
from hotline.cli import main as hotline_cli
from telephony.asterisk_config import render_seat_secrets

REPO = Path(__file__).resolve().parents[2]
PROJECT_ASTERISK = REPO / "docker" / "asterisk"
BUNDLE_ENV = "HOTLINE_ASTERISK_DIR"
BUNDLE_TARBALL = "asterisk-22.5.0.tar.xz"
HOW_TO_GET = (
    f"no Asterisk bundle found: these tests run a real Asterisk 22.5. Put the team's bundle "
    f"(run-asterisk + {BUNDLE_TARBALL}) at ../shared/asterisk/ beside the checkout, or set "
    f"{BUNDLE_ENV}=/path/to/it (its README.md says how it was built from the public source "
    f"asterisk/asterisk tag 22.5.0; install Debian's asterisk-core-sounds-en-wav for the "
    f"prompts, `make system-packages` does)")
HARNESS_USER = "harness"

# The project's hand-written files, copied as they are (see _write_project_files for the
# three explicit edits a test run needs). The generated ones are rendered fresh.
HAND_WRITTEN = ("extensions.conf", "extensions-asr.conf", "manager.conf", "features.conf",
                "confbridge.conf", "indications.conf")
GENERATED = ("pjsip.conf", "queues.conf", "extensions_queues.conf")

# Test-only dialplan, included at the end of the project's extensions.conf. Behaviour is set
# per test through globals (Asterisk.set_global), so one interface template serves all tests:
#   SEAT_TALK_<ext>  seconds the seat talks after answering (default 3); "never" = it rings
#                    and never answers (the queue's ring timeout moves on)
#   SEAT_RING_<ext>  seconds it rings before answering (default 0)
#   DEPT_TALK_<num>  seconds a department talks (default DEPT_TALK, else 4)
# Callers are Originated as Local/talk@test-citizen (TALK = seconds on the line in all, queue
# wait included, default 60) or Local/talk@test-citizen-impatient (PATIENCE, default 3).
TEST_DIALPLAN = r"""
; ---- test-only contexts (tests/asterisk/harness.py), never part of the product ----
; A seat as a Local channel (interface_template Local/{extension}@test-seats/n), like the
; recorded traces' [seats], [seats-long] and [seats-noanswer] in one context.
[test-seats]
exten => _X.,1,Set(TALK=${IF($["${SEAT_TALK_${EXTEN}}" = ""]?3:${SEAT_TALK_${EXTEN}})})
 same => n,Set(RING=${IF($["${SEAT_RING_${EXTEN}}" = ""]?0:${SEAT_RING_${EXTEN}})})
 same => n,GotoIf($["${TALK}" = "never"]?never)
 same => n,Wait(${RING})
 same => n,Answer()
 same => n,Wait(${TALK})
 same => n,Hangup()
 same => n(never),Wait(600)
 same => n,Hangup()

; seats that stay on the line (transfer and three-way scenarios)
[test-seats-long]
exten => _X.,1,Answer()
 same => n,Wait(60)
 same => n,Hangup()

[test-seats-noanswer]
exten => _X.,1,Wait(600)
 same => n,Hangup()

; a citizen Originated into the queue: on the line TALK seconds in all, then hangs up
[test-citizen]
exten => talk,1,Answer()
 same => n,Wait(${IF($["${TALK}" = ""]?60:${TALK})})
 same => n,Hangup()

; a citizen who gives up after PATIENCE seconds
[test-citizen-impatient]
exten => talk,1,Answer()
 same => n,Wait(${IF($["${PATIENCE}" = ""]?3:${PATIENCE})})
 same => n,Hangup()

; departments that answer (the project's [departments] dials these instead of PJSIP phones)
[test-departments]
exten => _8XXX,1,GotoIf($["${DEPT_TALK_${EXTEN}}" = "busy"]?busy)
 same => n,Answer()
 same => n,Set(TALK=${IF($["${DEPT_TALK_${EXTEN}}" = ""]?${DEPT_TALK}:${DEPT_TALK_${EXTEN}})})
 same => n,Wait(${IF($["${TALK}" = ""]?4:${TALK})})
 same => n,Hangup()
 ; DEPT_TALK_<num> = busy: the department's line is busy (never answers)
 same => n(busy),Hangup(17)
"""

LOGGER_CONF = """\
[general]
; the queue log, Asterisk's own record of every queue event, to RUNDIR/log/queue_log
queue_log = yes
queue_log_to_file = yes
queue_log_name = queue_log
dateformat = %F %T.%3q

[logfiles]
console => notice,warning,error
; what the dialplan did, for a failing test's report
full.log => verbose(3),notice,warning,error
"""

MODULES_CONF = "[modules]\nautoload = yes\n"


def find_bundle() -> Path | None:
    """The Asterisk bundle directory, or ``None`` when there is none."""
    env = os.environ.get(BUNDLE_ENV)
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "asterisk",
                                         Path("/work/shared/asterisk")]
    for candidate in candidates:
        script = candidate / "run-asterisk"
        if script.is_file() and os.access(script, os.X_OK) \
                and (candidate / BUNDLE_TARBALL).is_file():
            return candidate
    return None


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now (TCP by default; ``SOCK_DGRAM`` for SIP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs. Asterisk is run-asterisk's orphan, so nobody here can wait() for
    it; a zombie left for PID 1 to reap counts as stopped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _replace_once(text: str, old: str, new: str, what: str) -> str:
    """Replace exactly one occurrence: a project file that changed shape fails loudly here
    instead of silently running the tests on an unedited config."""
    if text.count(old) != 1:
        raise AssertionError(f"{what}: expected exactly one {old!r} in the project's file")
    return text.replace(old, new)


@dataclass(frozen=True, slots=True)
class QueueLogRow:
    """One line of Asterisk's ``queue_log``: ``time|callid|queue|agent|event|data...``.

    ``callid`` is the caller channel's Uniqueid (the service's ``call_id``); ``agent`` is the
    member name (``log_membername_as_agent = yes``), e.g. ``seat-1001``.
    """

    time: float
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


def parse_queue_log(text: str) -> list[QueueLogRow]:
    """Every complete line of a ``queue_log`` file."""
    rows = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5:
            continue
        rows.append(QueueLogRow(float(parts[0]), parts[1], parts[2], parts[3], parts[4],
                                tuple(parts[5:])))
    return rows


class Asterisk:
    """One real Asterisk with the project's configs (see the conftest docstring).

    Synchronous on purpose (a module-scoped fixture starts it outside any event loop); the
    ``a*`` variants run the same work in a thread for async tests, whose loop must not block.
    """

    def __init__(self, bundle: Path, base: Path, hotline_config: Path,
                 unpacked: Path | None = None) -> None:
        self.bundle = bundle
        # Where the bundle is unpacked once and shared (read-only) by every RUNDIR.
        self.unpacked = unpacked or base.parent / "asterisk-opt"
        self.base = base
        self.hotline_config = hotline_config
        self.confdir = base / "conf"
        self.rundir = base / "run"
        self.ami_port = 0
        self.sip_port = 0
        self.hotline_secret = "hotline-" + secrets.token_hex(12)
        self.harness_secret = "harness-" + secrets.token_hex(12)
        self.seat_passwords: dict[str, str] = {}
        self.pid: int | None = None
        self._globals: set[str] = set()

    # ---- configuration ------------------------------------------------------------------

    @property
    def console_log(self) -> Path:
        """Asterisk's console output (notices, warnings, errors)."""
        return self.rundir / "log" / "console.log"

    @property
    def full_log(self) -> Path:
        """Verbose log (dialplan steps) of this Asterisk."""
        return self.rundir / "log" / "full.log"

    @property
    def queue_log_path(self) -> Path:
        return self.rundir / "log" / "queue_log"

    def write_configs(self) -> None:
        """CONFDIR = the project's configs rendered from ``hotline_config`` by ``hotline
        asterisk render`` + the hand-written ones, edited only where a test run must differ:

        * ``manager.conf``: the AMI port is a free one (several Asterisks run side by side);
          the ``hotline`` user and its privileges are untouched: the service must work with
          exactly them. ``manager_secrets.conf`` gives it a secret and adds the test
          harness's own user (``write = all``) that drives calls and is never the service's.
        * ``pjsip.conf``: the transport binds ``127.0.0.1:<free UDP port>`` instead of
          ``0.0.0.0:5060`` (one Asterisk per host could bind that, and tests keep SIP off
          the network). ``pjsip_secrets.conf`` gives each seat a password, as production does
          (without it every ``NNNN-auth`` section fails to load).
        * ``extensions.conf``: ``[departments]`` dials the answering Local departments of the
          test dialplan instead of PJSIP phones nobody registers, and the test dialplan is
          included at its end.
        """
        self.confdir.mkdir(parents=True, exist_ok=True)
        for old in self.confdir.glob("*.conf"):
            old.unlink()
        self.ami_port = self.ami_port or free_port()
        self.sip_port = self.sip_port or free_port(socket.SOCK_DGRAM)
        with contextlib.redirect_stdout(io.StringIO()):      # it lists the files it wrote
            code = hotline_cli(["asterisk", "render", "--config", str(self.hotline_config),
                                "--out", str(self.confdir)])
        if code != 0:
            raise AssertionError(f"hotline asterisk render failed ({code})")
        for name in HAND_WRITTEN:
            shutil.copy(PROJECT_ASTERISK / name, self.confdir / name)
        self._write_edits()
        cfg = load_config(self.hotline_config, {})
        self.seat_passwords = {s.extension: "Seat-" + secrets.token_hex(8)
                               for s in cfg.queues.all_seats()}
        render_seat_secrets(cfg, self.seat_passwords, self.confdir)
        (self.confdir / "manager_secrets.conf").write_text(
            f"[hotline](+)\nsecret = {self.hotline_secret}\n\n"
            f"[{HARNESS_USER}]\nsecret = {self.harness_secret}\n"
            "deny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n"
            "read = all\nwrite = all\n", encoding="utf-8")
        (self.confdir / "logger.conf").write_text(LOGGER_CONF, encoding="utf-8")
        (self.confdir / "modules.conf").write_text(MODULES_CONF, encoding="utf-8")
        (self.confdir / "extensions_test.conf").write_text(TEST_DIALPLAN, encoding="utf-8")

    def _write_edits(self) -> None:
        manager = self.confdir / "manager.conf"
        manager.write_text(_replace_once(manager.read_text(encoding="utf-8"), "\nport = 5038\n",
                                         f"\nport = {self.ami_port}\n", "manager.conf"),
                           encoding="utf-8")
        pjsip = self.confdir / "pjsip.conf"
        pjsip.write_text(_replace_once(pjsip.read_text(encoding="utf-8"),
                                       "bind = 0.0.0.0:5060\n",
                                       f"bind = 127.0.0.1:{self.sip_port}\n", "pjsip.conf"),
                         encoding="utf-8")
        ext = self.confdir / "extensions.conf"
        text = _replace_once(ext.read_text(encoding="utf-8"),
                             "exten => _8XXX,1,Dial(PJSIP/${EXTEN},60)",
                             "exten => _8XXX,1,Dial(Local/${EXTEN}@test-departments,60)",
                             "extensions.conf [departments]")
        ext.write_text(text + "\n#include extensions_test.conf\n", encoding="utf-8")

    # ---- process ------------------------------------------------------------------------

    def start(self) -> None:
        """Start it (configs written on first start) and wait until it is fully booted.

        A port taken between choosing it and Asterisk binding it (other test runs share the
        machine) shows as "Address already in use" in the console log (AMI or the SIP
        transport): then the ports are chosen again and it is started again.
        """
        if not (self.confdir / "manager.conf").exists():
            self.write_configs()
        for attempt in itertools.count(1):
            self._share_unpacked_bundle()
            done = subprocess.run([str(self.bundle / "run-asterisk"), str(self.confdir),
                                   str(self.rundir)], capture_output=True, text=True,
                                  timeout=90, start_new_session=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"run-asterisk failed ({done.returncode}): "
                                   f"{done.stderr[-2000:]}")
            self.pid = int(done.stdout.split()[-1])
            console = self.console_log.read_text(encoding="utf-8", errors="replace")
            if "Address already in use" not in console:
                return
            self.stop()
            if attempt == 3:
                raise RuntimeError("could not bind AMI/SIP ports:\n" + self.console_tail())
            self.ami_port = self.sip_port = 0
            self.write_configs()

    def _share_unpacked_bundle(self) -> None:
        """Unpack the bundle once per test session (about 1 s each time otherwise):
        run-asterisk unpacks into RUNDIR/opt only when that has no asterisk binary."""
        shared = self.unpacked
        opt = self.rundir / "opt"
        if opt.exists() or opt.is_symlink():
            return
        self.rundir.mkdir(parents=True, exist_ok=True)
        if (shared / "asterisk" / "sbin" / "asterisk").exists():
            opt.symlink_to(shared)
        else:
            shared.mkdir(parents=True, exist_ok=True)
            subprocess.run(["tar", "xJf", str(self.bundle / BUNDLE_TARBALL), "-C", str(shared)],
                           check=True, timeout=120)
            opt.symlink_to(shared)

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.pid is not None and _alive(self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Calls up are lost."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _alive(pid):
                    return
                time.sleep(0.05)
        raise RuntimeError(f"asterisk {pid} did not stop")

    def restart(self) -> None:
        """Stop (SIGTERM) and start again on the same ports and RUNDIR, as a PBX restart
        does: calls up are lost, queue members too (``persistentmembers = no``)."""
        self.stop()
        self.start()

    async def arestart(self) -> None:
        await asyncio.to_thread(self.restart)

    # ---- CLI, globals, reset ------------------------------------------------------------

    def cli(self, command: str, timeout: float = 15.0) -> str:
        """Run one CLI command (``asterisk -rx``) and return its output."""
        env = dict(os.environ, LD_LIBRARY_PATH=str(self.rundir / "opt" / "asterisk" / "lib"))
        done = subprocess.run(
            [str(self.rundir / "opt" / "asterisk" / "sbin" / "asterisk"),
             "-C", str(self.rundir / "etc" / "asterisk.conf"), "-rx", command],
            capture_output=True, text=True, timeout=timeout, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"asterisk -rx {command!r} failed: {done.stderr.strip()}")
        return done.stdout

    async def acli(self, command: str, timeout: float = 15.0) -> str:
        """:meth:`cli` off the event loop."""
        return await asyncio.to_thread(self.cli, command, timeout)

    def set_global(self, name: str, value: str) -> None:
        """Set a dialplan global (``SEAT_TALK_1001``, ``DEPT_TALK`` ...); :meth:`reset`
        clears it."""
        if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not re.fullmatch(r"[A-Za-z0-9_.]*",
                                                                         value):
            raise ValueError(f"bad global {name}={value}")
        self.cli(f"dialplan set global {name} {value or chr(34) * 2}")
        self._globals.add(name)

    async def aset_global(self, name: str, value: str) -> None:
        await asyncio.to_thread(self.set_global, name, value)

    def active_channels(self) -> list[str]:
        """Names of the channels up right now (``core show channels concise``)."""
        out = self.cli("core show channels concise")
        return [line.split("!", 1)[0] for line in out.splitlines() if "!" in line]

    def queue_members(self, queue: str = "12345") -> dict[str, str]:
        """``queue show``'s members: interface → the rest of its line (state, pause ...)."""
        members = {}
        for line in self.cli(f"queue show {queue}").splitlines():
            m = re.match(r"^\s+\S.*?\((\S+?)(?: from \S+)?\)(.*)$", line)
            if m and "/" in m[1]:
                members[m[1]] = m[2]
        return members

    def reset(self, queues: Iterable[str] = ("12345", "enterprise")) -> None:
        """A clean PBX for the next test: no channels, no dynamic queue members, test
        globals cleared. (Asterisk keeps running between the tests of a module.)"""
        if not self.running():
            self.start()
        self.cli("channel request hangup all")
        deadline = time.monotonic() + 10
        while self.active_channels() and time.monotonic() < deadline:
            time.sleep(0.1)
        for queue in queues:
            for interface in self.queue_members(queue):
                self.cli(f"queue remove member {interface} from {queue}")
        for name in sorted(self._globals):
            self.cli(f'dialplan set global {name} ""')
        self._globals.clear()

    async def areset(self) -> None:
        await asyncio.to_thread(self.reset)

    # ---- logs ---------------------------------------------------------------------------

    def queue_log(self, since: int = 0) -> list[QueueLogRow]:
        """Parsed rows of the queue_log file, from row ``since`` on (see
        :meth:`queue_log_mark`)."""
        try:
            text = self.queue_log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return parse_queue_log(text)[since:]

    async def aqueue_log(self, since: int = 0) -> list[QueueLogRow]:
        return await asyncio.to_thread(self.queue_log, since)

    def queue_log_mark(self) -> int:
        """How many rows the queue_log has now: ``queue_log(since=mark)`` is what came after."""
        return len(self.queue_log())

    async def aqueue_log_mark(self) -> int:
        return await asyncio.to_thread(self.queue_log_mark)

    def console_tail(self, lines: int = 60, path: Path | None = None) -> str:
        """The last ``lines`` lines of the console log (or ``path``)."""
        try:
            text = (path or self.console_log).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# ---- the harness's own AMI client ---------------------------------------------------------

Msg = dict[str, str]


class HarnessAmi:
    """A small AMI client for the test side (full privileges, never the service's link).

    A reader task files each response under its ActionID and keeps every event (a test can
    wait for one with :meth:`wait_event`). ``action`` always has a timeout.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[list[Msg]]] = {}
        self._lists: dict[str, list[Msg]] = {}
        self.events: deque[Msg] = deque(maxlen=20000)
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(), name="harness-ami")

    @classmethod
    async def connect(cls, port: int, username: str, secret: str,
                      host: str = "127.0.0.1") -> HarnessAmi:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        banner = await asyncio.wait_for(reader.readline(), 10)
        if not banner.startswith(b"Asterisk Call Manager/"):
            writer.close()
            raise RuntimeError(f"not AMI: {banner!r}")
        ami = cls(reader, writer)
        reply = await ami.action("Login", Username=username, Secret=secret)
        if reply.get("Response") != "Success":
            await ami.close()
            raise RuntimeError(f"harness AMI login refused: {reply}")
        return ami

    async def _read(self) -> None:
        try:
            while True:
                block = await self._reader.readuntil(b"\r\n\r\n")
                msg: Msg = {}
                for line in block.decode("utf-8", errors="replace").split("\r\n"):
                    key, sep, value = line.partition(":")
                    if sep:
                        msg.setdefault(key.strip(), value.strip())
                self._file(msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("harness AMI connection closed"))

    def _file(self, msg: Msg) -> None:
        aid = msg.get("ActionID", "")
        fut = self._waiting.get(aid)
        if "Event" in msg:
            # Events first: OriginateResponse carries a "Response" header and the ActionID of
            # the Originate, and must not be taken for the action's response.
            if aid in self._lists and fut is not None:
                self._lists[aid].append(msg)
                if msg.get("EventList", "").lower() == "complete" and not fut.done():
                    fut.set_result(self._lists.pop(aid))
                return
            self.events.append(msg)
            self._changed.set()
            return
        if "Response" in msg and fut is not None:
            if msg.get("EventList", "").lower() == "start":
                self._lists[aid] = [msg]
            elif not fut.done():
                fut.set_result([msg])

    async def _send(self, name: str, fields: Mapping[str, str], timeout: float) -> list[Msg]:
        aid = f"h-{next(self._ids)}"
        fut: asyncio.Future[list[Msg]] = asyncio.get_running_loop().create_future()
        self._waiting[aid] = fut
        lines = [f"Action: {name}", f"ActionID: {aid}"]
        for key, value in fields.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"line break in AMI field {key}")
            lines.append(f"{key}: {value}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            await self._writer.drain()
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop(aid, None)

    async def action(self, name: str, fields: Mapping[str, str] | None = None, /, *,
                     timeout: float = 10.0, **more: str) -> Msg:
        """Send an action (``fields`` and/or keyword fields) and return its response."""
        return (await self._send(name, {**(fields or {}), **more}, timeout))[0]

    async def list_action(self, name: str, fields: Mapping[str, str] | None = None, /, *,
                          timeout: float = 10.0, **more: str) -> list[Msg]:
        """An action answered by an event list (QueueStatus, CoreShowChannels ...): the
        response followed by every event up to ``EventList: Complete``."""
        return await self._send(name, {**(fields or {}), **more}, timeout)

    async def wait_event(self, match: Callable[[Msg], bool], timeout: float = 15.0,
                         what: str = "") -> Msg:
        """The first event (kept so far or still to come) for which ``match`` is true."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for msg in list(self.events):
                if match(msg):
                    return msg
            self._changed.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no AMI event {what or match} within {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def originate_caller(self, number: str, *, queue: str = "12345",
                               talk: float | None = None, patience: float | None = None,
                               variables: Mapping[str, str] | None = None,
                               timeout: float = 15.0) -> str:
        """A citizen calling the hotline: ``Local/talk@test-citizen`` (or
        ``test-citizen-impatient`` when ``patience`` is given) Originated into
        ``queue-entry,<queue>,1`` with caller number ``number``.

        ``talk``: seconds the caller stays on the line in all (queue wait included);
        ``patience``: seconds before an impatient caller hangs up. Returns the Uniqueid of
        the caller's queue channel (``;1``), which is the service's ``call_id`` and the
        queue_log's callid.
        """
        context = "test-citizen-impatient" if patience is not None else "test-citizen"
        values = dict(variables or {})
        if talk is not None:
            values["TALK"] = f"{talk:g}"
        if patience is not None:
            values["PATIENCE"] = f"{patience:g}"
        fields = {"Channel": f"Local/talk@{context}", "Context": "queue-entry",
                  "Exten": queue, "Priority": "1", "CallerID": f'"" <{number}>',
                  "Async": "true"}
        if values:
            fields["Variable"] = ",".join(f"{k}={v}" for k, v in values.items())
        aid_reply = await self._send("Originate", fields, timeout)
        reply = aid_reply[0]
        if reply.get("Response") != "Success":
            raise RuntimeError(f"Originate refused: {reply}")
        done = await self.wait_event(
            lambda m: m.get("Event") == "OriginateResponse"
            and m.get("ActionID") == reply.get("ActionID"), timeout, "OriginateResponse")
        if done.get("Response") != "Success":
            raise RuntimeError(f"Originate failed: {done}")
        return done["Uniqueid"]

    async def queue_status(self, queue: str = "12345") -> list[Msg]:
        """``QueueStatus``: QueueParams, QueueMember and QueueEntry events."""
        return [m for m in await self.list_action("QueueStatus", Queue=queue)
                if m.get("Event") in ("QueueParams", "QueueMember", "QueueEntry")]

    async def channels(self) -> list[Msg]:
        """``CoreShowChannels``: one CoreShowChannel event per channel up."""
        return [m for m in await self.list_action("CoreShowChannels")
                if m.get("Event") == "CoreShowChannel"]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


# ---- a TCP proxy the test can cut ---------------------------------------------------------


class AmiProxy:
    """A TCP proxy between the service and Asterisk's AMI (``manager reload`` does not drop
    AMI sessions in 22.5, so a cut link needs one).

    ``cut()`` closes every connection and refuses new ones until ``restore()``;
    ``async with proxy.down(seconds)`` does both around a block (or ``await proxy.cut_for(s)``).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0          # accepted so far
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        """Listen (on a free port the first time, then on the same port) and return it."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port,
                                                  reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()
            self._writers.discard(dst)

    async def cut(self) -> None:
        """Close the listener and every connection (an RST-free close, like a peer gone)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def restore(self) -> None:
        """Accept connections again, on the same port."""
        if self._server is None:
            await self.start()

    async def cut_for(self, seconds: float) -> None:
        await self.cut()
        await asyncio.sleep(seconds)
        await self.restore()

    @asynccontextmanager
    async def down(self) -> AsyncIterator[None]:
        """``async with proxy.down(): ...`` the link is cut inside the block."""
        await self.cut()
        try:
            yield
        finally:
            await self.restore()

    async def aclose(self) -> None:
        await self.cut()
