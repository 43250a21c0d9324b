"""The mailbox poller against a real IMAP server (dovecot, started per test on a free port).

The gateway is :class:`tests.channels.fakes.MemoryGateway` (the durable one is tested against
Redis on its own); :class:`WatchingGateway` also records the mail's IMAP flags at the moment
of each submit, to prove ``\\Seen`` is set only after the intake was accepted."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from channels import mailbox, mime
from channels.gateway import Accepted
from channels.intake import IntakeDraft
from channels.mailbox import (
    FAILED_KEYWORD,
    SKIPPED_KEYWORD,
    MailboxError,
    MailboxLoginRejected,
    MailboxPoller,
    imap_folder,
)
from config.channels import MailConfig
from tests.channels.dovecot import Dovecot, DovecotMissing, free_port
from tests.channels.fakes import MemoryGateway

NOISE = ("市长您好：\n我是阳光花园小区3栋的住户。小区南门外的烧烤摊每天营业到凌晨两点，"
         "噪音和油烟严重扰民。多次向物业反映无果，恳请有关部门处理。\n\n"
         "联系电话：13912345678\n李女士")
LAMP = "东风路与建设街交叉口往北200米的路灯已经一周不亮了，晚上行人和电动车很危险，请尽快维修。"


@pytest.fixture
def dovecot_factory() -> Iterator[Callable[..., Dovecot]]:
    """Start throwaway dovecot servers; all are stopped and their directories removed."""
    servers: list[Dovecot] = []

    def make(tls: bool = False) -> Dovecot:
        try:
            server = Dovecot(tls=tls)
        except DovecotMissing as exc:
            pytest.fail(str(exc))
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.destroy()


@pytest.fixture
def dovecot(dovecot_factory: Callable[..., Dovecot]) -> Dovecot:
    return dovecot_factory()


def mail_config(server: Dovecot, **overrides: Any) -> MailConfig:
    values: dict[str, Any] = {
        "enabled": True, "host": server.host, "port": server.port, "tls": False,
        "username": server.user, "password": SecretStr(server.password),
        "poll_seconds": 0.2, "timeout_seconds": 5.0,
        "own_addresses": ("mayor@hotline.gov.cn",)}
    return MailConfig(**(values | overrides))


class WatchingGateway(MemoryGateway):
    """MemoryGateway that reads the mail's flags from the server at each submit."""

    def __init__(self, server: Dovecot) -> None:
        super().__init__()
        self.server = server
        self.flags_at_submit: list[set[str]] = []

    async def submit(self, draft: IntakeDraft) -> Accepted:
        uid = int(draft.source_ref.rsplit("UID=", 1)[1])
        self.flags_at_submit.append(await asyncio.to_thread(self.server.flags, uid))
        return await super().submit(draft)


