"""A seat with its own interface is watched through its own device (issue 10 §2.5).

Before the fix the service added such a seat with the *template's* ``StateInterface``
(``Local/1004@test-seats``): Asterisk then saw the seat "Not in use" while it was talking on
``Local/1004@test-seats-long`` and could ring it for a second caller.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.asterisk.conftest import ServiceFactory, write_test_config
from tests.asterisk.harness import Asterisk, HarnessAmi
from tests.e2e.conftest import eventually

OWN = "Local/1004@test-seats-long/n"


@pytest.fixture(scope="module")
def hotline_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only seat 1004, on an interface of its own (the template stays test-seats)."""
    target = write_test_config(tmp_path_factory.mktemp("hotline-config"), seats=("1004",))
    queues = target / "queues.yaml"
    text = queues.read_text(encoding="utf-8")
    seat = '{extension: "1004", name: 坐席1004}'
    assert seat in text
    queues.write_text(text.replace(seat, seat[:-1] + f', interface: "{OWN}"}}'),
                      encoding="utf-8")
    return target


async def test_own_interface_is_added_with_its_own_state_device(
        service: ServiceFactory, asterisk: Asterisk, pbx: HarnessAmi) -> None:
    async with service():
        members = [m for m in await pbx.queue_status() if m.get("Event") == "QueueMember"]
        assert [(m["Location"], m["StateInterface"]) for m in members] == [
            (OWN, "Local/1004@test-seats-long")]
        await pbx.originate_caller("13800000005", talk=20)

        async def in_use() -> bool:
            rows = [m for m in await pbx.queue_status() if m.get("Event") == "QueueMember"]
            # AST_DEVICE_INUSE (2): Asterisk knows the seat is busy and will not ring it.
            return bool(rows) and rows[0].get("InCall") == "1" and rows[0]["Status"] == "2"

        await eventually(in_use, timeout=10, what="Asterisk sees the seat in use")
