"""The mobile app API: signed JSON endpoints for the city's app (and mini-programs).

``POST /api/app/v1/intakes``
    The form fields of the website (``name``, ``phone``, ``email``, ``title``, ``content``,
    ``district``, ``street``, ``address``) plus ``request_id`` (the app's id for this
    submission, kept across retries) and ``app_user_id``. Answers like the web form: ``201`` new,
    ``200`` with ``duplicate: true`` for a retried ``request_id``, ``422 invalid_field``,
    ``503 intake_unavailable``.
``GET /api/app/v1/intakes/{acceptance_no}?app_user_id=...``
    The status (the work order's once there is one, as for the web form), only for the app
    user (of the same app) who submitted it; ``404 not_found`` otherwise.

Every request is signed (:mod:`channels.signing`): ``401`` with ``missing_signature``,
``unknown_app``, ``stale_request``, ``bad_nonce``, ``bad_signature`` or ``replayed_nonce``.
The nonce is recorded only once the signature holds, so unsigned traffic cannot fill the
nonce store.

Ids are kept per app: the intake's external id is ``<app_id>:<request_id>`` and its contact's
``app_user_id`` is ``<app_id>:<app_user_id>``, so two apps can never collide or read each
other's intakes.
"""

from __future__ import annotations

import hmac
import logging
import re

from aiohttp import web

from channels.http_responses import current_status, status_response, submit
from channels.errors import ChannelError
from channels.http_state import IntakeHttp, remote_address, state
from channels.nonces import NonceStoreFull
from channels.signing import SignatureRejected, check_window, parse_headers, verify
from channels.web_form import FormInvalid, Limits, build_draft, parse_app_form
from httpkit.bodies import JSON_BODY_LIMIT, parse_json_object, read_body
from httpkit.errors import ApiError, api_error, error_for

log = logging.getLogger(__name__)

INTAKES_PATH = "/api/app/v1/intakes"
STATUS_PATH = "/api/app/v1/intakes/{acceptance_no}"
_ACCEPTANCE_NO = re.compile(r"^[0-9]{16}$")
_APP_USER = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")


def add_app_routes(app: web.Application) -> None:
    """Register the app endpoints (called by :func:`channels.web.add_intake_routes`)."""
    app.router.add_post(INTAKES_PATH, submit_app)
    app.router.add_get(STATUS_PATH, app_status, allow_head=False)


async def authenticate(request: web.Request, st: IntakeHttp) -> tuple[str, bytes]:
    """Check the signature headers; the app id and the (signed) body."""
    cfg = st.deps.config().app
    if not cfg.enabled:
        raise ApiError(403, "channel_disabled", "移动应用接口暂未开放")
    try:
        signed = parse_headers(request.headers)
        client = cfg.clients.get(signed.app_id)
        if client is None or client.secret is None:
            raise SignatureRejected("unknown_app", "未知的应用")
        check_window(signed.timestamp, st.deps.clock().timestamp(), cfg.window_seconds)
        body = await read_body(request, JSON_BODY_LIMIT)
        verify(client.secret.get_secret_value(), signed, request.method, request.raw_path,
               body)
        if not await st.deps.nonces.claim(signed.app_id, signed.nonce,
                                          cfg.window_seconds * 2):
            raise SignatureRejected("replayed_nonce", "重复的请求：该 X-Nonce 已使用过")
    except SignatureRejected as exc:
        raise api_error(exc) from None
    except NonceStoreFull:
        log.error("app request refused: the in-process nonce store is full (Redis down)")
        raise error_for("service_busy", "服务繁忙，请稍后重试") from None
    return signed.app_id, body


async def submit_app(request: web.Request) -> web.Response:
    """``POST /api/app/v1/intakes``."""
    st = state(request)
    app_id, body = await authenticate(request, st)
    cfg = st.deps.config()
    try:
        form, phone, email = parse_app_form(
            parse_json_object(body), Limits(cfg.web.max_text_chars, cfg.web.max_title_chars))
    except FormInvalid as exc:
        raise api_error(exc) from None
    ip = remote_address(request, cfg.web.trusted_proxies)
    return await submit(st.deps.gateway, build_draft(
        form, channel="app", external_id=f"{app_id}:{form.request_id}",
        received_at=st.deps.clock(), phone=phone, email=email,
        app_user_id=f"{app_id}:{form.app_user_id}", source_ref=f"http:app {app_id} {ip}"))


async def app_status(request: web.Request) -> web.Response:
    """``GET /api/app/v1/intakes/{acceptance_no}?app_user_id=...``."""
    st = state(request)
    app_id, _ = await authenticate(request, st)
    user = request.query.get("app_user_id", "")
    if not _APP_USER.match(user):
        raise api_error(FormInvalid({"app_user_id": "请提供应用用户编号（app_user_id）"}))
    acceptance_no = request.match_info["acceptance_no"]
    status = None
    if _ACCEPTANCE_NO.match(acceptance_no):
        try:
            status = await st.deps.gateway.status(acceptance_no)
        except ChannelError:
            raise error_for("status_unavailable", "暂时无法查询，请稍后再试") from None
    owner = f"{app_id}:{user}".encode()
    if status is None or status.channel != "app" or not hmac.compare_digest(
            (status.app_user_id or "").encode(), owner):
        raise ApiError(404, "not_found", "未找到该受理编号")
    return status_response(await current_status(status, st.deps.order_status),
                           with_thread=True)
