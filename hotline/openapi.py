"""The OpenAPI 3.1 document of every HTTP endpoint of the service, served at
``GET /openapi.json``.

Request bodies of the citizen channels are the pydantic models that validate them
(:mod:`channels.web_form`); the answers are described by the models below. Every error answer
is the one :mod:`httpkit.errors` produces: ``{"error", "message", "details"}``
(:class:`ErrorBody`). The tests run schemathesis against this document and the real
application, so a handler and its description cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from channels.citizen_status import CitizenStatus
from channels.phone import SummaryRequest
from channels.web_form import AppIntakeForm, StatusQuery, WebIntakeForm
from config.textcheck import FILLED_TEXT_PATTERN, SAFE_TEXT_PATTERN
from router.tickets import TicketStatus
from telephony.model import SeatState

OPENAPI_PATH = "/openapi.json"
_REF = "#/components/schemas/{model}"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Doc):
    """Every error answer of the service."""

    error: str = Field(description="稳定的错误代码，如 invalid_field、rate_limited")
    message: str = Field(description="中文说明，可直接展示给用户")
    details: dict[str, Any] = Field(description="补充信息，如 fields（字段 -> 说明）")


class Health(_Doc):
    status: Literal["ok"]


class ReadyWarning(BaseModel):
    """Something the admin should act on although the service works."""

    model_config = ConfigDict(extra="allow")
    code: str = Field(description="如 calendar_not_confirmed（节假日安排未录入，期限为临时期限）")
    message: str


class Ready(_Doc):
    status: Literal["ready"]
    ami: str
    warnings: list[ReadyWarning] = Field(default=[], description="需管理员处理的提醒")


class Figures(BaseModel):
    offered: int
    answered: int
    abandoned: int
    timed_out: int
    unknown_end: int
    pbx_shutdown: int     # still waiting when Asterisk stopped: not abandoned
    answered_within_sl: int
    service_level_pct: float | None
    answer_rate_pct: float | None
    abandon_rate_pct: float | None
    asa_seconds: float | None
    avg_talk_seconds: float | None


class Interval(Figures):
    start: str


class QueueFigures(_Doc):
    queue: str
    waiting: int
    longest_wait_seconds: float
    today: Figures
    intervals: list[Interval]


class Stats(_Doc):
    at: str
    day: str
    service_level_seconds: float
    seats: dict[str, int]
    queues: list[QueueFigures]


class Seat(_Doc):
    seat_id: str
    name: str
    state: SeatState
    since: str
    pause_reason: str | None
    queues: list[str]
    call_id: str | None


class Seats(_Doc):
    seats: list[Seat]


class SeatActionResult(_Doc):
    ok: Literal[True]
    seat_id: str
    result: str | int | None = Field(description="转接：新通话编号；三方：会议室号")


class PauseBody(BaseModel):
    reason: str = Field(min_length=1, json_schema_extra={"pattern": SAFE_TEXT_PATTERN},
                        description="示忙原因（须在配置的原因之中）")


class TransferBody(BaseModel):
    department: str = Field(min_length=1, json_schema_extra={"pattern": SAFE_TEXT_PATTERN},
                            description="部门号码（须为配置的部门）")
    mode: Literal["blind", "attended"] = "blind"


class DepartmentBody(BaseModel):
    department: str = Field(min_length=1, json_schema_extra={"pattern": SAFE_TEXT_PATTERN},
                            description="部门号码（须为配置的部门）")


class ReloadResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    reloaded: bool
    applied: bool


class IntakeAccepted(_Doc):
    """受理成功：新受理 201，重复提交 200（duplicate 为 true，编号与第一次相同）。"""

    acceptance_no: str = Field(pattern=r"^[0-9]{16}$", description="受理编号")
    status: Literal["accepted"]
    duplicate: bool
    message: str


class IntakeStatusAnswer(_Doc):
    """办理状态：有工单后即为工单的状态（status_text 为中文说明）。"""

    acceptance_no: str
    status: CitizenStatus
    status_text: str
    channel: str
    received_at: str


class AppIntakeStatusAnswer(IntakeStatusAnswer):
    thread_of: str | None


MODELS: tuple[type[BaseModel], ...] = (
    ErrorBody, Health, Ready, Stats, Seats, SeatActionResult, PauseBody, TransferBody,
    DepartmentBody, ReloadResult, IntakeAccepted, IntakeStatusAnswer, AppIntakeStatusAnswer,
    WebIntakeForm, AppIntakeForm, StatusQuery, SummaryRequest)

ERROR_TEXT = {
    400: "请求体不是合法的 JSON / multipart，或请求行过长（超过 8190 字节）", 401: "未认证或签名无效", 403: "无权限或渠道未开放",
    404: "不存在", 409: "与当前状态冲突", 413: "请求体或附件过大", 415: "不支持的内容类型",
    422: "字段有误（details.fields）", 429: "过于频繁（见 Retry-After）", 502: "交换机出错",
    503: "暂不可用：未受理，请稍后重试", 504: "交换机超时",
}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template=_REF, mode="validation")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _json("ErrorBody", ERROR_TEXT[code]) for code in codes}


def _body(name: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
APP_SIGNED: list[dict[str, list[str]]] = [
    {"appId": [], "appTimestamp": [], "appNonce": [], "appSignature": []}]
SEAT_ID = {"name": "seat_id", "in": "path", "required": True, "schema": {"type": "string"}}
TICKET_NUMBER = {"name": "number", "in": "path", "required": True, "schema": {"type": "string"}}
KB_ARTICLE_ID = {"name": "article_id", "in": "path", "required": True,
                 "schema": {"type": "string"}}
UNIT_ID = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": SAFE_TEXT_PATTERN}
SAFE_TEXT = {"type": "string", "pattern": SAFE_TEXT_PATTERN}
TICKET_NUMBER_PATTERN = r"^[A-Z]{1,8}[0-9]{8,20}$"
_OBJECT = {"type": "object"}
TICKET_ACTIONS = ["accept", "review", "dispatch", "sign", "handle", "reply", "survey",
                  "archive", "return", "extend", "supervise", "reopen"]


def _seat_action(summary: str, body: str | None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary, "tags": ["seats"], "security": BEARER, "parameters": [SEAT_ID],
        "responses": {"200": _json("SeatActionResult", "已执行"),
                      **_errors(400, 401, 403, 404, 409, 413, 422, 502, 503, 504)}}
    if body is not None:
        op["requestBody"] = _body(body)
    return op


def _multipart_form() -> dict[str, Any]:
    form = copy.deepcopy(WebIntakeForm.model_json_schema(ref_template=_REF))
    form.pop("title", None)
    # Other fields are read past (a page's CSRF token), but a part name with a control byte
    # breaks the part's header: documented as not taken.
    form["additionalProperties"] = False
    # A form field is text or absent: JSON's null has no multipart spelling ("null" would be
    # read as the text "null", a phone number it is not).
    for name, prop in form["properties"].items():
        texts = [branch for branch in prop.pop("anyOf", []) if branch.get("type") != "null"]
        if texts:
            prop.update(texts[0])
        prop.pop("default", None)
    form["properties"]["files"] = {
        "type": "array", "description": "附件（可多个；类型与大小见 channels.yaml web）",
        "items": {"type": "string", "contentMediaType": "application/octet-stream"}}
    return form


def _preflight(path: str) -> dict[str, Any]:
    return {"summary": f"CORS 预检（{path}）", "tags": ["citizen"],
            "responses": {"204": {"description": "允许的来源：带 Access-Control-* 头"},
                          **_errors(403)}}


def _paths() -> dict[str, Any]:
    rate_limited = {"description": "过于频繁", "headers": {"Retry-After": {
        "schema": {"type": "integer"}, "description": "多少秒后可再试"}},
        "content": {"application/json": {"schema": _ref("ErrorBody")}}}
    accepted = {"201": _json("IntakeAccepted", "已受理（新）"),
                "200": _json("IntakeAccepted", "此前已受理（重复提交，编号相同）")}
    return {
        "/healthz": {"get": {"summary": "存活探针", "tags": ["ops"],
                             "responses": {"200": _json("Health", "进程在运行")}}},
        "/readyz": {"get": {"summary": "就绪探针（AMI 连接就绪）", "tags": ["ops"],
                            "responses": {"200": _json("Ready", "就绪"), **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus 指标", "tags": ["ops"], "responses": {
            "200": {"description": "Prometheus 文本格式",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        OPENAPI_PATH: {"get": {"summary": "本文档", "tags": ["ops"], "responses": {
            "200": {"description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/api/stats": {"get": {"summary": "各队列实时与当日统计", "tags": ["seats"],
                               "security": BEARER,
                               "responses": {"200": _json("Stats", "统计"), **_errors(401)}}},
        "/api/seats": {"get": {"summary": "坐席状态（坐席只见自己）", "tags": ["seats"],
                               "security": BEARER,
                               "responses": {"200": _json("Seats", "坐席"), **_errors(401)}}},
        "/api/seats/{seat_id}/pause": {"post": _seat_action("示忙", "PauseBody")},
        "/api/seats/{seat_id}/unpause": {"post": _seat_action("示闲", None)},
        "/api/seats/{seat_id}/transfer": {"post": _seat_action("转接", "TransferBody")},
        "/api/seats/{seat_id}/three-way": {"post": _seat_action("三方通话", "DepartmentBody")},
        "/api/seats/{seat_id}/hangup": {"post": _seat_action("挂断", None)},
        "/api/seats/{seat_id}/intake": {"post": {
            "summary": "通话小结受理为电话诉求（坐席只能提交自己接听的通话）", "tags": ["seats"],
            "security": BEARER, "parameters": [SEAT_ID], "requestBody": _body("SummaryRequest"),
            "responses": {"201": _json("IntakeAccepted", "已受理"),
                          "200": _json("IntakeAccepted", "该通话此前已受理（同一受理编号）"),
                          **_errors(400, 401, 403, 404, 413, 422, 503)}}},
        "/api/tickets": {"get": {
            "summary": "工单列表（承办单位只见本单位工单）", "tags": ["tickets"],
            "security": BEARER,
            "parameters": [
                {"name": "status", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": [s.value for s in TicketStatus]}},
                {"name": "unit", "in": "query", "required": False, "schema": UNIT_ID},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {"name": "before", "in": "query", "required": False,
                 "description": "翻页：上一页返回的 next（工单编号）",
                 "schema": {"type": "string", "pattern": TICKET_NUMBER_PATTERN}},
                {"name": "overdue", "in": "query", "required": False,
                 "description": "仅已超过办理时限且未办结的工单",
                 "schema": {"type": "boolean"}},
                {"name": "manual", "in": "query", "required": False,
                 "description": "仅待人工派单的工单（热线办公室）",
                 "schema": {"type": "boolean"}}],
            "responses": {"200": {"description": "工单；满页时带 next", "content": {
                "application/json": {"schema": _OBJECT}}}, **_errors(401, 403, 422, 503)}}},
        "/api/tickets/{number}": {"get": {
            "summary": "工单详情与处理记录", "tags": ["tickets"], "security": BEARER,
            "parameters": [TICKET_NUMBER],
            "responses": {"200": {"description": "工单", "content": {"application/json": {
                "schema": _OBJECT}}}, **_errors(401, 404, 503)}}},
        "/api/tickets/{number}/actions": {"post": {
            "summary": "工单流转：签收、办理、反馈、退回、延期、派单、回访、归档、督办、重办",
            "tags": ["tickets"], "security": BEARER, "parameters": [TICKET_NUMBER],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["action"], "properties": {
                    "action": {"type": "string", "enum": TICKET_ACTIONS},
                    "note": SAFE_TEXT,
                    "unit_id": UNIT_ID | {"description": "units.yaml 中的单位编号"},
                    "sign_by": {"type": "string", "format": "date-time",
                                "description": "带时区；晚于当前时间，且不超过 366 天"},
                    "handle_by": {"type": "string", "format": "date-time",
                                  "description": "带时区；晚于当前时间，且不超过 366 天；"
                                                 "延期时须晚于原办理期限"},
                    "survey_satisfied": {"type": "boolean"},
                    "survey_note": SAFE_TEXT}}}}},
            "responses": {"200": {"description": "已流转", "content": {"application/json": {
                "schema": _OBJECT}}}, **_errors(400, 401, 403, 404, 409, 413, 422, 503)}}},
        "/api/kb/search": {"get": {
            "summary": "知识库检索（坐席、承办单位、热线办公室）", "tags": ["kb"],
            "security": BEARER,
            "parameters": [
                {"name": "q", "in": "query", "required": True,
                 "schema": {"type": "string", "maxLength": 2000,
                            "pattern": FILLED_TEXT_PATTERN}},
                {"name": "unit", "in": "query", "required": False, "schema": UNIT_ID},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 20}}],
            "responses": {"200": {"description": "当日有效的条目", "content": {
                "application/json": {"schema": _OBJECT}}}, **_errors(400, 401, 422, 503)}}},
        "/api/kb/articles": {"get": {
            "summary": "知识条目（承办单位只见本单位条目）", "tags": ["kb"], "security": BEARER,
            "parameters": [{"name": "unit", "in": "query", "required": False,
                            "schema": UNIT_ID}],
            "responses": {"200": {"description": "条目", "content": {"application/json": {
                "schema": _OBJECT}}}, **_errors(401, 422, 503)}}},
        "/api/kb/articles/{article_id}": {
            "put": {
                "summary": "新增或修改知识条目（承办单位只能维护本单位条目）", "tags": ["kb"],
                "security": BEARER, "parameters": [KB_ARTICLE_ID],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["title", "body"],
                    "additionalProperties": False, "properties": {
                        "title": SAFE_TEXT | {"minLength": 1, "maxLength": 200},
                        "body": SAFE_TEXT | {"minLength": 1, "maxLength": 20000},
                        "unit": UNIT_ID | {"description": "units.yaml 中的单位编号"},
                        "keywords": {"type": "array", "items": SAFE_TEXT},
                        "valid_from": {"type": "string", "format": "date"},
                        "valid_to": {"type": "string", "format": "date"}}}}}},
                "responses": {"200": {"description": "已修改", "content": {
                    "application/json": {"schema": _OBJECT}}},
                    "201": {"description": "已新增", "content": {
                        "application/json": {"schema": _OBJECT}}},
                    **_errors(400, 401, 403, 404, 413, 422, 503)}},
            "delete": {
                "summary": "删除知识条目", "tags": ["kb"], "security": BEARER,
                "parameters": [KB_ARTICLE_ID],
                "responses": {"200": {"description": "已删除", "content": {
                    "application/json": {"schema": _OBJECT}}}, **_errors(401, 404, 503)}}},
        "/api/seats/{seat_id}/calls/{call_id}/transcript": {"get": {
            "summary": "本坐席接听通话的语音转写（最终结果，含词时间）", "tags": ["seats"],
            "security": BEARER,
            "parameters": [{"name": "seat_id", "in": "path", "required": True,
                            "schema": {"type": "string"}},
                           {"name": "call_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "转写片段", "content": {"application/json": {
                "schema": _OBJECT}}}, **_errors(401, 403, 404, 503)}}},
        "/api/admin/reload": {"post": {
            "summary": "重新加载配置（仅管理员）", "tags": ["admin"], "security": BEARER,
            "responses": {"200": _json("ReloadResult", "已重新加载"),
                          **_errors(401, 403, 422)}}},
        "/api/intake/web": {
            "post": {
                "summary": "网站留言：提交诉求", "tags": ["citizen"],
                "description": "JSON 或 multipart/form-data（附件放在 files 字段）。须填写联系"
                               "电话或电子邮箱之一。按客户端 IP 限流。",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("WebIntakeForm")},
                    "multipart/form-data": {"schema": _multipart_form()}}},
                "responses": {**accepted, "429": rate_limited,
                              **_errors(400, 403, 413, 415, 422, 503)}},
            "options": _preflight("/api/intake/web")},
        "/api/intake/status": {
            "post": {
                "summary": "按受理编号和联系电话查询办理状态", "tags": ["citizen"],
                "description": "编号不存在与电话不符返回相同的 404。按客户端 IP 限流。",
                "requestBody": _body("StatusQuery"),
                "responses": {"200": _json("IntakeStatusAnswer", "办理状态"),
                              "429": rate_limited,
                              **_errors(400, 403, 404, 413, 422, 503)}},
            "options": _preflight("/api/intake/status")},
        "/api/app/v1/intakes": {"post": {
            "summary": "移动应用：提交诉求（HMAC 签名）", "tags": ["app"],
            "security": APP_SIGNED, "requestBody": _body("AppIntakeForm"),
            "responses": {**accepted, **_errors(400, 401, 403, 413, 422, 503)}}},
        "/api/app/v1/intakes/{acceptance_no}": {"get": {
            "summary": "移动应用：查询本用户诉求的办理状态（HMAC 签名）", "tags": ["app"],
            "security": APP_SIGNED,
            "parameters": [
                {"name": "acceptance_no", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9]{16}$"}},
                {"name": "app_user_id", "in": "query", "required": True,
                 "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.:@-]{1,64}$"}}],
            "responses": {"200": _json("AppIntakeStatusAnswer", "办理状态"),
                          **_errors(401, 403, 404, 422, 503)}}},
    }


def _signed_header(name: str, text: str) -> dict[str, str]:
    return {"type": "apiKey", "in": "header", "name": name, "description": text}


@lru_cache(maxsize=1)
def _document_json() -> str:
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "12345 政务服务便民热线 hotline service", "version": "1",
                 "description": "坐席与管理接口（Bearer 令牌）、市民渠道：网站留言、移动应用"
                                "（HMAC-SHA256 签名，见 channels.signing）。错误统一为 "
                                "{error, message, details}。"},
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "管理员令牌或坐席令牌"},
                "appId": _signed_header("X-App-Id", "应用编号"),
                "appTimestamp": _signed_header("X-Timestamp", "签名时间（Unix 秒），±300 秒内"),
                "appNonce": _signed_header("X-Nonce", "16-64 位随机串，每个请求不同"),
                "appSignature": _signed_header(
                    "X-Signature", "hex(HMAC-SHA256(key, METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\n"
                                   "hex(sha256(body))))"),
            }},
    }
    return json.dumps(doc, ensure_ascii=False)


def openapi_document() -> dict[str, Any]:
    """The document as a fresh dict (callers may modify it)."""
    document: dict[str, Any] = json.loads(_document_json())
    return document


async def openapi_handler(request: web.Request) -> web.Response:
    """``GET /openapi.json``."""
    return web.Response(text=_document_json(), content_type="application/json")


def add_openapi_route(app: web.Application) -> None:
    """Serve the document at ``/openapi.json`` (open, like ``/healthz``)."""
    app.router.add_get(OPENAPI_PATH, openapi_handler, allow_head=False)
