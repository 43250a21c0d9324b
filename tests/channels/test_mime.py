"""The mail parser (:mod:`channels.mime`): citizen mails as Chinese mail clients write them,
automatic mail that must not become an intake, and hostile or broken MIME that must never
raise. Fixtures are built with the ``email`` package (and by hand where real clients break
the rules)."""

from __future__ import annotations

import base64
import hashlib
import random
from datetime import UTC, datetime
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from channels.mail_text import decode_bytes, decode_header_text, find_mobile, html_to_text
from channels.mime import (
    NOTICE_BOMB,
    MailLimits,
    ParsedMail,
    Skip,
    parse_headers_only,
    parse_message,
)
from config.channels import MailConfig

FETCHED = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
LIMITS = MailLimits(max_attachment_bytes=64 * 1024, max_parts=50, max_depth=5,
                    own_addresses=frozenset({"mayor@hotline.gov.cn"}))

NOISE = ("市长您好：\n我是阳光花园小区3栋的住户。小区南门外的烧烤摊每天营业到凌晨两点，"
         "噪音和油烟严重扰民，老人孩子无法休息。多次向物业反映无果，恳请有关部门处理。\n\n"
         "联系电话：13912345678\n李女士")
LAMP = "东风路与建设街交叉口往北200米的路灯已经一周不亮了，晚上行人和电动车很危险，请尽快维修。"


def _parse(raw: bytes, limits: MailLimits = LIMITS) -> ParsedMail:
    result = parse_message(raw, limits, fetched_at=FETCHED)
    assert isinstance(result, ParsedMail), result
    return result


def _skip(raw: bytes, limits: MailLimits = LIMITS) -> Skip:
    result = parse_message(raw, limits, fetched_at=FETCHED)
    assert isinstance(result, Skip), result
    return result


def citizen_mail(body: str = NOISE, *, subject: str = "小区噪音扰民",
                 sender: str = "李女士 <li.nvshi@example.com>",
                 message_id: str | None = "<noise-1@mail.example.com>",
                 **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "书记市长信箱 <mayor@hotline.gov.cn>"
    msg["Subject"] = subject
    msg["Date"] = "Thu, 19 Nov 2026 21:15:00 +0800"
    if message_id is not None:
        msg["Message-ID"] = message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def gb_word(text: str, charset: str = "GB2312") -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode('gbk')).decode()}?="


# ----------------------------------------------------------------------- ordinary citizen mail

def test_plain_utf8_mail_becomes_an_intake_draft() -> None:
    parsed = _parse(citizen_mail().as_bytes())
    draft = parsed.draft
    assert draft.channel == "mail"
    assert draft.external_id == "noise-1@mail.example.com"
    assert draft.title == "小区噪音扰民"
    assert "烧烤摊每天营业到凌晨两点" in draft.text
    assert draft.contact.name == "李女士"
    assert draft.contact.email == "li.nvshi@example.com"
    assert draft.contact.phone == "13912345678"
    assert draft.received_at == datetime(2026, 11, 19, 13, 15, tzinfo=UTC)
    assert parsed.attachments == () and parsed.references == ()


