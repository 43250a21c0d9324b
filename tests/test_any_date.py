"""Green on any date: the date-sensitive test files, rerun with the process clock moved by
libfaketime (Debian ``faketime``) to moments far from today.

The code reads time through seams (``utc_now``, injected ``clock`` parameters) and the tests
inject fixed clocks; libfaketime is the check that nothing reads the wall clock behind a
seam's back, which is how ``test_submit_adds_one_entry_with_numbers`` turned red once the day
it was written had passed. Servers the tests start (redis-server) run on the real clock
(``tests/realtime.py``).

The moments, each a known trap:

* 2026-12-31 23:59:30 in Beijing (15:59:30 UTC): the last minute of a Beijing day and of a
  year; the UTC date and the Beijing date still agree, a minute later they do not; working-day
  deadlines run into 2027, a year ``chinese_calendar`` does not know.
* 2027-02-06 10:00 in Beijing: 正月初一 of 2027, inside the Spring Festival of a year counted
  on the provisional calendar.
* 2028-02-29 12:00 in Beijing: a leap day.

The files (why each): acceptance numbers carry the Beijing date (``channels/test_durable``,
``test_numbering``); ticket numbers, deadlines, the calendar, its provisional years and their
recount (``router/test_tickets``, ``test_ticket_store``, ``test_calendar``,
``test_deadlines``, ``test_holidays``, ``test_provisional``, ``test_service``); daily queue
statistics by Beijing day and what stays in memory (``telephony/test_stats_and_board``,
``telephony/test_writer``); the KB's "today" (``router/test_kb_http``); ``config check``'s
calendar note (the two ``config check`` tests of ``hotline/test_cli``); and the whole service across a reload
(``e2e/test_calendar_e2e``). The database tests run on SQLite only here: no code asks
PostgreSQL for the time (no ``now()`` in SQL), and PostgreSQL's run doubles the time. The
whole suite was run at all three moments once (see the README) to find the time bombs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from glob import glob
from pathlib import Path

import pytest

from tests.realtime import real_clock_env

REPO = Path(__file__).resolve().parent.parent

DATE_SENSITIVE = [
    "tests/channels/test_durable.py",
    "tests/channels/test_numbering.py",
    "tests/router/test_calendar.py",
    "tests/router/test_deadlines.py",
    "tests/router/test_holidays.py",
    "tests/router/test_provisional.py",
    "tests/router/test_service.py",
    "tests/router/test_ticket_store.py",
    "tests/router/test_tickets.py",
    "tests/router/test_kb_http.py",
    "tests/hotline/test_cli.py::test_config_check_passes_on_the_shipped_configs",
    "tests/hotline/test_cli.py::test_config_check_warns_until_the_next_years_holidays_are_entered",
    "tests/telephony/test_stats_and_board.py",
    "tests/telephony/test_writer.py",
    "tests/e2e/test_calendar_e2e.py",
]

# libfaketime reads FAKETIME as local time: the children run with TZ=UTC, so these are UTC.
MOMENTS = {
    "last-minute-of-2026-in-beijing": "2026-12-31 15:59:30",
    "spring-festival-2027": "2027-02-06 02:00:00",
    "leap-day-2028": "2028-02-29 04:00:00",
}


def _libfaketime() -> str | None:
    found = sorted(glob("/usr/lib/*/faketime/libfaketime.so.1")
                   + glob("/usr/lib/faketime/libfaketime.so.1"))
    return found[0] if found else None


def _faked_env(library: str, moment: str) -> dict[str, str]:
    # "@": the clock starts at the moment and runs on (a frozen clock would stop every
    # timeout). The monotonic clock is faked too: with FAKETIME_DONT_FAKE_MONOTONIC=1,
    # libfaketime 0.9.10 makes time.sleep() fail with EINVAL (measured).
    return real_clock_env() | {"LD_PRELOAD": library, "FAKETIME": f"@{moment}", "TZ": "UTC"}


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("moment", MOMENTS.values(), ids=MOMENTS.keys())
def test_the_date_sensitive_tests_pass_at(moment: str) -> None:
    library = _libfaketime()
    if library is None:
        pytest.skip("libfaketime not found: `apt-get install faketime` (make test does)")
    env = _faked_env(library, moment)
    # First, that the clock really moved (or every pass below would prove nothing).
    seen = subprocess.run(
        [sys.executable, "-c", "import datetime as d; print(d.datetime.now(d.UTC))"],
        env=env, capture_output=True, text=True, check=True, timeout=30).stdout
    assert seen.startswith(moment[:16]), f"libfaketime did not move the clock: {seen!r}"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
         "not postgresql", *DATE_SENSITIVE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=170)
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-40:])
    assert run.returncode == 0, f"at {moment} UTC:\n{tail}"
    assert " passed" in tail and "failed" not in tail, tail


def test_servers_started_by_the_tests_do_not_inherit_libfaketime(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
    monkeypatch.setenv("FAKETIME", "@2027-02-06 02:00:00")
    env = real_clock_env()
    assert "LD_PRELOAD" not in env and "FAKETIME" not in env
    assert env["PATH"] == os.environ["PATH"]
