"""What the HTTP channels tell the citizen: accepted (受理), a duplicate, a wrong form, "not
now" when the intake could not be made durable, and the status of their demand."""

from __future__ import annotations

import logging
from dataclasses import replace

from aiohttp import web

from channels.citizen_status import OrderStatusLookup, OrderStatusUnavailable
from channels.errors import IntakeUnavailable
from channels.gateway import Accepted, IntakeGateway, IntakeStatus
from channels.intake import IntakeDraft
from httpkit.errors import error_for
from httpkit.responses import NO_STORE, json_response

log = logging.getLogger(__name__)

STATUS_TEXT: dict[str, str] = {
    "accepted": "已受理", "dispatched": "已派单至承办单位", "signed": "承办单位已签收",
    "handling": "办理中", "replied": "已答复", "surveyed": "已回访", "archived": "已办结",
    # A unit handed the order back (退回) and the office dispatches it again; why it was
    # returned is between the office and the unit.
    "redispatching": "重新派单中"}
"""The text of each :data:`channels.citizen_status.CitizenStatus`."""


async def current_status(status: IntakeStatus,
                         orders: OrderStatusLookup | None) -> IntakeStatus:
    """``status`` (from the intake store, already checked to be the asker's) with the status
    of its work order once there is one: the order is the truth (see
    :mod:`channels.citizen_status`). 503 ``status_unavailable`` when the ticket store does
    not answer, rather than a status that may be stale."""
    if orders is None:
        return status
    try:
        order = await orders(status.acceptance_no)
    except OrderStatusUnavailable:
        log.warning("status query failed: ticket store not answering")
        raise error_for("status_unavailable", "暂时无法查询，请稍后再试") from None
    return status if order is None else replace(status, status=order)


def status_response(status: IntakeStatus, *, with_thread: bool = False) -> web.Response:
    """The citizen's view of an intake's status (never cached)."""
    body: dict[str, str | None] = {
        "acceptance_no": status.acceptance_no, "status": status.status,
        "status_text": STATUS_TEXT.get(status.status, status.status),
        "channel": status.channel, "received_at": status.received_at.isoformat()}
    if with_thread:
        body["thread_of"] = status.thread_of
    return json_response(body, headers=NO_STORE, compact=True)


def accepted_response(accepted: Accepted) -> web.Response:
    """201 for a new intake, 200 with ``duplicate: true`` for one accepted before."""
    no = accepted.acceptance_no
    if accepted.duplicate:
        message = f"您的诉求此前已受理，受理编号 {no}，请妥善保存"
    else:
        message = f"您的诉求已受理，受理编号 {no}，请妥善保存"
    return json_response({"acceptance_no": no, "status": "accepted",
                          "duplicate": accepted.duplicate, "message": message},
                         status=200 if accepted.duplicate else 201, compact=True)


async def submit(gateway: IntakeGateway, draft: IntakeDraft) -> web.Response:
    """Hand ``draft`` to the gateway and answer; 503 when it could not be made durable
    (nothing was promised: the citizen must send it again)."""
    try:
        accepted = await gateway.submit(draft)
    except IntakeUnavailable:
        log.warning("intake unavailable: %s submission refused with 503", draft.channel)
        raise error_for("intake_unavailable",
                        "系统暂时无法受理，您的诉求尚未提交成功，请稍后重试") from None
    return accepted_response(accepted)
