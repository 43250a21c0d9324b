"""What the intake HTTP handlers (web form, app API) need, and their per-application state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from channels.attachments import AttachmentStore
from channels.citizen_status import OrderStatusLookup
from channels.gateway import IntakeGateway
from channels.intake import utc_now
from channels.nonces import NonceStore
from channels.ratelimit import RateLimits, client_ip
from config.channels import ChannelsConfig


@dataclass(frozen=True)
class IntakeHttpDeps:
    """Handed in by the composition root.

    ``config`` is called on every request, so a reload of ``channels.yaml`` (limits, CORS
    origins, app keys) applies at once. ``monotonic`` drives the rate limits.
    ``order_status``: the status of an intake's work order, which the status queries answer
    with once there is one (None: no ticket store, the intake store answers alone)."""

    gateway: IntakeGateway
    config: Callable[[], ChannelsConfig]
    nonces: NonceStore
    order_status: OrderStatusLookup | None = None
    clock: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic


@dataclass
class IntakeHttp:
    """The handlers' state in one application: deps, rate limiters, attachment stores."""

    deps: IntakeHttpDeps
    limits: RateLimits
    _stores: dict[str, AttachmentStore] = field(default_factory=dict)

    def attachments(self, directory: str) -> AttachmentStore:
        store = self._stores.get(directory)
        if store is None:
            store = self._stores[directory] = AttachmentStore(directory)
        return store


INTAKE_HTTP = web.AppKey("intake_http", IntakeHttp)


def state(request: web.Request) -> IntakeHttp:
    return request.app[INTAKE_HTTP]


def remote_address(request: web.Request, trusted_proxies: tuple[str, ...]) -> str:
    """The client's address (see :func:`channels.ratelimit.client_ip`)."""
    return client_ip(request.remote, request.headers.get("X-Forwarded-For"), trusted_proxies)