def citizen_mail(body: str = NOISE, *, subject: str = "小区噪音扰民",
                 message_id: str = "<noise-1@mail.example.com>",
                 sender: str = "李女士 <li.nvshi@example.com>", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "书记市长信箱 <mayor@hotline.gov.cn>"
    msg["Subject"] = subject
    msg["Date"] = "Thu, 19 Nov 2026 21:15:00 +0800"
    msg["Message-ID"] = message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


async def append(server: Dovecot, raw: bytes, folder: str = "INBOX") -> int:
    return await asyncio.to_thread(server.append, raw, folder)


async def flags(server: Dovecot, uid: int, folder: str = "INBOX") -> set[str]:
    return await asyncio.to_thread(server.flags, uid, folder)


@pytest.fixture
def make_poller(tmp_path: Path) -> Iterator[Callable[..., MailboxPoller]]:
    pollers: list[MailboxPoller] = []

    def make(cfg: MailConfig | Callable[[], MailConfig], gateway: MemoryGateway,
             **kwargs: Any) -> MailboxPoller:
        getter = cfg if callable(cfg) else (lambda: cfg)
        poller = MailboxPoller(getter, gateway, tmp_path / "attachments", **kwargs)
        pollers.append(poller)
        return poller

    yield make
    # Pollers are closed by the tests (aclose needs the loop); this only checks they were.
    assert all(p._session is None for p in pollers), "a test left an IMAP session open"


async def eventually(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------------- tests

async def test_new_mail_becomes_one_intake_marked_seen_only_after_submit(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller], tmp_path: Path) -> None:
    photo = bytes(range(256)) * 2
    video = b"\x00\x01" * 2048
    msg = EmailMessage()
    msg["From"] = "张先生 <zhang@example.cn>"
    msg["Subject"] = "路灯不亮"
    msg["Message-ID"] = "<lamp-1@example.cn>"
    msg.set_content(LAMP + "\n手机 13812345678")
    msg.add_attachment(photo, maintype="image", subtype="jpeg", filename="路灯照片.jpg")
    msg.add_attachment(video, maintype="video", subtype="mp4", filename="现场视频.mp4")
    uid = await append(dovecot, msg.as_bytes())
    gateway = WatchingGateway(dovecot)
    poller = make_poller(mail_config(dovecot, max_attachment_bytes=1024), gateway)
    try:
        report = await poller.poll_once()
    finally:
        await poller.aclose()

    assert (report.fetched, report.accepted, report.duplicates) == (1, 1, 0)
    [intake] = gateway.intakes
    assert intake.channel == "mail" and intake.external_id == "lamp-1@example.cn"
    assert intake.title == "路灯不亮" and LAMP in intake.text
    assert intake.contact.email == "zhang@example.cn" and intake.contact.phone == "13812345678"
    assert intake.source_ref.startswith(f"imap://{dovecot.host}/INBOX;UIDVALIDITY=")
    assert intake.source_ref.endswith(f";UID={uid}")
    assert "\\Seen" not in gateway.flags_at_submit[0]
    assert "\\Seen" in await flags(dovecot, uid)
    att, too_large = intake.attachments
    assert (too_large.name, too_large.size, too_large.note) == ("现场视频.mp4", 4096, "too_large")
    assert too_large.stored_path is None
    sha = hashlib.sha256(photo).hexdigest()
    assert att.name == "路灯照片.jpg" and att.sha256 == sha
    assert att.stored_path == str(tmp_path / "attachments" / sha[:2] / sha[2:4] / sha)
    assert await asyncio.to_thread(Path(att.stored_path).read_bytes) == photo


async def test_gateway_down_leaves_mail_unseen_until_it_recovers(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller]) -> None:
    first = await append(dovecot, citizen_mail())
    second = await append(dovecot, citizen_mail(LAMP, subject="路灯不亮",
                                                message_id="<lamp-2@example.cn>"))
    gateway = MemoryGateway()
    gateway.fail = True
    poller = make_poller(mail_config(dovecot), gateway)
    try:
        down = await poller.poll_once()
        assert (down.accepted, down.deferred) == (0, 2)
        assert "\\Seen" not in await flags(dovecot, first)
        assert "\\Seen" not in await flags(dovecot, second)

        gateway.fail = False
        up = await poller.poll_once()
    finally:
        await poller.aclose()
    assert (up.accepted, up.deferred) == (2, 0)
    assert [i.title for i in gateway.intakes] == ["小区噪音扰民", "路灯不亮"]
    assert "\\Seen" in await flags(dovecot, first)
    assert "\\Seen" in await flags(dovecot, second)


async def test_refetched_mail_is_a_duplicate_not_a_second_intake(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller]) -> None:
    uid = await append(dovecot, citizen_mail())
    gateway = MemoryGateway()
    poller = make_poller(mail_config(dovecot), gateway)
    try:
        assert (await poller.poll_once()).accepted == 1
        await asyncio.to_thread(dovecot.set_unseen, uid)
        again = await poller.poll_once()
        assert (await poller.poll_once()).fetched == 0      # seen again: not read a third time
    finally:
        await poller.aclose()
    assert (again.fetched, again.accepted, again.duplicates) == (1, 0, 1)
    assert len(gateway.intakes) == 1
    assert "\\Seen" in await flags(dovecot, uid)


async def test_replies_thread_onto_the_first_intake(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller]) -> None:
    await append(dovecot, citizen_mail())
    await append(dovecot, citizen_mail(
        "补充：昨晚十一点又开始了，附上录音。", subject="Re: 小区噪音扰民",
        message_id="<noise-2@mail.example.com>", In_Reply_To="<noise-1@mail.example.com>",
        References="<noise-1@mail.example.com>"))
    gateway = MemoryGateway()
    poller = make_poller(mail_config(dovecot), gateway)
    try:
        first = await poller.poll_once()
        # A later follow-up that answers the follow-up threads onto the same first intake.
        await append(dovecot, citizen_mail(
            "第三次反映，问题仍未解决。", subject="Re: Re: 小区噪音扰民",
            message_id="<noise-3@mail.example.com>", In_Reply_To="<noise-2@mail.example.com>",
            References="<noise-1@mail.example.com> <noise-2@mail.example.com>"))
        second = await poller.poll_once()
    finally:
        await poller.aclose()
    assert (first.accepted, first.threaded, second.threaded) == (2, 1, 1)
    root, reply, third = gateway.intakes
    assert root.thread_of is None
    assert reply.thread_of == root.acceptance_no == third.thread_of


