"""The city website's form and the public status query (aiohttp handlers), and
:func:`add_intake_routes`, which puts every intake endpoint (web form and app API) on the
service's application.

``POST /api/intake/web`` takes ``application/json`` or ``multipart/form-data`` (attachments in
file parts, e.g. ``files``). Answers:

* ``201`` a new intake: ``{"acceptance_no", "status": "accepted", "duplicate": false,
  "message"}``; the intake is durable (Redis or the local spool) before this is sent;
* ``200`` the same form again (same ``submission_id``, or without one the same phone, words and
  day): the earlier acceptance number, ``"duplicate": true`` (a double click is not an error);
* ``400 invalid_json`` / ``invalid_multipart``, ``413 payload_too_large`` /
  ``attachment_too_large``, ``415 unsupported_media_type`` / ``unsupported_attachment_type``
  / ``attachment_type_mismatch``, ``422 invalid_field`` (``details.fields``: field -> message)
  / ``too_many_attachments``, ``429 rate_limited`` (with ``Retry-After``),
  ``503 intake_unavailable`` (nothing was accepted: the citizen must try again).

``POST /api/intake/status`` ``{"acceptance_no", "phone"}`` answers the status only when the
phone is the one given with the intake; an unknown number and a wrong phone get the same
``404 not_found``, so acceptance numbers cannot be probed. The status is the work order's once
the router has made one (:mod:`channels.citizen_status`), 已受理 before. Both endpoints are
rate-limited per client IP and answer CORS preflights (:mod:`channels.cors`).
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime
from functools import lru_cache

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from channels import app_api
from channels.http_responses import current_status, status_response, submit
from channels.attachments import AttachmentRejected
from channels.cors import CorsPolicy
from channels.errors import ChannelError
from channels.http_state import (
    INTAKE_HTTP,
    IntakeHttp,
    IntakeHttpDeps,
    remote_address,
    state,
)
from channels.ratelimit import RateLimits, retry_after_header
from channels.web_form import (
    FormInvalid,
    Limits,
    build_draft,
    derived_submission_id,
    parse_status_query,
    parse_web_form,
    phone_key,
)
from channels.web_multipart import read_multipart_form
from config.channels import WebConfig
from httpkit.bodies import JSON_BODY_LIMIT, parse_json_object, read_body
from httpkit.errors import ApiError, api_error, error_for, error_response

log = logging.getLogger(__name__)

WEB_PATH = "/api/intake/web"
STATUS_PATH = "/api/intake/status"
STATUS_BODY_LIMIT = 4096


def add_intake_routes(app: web.Application, deps: IntakeHttpDeps) -> None:
    """Register the web form, the status query, their CORS preflights and the app API on
    ``app`` (before it is started). The handlers read their bodies themselves, with the
    limits of ``channels.yaml``; the application's ``client_max_size`` does not apply."""
    app[INTAKE_HTTP] = IntakeHttp(deps, RateLimits(clock=deps.monotonic))
    app.router.add_post(WEB_PATH, submit_web)
    app.router.add_route("OPTIONS", WEB_PATH, preflight)
    app.router.add_post(STATUS_PATH, query_status)
    app.router.add_route("OPTIONS", STATUS_PATH, preflight)
    app_api.add_app_routes(app)
    app.on_response_prepare.append(_cors_headers)


def _rate_limited(request: web.Request, st: IntakeHttp, cfg: WebConfig,
                  name: str) -> web.Response | None:
    limiter = st.limits.limiter(name, cfg.rate_limit_per_minute, cfg.rate_limit_burst)
    if not limiter.enabled:
        return None
    wait = limiter.take(remote_address(request, cfg.trusted_proxies))
    if wait is None:
        return None
    retry_after = retry_after_header(wait)
    response = error_response(429, "rate_limited", f"提交过于频繁，请 {retry_after} 秒后再试",
                              {"retry_after_seconds": int(retry_after)})
    response.headers["Retry-After"] = retry_after
    return response


def _web_config(st: IntakeHttp) -> WebConfig:
    cfg = st.deps.config().web
    if not cfg.enabled:
        raise ApiError(403, "channel_disabled", "网站留言渠道暂未开放")
    return cfg


