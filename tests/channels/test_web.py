"""The website form and the status query over HTTP, on the service's real application
(``build_app`` + the intake routes) with the in-memory gateway.

Every bad-input test ends by checking that the service still accepts a good submission."""

from __future__ import annotations

import asyncio
import hashlib
import json
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import BadContentDispositionHeader

from channels.citizen_status import CitizenStatus
from channels.errors import StreamUnavailable
from channels.web_form import CONTACT_REQUIRED
from tests.channels.fakes import MemoryGateway, MemoryOrders
from tests.channels.intake_http import Harness, channels_config, running

WEB = "/api/intake/web"
STATUS = "/api/intake/status"
GOOD = {"name": "张三", "phone": "13800138000", "title": "路灯不亮",
        "content": "幸福路 12 号门口的路灯坏了一周了。", "district": "西湖区",
        "street": "北山街道", "address": "幸福路 12 号"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PDF = b"%PDF-1.4\n" + b"x" * 300

Start = Callable[..., AbstractAsyncContextManager[Harness]]


@pytest.fixture
def start(tmp_path: Path) -> Start:
    """``async with start(**web_config) as h``: the app over a fresh MemoryGateway; rate
    limits off unless the test sets them."""
    def make(**web: Any) -> AbstractAsyncContextManager[Harness]:
        web.setdefault("rate_limit_per_minute", 0)
        return running(MemoryGateway(), channels_config(str(tmp_path / "att"), **web))
    return make


@pytest.fixture
async def h(start: Start) -> AsyncIterator[Harness]:
    async with start() as harness:
        yield harness


def gateway(h: Harness) -> MemoryGateway:
    assert isinstance(h.gateway, MemoryGateway)
    return h.gateway


async def still_accepts(h: Harness) -> None:
    """The service keeps answering: a fresh, valid submission is accepted."""
    before = len(gateway(h).intakes)
    status, body = await h.post_json(WEB, {**GOOD, "content": f"检查 {before}",
                                           "submission_id": f"alive-{before}"})
    assert (status, body["status"], body["duplicate"]) == (201, "accepted", False)
    assert len(gateway(h).intakes) == before + 1


async def files_under(root: Path) -> list[Path]:
    def walk() -> list[Path]:
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
    return await asyncio.to_thread(walk)


# -- JSON ---------------------------------------------------------------------------------
async def test_json_form_is_accepted_with_an_acceptance_number(h: Harness) -> None:
    status, body = await h.post_json(WEB, {**GOOD, "phone": "138-0013 8000",
                                           "submission_id": "site-42"})
    assert status == 201
    assert body["status"] == "accepted" and body["duplicate"] is False
    assert body["acceptance_no"] in body["message"] and "受理" in body["message"]
    [intake] = gateway(h).intakes
    assert intake.acceptance_no == body["acceptance_no"]
    assert (intake.channel, intake.external_id) == ("web", "site-42")
    assert intake.contact.phone == "13800138000"          # normalized
    assert intake.location.district == "西湖区" and intake.title == "路灯不亮"
    assert intake.source_ref == "http:web 127.0.0.1"


async def test_same_submission_id_twice_is_one_intake(h: Harness) -> None:
    first = await h.post_json(WEB, {**GOOD, "submission_id": "site-7"})
    again = await h.post_json(WEB, {**GOOD, "submission_id": "site-7"})
    assert (first[0], again[0]) == (201, 200)
    assert again[1]["duplicate"] is True
    assert again[1]["acceptance_no"] == first[1]["acceptance_no"]
    assert "此前已受理" in again[1]["message"]
    assert len(gateway(h).intakes) == 1


async def test_double_click_without_submission_id_is_one_intake_per_day(h: Harness) -> None:
    one = await h.post_json(WEB, GOOD)
    two = await h.post_json(WEB, dict(GOOD))
    assert (one[0], two[0]) == (201, 200) and one[1]["acceptance_no"] == two[1]["acceptance_no"]
    other = await h.post_json(WEB, {**GOOD, "content": GOOD["content"] + "补充"})
    assert other[0] == 201
    h.clock.advance(86400)
    next_day = await h.post_json(WEB, GOOD)
    assert next_day[0] == 201 and next_day[1]["acceptance_no"] != one[1]["acceptance_no"]
    assert len(gateway(h).intakes) == 3


async def test_landline_and_email_only_are_enough_to_reply(h: Harness) -> None:
    status, _ = await h.post_json(WEB, {"content": "噪音扰民", "phone": "0571 88888888"})
    assert status == 201
    status, _ = await h.post_json(WEB, {"content": "噪音扰民2", "email": "a.b@example.cn"})
    assert status == 201
    assert [i.contact.phone for i in gateway(h).intakes] == ["0571-88888888", None]


@pytest.mark.parametrize(("patch", "expected"), [
    ({"content": 12345}, {"content": "诉求内容应为文字"}),
    ({"content": ["a", "b"]}, {"content": "诉求内容应为文字"}),
    ({"name": ["张三"], "title": {"x": 1}}, {"name": "姓名应为文字", "title": "标题应为文字"}),
    ({"content": "   "}, {"content": "请填写诉求内容"}),
    ({"content": None}, {"content": "诉求内容应为文字"}),
    ({"phone": "12345"}, {"phone": "联系电话格式不正确"}),
    ({"phone": 13800138000}, {"phone": "联系电话应为文字"}),
    ({"email": "not-an-address"}, {"email": "电子邮箱格式不正确"}),
    ({"phone": None, "email": ""}, {"phone": CONTACT_REQUIRED, "email": CONTACT_REQUIRED}),
    ({"submission_id": "有 空格"}, {"submission_id": "表单编号只能包含"}),
    ({"address": "长" * 301}, {"address": "详细地址不能超过 300 个字"}),
])
async def test_wrong_fields_are_named_in_chinese(h: Harness, patch: dict[str, Any],
                                                 expected: dict[str, str]) -> None:
    status, body = await h.post_json(WEB, {**GOOD, **patch})
    assert status == 422
    assert body["error"] == "invalid_field" and body["message"] == "提交内容有误，请检查标出的项目"
    fields = body["details"]["fields"]
    assert set(fields) == set(expected)
    for name, text in expected.items():
        assert fields[name].startswith(text)
    assert gateway(h).intakes == []
    await still_accepts(h)


async def test_every_wrong_field_at_once(h: Harness) -> None:
    status, body = await h.post_json(WEB, {"content": 5, "phone": "abc", "email": "x@"})
    assert status == 422
    assert set(body["details"]["fields"]) == {"content", "phone", "email"}


async def test_text_limits_come_from_the_config(start: Start) -> None:
    async with start(max_text_chars=100, max_title_chars=10) as h:
        status, body = await h.post_json(WEB, {**GOOD, "content": "字" * 101, "title": "标" * 11})
        assert status == 422
        assert body["details"]["fields"]["content"] == "诉求内容不能超过 100 个字（当前 101 个字）"
        assert body["details"]["fields"]["title"] == "标题不能超过 10 个字"
        assert (await h.post_json(WEB, {**GOOD, "content": "字" * 100}))[0] == 201


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"content": "x", ', "提交内容不是合法的 JSON"),
    (b"[1, 2]", "提交内容必须是 JSON 对象"),
    (b'"just a string"', "提交内容必须是 JSON 对象"),
    (b"", "提交内容必须是 JSON 对象"),
    (b'{"content": "\xff\xfe"}', "提交内容不是合法的 JSON"),
    (b"[" * 200_000, "JSON 嵌套层数过多"),
    (b'{"content": ' + b"[" * 40 + b"]" * 40 + b"}", "JSON 嵌套层数过多"),
])
async def test_malformed_json_is_400(h: Harness, raw: bytes, message: str) -> None:
    async with h.client.post(WEB, data=raw,
                             headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        body = await resp.json()
        assert (body["error"], body["message"]) == ("invalid_json", message)
    await still_accepts(h)


async def test_other_content_types_are_415(h: Harness) -> None:
    async with h.client.post(WEB, data="content=x",
                             headers={"Content-Type": "text/plain"}) as resp:
        assert resp.status == 415
        assert (await resp.json())["error"] == "unsupported_media_type"
    await still_accepts(h)


async def test_json_body_over_the_limit_is_413_also_when_chunked(start: Start) -> None:
    async with start(max_body_bytes=4096) as h:
        big = json.dumps({**GOOD, "content": "x" * 5000}).encode()
        async with h.client.post(WEB, data=big,
                                 headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            body = await resp.json()
            assert body["error"] == "payload_too_large" and body["details"]["max_bytes"] == 4096

        async def chunks() -> AsyncIterator[bytes]:      # no Content-Length: counted as read
            for i in range(0, len(big), 1000):
                yield big[i:i + 1000]
        async with h.client.post(WEB, data=chunks(),
                                 headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "payload_too_large"
        await still_accepts(h)


async def test_gateway_down_is_503_and_nothing_promised(h: Harness) -> None:
    gateway(h).fail = True
    status, body = await h.post_json(WEB, GOOD)
    assert status == 503 and body["error"] == "intake_unavailable"
    assert "尚未提交成功" in body["message"] and "acceptance_no" not in body
    gateway(h).fail = False
    await still_accepts(h)


async def test_disabled_channel_is_403(start: Start) -> None:
    async with start(enabled=False) as h:
        status, body = await h.post_json(WEB, GOOD)
        assert (status, body["error"]) == (403, "channel_disabled")


# -- multipart ----------------------------------------------------------------------------
def form(fields: dict[str, Any] = GOOD, files: list[tuple[str, bytes, str]] = (),  # type: ignore[assignment]
         field_name: str = "files") -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    for key, value in fields.items():
        data.add_field(key, value)
    for name, content, ctype in files:
        data.add_field(field_name, content, filename=name, content_type=ctype)
    return data


async def test_multipart_with_attachments_stores_them_by_hash(h: Harness,
                                                              tmp_path: Path) -> None:
    files = [("现场照片.png", PNG, "image/png"), ("投诉.pdf", PDF, "application/octet-stream")]
    async with h.client.post(WEB, data=form(files=files)) as resp:
        assert resp.status == 201, await resp.text()
    [intake] = gateway(h).intakes
    assert [(a.name, a.content_type, a.size) for a in intake.attachments] == [
        ("现场照片.png", "image/png", len(PNG)), ("投诉.pdf", "application/pdf", len(PDF))]
    for attachment, content in zip(intake.attachments, (PNG, PDF), strict=True):
        assert attachment.sha256 == hashlib.sha256(content).hexdigest()
        assert attachment.stored_path is not None
        stored = await asyncio.to_thread(Path(attachment.stored_path).read_bytes)
        assert stored == content
        assert Path(attachment.stored_path).name == attachment.sha256
    root = tmp_path / "att"
    assert [p for p in await files_under(root) if p.suffix == ".part"] == []


async def test_browser_style_utf8_filename(h: Harness) -> None:
    boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
    raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n"
           f"井盖丢失\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"phone\"\r\n"
           f"\r\n13800138000\r\n--{boundary}\r\nContent-Disposition: form-data; "
           f"name=\"files\"; filename=\"C:\\照片\\井盖.png\"\r\nContent-Type: image/png\r\n\r\n"
           ).encode() + PNG + f"\r\n--{boundary}--\r\n".encode()
    async with h.client.post(WEB, data=raw, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"}) as resp:
        assert resp.status == 201, await resp.text()
    [attachment] = gateway(h).intakes[0].attachments
    assert (attachment.name, attachment.size) == ("井盖.png", len(PNG))
    assert gateway(h).intakes[0].text == "井盖丢失"


async def test_empty_file_inputs_are_skipped(h: Harness) -> None:
    async with h.client.post(WEB, data=form(files=[("", b"", "application/octet-stream")])) \
            as resp:
        assert resp.status == 201
    assert gateway(h).intakes[0].attachments == ()


async def test_too_many_files_is_422_and_nothing_kept(start: Start, tmp_path: Path) -> None:
    async with start(max_attachments=2) as h:
        files = [(f"p{i}.png", PNG + bytes([i]), "image/png") for i in range(3)]
        async with h.client.post(WEB, data=form(files=files)) as resp:
            assert resp.status == 422
            body = await resp.json()
            assert body["error"] == "too_many_attachments" and "2" in body["message"]
        assert await files_under(tmp_path / "att") == []
        assert gateway(h).intakes == []
        await still_accepts(h)


async def test_attachment_over_its_limit_is_413_naming_it(start: Start, tmp_path: Path) -> None:
    async with start(max_attachment_bytes=64 * 1024) as h:
        files = [("ok.png", PNG, "image/png"),
                 ("大视频.mp4", b"\x00" * (200 * 1024), "video/mp4")]
        async with h.client.post(WEB, data=form(files=files)) as resp:
            assert resp.status == 413
            body = await resp.json()
            assert body["error"] == "attachment_too_large"
            assert body["details"] == {"file": "大视频.mp4", "max_bytes": 64 * 1024}
            assert "大视频.mp4" in body["message"] and "64 KB" in body["message"]
        assert await files_under(tmp_path / "att") == []      # partial and staged removed
        await still_accepts(h)


async def test_multipart_over_body_limit_is_413(start: Start, tmp_path: Path) -> None:
    async with start(max_body_bytes=100 * 1024, max_attachment_bytes=1024 * 1024) as h:
        payload = form(files=[("a.txt", b"a" * (150 * 1024), "text/plain")])
        async with h.client.post(WEB, data=payload) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "payload_too_large"
        assert await files_under(tmp_path / "att") == []
        await still_accepts(h)


async def test_multipart_over_body_limit_without_length_is_413(start: Start,
                                                               tmp_path: Path) -> None:
    async with start(max_body_bytes=100 * 1024, max_attachment_bytes=1024 * 1024) as h:
        boundary = "xyzBOUNDARY"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n"
                f"内容\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n"
                f"13800138000\r\n--{boundary}\r\nContent-Disposition: form-data; "
                f"name=\"files\"; filename=\"big.txt\"\r\nContent-Type: text/plain\r\n\r\n"
                ).encode()

        async def stream() -> AsyncIterator[bytes]:
            yield head
            for _ in range(30):
                yield b"b" * 8192
            yield f"\r\n--{boundary}--\r\n".encode()
        async with h.client.post(WEB, data=stream(), headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}"}) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "payload_too_large"
        assert await files_under(tmp_path / "att") == []
        await still_accepts(h)


async def test_many_empty_parts_with_big_headers_cannot_pass_the_body_limit(
        start: Start, tmp_path: Path) -> None:
    """Headers and boundaries count: 5,000 empty file inputs with 4 kB headers (20 MB) are
    refused, not accepted under a 100 kB limit."""
    async with start(max_body_bytes=100 * 1024) as h:
        boundary = "xyzBOUNDARY"
        padding = "p" * 4000

        async def stream() -> AsyncIterator[bytes]:
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n"
                   f"内容\r\n--{boundary}\r\nContent-Disposition: form-data; "
                   f"name=\"phone\"\r\n\r\n13800138000\r\n").encode()
            for _ in range(5000):
                yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                       f"filename=\"\"\r\nX-Padding: {padding}\r\n"
                       f"Content-Type: application/octet-stream\r\n\r\n\r\n").encode()
            yield f"--{boundary}--\r\n".encode()
        async with h.client.post(WEB, data=stream(), headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}"}) as resp:
            assert resp.status in (413, 422)
            assert (await resp.json())["error"] in ("payload_too_large", "invalid_field")
        assert await files_under(tmp_path / "att") == []
        await still_accepts(h)


