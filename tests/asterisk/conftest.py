"""The service against a real Asterisk 22.5 (the team's bundle in ``../shared/asterisk/``).

Skipped, with a reason saying how to get one, where no bundle is found
(``HOTLINE_ASTERISK_DIR`` or ``<repo>/../shared/asterisk``).

Fixtures (helpers and types in ``tests/asterisk/harness.py``):

``hotline_config_dir`` (module)
    A copy of ``config/demo`` whose ``queues.yaml`` has queue ``12345`` with four seats
    1001–1004 as ``Local/{extension}@test-seats/n`` (state ``Local/{extension}@test-seats``,
    member name ``seat-{extension}``), ``wrapup_seconds`` 1, ring timeout 5 s, departments
    8001–8003. Override it in a test module to run Asterisk (and the service) on another
    config (``test_configs_load.py`` uses ``config/defaults``).

``asterisk`` (module) → :class:`harness.Asterisk`
    One Asterisk per test module, started with ``run-asterisk`` on a free AMI port
    (``asterisk.ami_port``) and a free SIP port, CONFDIR = the project's ``docker/asterisk``
    files as ``hotline asterisk render`` writes them from ``hotline_config_dir``, with the
    explicit test edits listed in :meth:`harness.Asterisk.write_configs` (the ``hotline``
    AMI user keeps exactly the project's privileges; a second user ``harness`` with
    ``write = all`` drives calls). ``cli(cmd)``/``acli``, ``restart()``/``arestart`` (calls up
    are lost), ``queue_log(since)``/``aqueue_log`` (parsed rows of the queue_log file),
    ``queue_log_mark()``, ``set_global(name, value)`` (seat/department behaviour, see
    ``harness.TEST_DIALPLAN``), ``queue_members(queue)``, ``active_channels()``, ``reset()``,
    ``console_log`` (rewritten at each start)/``full_log`` (verbose: every dialplan step)/
    ``queue_log_path`` (appended; a restart adds a QUEUESTART row). Stopped (SIGTERM, then
    SIGKILL) after the module. A failing test's report gets the tail of its console.log and
    full.log. In async tests use the ``a*`` methods: blocking calls on the loop fail the test.
    Tests share the module's Asterisk: leave per-test state to ``pbx``'s reset.

``pbx`` (function, async) → :class:`harness.HarnessAmi`
    Resets Asterisk (no channels, no queue members, test globals cleared) and gives the test
    harness's own AMI client: ``originate_caller(number, talk=, patience=)`` returns the
    caller's Uniqueid (= the service's ``call_id``), ``queue_status()``, ``channels()``,
    ``action()``/``list_action()``, ``wait_event(match)``.

``ami_proxy`` (function, async) → :class:`harness.AmiProxy`
    A TCP proxy to Asterisk's AMI; point the service at ``ami_proxy.port`` and ``cut()``,
    ``restore()``, ``cut_for(seconds)`` or ``async with ami_proxy.down():``.

``service`` (function) → factory
    ``async with service(ami_port=None, database="sqlite", extra_env=None) as svc:`` runs the
    real service (``hotline.app.serve``) on ``hotline_config_dir`` against the Asterisk (or
    ``ami_port``: the proxy), SQLite under tmp_path or a throwaway PostgreSQL database
    (``database="postgresql"``), Redis under a key prefix of its own (deleted after), and
    waits until AMI is READY and every seat is a member. ``svc`` is a :class:`ServiceOnPbx`:
    ``svc.hot`` (board, tracker, store ...), ``svc.base`` (HTTP), ``get``/``post``,
    ``records()`` (the stored call records). Agent tokens: ``agent_token("1001")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from config.loader import load_config
from hotline.app import Hotline, serve
from telephony.link import LinkState
from telephony.model import CallRecord
from tests.asterisk.harness import (
    HARNESS_USER,
    HOW_TO_GET,
    REPO,
    AmiProxy,
    Asterisk,
    HarnessAmi,
    find_bundle,
    free_port,
)
from tests.e2e.conftest import ADMIN, RunningService, delete_prefix, eventually

DEMO_CONFIG = REPO / "config" / "demo"
PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
SEATS = ("1001", "1002", "1003", "1004")
DEPARTMENTS = {"8001": "市水务集团", "8002": "市住房和城乡建设局", "8003": "市市场监督管理局"}
PAUSE_REASONS = ("小休", "午休", "培训", "会议", "就餐")

TEST_QUEUES_YAML = """\
# tests/asterisk: four Local seats answered by the test dialplan's [test-seats]
pause_reasons: [{reasons}]
wrapup_seconds: 1
interface_template: "Local/{{extension}}@test-seats/n"
state_interface_template: "Local/{{extension}}@test-seats"
member_name_template: "seat-{{extension}}"
queues:
  - name: "12345"
    description: 12345 政务服务便民热线
    strategy: rrmemory
    ring_timeout: 5
    retry: 1
    max_wait_seconds: 120
    service_level_seconds: 15
    seats:
{seats}
departments:
{departments}
"""


def agent_token(extension: str) -> str:
    """The bearer token of seat ``extension``'s agent in the ``service`` fixture."""
    return f"agent-{extension}-token"


