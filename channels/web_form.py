"""What a citizen typed into the website form (or the mobile app): validation with a clear
Chinese message per field, then an :class:`~channels.intake.IntakeDraft`.

The shape of the fields is checked by the pydantic models below (their JSON schema is also
what the OpenAPI document shows); limits that come from ``channels.yaml`` (text length, title
length) and the rules pydantic cannot say (phone number forms, "phone or e-mail") are checked
after. Every problem is collected, so the form can mark all wrong fields at once:
:class:`FormInvalid` ``.fields`` maps field name to message.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from channels.intake import Attachment, Channel, Contact, IntakeDraft, Location
from config.textcheck import FILLED_TEXT_PATTERN, UNSAFE_SCALARS, strip_control

# China has one time zone and no daylight saving: the "day" of a submission for the
# double-click guard is the local calendar day.
CHINA = timezone(timedelta(hours=8), "CST")

LABELS: dict[str, str] = {
    "submission_id": "表单编号", "request_id": "请求编号", "app_user_id": "应用用户编号",
    "name": "姓名", "phone": "联系电话", "email": "电子邮箱", "title": "标题",
    "content": "诉求内容", "district": "所在区县", "street": "街道（乡镇）",
    "address": "详细地址", "acceptance_no": "受理编号",
}
PATTERN_MESSAGES: dict[str, str] = {
    "submission_id": "表单编号只能包含字母、数字和 _ . : -，最长 128 位",
    "request_id": "请求编号只能包含字母、数字和 _ . : -，长度 8 到 128 位",
    "app_user_id": "应用用户编号只能包含字母、数字和 _ . : @ -",
    "acceptance_no": "受理编号为 16 位数字",
}
CONTACT_REQUIRED = "请至少填写联系电话或电子邮箱之一，以便 12345 热线回复您办理结果"
PHONE_FORMAT = "联系电话格式不正确：请填写 11 位手机号码，或带区号的固定电话（如 0571-88888888）"

_ID = r"^[A-Za-z0-9_.:-]+$"
ShortText = Annotated[str, Field(max_length=50)]
# What the OpenAPI document promises, as strict as the checks below (schemathesis sends what
# it allows and fails a 422 for it): the canonical phone forms (the check also takes
# full-width digits and separators), the defaults of web.max_text_chars / max_title_chars.
PHONE_PATTERN = (r"^(?:(?:\+?86|0086)?1[3-9][0-9]{9}|0(?:[12][0-9]|[3-9][0-9]{2})-?[0-9]{7,8}"
                 r"|[2-9][0-9]{6,7})$")
# Documented without the lone surrogates the check below also refuses (see textcheck).
_EMAIL_LOCAL = r'@\s<>()\[\],;:"' + UNSAFE_SCALARS
_EMAIL_PATTERN = rf"^[^{_EMAIL_LOCAL}]{{1,64}}@[A-Za-z0-9\-.]+\.[A-Za-z]{{2,}}$"
DOCUMENTED_MAX_TEXT = 5000
DOCUMENTED_MAX_TITLE = 100


class IntakeFields(BaseModel):
    """Fields common to the website form and the app: the citizen, the demand, the place."""

    # strict: a number or a list where text belongs is an error, not silently converted.
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True,
                              str_strip_whitespace=True)

    name: ShortText | None = Field(None, description="姓名（可匿名）")
    phone: Annotated[str, Field(max_length=32, json_schema_extra={
        "pattern": PHONE_PATTERN})] | None = Field(
        None, description="联系电话：手机 13800138000，或座机 0571-88888888", examples=[
            "13800138000"])
    email: Annotated[str, Field(max_length=254, json_schema_extra={
        "pattern": _EMAIL_PATTERN})] | None = Field(None, description="电子邮箱")
    title: Annotated[str, Field(max_length=500, json_schema_extra={
        "maxLength": DOCUMENTED_MAX_TITLE})] | None = Field(
        None, description="标题（最长见 channels.yaml web.max_title_chars，缺省 100）")
    content: Annotated[str, Field(min_length=1, max_length=100_000, json_schema_extra={
        "maxLength": DOCUMENTED_MAX_TEXT, "pattern": FILLED_TEXT_PATTERN})] = Field(
        description="诉求内容（必填，最长见 channels.yaml web.max_text_chars，缺省 5000）")
    district: ShortText | None = Field(None, description="所在区县")
    street: ShortText | None = Field(None, description="街道（乡镇）")
    address: Annotated[str, Field(max_length=300)] | None = Field(None, description="详细地址")


class WebIntakeForm(IntakeFields):
    """``POST /api/intake/web``: the city website's form. Phone or e-mail is required."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["phone"], "properties": {"phone": {"type": "string"}}},
        {"required": ["email"], "properties": {"email": {"type": "string"}}}]})

    submission_id: Annotated[str, Field(min_length=1, max_length=128, pattern=_ID)] | None = \
        Field(None, description="网站表单编号；同一编号重复提交只受理一次。缺省时按电话、"
                                "标题、内容和日期生成")