async def test_auto_reply_is_skipped_and_marked(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller]) -> None:
    auto = await append(dovecot, citizen_mail(
        "您好，我正在休假，11月25日后回复。", subject="自动回复: 关于路灯",
        sender="wang@example.cn", message_id="<ooo-1@example.cn>", Auto_Submitted="auto-replied"))
    bounce = await append(dovecot, citizen_mail(
        "Delivery failed", subject="Undelivered Mail", sender="MAILER-DAEMON@mx.example.cn",
        message_id="<dsn-1@mx.example.cn>"))
    gateway = MemoryGateway()
    poller = make_poller(mail_config(dovecot), gateway)
    try:
        report = await poller.poll_once()
        assert (await poller.poll_once()).fetched == 0
    finally:
        await poller.aclose()
    assert report.skipped == {"auto_reply": 1, "bounce": 1} and report.accepted == 0
    assert gateway.intakes == []
    for uid in (auto, bounce):
        assert {"\\Seen", SKIPPED_KEYWORD} <= await flags(dovecot, uid)


async def test_broken_mail_does_not_stop_the_poller(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller]) -> None:
    broken = (b"From: =?x-unknown?B?!!!?= <a@example.cn>\r\nSubject: =?gb2312?B?\xff\xfe?=\r\n"
              b"Content-Type: multipart/mixed\r\nContent-Transfer-Encoding: base64\r\n\r\n"
              + "路灯坏了".encode("gbk") + b"\r\n--\r\n\x00\x01garbage=?=\r\n")
    nested = b"From: bomb@example.net\r\n"
    inner = b"Content-Type: text/plain\r\n\r\n-\r\n"
    for i in range(60):
        b = b"b%d" % i
        inner = (b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b
                 + b"\r\n" + inner + b"\r\n--" + b + b"--\r\n")
    uids = [await append(dovecot, broken), await append(dovecot, nested + inner),
            await append(dovecot, citizen_mail())]
    gateway = MemoryGateway()
    poller = make_poller(mail_config(dovecot), gateway)
    try:
        report = await poller.poll_once()
    finally:
        await poller.aclose()
    assert report.fetched == 3 and report.failed == 0
    assert report.skipped == {"mail_bomb": 1}
    broken_intake, citizen = gateway.intakes
    assert "路灯坏了" in broken_intake.text and broken_intake.contact.email == "a@example.cn"
    assert citizen.title == "小区噪音扰民"
    for uid in uids:
        assert "\\Seen" in await flags(dovecot, uid)


async def test_too_large_mail_becomes_an_intake_from_its_header(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller]) -> None:
    uid = await append(dovecot, citizen_mail(NOISE * 20))
    gateway = MemoryGateway()
    poller = make_poller(mail_config(dovecot, max_message_bytes=1024), gateway)
    try:
        report = await poller.poll_once()
    finally:
        await poller.aclose()
    assert (report.too_large, report.accepted) == (1, 1)
    [intake] = gateway.intakes
    assert intake.title == "小区噪音扰民" and intake.contact.email == "li.nvshi@example.com"
    assert "邮件过大" in intake.text and "烧烤" not in intake.text
    assert "\\Seen" in await flags(dovecot, uid)


