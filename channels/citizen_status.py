"""What a citizen may see of their demand's progress, and the port the status queries read
the work order through.

Once the router has made the work order (工单) for an intake, the order in the ticket store
is the one source of truth: the status queries (web form, app) ask an
:class:`OrderStatusLookup` at query time and answer from the order. The Redis status hash
answers only for an intake no order exists for yet (still in the stream or the spool), which
is 已受理 ``accepted``. Nothing copies the order's status into Redis: a Redis write after the
database commit is lost whenever Redis is down, and the citizen's view would then drift from
the order for good.

The lookup is passed in by the composition root (``hotline/app.py``), so the channels do not
import the router or the database.
"""

from __future__ import annotations

from typing import Literal, Protocol

from channels.errors import ChannelError

CitizenStatus = Literal["accepted", "dispatched", "signed", "handling", "replied",
                        "surveyed", "archived", "redispatching"]
"""The statuses a citizen is told (texts in :data:`channels.http_responses.STATUS_TEXT`); the
router's ``CITIZEN_STATUS`` maps every order status onto one of them."""


class OrderStatusUnavailable(ChannelError):
    """The ticket store did not answer: the status cannot be told now (never a stale one)."""


class OrderStatusLookup(Protocol):
    """The citizen's status of the order made from an acceptance number."""

    async def __call__(self, acceptance_no: str) -> CitizenStatus | None:
        """The status of the order for ``acceptance_no``, or None while there is no order.

        Raises :class:`OrderStatusUnavailable` when the ticket store does not answer."""
        ...