async def submit_web(request: web.Request) -> web.Response:
    """``POST /api/intake/web`` (see the module docstring)."""
    st = state(request)
    cfg = _web_config(st)
    if (limited := _rate_limited(request, st, cfg, "web")) is not None:
        return limited
    limits = Limits(cfg.max_text_chars, cfg.max_title_chars)
    received_at = st.deps.clock()
    source_ref = f"http:web {remote_address(request, cfg.trusted_proxies)}"
    content_type = request.content_type
    if content_type == "multipart/form-data":
        return await _submit_multipart(request, st, cfg, limits, received_at, source_ref)
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, "unsupported_media_type",
                       "请以 application/json 或 multipart/form-data 格式提交",
                       {"content_type": ascii(content_type)[1:-1][:100]})
    data = parse_json_object(await read_body(request, min(JSON_BODY_LIMIT, cfg.max_body_bytes)))
    try:
        form, phone, email = parse_web_form(data, limits)
    except FormInvalid as exc:
        raise api_error(exc) from None
    external_id = form.submission_id or derived_submission_id(phone, email, form, (),
                                                               received_at)
    return await submit(st.deps.gateway, build_draft(
        form, channel="web", external_id=external_id, received_at=received_at, phone=phone,
        email=email, source_ref=source_ref))


async def _submit_multipart(request: web.Request, st: IntakeHttp, cfg: WebConfig,
                            limits: Limits, received_at: datetime,
                            source_ref: str) -> web.Response:
    store = st.attachments(cfg.attachments_dir)
    staging = store.staging()
    try:
        try:
            fields = await read_multipart_form(request, cfg, store, staging)
        except (ValueError, RuntimeError, LookupError, HttpProcessingError) as exc:
            # aiohttp's multipart parser: no boundary, broken headers, truncated body ...
            raise ApiError(400, "invalid_multipart", "multipart 表单格式有误",
                           {"reason": type(exc).__name__}) from None
        form, phone, email = parse_web_form(fields, limits)
        attachments = await staging.commit()
    except FormInvalid as exc:
        raise api_error(exc) from None
    except AttachmentRejected as exc:
        raise api_error(exc) from None
    finally:
        await staging.discard()
    external_id = form.submission_id or derived_submission_id(
        phone, email, form, attachments, received_at)
    return await submit(st.deps.gateway, build_draft(
        form, channel="web", external_id=external_id, received_at=received_at, phone=phone,
        email=email, attachments=attachments, source_ref=source_ref))


async def query_status(request: web.Request) -> web.Response:
    """``POST /api/intake/status``: the status for the acceptance number + phone."""
    st = state(request)
    cfg = _web_config(st)
    if (limited := _rate_limited(request, st, cfg, "status")) is not None:
        return limited
    data = parse_json_object(await read_body(request, STATUS_BODY_LIMIT))
    try:
        acceptance_no, key = parse_status_query(data)
    except FormInvalid as exc:
        raise api_error(exc) from None
    try:
        status = await st.deps.gateway.status(acceptance_no)
    except ChannelError:
        log.warning("status query failed: intake store not answering")
        raise error_for("status_unavailable", "暂时无法查询，请稍后再试") from None
    if status is None or not key or not hmac.compare_digest(
            phone_key(status.phone).encode(), key.encode()):
        raise ApiError(404, "not_found", "未找到该受理编号，或联系电话与受理时填写的不一致")
    return status_response(await current_status(status, st.deps.order_status))


@lru_cache(maxsize=8)
def cors_policy(origins: tuple[str, ...]) -> CorsPolicy:
    return CorsPolicy.from_config(origins)


async def preflight(request: web.Request) -> web.Response:
    """``OPTIONS``: a CORS preflight from the website."""
    origin = request.headers.get("Origin")
    policy = cors_policy(state(request).deps.config().web.cors_origins)
    headers = policy.preflight_headers(origin, request.headers)
    if headers is None:
        raise ApiError(403, "origin_not_allowed", "该网站未获准调用此接口")
    return web.Response(status=204, headers=headers)


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    # Every answer of the web endpoints, errors included, so the page can read the message.
    if request.method == "OPTIONS" or not request.path.startswith("/api/intake/"):
        return
    origin = request.headers.get("Origin")
    if origin and INTAKE_HTTP in request.app:
        policy = cors_policy(request.app[INTAKE_HTTP].deps.config().web.cors_origins)
        response.headers.update(policy.response_headers(origin))