def write_test_config(target: Path, seats: tuple[str, ...] = SEATS) -> Path:
    """``config/demo`` with the test queues.yaml (see the module docstring)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in DEMO_CONFIG.glob("*.yaml"):
        shutil.copy(path, target / path.name)
    (target / "queues.yaml").write_text(TEST_QUEUES_YAML.format(
        reasons=", ".join(PAUSE_REASONS),
        seats="\n".join(f'      - {{extension: "{s}", name: 坐席{s}}}' for s in seats),
        departments="\n".join(f'  - {{number: "{n}", name: {name}}}'
                              for n, name in DEPARTMENTS.items())), encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def asterisk_bundle() -> Path:
    """The bundle directory; skips the test when there is none."""
    bundle = find_bundle()
    if bundle is None:
        pytest.skip(HOW_TO_GET)
    return bundle


@pytest.fixture(scope="module")
def hotline_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's config directory for this module (override to change seats)."""
    return write_test_config(tmp_path_factory.mktemp("hotline-config"))


@pytest.fixture(scope="module")
def asterisk(asterisk_bundle: Path, hotline_config_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Asterisk]:
    """One running Asterisk for the test module (see the module docstring)."""
    pbx = Asterisk(asterisk_bundle, tmp_path_factory.mktemp("asterisk"), hotline_config_dir)
    pbx.start()
    try:
        yield pbx
    finally:
        pbx.stop()


@pytest.fixture
async def pbx(asterisk: Asterisk) -> AsyncIterator[HarnessAmi]:
    """A reset Asterisk and the harness's AMI client on it."""
    await asterisk.areset()
    ami = await HarnessAmi.connect(asterisk.ami_port, HARNESS_USER, asterisk.harness_secret)
    try:
        yield ami
    finally:
        await ami.close()


