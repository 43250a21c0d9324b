"""The `config check` command."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from config.check import check


def queues_yaml(seats: dict[str, list[tuple[str, int]]], **top: str) -> str:
    text = "".join(f"{k}: {v}\n" for k, v in top.items()) + "queues:\n"
    for name, members in seats.items():
        text += f"  - name: {name}\n    description: 队列{name}\n    seats:\n"
        text += "".join(f'      - {{extension: "{e}", name: 坐席{e}, penalty: {p}}}\n'
                        for e, p in members)
    return text


def test_check_ok_prints_summary() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert check(None, {}, out=out, err=err) == 0
    text = out.getvalue()
    assert "配置正确" in text and "2 queue(s), 100 seat(s)" in text
    assert err.getvalue() == ""


def test_check_prints_every_error_and_fails(write_config) -> None:
    directory = write_config(hotline="ami:\n  port: high\n",
                             queues='pause_reasons: ["a\\nb"]\nwrapup: 3\n')
    out, err = io.StringIO(), io.StringIO()
    assert check(directory, {}, out=out, err=err) == 1
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("配置有 3 处错误 / 3 problem(s)")
    assert "  queues.yaml: wrapup: unknown key; did you mean 'wrapup_seconds'?" in lines
    assert any(line.startswith("  hotline.yaml: ami.port: ") for line in lines)
    assert out.getvalue() == ""


def test_check_warns_until_the_next_years_holidays_are_entered(write_config) -> None:  # type: ignore[no-untyped-def]
    december = datetime(2026, 12, 7, 2, tzinfo=UTC)
    out = io.StringIO()
    assert check(None, {}, out=out, err=io.StringIO(), now=december) == 0
    notes = [line for line in out.getvalue().splitlines() if "calendar.years.2027" in line]
    assert len(notes) == 1 and "2027 年的国务院放假安排尚未录入" in notes[0]
    assert "临时" in notes[0]
    # Not before October (nothing computed now can reach 2027) ...
    out = io.StringIO()
    assert check(None, {}, out=out, err=io.StringIO(), now=datetime(2026, 6, 1, tzinfo=UTC)) == 0
    assert "calendar.years" not in out.getvalue()
    # ... and not once sla.yaml has the year.
    entered = write_config(sla="calendar:\n  years:\n    2027:\n      holidays: [2027-01-01]\n")
    out = io.StringIO()
    assert check(entered, {}, out=out, err=io.StringIO(), now=december) == 0
    assert "calendar.years" not in out.getvalue()