@pytest.mark.parametrize(("name", "content", "ctype", "code"), [
    ("setup.exe", b"MZ\x90\x00", "application/x-msdownload", "unsupported_attachment_type"),
    ("noext", b"whatever", "application/octet-stream", "unsupported_attachment_type"),
    ("fake.png", b"this is not a png at all", "image/png", "attachment_type_mismatch"),
    ("fake.pdf", b"<html>", "application/octet-stream", "attachment_type_mismatch"),
])
async def test_wrong_attachment_type_is_415(h: Harness, tmp_path: Path, name: str,
                                            content: bytes, ctype: str, code: str) -> None:
    async with h.client.post(WEB, data=form(files=[(name, content, ctype)])) as resp:
        assert resp.status == 415
        body = await resp.json()
        assert body["error"] == code and body["details"]["file"] == name
    assert await files_under(tmp_path / "att") == []
    await still_accepts(h)


@pytest.mark.parametrize(("name", "content"), [
    ("setup.txt", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00"),        # an executable
    ("photo.txt", PNG),                                               # binary with NULs
    ("bidi.txt", "说明\u202e文字".encode()),                            # an override inside
    ("broken.txt", b"\xff\xfe\xfd\x00\x81"),
])
async def test_a_text_attachment_that_is_not_text_is_415(h: Harness, tmp_path: Path,
                                                         name: str, content: bytes) -> None:
    async with h.client.post(WEB, data=form(files=[(name, content, "text/plain")])) as resp:
        assert resp.status == 415
        assert (await resp.json())["error"] == "attachment_type_mismatch"
    assert await files_under(tmp_path / "att") == []
    await still_accepts(h)


async def test_text_attachments_in_utf8_and_gb18030_are_kept(h: Harness) -> None:
    text = "幸福路 12 号路灯坏了。\r\n\t附：照片见下。\n" * 5000        # over one 64 KiB chunk
    files = [("utf8.txt", text.encode(), "text/plain"),
             ("bom.txt", b"\xef\xbb\xbf" + text.encode(), "text/plain"),
             ("notepad.txt", text.encode("gb18030"), "application/octet-stream")]
    async with h.client.post(WEB, data=form(files=files)) as resp:
        assert resp.status == 201, await resp.text()
    assert [a.name for a in gateway(h).intakes[0].attachments] == [
        "utf8.txt", "bom.txt", "notepad.txt"]


async def test_bidi_overrides_are_removed_from_file_names(h: Harness) -> None:
    """``invoice\u202efdp.png`` reads as ``invoicegnp.pdf``: stored without the override."""
    files = [("invoice\u202efdp.png", PNG, "image/png"), ("\u2066a\u2069\u200fb.png", PNG,
                                                             "image/png")]
    async with h.client.post(WEB, data=form(files=files)) as resp:
        assert resp.status == 201, await resp.text()
    assert [a.name for a in gateway(h).intakes[0].attachments] == ["invoicefdp.png", "ab.png"]


@pytest.mark.parametrize("warnings_are", ["error", "ignore"])
async def test_a_malformed_content_disposition_is_400_and_not_quoted(
        h: Harness, warnings_are: Literal["error", "ignore"]) -> None:
    """aiohttp warns about it quoting the header (the citizen's phone number in the file
    name went to stderr) and drops the file: refused instead, nothing echoed; whether
    warnings are errors (as in these tests) or not (as in the service)."""
    boundary = "b0undary"
    raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n"
           f"井盖丢失\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"phone\"\r\n"
           f"\r\n13800138000\r\n--{boundary}\r\nContent-Disposition: form-data; "
           f"name=\"files\"; filename=\"张三13800138000.png\r\nContent-Type: image/png\r\n\r\n"
           ).encode() + PNG + f"\r\n--{boundary}--\r\n".encode()
    with warnings.catch_warnings():
        warnings.simplefilter(warnings_are, BadContentDispositionHeader)
        async with h.client.post(WEB, data=raw, headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}"}) as resp:
            assert resp.status == 400
            body = await resp.text()
    assert json.loads(body)["error"] == "invalid_multipart" and "1380013" not in body
    assert gateway(h).intakes == []
    await still_accepts(h)


