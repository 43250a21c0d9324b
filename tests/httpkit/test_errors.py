"""The one table of HTTP statuses for domain error codes (:data:`STATUS_OF_CODE`).

Domain errors carry a stable ``code`` and never an HTTP status; the HTTP layer answers each
code with the status of the table. The codes are collected from the error classes themselves
(a ``code`` class attribute, or the ``Literal`` type of their ``code`` parameter), so a new
code, or a new error class with a code, that the table lacks fails here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Literal, get_args, get_origin, get_type_hints

import pytest

import asr
import channels
import router
import telephony
from channels.attachments import AttachmentRejected
from channels.phone import PhoneIntakeError
from channels.signing import SignatureRejected
from channels.web_form import FormInvalid
from httpkit.errors import STATUS_OF_CODE, ApiError, api_error, error_for
from router.tickets import IllegalTransition, TicketError, TicketNotFound
from telephony.seat_actions import SeatActionError

DOMAIN_PACKAGES: tuple[ModuleType, ...] = (asr, channels, router, telephony)
ROOT = Path(__file__).resolve().parents[2]


def _domain_modules() -> Iterator[ModuleType]:
    for package in DOMAIN_PACKAGES:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            # The PBX simulator is a test double, not production code.
            if not info.name.startswith("telephony.simulator"):
                yield importlib.import_module(info.name)


def _subclasses(cls: type[BaseException]) -> Iterator[type[BaseException]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _domain_errors() -> set[type[BaseException]]:
    names = {module.__name__ for module in _domain_modules()}
    return {cls for cls in _subclasses(BaseException) if cls.__module__ in names}


def _codes_of(cls: type[BaseException]) -> set[str]:
    """Every code ``cls`` can carry: its ``code`` class attribute, or the ``Literal`` values of
    its constructor's ``code`` parameter (a plain ``str`` there is refused: unlistable)."""
    codes: set[str] = set()
    if isinstance(getattr(cls, "code", None), str):
        codes.add(getattr(cls, "code"))
    if "code" in inspect.signature(cls.__init__).parameters:
        hint = get_type_hints(cls.__init__)["code"]
        assert get_origin(hint) is Literal, (
            f"{cls.__module__}.{cls.__qualname__}: annotate its code parameter with a Literal "
            f"of every code it takes, not {hint!r}")
        codes.update(get_args(hint))
    return codes


def test_every_code_a_domain_error_can_carry_has_a_status() -> None:
    codes = {cls: _codes_of(cls) for cls in _domain_errors()}
    # The collection itself finds the errors the handlers answer (no vacuous pass).
    for known in (PhoneIntakeError, SeatActionError, AttachmentRejected, SignatureRejected,
                  FormInvalid, TicketNotFound, IllegalTransition):
        assert codes.get(known), known
    assert codes[SeatActionError] >= {"unknown_seat", "transfer_timeout"}
    missing = {f"{cls.__module__}.{cls.__qualname__}": sorted(found - STATUS_OF_CODE.keys())
               for cls, found in codes.items() if found - STATUS_OF_CODE.keys()}
    assert missing == {}


def _takes_a_status(cls: type[BaseException]) -> bool:
    """An ``int`` status given to the constructor, or a ``status`` property (a ticket's
    ``status: TicketStatus`` is the order's state, not an HTTP answer)."""
    if isinstance(getattr(cls, "status", None), property) or hasattr(cls, "HTTP_STATUS"):
        return True
    if "status" not in inspect.signature(cls.__init__).parameters:
        return False
    return get_type_hints(cls.__init__)["status"] is int


def test_no_domain_error_carries_an_http_status() -> None:
    carrying = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in _domain_errors()
                      if _takes_a_status(cls))
    assert carrying == []
    module_tables = sorted(module.__name__ for module in _domain_modules()
                           if hasattr(module, "HTTP_STATUS"))
    assert module_tables == []


def _hard_coded_statuses() -> Iterator[tuple[str, int, int, str]]:
    """``ApiError(<status>, "<code>", ...)`` calls in the HTTP modules: (file, line, status,
    code)."""
    for folder in ("channels", "hotline", "router", "telephony", "asr"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "ApiError" and len(node.args) >= 2
                        and isinstance(status := node.args[0], ast.Constant)
                        and isinstance(code := node.args[1], ast.Constant)
                        and isinstance(status.value, int) and isinstance(code.value, str)):
                    yield (str(path.relative_to(ROOT)), node.lineno, status.value, code.value)


def test_a_handler_that_names_a_status_itself_agrees_with_the_table() -> None:
    found = list(_hard_coded_statuses())
    assert any(code == "invalid_field" for *_, code in found)     # the scan sees the handlers
    disagreeing = [(where, line, status, code) for where, line, status, code in found
                   if STATUS_OF_CODE.get(code, status) != status]
    assert disagreeing == []


@pytest.mark.parametrize(("error", "status"), [
    (SeatActionError("unknown_seat", "坐席 9 不存在"), 404),
    (SeatActionError("unknown_department", "未配置的部门号码：110"), 422),
    (SeatActionError("seat_not_on_call", "坐席 1 当前没有通话"), 409),
    (SeatActionError("transfer_timeout", "转接超时"), 504),
    (PhoneIntakeError("no_call", "找不到通话", {"call_id": "c1"}), 404),
    (AttachmentRejected("attachment_too_large", "附件过大", {"file": "a.pdf"}), 413),
    (AttachmentRejected("too_many_attachments", "最多 5 个附件"), 422),
    (SignatureRejected("replayed_nonce", "重复的请求"), 401),
    (FormInvalid({"phone": "联系电话格式不正确"}), 422),
    (TicketNotFound("2026120800001"), 404),
])
def test_api_error_answers_a_domain_error_with_its_code_message_and_details(
        error: SeatActionError | PhoneIntakeError | AttachmentRejected | SignatureRejected
        | FormInvalid | TicketError, status: int) -> None:
    answer = api_error(error)
    assert isinstance(answer, ApiError)
    assert (answer.status, answer.code, answer.message, answer.details) == (
        status, error.code, error.message, dict(error.details))


def test_form_errors_name_every_wrong_field() -> None:
    answer = api_error(FormInvalid({"phone": "联系电话格式不正确", "content": "请填写诉求内容"}))
    assert (answer.status, answer.code, answer.message) == (
        422, "invalid_field", "提交内容有误，请检查标出的项目")
    assert answer.details == {"fields": {"phone": "联系电话格式不正确", "content": "请填写诉求内容"}}


def test_a_code_the_table_lacks_is_a_bug_not_a_guess() -> None:
    with pytest.raises(KeyError):
        error_for("no_such_code", "x")