@pytest.fixture
async def ami_proxy(asterisk: Asterisk) -> AsyncIterator[AmiProxy]:
    """A cuttable TCP proxy in front of the Asterisk's AMI."""
    proxy = AmiProxy(asterisk.ami_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()


class ServiceOnPbx(RunningService):
    """The running service (``hot``, HTTP helpers) and the Asterisk it is attached to."""

    def __init__(self, hot: Hotline, http: aiohttp.ClientSession, db_path: Path,
                 asterisk: Asterisk) -> None:
        super().__init__(hot, http, db_path)
        self.asterisk = asterisk

    async def records(self, limit: int = 500) -> list[CallRecord]:
        """Every call record the service stored (oldest first)."""
        return list(reversed(await self.hot.store.recent(limit)))


async def wait_service_ready(svc: RunningService, seats: int) -> None:
    """AMI READY and ``seats`` seats members of a queue on the board."""
    await eventually(lambda: svc.hot.link.state is LinkState.READY, timeout=20,
                     what="AMI READY")
    await eventually(lambda: sum(1 for s in svc.hot.board.snapshot() if s.queues) >= seats,
                     timeout=20, what=f"{seats} seats in their queues")


@asynccontextmanager
async def _pg_database() -> AsyncIterator[str]:
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"hotline_test_{secrets.token_hex(6)}"
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


ServiceFactory = Callable[..., AbstractAsyncContextManager[ServiceOnPbx]]


@pytest.fixture
def service(asterisk: Asterisk, pbx: HarnessAmi, hotline_config_dir: Path,
            tmp_path: Path) -> ServiceFactory:
    """``async with service() as svc:`` the real service on the Asterisk (see the module
    docstring). Depends on ``pbx``: Asterisk is reset before the service starts."""
    counter = iter(range(1000))

    @asynccontextmanager
    async def start(*, ami_port: int | None = None, database: str = "sqlite",
                    extra_env: dict[str, str] | None = None,
                    wait_ready: bool = True) -> AsyncIterator[ServiceOnPbx]:
        n = next(counter)
        db_path = tmp_path / f"hotline-{n}.db"
        prefix = f"ast{uuid.uuid4().hex[:12]}"
        cfg_seats = (await asyncio.to_thread(load_config, hotline_config_dir, {})).queues.all_seats()
        async with contextlib.AsyncExitStack() as stack:
            if database == "postgresql":
                db_url = await stack.enter_async_context(_pg_database())
            elif database == "sqlite":
                db_url = f"sqlite+aiosqlite:///{db_path}"
            else:
                raise ValueError(f"database {database!r}: sqlite or postgresql")
            env = {
                "HOTLINE_AMI__HOST": "127.0.0.1",
                "HOTLINE_AMI__PORT": str(ami_port or asterisk.ami_port),
                "HOTLINE_AMI__USERNAME": "hotline",
                "HOTLINE_AMI__SECRET": asterisk.hotline_secret,
                "HOTLINE_AMI__PING_INTERVAL": "2",
                "HOTLINE_AMI__PING_TIMEOUT": "1",
                "HOTLINE_AMI__BACKOFF_INITIAL": "0.1",
                "HOTLINE_AMI__BACKOFF_MAX": "0.5",
                "HOTLINE_SERVICE__HTTP_PORT": str(free_port()),
                "HOTLINE_SERVICE__DATABASE_URL": db_url,
                "HOTLINE_SERVICE__ADMIN_TOKEN": ADMIN,
                "HOTLINE_AGENT_TOKENS": ",".join(f"{s.extension}={agent_token(s.extension)}"
                                                 for s in cfg_seats),
                "HOTLINE_SERVICE__SHUTDOWN_GRACE_SECONDS": "5",
                "HOTLINE_CHANNELS__REDIS__KEY_PREFIX": prefix,
                "HOTLINE_CHANNELS__SPOOL__PATH": str(tmp_path / f"spool-{n}.db"),
                "HOTLINE_CHANNELS__WEB__ATTACHMENTS_DIR": str(tmp_path / "attachments"),
            } | (extra_env or {})
            cfg = await asyncio.to_thread(load_config, hotline_config_dir, env)
            stop = asyncio.Event()
            started: asyncio.Future[Hotline] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(serve(cfg, stop, config_dir=hotline_config_dir,
                                             env=env, started=started.set_result))
            try:
                hot = await asyncio.wait_for(asyncio.shield(started), 20)
                async with aiohttp.ClientSession() as http:
                    svc = ServiceOnPbx(hot, http, db_path, asterisk)
                    if wait_ready:
                        await wait_service_ready(svc, len(cfg_seats))
                    yield svc
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 30)
                await delete_prefix(prefix)

    return start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """A failing test's report shows what Asterisk said (console.log, full.log tails)."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        pbx = funcargs.get("asterisk")
        if isinstance(pbx, Asterisk):
            report.sections.append(("asterisk console.log (tail)", pbx.console_tail(40)))
            report.sections.append(("asterisk full.log (tail)",
                                    pbx.console_tail(80, pbx.full_log)))
    return report
