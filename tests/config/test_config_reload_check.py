"""diff_memberships (SIGHUP reload) and the `config check` command."""

from __future__ import annotations

import io
from pathlib import Path

from config.check import check
from config.loader import load_config
from config.reload import MemberRef, MemberSpec, PenaltyChange, diff_memberships


def queues_yaml(seats: dict[str, list[tuple[str, int]]], **top: str) -> str:
    text = "".join(f"{k}: {v}\n" for k, v in top.items()) + "queues:\n"
    for name, members in seats.items():
        text += f"  - name: {name}\n    description: 队列{name}\n    seats:\n"
        text += "".join(f'      - {{extension: "{e}", name: 坐席{e}, penalty: {p}}}\n'
                        for e, p in members)
    return text


def test_diff_adds_removes_and_repenalises(write_config) -> None:
    old = load_config(write_config(queues=queues_yaml(
        {"a": [("2001", 0), ("2002", 0), ("2003", 0)], "b": [("2001", 1)]})), {})
    new = load_config(write_config(queues=queues_yaml(
        {"a": [("2001", 0), ("2002", 2), ("2004", 0)], "c": [("2003", 0)]})), {})
    diff = diff_memberships(old, new)
    assert diff.remove == (MemberRef("a", "PJSIP/2003"), MemberRef("b", "PJSIP/2001"))
    assert diff.add == (
        MemberSpec("a", "PJSIP/2004", "seat-2004", "PJSIP/2004", 0, "2004"),
        MemberSpec("c", "PJSIP/2003", "seat-2003", "PJSIP/2003", 0, "2003"),
    )
    assert diff.repenalise == (PenaltyChange("a", "PJSIP/2002", 0, 2),)
    assert diff
    # Works on the queues section too, and the reverse diff undoes it.
    back = diff_memberships(new.queues, old.queues)
    assert {(r.queue, r.interface) for r in back.remove} == {
        ("a", "PJSIP/2004"), ("c", "PJSIP/2003")}
    assert back.repenalise == (PenaltyChange("a", "PJSIP/2002", 2, 0),)


def test_diff_of_identical_configs_is_empty() -> None:
    cfg = load_config(None, {})
    diff = diff_memberships(cfg, load_config(None, {}))
    assert not diff and diff.add == diff.remove == diff.repenalise == ()


def test_changed_member_name_means_remove_and_add(write_config) -> None:
    members = {"a": [("2001", 0)]}
    old = load_config(write_config(queues=queues_yaml(members)), {})
    new = load_config(write_config(queues=queues_yaml(
        members, member_name_template='"agent-{extension}"')), {})
    diff = diff_memberships(old, new)
    assert diff.remove == (MemberRef("a", "PJSIP/2001"),)
    assert [s.member_name for s in diff.add] == ["agent-2001"]
    assert diff.repenalise == ()


def test_from_defaults_to_demo_moves_every_seat_to_local_channels() -> None:
    repo = Path(__file__).resolve().parents[2]
    diff = diff_memberships(load_config(None, {}), load_config(repo / "config" / "demo", {}))
    assert len(diff.remove) == len(diff.add) == 110
    assert all(s.interface.startswith("Local/") for s in diff.add)


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