async def test_invalid_form_after_files_removes_the_staged_files(h: Harness,
                                                                 tmp_path: Path) -> None:
    fields = {k: v for k, v in GOOD.items() if k != "content"}
    async with h.client.post(WEB, data=form(fields, [("p.png", PNG, "image/png")])) as resp:
        assert resp.status == 422
        assert set((await resp.json())["details"]["fields"]) == {"content"}
    assert await files_under(tmp_path / "att") == []
    await still_accepts(h)


async def test_a_field_twice_in_multipart_is_422(h: Harness) -> None:
    data = form()
    data.add_field("phone", "13900139000")
    async with h.client.post(WEB, data=data) as resp:
        assert resp.status == 422
        assert (await resp.json())["details"]["fields"] == {"phone": "联系电话只能填写一次"}
    await still_accepts(h)


@pytest.mark.parametrize("raw", [
    b"no boundary here",
    b"--b\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\nunterminated",
    b"--b\r\n" + b"X-Long: " + b"a" * 20000 + b"\r\n\r\nx\r\n--b--\r\n",
    b"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--\r\n",
    b"",
])
async def test_broken_multipart_is_400(h: Harness, raw: bytes) -> None:
    ctype = "multipart/form-data" if raw.startswith(b"no") else "multipart/form-data; boundary=b"
    async with h.client.post(WEB, data=raw, headers={"Content-Type": ctype}) as resp:
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"] == "invalid_multipart"
    await still_accepts(h)