async def test_a_parser_bug_flags_the_mail_and_the_rest_goes_on(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real = mime.parse_message

    def explode_on_lamps(raw: bytes, *args: Any, **kwargs: Any) -> Any:
        if "路灯".encode() in raw or b"lamp" in raw:
            raise RuntimeError("parser bug")
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(mailbox, "parse_message", explode_on_lamps)
    bad = await append(dovecot, citizen_mail(LAMP, subject="lamp", message_id="<lamp@x>"))
    good = await append(dovecot, citizen_mail())
    gateway = MemoryGateway()
    poller = make_poller(mail_config(dovecot), gateway)
    try:
        report = await poller.poll_once()
        assert (await poller.poll_once()).fetched == 0      # not retried every round
    finally:
        await poller.aclose()
    assert (report.failed, report.accepted) == (1, 1)
    assert FAILED_KEYWORD in await flags(dovecot, bad)
    assert "\\Seen" not in await flags(dovecot, bad)       # a person sees it unread
    assert "\\Seen" in await flags(dovecot, good)
    assert "parser bug" in caplog.text


async def test_poller_recovers_after_the_server_restarts(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller]) -> None:
    gateway = MemoryGateway()
    poller = make_poller(mail_config(dovecot), gateway, retry_initial=0.1, retry_max=0.5)
    await append(dovecot, citizen_mail())
    task = asyncio.create_task(poller.run())
    try:
        await eventually(lambda: len(gateway.intakes) == 1)
        await asyncio.to_thread(dovecot.stop)
        await asyncio.sleep(1.0)                 # several failed reconnects
        assert not task.done()
        await asyncio.to_thread(dovecot.start)
        await append(dovecot, citizen_mail(LAMP, subject="路灯不亮",
                                           message_id="<lamp-9@example.cn>"))
        await eventually(lambda: len(gateway.intakes) == 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert poller.connects >= 2
    assert [i.title for i in gateway.intakes] == ["小区噪音扰民", "路灯不亮"]
    assert poller.totals.accepted == 2


async def test_config_change_reconnects_to_another_folder(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller]) -> None:
    folder = "市长信箱"
    encoded = imap_folder(folder).strip('"')
    await asyncio.to_thread(dovecot.create_folder, encoded)
    await append(dovecot, citizen_mail(LAMP, subject="路灯不亮", message_id="<f@x>"), encoded)
    cfg = {"now": mail_config(dovecot)}
    gateway = MemoryGateway()
    poller = make_poller(lambda: cfg["now"], gateway)
    try:
        assert (await poller.poll_once()).fetched == 0
        cfg["now"] = mail_config(dovecot, folder=folder)
        report = await poller.poll_once()
    finally:
        await poller.aclose()
    assert report.accepted == 1 and poller.connects == 2
    assert gateway.intakes[0].source_ref.startswith(f"imap://{dovecot.host}/{folder};")


async def test_wrong_password_and_no_server_raise_mailbox_errors(
        dovecot: Dovecot, make_poller: Callable[..., MailboxPoller]) -> None:
    wrong = make_poller(mail_config(dovecot, password=SecretStr("wrong")), MemoryGateway())
    with pytest.raises(MailboxLoginRejected):
        await wrong.poll_once()
    nobody = make_poller(mail_config(dovecot, port=free_port()), MemoryGateway())
    with pytest.raises(MailboxError):
        await nobody.poll_once()


def test_imap_folder_names() -> None:
    assert imap_folder("INBOX") == '"INBOX"'
    assert imap_folder("市长信箱") == '"&XgKVf0,he7E-"'
    assert imap_folder('A&B "x"') == '"A&-B \\"x\\""'


async def test_tls_with_the_citys_own_ca_and_a_clear_error_without_it(
        dovecot_factory: Callable[..., Dovecot],
        make_poller: Callable[..., MailboxPoller]) -> None:
    """IMAPS as a city mail server runs it: a certificate from its own CA (``ca_file``)."""
    server = await asyncio.to_thread(dovecot_factory, True)
    assert server.ca_file is not None
    await append(server, citizen_mail(LAMP, subject="路灯不亮", message_id="<tls-1@x.cn>"))
    trusted = mail_config(server, port=server.tls_port, tls=True, ca_file=str(server.ca_file))
    gateway = MemoryGateway()
    poller = make_poller(trusted, gateway)
    try:
        report = await poller.poll_once()
    finally:
        await poller.aclose()
    assert report.accepted == 1 and gateway.intakes[0].title == "路灯不亮"

    # Without the CA the certificate is refused: an error naming the cause, no intake.
    await append(server, citizen_mail(NOISE, message_id="<tls-2@x.cn>"))
    untrusted = mail_config(server, port=server.tls_port, tls=True)
    other = MemoryGateway()
    poller = make_poller(untrusted, other)
    try:
        with pytest.raises(MailboxError, match="(?i)certificate"):
            await poller.poll_once()
    finally:
        await poller.aclose()
    assert other.intakes == []
