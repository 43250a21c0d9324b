"""The `config check` command."""

from __future__ import annotations

import io

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


def test_check_prints_the_notes_it_is_given_about_the_loaded_config() -> None:
    out = io.StringIO()
    assert check(None, {}, out=out, err=io.StringIO(),
                 notes=lambda cfg: [f"时区 {cfg.service.timezone}", "second"]) == 0
    lines = out.getvalue().splitlines()
    assert lines[-2:] == ["  注意 / note: 时区 Asia/Shanghai", "  注意 / note: second"]