# -- status query -------------------------------------------------------------------------
async def test_status_by_number_and_phone(h: Harness) -> None:
    _, accepted = await h.post_json(WEB, GOOD)
    no = accepted["acceptance_no"]
    for phone in ("13800138000", "+86 138 0013 8000", "１３８００１３８０００"):
        status, body = await h.post_json(STATUS, {"acceptance_no": no, "phone": phone})
        assert status == 200, body
        assert body["acceptance_no"] == no and body["status"] == "accepted"
        assert body["status_text"] == "已受理" and body["channel"] == "web"
        assert "phone" not in body


async def test_wrong_phone_and_unknown_number_get_the_same_404(h: Harness) -> None:
    _, accepted = await h.post_json(WEB, GOOD)
    wrong_phone = await h.post_json(STATUS, {"acceptance_no": accepted["acceptance_no"],
                                             "phone": "13900139000"})
    unknown = await h.post_json(STATUS, {"acceptance_no": "2099010101999999",
                                         "phone": "13800138000"})
    assert wrong_phone == unknown
    assert wrong_phone[0] == 404 and wrong_phone[1]["error"] == "not_found"
    await still_accepts(h)


async def test_status_of_an_email_only_intake_cannot_be_had_by_phone(h: Harness) -> None:
    _, accepted = await h.post_json(WEB, {"content": "x", "email": "a@example.cn"})
    status, _ = await h.post_json(STATUS, {"acceptance_no": accepted["acceptance_no"],
                                           "phone": "0"})
    assert status == 404