class AppIntakeForm(IntakeFields):
    """``POST /api/app/v1/intakes``: a signed call from a mobile app."""

    request_id: Annotated[str, Field(min_length=8, max_length=128, pattern=_ID)] = Field(
        description="应用生成的请求编号；重试时保持不变，同一编号只受理一次")
    app_user_id: Annotated[str, Field(min_length=1, max_length=64,
                                      pattern=r"^[A-Za-z0-9_.:@-]+$")] = Field(
        description="应用内的用户编号；查询办理状态时须一致")


class StatusQuery(BaseModel):
    """``POST /api/intake/status``: acceptance number plus the phone given with the intake."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True,
                              str_strip_whitespace=True)

    acceptance_no: Annotated[str, Field(pattern=r"^[0-9]{16}$")] = Field(
        description="受理编号（16 位数字）", examples=["2026010101000001"])
    phone: Annotated[str, Field(min_length=1, max_length=32)] = Field(
        description="受理时填写的联系电话")


_Form = TypeVar("_Form", bound=IntakeFields)


class FormInvalid(Exception):
    """The form has wrong fields; ``fields`` maps each to a Chinese message."""

    code: Final = "invalid_field"
    message: Final = "提交内容有误，请检查标出的项目"

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields

    @property
    def details(self) -> dict[str, Any]:
        """Every wrong field with its message, for the form to mark them all."""
        return {"fields": self.fields}


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits from ``channels.yaml`` that apply to a form."""

    max_text_chars: int
    max_title_chars: int


# -- phone numbers ------------------------------------------------------------------------
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_PHONE_SEPARATORS = re.compile(r"[\s()\-]")
_MOBILE = re.compile(r"^(?:\+?86|0086)?(1[3-9]\d{9})$")
# Area code: 010 and 02x have three digits, the others four; the local number 7 or 8.
_LANDLINE = re.compile(r"^(0(?:[12]\d|[3-9]\d\d))(\d{7,8})$")
_LOCAL = re.compile(r"^[2-9]\d{6,7}$")
_EMAIL = re.compile(rf"^[^{_EMAIL_LOCAL}\ud800-\udfff]{{1,64}}@[A-Za-z0-9\-.]+\.[A-Za-z]{{2,}}$")
_NOT_DIGIT = re.compile(r"[^0-9]")


def normalize_phone(raw: str) -> str | None:
    """The number in one canonical form (``13800138000``, ``0571-88888888``, ``88888888``),
    or None when it is not a mainland mobile or landline number. Full-width digits and
    separators (spaces, dashes, brackets, +86) are accepted."""
    compact = _PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", raw))
    if m := _MOBILE.match(compact):
        return m.group(1)
    if m := _LANDLINE.match(compact):
        return f"{m.group(1)}-{m.group(2)}"
    if _LOCAL.match(compact):
        return compact
    return None


def phone_key(raw: str | None) -> str:
    """Digits that identify a number whatever its spelling, for comparing the number given in
    a status query with the one kept with the intake (which may come from caller ID, with a
    trunk prefix ``0`` or ``+86``)."""
    if not raw:
        return ""
    digits = _NOT_DIGIT.sub("", unicodedata.normalize("NFKC", raw))
    for prefix in ("0086", "86", "0"):
        rest = digits[len(prefix):]
        if digits.startswith(prefix) and len(rest) == 11 and rest[0] == "1":
            return rest
    return digits


def clean_text(value: str) -> str:
    """Drop unsafe characters (:mod:`config.textcheck`: NUL breaks PostgreSQL text and log
    lines, a lone surrogate the stream payload) and unify line ends; keep tabs and line
    breaks."""
    return strip_control(value).replace("\r\n", "\n").replace("\r", "\n")


def clean_line(value: str) -> str:
    """A single-line field: control characters dropped, line breaks made spaces."""
    return _LINE_BREAKS.sub(" ", strip_control(value)).strip()


# -- validation ---------------------------------------------------------------------------
def _message(field: str, error: Mapping[str, Any]) -> str:
    label = LABELS.get(field, field)
    kind = error["type"]
    if kind == "missing":
        return f"请填写{label}"
    if kind in ("string_type", "model_attributes_type"):
        return f"{label}应为文字"
    if kind == "string_unicode":
        return f"{label}含有无法识别的字符"
    if kind == "string_too_short":
        if error.get("ctx", {}).get("min_length", 1) <= 1:
            return f"请填写{label}"
        return PATTERN_MESSAGES.get(field, f"{label}至少 {error['ctx']['min_length']} 个字符")
    if kind == "string_too_long":
        return f"{label}不能超过 {error['ctx']['max_length']} 个字"
    if kind == "string_pattern_mismatch":
        return PATTERN_MESSAGES.get(field, f"{label}格式不正确")
    return f"{label}格式不正确"


