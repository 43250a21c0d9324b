"""Form rules that need no HTTP: phone forms, the status phone key, the derived id,
attachment names and types, and the signing example of the app API documentation."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels.attachments import (
    AttachmentRejected,
    AttachmentStore,
    content_matches,
    resolve_type,
    safe_name,
)
from channels.signing import (
    SignatureRejected,
    canonical,
    check_window,
    parse_headers,
    sign,
    signed_headers,
)
from channels.web_form import (
    Limits,
    derived_submission_id,
    normalize_phone,
    parse_web_form,
    phone_key,
)

LIMITS = Limits(max_text_chars=5000, max_title_chars=100)


@pytest.mark.parametrize(("raw", "expected"), [
    ("13800138000", "13800138000"),
    ("138 0013 8000", "13800138000"),
    ("+86 138-0013-8000", "13800138000"),
    ("008613800138000", "13800138000"),
    ("１３８００１３８０００", "13800138000"),          # full-width, as Chinese IMEs type
    ("0571-88888888", "0571-88888888"),
    ("(0571)8888888", "0571-8888888"),
    ("010 12345678", "010-12345678"),
    ("88888888", "88888888"),
    ("12345", None),
    ("12800138000", None),                               # no 12x mobile prefix
    ("1380013800", None),
    ("0571-888", None),
    ("phone", None),
    ("", None),
])
def test_normalize_phone(raw: str, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(("a", "b"), [
    ("13800138000", "+8613800138000"),
    ("13800138000", "013800138000"),                     # caller ID with a trunk prefix
    ("0571-88888888", "057188888888"),
])
def test_phone_key_matches_spellings_of_one_number(a: str, b: str) -> None:
    assert phone_key(a) == phone_key(b) != ""


def test_phone_key_of_nothing_is_empty() -> None:
    assert phone_key(None) == phone_key("") == ""
    assert phone_key("١٣٨") == ""                        # non-ASCII digits are not digits here


def test_derived_id_is_stable_per_day_and_content() -> None:
    form, phone, email = parse_web_form({"content": "内容", "phone": "13800138000"}, LIMITS)
    morning = datetime(2026, 5, 4, 1, 0, tzinfo=UTC)     # 09:00 in China
    evening = datetime(2026, 5, 4, 15, 59, tzinfo=UTC)   # 23:59 in China
    next_day = datetime(2026, 5, 4, 16, 1, tzinfo=UTC)   # 00:01 the next day in China
    one = derived_submission_id(phone, email, form, (), morning)
    assert one == derived_submission_id(phone, email, form, (), evening)
    assert one != derived_submission_id(phone, email, form, (), next_day)
    assert one != derived_submission_id("13900139000", email, form, (), morning)
    assert one.startswith("auto-") and len(one) == 5 + 64


def test_control_characters_are_removed_from_the_draft() -> None:
    from channels.web_form import build_draft
    form, phone, email = parse_web_form(
        {"content": "第一行\r\n第二行\x00\x1b[31m", "title": "标\n题", "phone": "13800138000"},
        LIMITS)
    draft = build_draft(form, channel="web", external_id="x",
                        received_at=datetime(2026, 1, 1, tzinfo=UTC), phone=phone, email=email)
    assert draft.text == "第一行\n第二行[31m"
    assert draft.title == "标 题"


@pytest.mark.parametrize(("raw", "expected"), [
    ("photo.jpg", "photo.jpg"),
    ("C:\\Users\\张三\\照片.png", "照片.png"),
    ("../../etc/passwd", "passwd"),
    ("%E7%85%A7%E7%89%87.png", "照片.png"),
    ("100%.txt", "100%.txt"),
    ("a\x00b\x1f.pdf", "ab.pdf"),
    ("", "附件"),
    (None, "附件"),
    ("x" * 300 + ".pdf", ("x" * 300 + ".pdf")[-255:]),
])
def test_safe_name(raw: str | None, expected: str) -> None:
    assert safe_name(raw) == expected


def test_types() -> None:
    assert resolve_type("image/PNG; charset=x", "a") == "image/png"
    assert resolve_type("application/octet-stream", "scan.PDF") == "application/pdf"
    assert resolve_type(None, "x.exe") == "application/octet-stream"
    assert content_matches("image/jpeg", b"\xff\xd8\xff\xe0")
    assert not content_matches("image/gif", b"PNG")
    assert content_matches("image/webp", b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    assert content_matches("text/plain", b"anything")


async def test_store_keeps_one_file_per_content(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)

    def reader(data: bytes):  # type: ignore[no-untyped-def]
        chunks = [data[i:i + 10] for i in range(0, len(data), 10)]

        async def read(n: int) -> bytes:
            return chunks.pop(0) if chunks else b""
        return read

    content = b"%PDF-1.7 " + b"y" * 95
    first = await store.commit(await store.stage(reader(content), name="a.pdf",
                                                 content_type="application/pdf", max_bytes=1000))
    second = await store.commit(await store.stage(reader(content), name="b.pdf",
                                                  content_type="application/pdf", max_bytes=1000))
    assert first.stored_path == second.stored_path
    assert first.sha256 == hashlib.sha256(content).hexdigest()
    files = await asyncio.to_thread(lambda: sorted(p for p in tmp_path.rglob("*") if p.is_file()))
    assert files == [Path(first.stored_path or "")]
    with pytest.raises(AttachmentRejected) as info:
        await store.stage(reader(content), name="c.pdf", content_type="application/pdf",
                          max_bytes=50)
    assert info.value.code == "attachment_too_large"
    files = await asyncio.to_thread(lambda: sorted(p for p in tmp_path.rglob("*") if p.is_file()))
    assert len(files) == 1


# -- signing ------------------------------------------------------------------------------
def test_the_documented_example_signature() -> None:
    body = '{"request_id":"a1b2c3d4e5","app_user_id":"u-1001","content":"路灯坏了"}'.encode()
    assert canonical("post", "/api/app/v1/intakes", 1767225600, "4f1c2a9be07d4d0e8c1a",
                     body).decode().splitlines() == [
        "POST", "/api/app/v1/intakes", "1767225600", "4f1c2a9be07d4d0e8c1a",
        "a321bf910478716bc12e29022fe4e2c5c7aa0b0a75d6119dedf51e9cfc4bca72"]
    assert sign("example-signing-key-0123", "POST", "/api/app/v1/intakes", 1767225600,
                "4f1c2a9be07d4d0e8c1a", body) == \
        "504778511ed0d48f7f3233d24ba2b623811fb4fb4511e1608932beff6fc4e6f1"


@pytest.mark.parametrize(("change", "code"), [
    ({"X-App-Id": ""}, "missing_signature"),
    ({"X-App-Id": "Upper-Case"}, "unknown_app"),
    ({"X-Timestamp": "17e8"}, "stale_request"),
    ({"X-Timestamp": "0123"}, "stale_request"),
    ({"X-Nonce": "short"}, "bad_nonce"),
    ({"X-Nonce": "x" * 65}, "bad_nonce"),
    ({"X-Signature": "zz" * 32}, "bad_signature"),
    ({"X-Signature": "签名" * 32}, "bad_signature"),
])
def test_malformed_headers(change: dict[str, str], code: str) -> None:
    headers = signed_headers("app-1", "k" * 20, "GET", "/", b"", timestamp=1767225600)
    with pytest.raises(SignatureRejected) as info:
        parse_headers({**headers, **change})
    assert info.value.code == code


def test_window_both_ways() -> None:
    check_window(1000, 1300, 300)
    check_window(1300, 1000, 300)
    for ts, now in ((1000, 1301), (1301, 1000)):
        with pytest.raises(SignatureRejected) as info:
            check_window(ts, now, 300)
        assert info.value.code == "stale_request"
        assert info.value.details["server_time"] == now