async def test_status_is_the_work_orders_once_there_is_one(tmp_path: Path) -> None:
    """Before the router made the order: 已受理 from the intake store; after: whatever the
    order says, read at query time. Only the owner's query reaches the ticket store."""
    orders = MemoryOrders()
    cfg = channels_config(str(tmp_path / "att"), rate_limit_per_minute=0)
    async with running(MemoryGateway(), cfg, order_status=orders) as h:
        _, accepted = await h.post_json(WEB, GOOD)
        no = accepted["acceptance_no"]
        query = {"acceptance_no": no, "phone": GOOD["phone"]}
        status, body = await h.post_json(STATUS, query)
        assert (status, body["status"], body["status_text"]) == (200, "accepted", "已受理")
        steps: list[tuple[CitizenStatus, str]] = [
            ("signed", "承办单位已签收"), ("redispatching", "重新派单中"), ("archived", "已办结")]
        for order, text in steps:
            orders.statuses[no] = order
            status, body = await h.post_json(STATUS, query)
            assert (status, body["status"], body["status_text"]) == (200, order, text)
            assert set(body) == {"acceptance_no", "status", "status_text", "channel",
                                 "received_at"}
        asked = len(orders.asked)
        status, _ = await h.post_json(STATUS, {"acceptance_no": no, "phone": "13900139000"})
        assert status == 404 and len(orders.asked) == asked       # a probe never reaches it