def test_gbk_body_and_gb2312_labelled_encoded_words() -> None:
    # Foxmail / old Outlook: GB2312 labels on GBK text ("镕" and "喆" are not in GB2312),
    # and a multi-byte character split across two encoded words.
    subject = "关于朱镕基路路灯不亮"
    data = subject.encode("gbk")
    words = (f"=?GB2312?B?{base64.b64encode(data[:5]).decode()}?=\r\n "
             f"=?GB2312?B?{base64.b64encode(data[5:]).decode()}?=")
    body = f"{LAMP}\r\n王喆 手机 139 1234 5678\r\n".encode("gbk")
    raw = (b"From: " + gb_word("王喆").encode() + b" <wangzhe@example.cn>\r\n"
           b"Subject: " + words.encode() + b"\r\n"
           b"Message-ID: <lamp-1@example.cn>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: text/plain; charset="gb2312"\r\n'
           b"Content-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(body))
    parsed = _parse(raw)
    assert parsed.draft.title == subject
    assert parsed.draft.contact.name == "王喆"
    assert LAMP in parsed.draft.text and "王喆" in parsed.draft.text
    assert parsed.draft.contact.phone == "13912345678"
    assert not [n for n in parsed.notes if n.startswith("charset")]


def test_raw_8bit_gbk_subject_without_encoded_words() -> None:
    raw = ("From: 张先生 <zhang@example.cn>\r\nSubject: 路灯不亮\r\n"
           "Content-Type: text/plain; charset=gbk\r\n\r\n" + LAMP + "\r\n").encode("gbk")
    parsed = _parse(raw)
    assert parsed.draft.title == "路灯不亮"
    assert parsed.draft.contact.name == "张先生"
    assert LAMP in parsed.draft.text


@pytest.mark.parametrize("cte", ["base64", "quoted-printable"])
def test_transfer_encodings(cte: str) -> None:
    part = MIMEText(LAMP, "plain", "utf-8")
    del part["Content-Transfer-Encoding"]
    encoded = (base64.encodebytes(LAMP.encode()).decode() if cte == "base64"
               else "".join(f"={b:02X}" for b in LAMP.encode()))
    if cte == "quoted-printable":   # soft line breaks every 60 characters
        encoded = "=\n".join(encoded[i:i + 60] for i in range(0, len(encoded), 60))
    part.set_payload(encoded)
    part["Content-Transfer-Encoding"] = cte
    part["Subject"] = "路灯不亮"
    part["From"] = "a@example.cn"
    assert _parse(part.as_bytes()).draft.text == LAMP


def test_html_only_mail_is_read_as_text() -> None:
    html = ("<html><head><title>邮件</title><style>p{color:red}</style></head><body>"
            "<script>alert('x')</script><div>市长您好：</div><p>东风路路灯&nbsp;不亮&lt;已一周&gt;"
            "&amp;无人维修。</p>第一行<br>第二行<ul><li>地点：东风路</li><li>时间：晚上</li></ul>"
            "</body></html>")
    msg = citizen_mail()
    msg.set_content(html, subtype="html")
    text = _parse(msg.as_bytes()).draft.text
    assert "alert" not in text and "color" not in text and "邮件" not in text
    lines = text.split("\n")
    assert "市长您好：" in lines
    assert "东风路路灯 不亮<已一周>&无人维修。" in lines
    assert "第一行" in lines and "第二行" in lines
    assert "地点：东风路" in lines and "时间：晚上" in lines


def test_alternative_prefers_plain_and_falls_back_to_html() -> None:
    msg = citizen_mail(LAMP)
    msg.add_alternative(f"<p>HTML 版本：{LAMP}</p>", subtype="html")
    assert _parse(msg.as_bytes()).draft.text == LAMP

    empty_plain = citizen_mail("  \n")
    empty_plain.add_alternative(f"<p>{LAMP}</p>", subtype="html")
    assert _parse(empty_plain.as_bytes()).draft.text == LAMP


def test_attachments_with_chinese_names() -> None:
    photo = bytes(range(256)) * 8
    msg = citizen_mail(LAMP, subject="路灯不亮（附照片）")
    msg.add_attachment(photo, maintype="image", subtype="jpeg", filename="路灯照片.jpg")
    msg.add_attachment(b"%PDF-1.4 test", maintype="application", subtype="pdf",
                       filename="情况说明.pdf")
    raw = msg.as_bytes()
    assert b"filename*=utf-8''" in raw          # the email package writes RFC 2231
    parsed = _parse(raw)
    assert parsed.draft.text == LAMP
    [jpg, pdf] = parsed.attachments
    assert (jpg.meta.name, jpg.meta.content_type, jpg.meta.size) == ("路灯照片.jpg", "image/jpeg",
                                                                     len(photo))
    assert jpg.meta.sha256 == hashlib.sha256(photo).hexdigest() and jpg.data == photo
    assert jpg.meta.stored_path is None and jpg.meta.note is None
    assert pdf.meta.name == "情况说明.pdf" and pdf.data == b"%PDF-1.4 test"


def test_attachment_names_as_real_clients_write_them() -> None:
    outer = MIMEMultipart()
    outer["From"] = "a@example.cn"
    outer.attach(MIMEText(LAMP, "plain", "utf-8"))
    names = {
        # RFC 2231 with a GB2312 charset and continuations
        "filename*0*=gb2312''" + "".join(f"%{b:02X}" for b in "噪音".encode("gbk"))
        + "; filename*1*=" + "".join(f"%{b:02X}" for b in "录音.mp3".encode("gbk")): "噪音录音.mp3",
        # RFC 2047 word inside quotes (not allowed, Outlook does it)
        f'filename="{gb_word("现场照片.png", "GBK")}"': "现场照片.png",
        # a path that must not escape the attachment directory
        'filename="../../etc/passwd"': "_.._etc_passwd",
        # a bidi override that makes "fdp.exe" read "exe.pdf" (RFC 2231, UTF-8)
        "filename*=utf-8''invoice%E2%80%AEfdp.exe": "invoicefdp.exe",
    }
    for param in names:
        part = MIMEApplication(b"data")
        part["Content-Disposition"] = "attachment; " + param
        outer.attach(part)
    parsed = _parse(outer.as_bytes())
    assert [a.meta.name for a in parsed.attachments] == list(names.values())


def test_raw_utf8_attachment_name() -> None:
    raw = ("From: a@example.cn\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + LAMP + "\r\n"
           '--b\r\nContent-Type: image/png; name="照片.png"\r\n'
           "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n").encode("utf-8")
    [png] = _parse(raw).attachments
    assert (png.meta.name, png.data) == ("照片.png", b"hello")


def test_oversized_attachment_keeps_metadata_only() -> None:
    video = b"\x00\x01" * (LIMITS.max_attachment_bytes // 2 + 1)
    msg = citizen_mail()
    msg.add_attachment(video, maintype="video", subtype="mp4", filename="噪音视频.mp4")
    [att] = _parse(msg.as_bytes()).attachments
    assert att.data is None and att.meta.note == "too_large"
    assert att.meta.size == len(video) and att.meta.sha256 == hashlib.sha256(video).hexdigest()


def test_finish_sets_source_thread_and_stored_paths() -> None:
    msg = citizen_mail()
    msg.add_attachment(b"a", maintype="image", subtype="png", filename="1.png")
    msg.add_attachment(b"b" * (LIMITS.max_attachment_bytes + 1), maintype="image",
                       subtype="png", filename="2.png")
    parsed = _parse(msg.as_bytes())
    sha = parsed.attachments[0].meta.sha256
    assert sha is not None
    draft = parsed.finish(source_ref="imap://h/INBOX;UIDVALIDITY=1;UID=2", thread_of="2026",
                          stored_paths={sha: "/var/att/ab/" + sha})
    assert draft.source_ref == "imap://h/INBOX;UIDVALIDITY=1;UID=2" and draft.thread_of == "2026"
    assert [a.stored_path for a in draft.attachments] == ["/var/att/ab/" + sha, None]


# ------------------------------------------------------------------------------ automatic mail

@pytest.mark.parametrize(("header", "value", "reason"), [
    ("Auto-Submitted", "auto-replied", "auto_reply"),
    ("Auto-Submitted", "auto-generated; owner-email=x@y", "auto_reply"),
    ("X-Autoreply", "yes", "auto_reply"),
    ("X-Autorespond", "我正在休假，11月25日回来。", "auto_reply"),
    ("Precedence", "bulk", "bulk"),
    ("Precedence", "junk", "bulk"),
    ("Precedence", "list", "bulk"),
    ("Return-Path", "<>", "bounce"),
    ("X-Loop", "mayor@hotline.gov.cn", "loop"),
])
def test_automatic_mail_is_skipped(header: str, value: str, reason: str) -> None:
    skip = _skip(citizen_mail("自动回复：您的来信已收到。", **{header: value}).as_bytes())
    assert skip.reason == reason
    assert skip.message_id == "noise-1@mail.example.com"


@pytest.mark.parametrize(("header", "value"), [
    ("Auto-Submitted", "no"),
    ("X-Loop", "list@forwarder.example.org"),   # someone else's loop marker: a person's mail
    ("Precedence", "normal"),
])
def test_headers_that_do_not_make_mail_automatic(header: str, value: str) -> None:
    assert _parse(citizen_mail(**{header: value}).as_bytes()).draft.title == "小区噪音扰民"


@pytest.mark.parametrize(("sender", "reason"), [
    ("Mail Delivery System <MAILER-DAEMON@mx.example.com>", "bounce"),
    ("postmaster@example.com", "bounce"),
    ("书记市长信箱 <Mayor@Hotline.gov.cn>", "loop"),
])
def test_senders_that_are_never_citizens(sender: str, reason: str) -> None:
    assert _skip(citizen_mail(sender=sender).as_bytes()).reason == reason


def test_delivery_status_notification_is_skipped() -> None:
    raw = (b"From: Mail Delivery Subsystem <mailer@mx.example.com>\r\n"
           b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx>\r\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
           b"--r\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
           b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; x@y\r\n"
           b"Action: failed\r\nStatus: 5.1.1\r\n--r--\r\n")
    assert _skip(raw) == Skip("delivery_report", "multipart/report", "dsn-1@mx")


# ------------------------------------------------------------------------ hostile and broken

def test_mail_bomb_of_many_parts_keeps_the_readable_text() -> None:
    outer = MIMEMultipart()
    outer["From"] = "张三 <zhang@example.cn>"
    outer["Subject"] = "小区噪音扰民"
    outer.attach(MIMEText(NOISE, "plain", "utf-8"))
    for i in range(1000):
        inner = MIMEMultipart()
        inner.attach(MIMEText(f"垃圾{i}", "plain", "utf-8"))
        outer.attach(inner)
    parsed = _parse(outer.as_bytes())
    assert parsed.draft.text.startswith(NOISE)
    assert parsed.draft.text.endswith(NOTICE_BOMB)
    assert "垃圾999" not in parsed.draft.text
    assert "mail_bomb:parts" in parsed.notes


def nested(depth: int, leaf: str) -> MIMEMultipart:
    top = MIMEMultipart()
    current = top
    for _ in range(depth):
        inner = MIMEMultipart()
        current.attach(inner)
        current = inner
    current.attach(MIMEText(leaf, "plain", "utf-8"))
    return top


def test_deeply_nested_bomb_without_readable_text_is_skipped() -> None:
    bomb = nested(50, "藏在第五十层")
    bomb["From"] = "x@example.net"
    skip = _skip(bomb.as_bytes())
    assert skip.reason == "mail_bomb" and "depth" in skip.detail


def test_deep_nesting_next_to_a_citizen_text_keeps_the_text() -> None:
    outer = MIMEMultipart()
    outer["From"] = "x@example.net"
    outer.attach(MIMEText(LAMP, "plain", "utf-8"))
    outer.attach(nested(50, "藏在第五十层"))
    parsed = _parse(outer.as_bytes())
    assert parsed.draft.text == LAMP + "\n\n" + NOTICE_BOMB
    assert "mail_bomb:depth" in parsed.notes


def test_nesting_beyond_the_stdlib_parser_does_not_raise() -> None:
    # 3000 levels make the stdlib parser recurse past Python's limit; with a permissive
    # max_parts nothing cuts it first.
    limits = MailLimits(max_attachment_bytes=1024, max_parts=10_000, max_depth=100)
    bomb = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    for i in range(3000):
        b = b"b%d" % i
        bomb = (b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n"
                + bomb + b"\r\n--" + b + b"--\r\n")
    result = parse_message(b"From: x@example.net\r\n" + bomb, limits, fetched_at=FETCHED)
    assert isinstance(result, Skip) and result.reason == "mail_bomb"


@pytest.mark.parametrize("charset", ["x-unknown", "bogus\x01set", "base64", "rot13"])
@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_unknown_charset_decodes_utf8_then_gb18030(charset: str, encoding: str) -> None:
    raw = (f'From: a@example.cn\r\nContent-Type: text/plain; charset="{charset}"\r\n'
           "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + LAMP.encode(encoding)
    parsed = _parse(raw)
    assert parsed.draft.text == LAMP
    assert any(n.startswith("charset_unknown") for n in parsed.notes)


def test_bytes_that_fit_no_charset_are_replaced_not_raised() -> None:
    notes: list[str] = []
    text = decode_bytes("路灯".encode() + b"\xff\xfe\xfd", "utf-8", notes)
    assert text.startswith("路灯") and "\ufffd" in text
    assert notes == ["charset_decode_errors:utf-8"]
    assert decode_bytes("路灯".encode("gbk"), "utf-8", notes) == "路灯"   # mislabelled


def test_gbk_text_with_a_stray_byte_stays_readable() -> None:
    # dovecot stores a NUL as 0x80, which is valid in neither UTF-8 nor GB18030.
    assert decode_bytes("路灯坏了".encode("gbk") + b"\x80", None).startswith("路灯坏了")
    assert decode_bytes("路灯坏了".encode("gbk") + b"\x80", "x-unknown").startswith("路灯坏了")


def test_wrong_boundary_is_repaired() -> None:
    raw = ("From: a@example.cn\r\nSubject: 路灯\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="declared"\r\n\r\n'
           "--actual\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + LAMP + "\r\n"
           "--actual--\r\n").encode()
    parsed = _parse(raw)
    assert parsed.draft.text == LAMP
    assert "mime_broken_boundary" in parsed.notes


def test_missing_boundary_gives_the_body_as_text() -> None:
    raw = ("From: a@example.cn\r\nContent-Type: multipart/mixed\r\n\r\n" + LAMP).encode()
    assert _parse(raw).draft.text == LAMP


def test_truncated_mail_gives_what_arrived() -> None:
    msg = citizen_mail(LAMP)
    msg.add_attachment(bytes(4000), maintype="image", subtype="jpeg", filename="a.jpg")
    raw = msg.as_bytes()
    cut = raw[: len(raw) - 2000]     # in the middle of the attachment's base64
    parsed = _parse(cut)
    assert parsed.draft.text == LAMP
    assert len(parsed.attachments) == 1 and parsed.attachments[0].meta.size < 4000


def test_never_raises_on_corrupted_mail() -> None:
    msg = citizen_mail(NOISE)
    msg.add_alternative(f"<p>{NOISE}</p>", subtype="html")
    msg.add_attachment("照片".encode() * 100, maintype="image", subtype="jpeg",
                       filename="照片.jpg")
    raw = bytearray(msg.as_bytes())
    rng = random.Random(12345)
    for _ in range(300):
        mutated = bytearray(raw)
        for _ in range(rng.randint(1, 40)):
            pos = rng.randrange(len(mutated))
            op = rng.random()
            if op < 0.4:
                mutated[pos] = rng.randrange(256)
            elif op < 0.7:
                del mutated[pos:pos + rng.randint(1, 50)]
            else:
                mutated[pos:pos] = rng.choice([b"\r\n", b"--", b"=?", b"?=", b"<", b";",
                                               b"boundary=", b"\r\n\r\n", b"\x00"])
        result = parse_message(bytes(mutated), LIMITS, fetched_at=FETCHED)
        assert isinstance(result, ParsedMail | Skip)


def test_no_message_id_gives_a_stable_hash() -> None:
    raw = citizen_mail(message_id=None).as_bytes()
    first = _parse(raw).draft.external_id
    assert first == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert _parse(raw).draft.external_id == first
    other = citizen_mail(LAMP, message_id=None).as_bytes()
    assert _parse(other).draft.external_id != first


@pytest.mark.parametrize("date", ["Mon, 1 Jan 1990 00:00:00 +0000",
                                  "Sat, 1 Jan 2050 00:00:00 +0000", "昨天晚上", ""])
def test_insane_date_falls_back_to_the_fetch_time(date: str) -> None:
    msg = citizen_mail()
    msg.replace_header("Date", date) if date else msg.__delitem__("Date")
    assert _parse(msg.as_bytes()).draft.received_at == FETCHED


def test_references_oldest_first_then_in_reply_to() -> None:
    msg = citizen_mail(message_id="<c@x>", References="<root@x> <b@x> <c0@x>",
                       In_Reply_To="<c0@x> (李女士的来信)")
    assert _parse(msg.as_bytes()).references == ("root@x", "b@x", "c0@x")


def test_too_large_mail_from_its_header_only() -> None:
    header = citizen_mail().as_bytes().split(b"\n\n")[0] + b"\n\n"
    result = parse_headers_only(header, LIMITS, fetched_at=FETCHED, size=30 * 1048576,
                                max_size=25 * 1048576)
    assert isinstance(result, ParsedMail)
    assert result.draft.title == "小区噪音扰民"
    assert result.draft.external_id == "noise-1@mail.example.com"
    assert "邮件过大（30.0 MB，上限 25.0 MB）" in result.draft.text
    auto = citizen_mail(Auto_Submitted="auto-replied").as_bytes().split(b"\n\n")[0]
    assert isinstance(parse_headers_only(auto, LIMITS, fetched_at=FETCHED, size=1,
                                         max_size=1), Skip)


def test_over_long_text_is_cut_with_a_notice() -> None:
    parsed = _parse(citizen_mail("很长的投诉。" * 40_000).as_bytes())
    assert len(parsed.draft.text) <= 200_000
    assert parsed.draft.text.endswith("已截断，请到信箱查看原件。")


# ---------------------------------------------------------------------------- building blocks

def test_decode_header_text_mixed_words_and_plain() -> None:
    value = f"回复: {gb_word('路灯')} {gb_word('不亮')} 第2次 =?utf-8?Q?=E6=8A=95=E8=AF=89?="
    assert decode_header_text(value) == "回复: 路灯不亮 第2次 投诉"
    assert decode_header_text("=?utf-8?B?!!!?= 原样") == "=?utf-8?B?!!!?= 原样"


def test_html_to_text_survives_junk_markup() -> None:
    assert "路灯" in html_to_text("<![bogus <p>路灯</p>")


def test_find_mobile_prefers_the_number_next_to_a_cue() -> None:
    assert find_mobile("邻居13800000000天天吵\n我的手机：+86 139-1234-5678") == "13912345678"
    assert find_mobile("订单号 2013912345678901") is None


def test_limits_from_config() -> None:
    cfg = MailConfig(own_addresses=("Mayor@Hotline.gov.cn",), max_parts=7)
    limits = MailLimits.of(cfg)
    assert limits.own_addresses == frozenset({"mayor@hotline.gov.cn"})
    assert limits.max_parts == 7 and limits.max_attachment_bytes == cfg.max_attachment_bytes
