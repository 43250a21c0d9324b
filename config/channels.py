"""``channels.yaml``: the intake stream (Redis + local spool) and the citizen channels.

Web form, mobile app API, the mayor's mailbox (IMAP) and the phone (calls, after-hours
voicemail) all feed one Redis stream; see :mod:`channels`. Secrets (the Redis URL when it holds
a password, app signing keys, the mailbox password) belong in environment variables:
``HOTLINE_CHANNELS__REDIS__URL``, ``HOTLINE_APP_KEYS="app-id=key,..."``,
``HOTLINE_CHANNELS__MAIL__PASSWORD``.
"""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

MiB = 1024 * 1024

_KEY_PART = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_APP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,39}$")
_MIME_TYPE = re.compile(r"^[a-z0-9.+-]+/[a-z0-9.+*-]+$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _key_part(value: str) -> str:
    if not _KEY_PART.match(value):
        raise PydanticCustomError("bad_key", "must be 1-64 of A-Z a-z 0-9 _ . -")
    return value


def _app_id(value: str) -> str:
    if not _APP_ID.match(value):
        raise PydanticCustomError("bad_app_id", "must be 2-40 of a-z 0-9 _ - (lower case)")
    return value


def _signing_key(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < 16:
        # Never echo the key itself.
        raise PydanticCustomError("weak_key", "signing key must be at least 16 characters")
    return value


def _mime_type(value: str) -> str:
    value = value.strip().lower()
    if not _MIME_TYPE.match(value):
        raise PydanticCustomError("bad_mime_type", "must look like image/png")
    return value


KeyPart = Annotated[str, AfterValidator(_key_part)]
AppId = Annotated[str, AfterValidator(_app_id)]
MimeType = Annotated[str, AfterValidator(_mime_type)]
Seconds = Annotated[float, Field(gt=0, le=86400)]
Bytes = Annotated[int, Field(ge=1024, le=1024 * MiB)]


class RedisConfig(_Section):
    """Where the intake stream lives. Production Redis must persist (``appendonly yes``,
    ``appendfsync always`` or ``everysec``); the service warns at start when it does not."""

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    key_prefix: KeyPart = "hotline"
    socket_timeout: Annotated[float, Field(gt=0, le=60)] = 1.0
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 1.0
    retry_seconds: Annotated[float, Field(gt=0, le=300)] = 1.0


class StreamConfig(_Section):
    """The intake stream, its consumer group and the dead-letter stream."""

    name: KeyPart = "intake"
    group: KeyPart = "router"
    dead_letter: KeyPart = "intake-dead"
    max_deliveries: Annotated[int, Field(ge=1, le=100)] = 5
    claim_idle_seconds: Annotated[float, Field(gt=0, le=86400)] = 60.0
    # Acknowledged entries beyond this many are trimmed; unacknowledged ones never are.
    max_len: Annotated[int, Field(ge=1000, le=100_000_000)] = 1_000_000
    trim_interval_seconds: Seconds = 60.0
    # How long a channel + external id is remembered for de-duplication (and the status query).
    idempotency_days: Annotated[int, Field(ge=1, le=3660)] = 400


class SpoolConfig(_Section):
    """The local durable spool used while Redis does not answer (SQLite, fsync on commit)."""

    path: str = "var/intake-spool.db"


class WebConfig(_Section):
    """The city website's form (``/api/intake/web``) and the public status query."""

    enabled: bool = True
    max_body_bytes: Bytes = 20 * MiB
    max_text_chars: Annotated[int, Field(ge=100, le=100_000)] = 5000
    max_title_chars: Annotated[int, Field(ge=10, le=500)] = 100
    max_attachments: Annotated[int, Field(ge=0, le=50)] = 5
    max_attachment_bytes: Bytes = 5 * MiB
    allowed_attachment_types: tuple[MimeType, ...] = (
        "image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf",
        "audio/mpeg", "audio/wav", "video/mp4", "text/plain")
    attachments_dir: str = "var/attachments"
    # Per client IP (token bucket); 0 turns the limit off.
    rate_limit_per_minute: Annotated[int, Field(ge=0, le=1_000_000)] = 30
    rate_limit_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 10
    # Proxies whose X-Forwarded-For is believed (the city website's reverse proxy).
    trusted_proxies: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()


class AppClient(_Section):
    """One mobile app (or mini-program) allowed to submit: its name and HMAC signing key."""

    name: Annotated[str, Field(min_length=1, max_length=80)] = "app"
    secret: Annotated[SecretStr, AfterValidator(_signing_key)] | None = None


class AppConfig(_Section):
    """The mobile app API (``/api/app/v1/...``), HMAC-SHA256 signed per app."""

    enabled: bool = True
    window_seconds: Annotated[int, Field(ge=10, le=3600)] = 300
    clients: dict[AppId, AppClient] = {}


class MailConfig(_Section):
    """The mayor's mailbox (书记市长信箱), polled over IMAP."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 993
    tls: bool = True
    # A city mail server with a certificate from its own CA: that CA's PEM file.
    ca_file: str | None = None
    username: str = "mayor"
    password: SecretStr | None = None
    folder: str = "INBOX"
    poll_seconds: Seconds = 30.0
    timeout_seconds: Seconds = 30.0
    max_message_bytes: Bytes = 25 * MiB
    max_attachment_bytes: Bytes = 10 * MiB
    max_parts: Annotated[int, Field(ge=1, le=10_000)] = 50
    max_depth: Annotated[int, Field(ge=1, le=100)] = 5
    # Our own addresses: mail from them is a loop, never an intake.
    own_addresses: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _password_when_enabled(self) -> Self:
        if self.enabled and self.password is None:
            raise PydanticCustomError(
                "missing_password",
                "mail.enabled needs a password (HOTLINE_CHANNELS__MAIL__PASSWORD)")
        return self


class PhoneConfig(_Section):
    """Phone intakes: calls (agent summary) and after-hours voicemail files from Asterisk."""

    # Asterisk's voicemail spool of the after-hours mailbox (msgNNNN.txt + .wav), or none.
    voicemail_dir: str | None = None
    voicemail_poll_seconds: Seconds = 10.0
    voicemail_max_audio_bytes: Bytes = 64 * MiB
    # A message is taken once both files are this old (Asterisk may still be writing).
    voicemail_settle_seconds: Annotated[float, Field(ge=0, le=600)] = 2.0
    # Audio without its .txt for this long is set aside as bad.
    voicemail_orphan_seconds: Seconds = 600.0


class ChannelsConfig(_Section):
    """``channels.yaml``: the intake stream and every citizen channel."""

    # Two digits in every acceptance number (受理编号): give each instance its own.
    node_id: Annotated[int, Field(ge=1, le=99)] = 1
    redis: RedisConfig = RedisConfig()
    stream: StreamConfig = StreamConfig()
    spool: SpoolConfig = SpoolConfig()
    web: WebConfig = WebConfig()
    app: AppConfig = AppConfig()
    mail: MailConfig = MailConfig()
    phone: PhoneConfig = PhoneConfig()