async def test_ticket_store_down_is_503_never_a_stale_status(tmp_path: Path) -> None:
    orders = MemoryOrders()
    cfg = channels_config(str(tmp_path / "att"), rate_limit_per_minute=0)
    async with running(MemoryGateway(), cfg, order_status=orders) as h:
        _, accepted = await h.post_json(WEB, GOOD)
        orders.down = True
        status, body = await h.post_json(STATUS, {"acceptance_no": accepted["acceptance_no"],
                                                  "phone": GOOD["phone"]})
        assert (status, body["error"]) == (503, "status_unavailable") and body["message"]
        await still_accepts(h)


@pytest.mark.parametrize(("body", "fields"), [
    ({"acceptance_no": "123", "phone": "13800138000"}, {"acceptance_no"}),
    ({"acceptance_no": 2026010101000001, "phone": "13800138000"}, {"acceptance_no"}),
    ({}, {"acceptance_no", "phone"}),
])
async def test_status_query_bad_input_is_422(h: Harness, body: dict[str, Any],
                                             fields: set[str]) -> None:
    status, answer = await h.post_json(STATUS, body)
    assert status == 422 and set(answer["details"]["fields"]) == fields
    await still_accepts(h)


async def test_status_store_down_is_503(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    _, accepted = await h.post_json(WEB, GOOD)

    async def down(acceptance_no: str) -> None:
        raise StreamUnavailable("test: redis down")
    monkeypatch.setattr(gateway(h), "status", down)
    status, body = await h.post_json(STATUS, {"acceptance_no": accepted["acceptance_no"],
                                              "phone": GOOD["phone"]})
    assert (status, body["error"]) == (503, "status_unavailable")
    await still_accepts(h)


# -- rate limits --------------------------------------------------------------------------
async def test_rate_limit_per_ip_answers_429_with_retry_after(start: Start) -> None:
    async with start(rate_limit_per_minute=60, rate_limit_burst=2) as h:
        for i in range(2):
            assert (await h.post_json(WEB, {**GOOD, "content": f"第{i}条"}))[0] == 201
        async with h.client.post(WEB, json={**GOOD, "content": "第3条"}) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "1"
            body = await resp.json()
            assert body["error"] == "rate_limited" and body["details"] == {
                "retry_after_seconds": 1}
        assert len(gateway(h).intakes) == 2
        # The status query has its own budget.
        assert (await h.post_json(STATUS, {"acceptance_no": "2026010101000001",
                                           "phone": "13800138000"}))[0] == 404
        h.clock.advance(1.0)                       # one token back
        assert (await h.post_json(WEB, {**GOOD, "content": "第4条"}))[0] == 201
        assert (await h.post_json(WEB, {**GOOD, "content": "第5条"}))[0] == 429


async def test_forwarded_for_counts_only_from_a_trusted_proxy(start: Start) -> None:
    async with start(rate_limit_per_minute=60, rate_limit_burst=1) as h:
        # The peer (127.0.0.1) is not a trusted proxy: X-Forwarded-For is the client's word.
        first = await h.post_json(WEB, {**GOOD, "content": "a"}, **{"X-Forwarded-For": "1.1.1.1"})
        second = await h.post_json(WEB, {**GOOD, "content": "b"},
                                   **{"X-Forwarded-For": "2.2.2.2"})
        assert (first[0], second[0]) == (201, 429)
    async with start(rate_limit_per_minute=60, rate_limit_burst=1,
                     trusted_proxies=("127.0.0.0/8",)) as h:
        for n, ip in enumerate(("1.1.1.1", "2.2.2.2", "8.8.8.8, 3.3.3.3")):
            status, _ = await h.post_json(WEB, {**GOOD, "content": f"c{n}"},
                                          **{"X-Forwarded-For": ip})
            assert status == 201
        status, _ = await h.post_json(WEB, {**GOOD, "content": "again"},
                                      **{"X-Forwarded-For": "9.9.9.9, 3.3.3.3"})
        assert status == 429                      # right-most untrusted hop is the client
        assert gateway(h).intakes[0].source_ref == "http:web 1.1.1.1"


async def test_status_query_is_rate_limited(start: Start) -> None:
    async with start(rate_limit_per_minute=60, rate_limit_burst=3) as h:
        answers = [(await h.post_json(STATUS, {"acceptance_no": f"202601010100000{i}",
                                               "phone": "13800138000"}))[0] for i in range(5)]
        assert answers == [404, 404, 404, 429, 429]


# -- CORS ---------------------------------------------------------------------------------
SITE = "https://www.hz12345.gov.cn"


async def test_preflight_from_an_allowed_origin(start: Start) -> None:
    async with start(cors_origins=(SITE,)) as h:
        async with h.client.options(WEB, headers={
                "Origin": SITE, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"}) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == SITE
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert resp.headers["Access-Control-Allow-Headers"] == "content-type"
            assert resp.headers["Vary"] == "Origin"


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    {"Origin": SITE, "Access-Control-Request-Method": "DELETE"},
    {"Origin": SITE, "Access-Control-Request-Method": "POST",
     "Access-Control-Request-Headers": "authorization"},
    {"Access-Control-Request-Method": "POST"},
])
async def test_preflight_refused(start: Start, headers: dict[str, str]) -> None:
    async with start(cors_origins=(SITE,)) as h:
        async with h.client.options(STATUS, headers=headers) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == "origin_not_allowed"
            assert not any(k.lower().startswith("access-control") for k in resp.headers)
        await still_accepts(h)


async def test_answers_carry_cors_headers_only_for_allowed_origins(start: Start) -> None:
    async with start(cors_origins=(SITE,)) as h:
        async with h.client.post(WEB, json=GOOD, headers={"Origin": SITE}) as resp:
            assert resp.status == 201
            assert resp.headers["Access-Control-Allow-Origin"] == SITE
        async with h.client.post(WEB, json={"content": 1}, headers={"Origin": SITE}) as resp:
            assert resp.status == 422                  # errors are readable by the page too
            assert resp.headers["Access-Control-Allow-Origin"] == SITE
        async with h.client.post(WEB, json=GOOD, headers={"Origin": "https://evil.example"}) \
                as resp:
            assert resp.status == 200                  # the same form again: a duplicate
            assert "Access-Control-Allow-Origin" not in resp.headers
        async with h.client.get("/healthz", headers={"Origin": SITE}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers


async def test_any_origin(start: Start) -> None:
    async with start(cors_origins=("*",)) as h:
        async with h.client.post(STATUS, json={}, headers={"Origin": "https://a.example"}) \
                as resp:
            assert resp.status == 422
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "Vary" not in resp.headers


# -- bytes that are not text --------------------------------------------------------------
async def raw_http(h: Harness, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send ``request`` as is (headers the aiohttp client would refuse to write)."""
    server = h.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        return status, json.loads(await reader.readexactly(length))
    finally:
        writer.close()
        await writer.wait_closed()


async def test_lone_surrogates_are_refused(h: Harness) -> None:
    # JSON can spell a lone surrogate; it is not text and cannot be written as UTF-8.
    raw = (b'{"content": "\\ud800\\u8def\\u706f", "name": "\\udcff\\u5f20", '
           b'"email": "\\ud800@example.cn"}')
    async with h.client.post(WEB, data=raw, headers={"Content-Type": "application/json"}) \
            as resp:
        assert resp.status == 422
        assert (await resp.json())["details"]["fields"] == {
            "content": "诉求内容含有无法识别的字符", "name": "姓名含有无法识别的字符",
            "email": "电子邮箱含有无法识别的字符"}
    assert gateway(h).intakes == []
    await still_accepts(h)


async def test_non_utf8_headers_and_names_are_answered_not_crashed(h: Harness) -> None:
    boundary = b"bnd"
    body = (b"--bnd\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n"
            b"\xe8\xb7\xaf\xe7\x81\xaf\r\n"
            b"--bnd\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n13800138000\r\n"
            b"--bnd\r\nContent-Disposition: form-data; name=\"\xff\xfe\"\r\n\r\nx\r\n"
            b"--bnd\r\nContent-Disposition: form-data; name=\"\xff\xfe\"\r\n\r\ny\r\n"
            b"--bnd\r\nContent-Disposition: form-data; name=\"files\"; filename=\"\xff\xfe.png\""
            b"\r\nContent-Type: image/\xffpng\r\n\r\n" + PNG + b"\r\n--bnd--\r\n")
    status, answer = await raw_http(h, (
        b"POST " + WEB.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body))
    assert status == 201, answer
    [intake] = gateway(h).intakes
    [attachment] = intake.attachments
    assert (attachment.name, attachment.content_type) == (".png", "image/png")
    intake.to_json().encode("utf-8")
    status, answer = await raw_http(h, (
        b"POST " + WEB.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: text/\xff\xfe\r\nContent-Length: 2\r\n\r\n{}"))
    assert (status, answer["error"]) == (415, "unsupported_media_type")
    status, answer = await raw_http(h, (
        b"OPTIONS " + WEB.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Origin: https://\xff\xfe\r\nAccess-Control-Request-Method: POST\r\n\r\n"))
    assert (status, answer["error"]) == (403, "origin_not_allowed")
    await still_accepts(h)


async def test_another_citizen_reusing_a_submission_id_gets_their_own_intake(h: Harness) -> None:
    """``submission_id`` is the page's choice, so a citizen's: it counts per submitter. Before,
    the second citizen got the first one's number with ``duplicate: true`` and their demand
    was dropped."""
    first = await h.post_json(WEB, {**GOOD, "submission_id": "site-9"})
    other = await h.post_json(WEB, {**GOOD, "phone": "13900139000", "content": "另一位市民的诉求",
                                    "submission_id": "site-9"})
    by_mail = await h.post_json(WEB, {"content": "第三位市民", "email": "c@example.cn",
                                      "submission_id": "site-9"})
    assert (first[0], other[0], by_mail[0]) == (201, 201, 201)
    assert other[1]["duplicate"] is False
    assert len({first[1]["acceptance_no"], other[1]["acceptance_no"],
                by_mail[1]["acceptance_no"]}) == 3
    assert [i.text for i in gateway(h).intakes] == [GOOD["content"], "另一位市民的诉求",
                                                   "第三位市民"]
    again = await h.post_json(WEB, {**GOOD, "phone": "139 0013 9000", "content": "另一位市民的诉求",
                                    "submission_id": "site-9"})
    assert (again[0], again[1]["acceptance_no"]) == (200, other[1]["acceptance_no"])