def field_messages(exc: ValidationError) -> dict[str, str]:
    """One Chinese message per wrong field (the first problem of each)."""
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        field = str(loc[0]) if loc else "_body"
        fields.setdefault(field, _message(field, error))
    return fields


def _optional(value: str | None) -> str | None:
    return value if value else None


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ""


def check_rules(data: Mapping[str, Any], limits: Limits, *, contact_required: bool,
                fields: dict[str, str]) -> tuple[str | None, str | None]:
    """The rules beyond the field types: configured lengths, phone and e-mail forms, "phone
    or e-mail". Run on the raw values (also when pydantic found problems, so the citizen sees
    every wrong field at once); problems go to ``fields`` unless the field already has one.
    Returns the normalized phone and e-mail."""
    problems: dict[str, str] = {}
    content = _text(data, "content")
    if isinstance(data.get("content"), str):
        if not clean_text(content).strip():
            problems["content"] = "请填写诉求内容"
        elif len(content) > limits.max_text_chars:
            problems["content"] = (f"诉求内容不能超过 {limits.max_text_chars} 个字"
                                   f"（当前 {len(content)} 个字）")
    if len(_text(data, "title")) > limits.max_title_chars:
        problems["title"] = f"标题不能超过 {limits.max_title_chars} 个字"
    raw_phone, email = _text(data, "phone"), _text(data, "email")
    phone = normalize_phone(raw_phone) if raw_phone else None
    if raw_phone and phone is None:
        problems["phone"] = PHONE_FORMAT
    if email and not (len(email) <= 254 and _EMAIL.match(email)):
        problems["email"] = "电子邮箱格式不正确"
    if contact_required and not raw_phone and not email and not (
            data.get("phone") or data.get("email")):
        problems["phone"] = problems["email"] = CONTACT_REQUIRED
    for key, message in problems.items():
        fields.setdefault(key, message)
    return phone, email or None


def _parse(model: type[_Form], data: Mapping[str, Any], limits: Limits,
           contact_required: bool) -> tuple[_Form, str | None, str | None]:
    fields: dict[str, str] = {}
    form: _Form | None = None
    try:
        form = model.model_validate(data)
    except ValidationError as exc:
        fields = field_messages(exc)
    phone, email = check_rules(data, limits, contact_required=contact_required, fields=fields)
    if fields or form is None:
        raise FormInvalid(fields)
    return form, phone, email


def parse_web_form(data: Mapping[str, Any],
                   limits: Limits) -> tuple[WebIntakeForm, str | None, str | None]:
    """Validate the website form (phone or e-mail required): the form and its normalized
    phone and e-mail; raises :class:`FormInvalid` naming every wrong field."""
    return _parse(WebIntakeForm, data, limits, contact_required=True)


def parse_app_form(data: Mapping[str, Any],
                   limits: Limits) -> tuple[AppIntakeForm, str | None, str | None]:
    """Validate an app submission (the app user id is the way back: phone and e-mail are
    optional); raises :class:`FormInvalid`."""
    return _parse(AppIntakeForm, data, limits, contact_required=False)


def parse_status_query(data: Mapping[str, Any]) -> tuple[str, str]:
    """The acceptance number and the phone key of a status query; raises
    :class:`FormInvalid`."""
    try:
        query = StatusQuery.model_validate(data)
    except ValidationError as exc:
        raise FormInvalid(field_messages(exc)) from None
    return query.acceptance_no, phone_key(query.phone)


def derived_submission_id(phone: str | None, email: str | None, form: IntakeFields,
                          attachments: Sequence[Attachment], received_at: datetime) -> str:
    """A stable id for a form sent without ``submission_id``: the same citizen sending the
    same words (and files) on the same day is one intake (a double click, a browser retry)."""
    day = received_at.astimezone(CHINA).date().isoformat()
    parts = [phone or "", email or "", form.title or "", form.content, day,
             *sorted(a.sha256 or a.name for a in attachments)]
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"auto-{digest}"


def build_draft(form: IntakeFields, *, channel: Channel, external_id: str,
                received_at: datetime, phone: str | None, email: str | None,
                app_user_id: str | None = None, attachments: Sequence[Attachment] = (),
                source_ref: str = "") -> IntakeDraft:
    """The draft the gateway takes; text cleaned of control characters."""
    def line(value: str | None) -> str | None:
        return _optional(clean_line(value)) if value else None

    return IntakeDraft(
        channel=channel, external_id=external_id, received_at=received_at,
        contact=Contact(name=line(form.name), phone=phone, email=email,
                        app_user_id=app_user_id),
        title=line(form.title) or "", text=clean_text(form.content),
        location=Location(district=line(form.district), street=line(form.street),
                          address=line(form.address)),
        attachments=tuple(attachments), source_ref=source_ref)
