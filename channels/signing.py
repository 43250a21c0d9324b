"""HMAC-SHA256 request signing of the mobile app API (``/api/app/v1/...``).

Every app has an id and a signing key (``channels.yaml`` ``app.clients.<app_id>.secret``, or
``HOTLINE_APP_KEYS="app-id=key,..."``). Each request carries four headers:

``X-App-Id``      the app id, e.g. ``citizen-app``
``X-Timestamp``   the time of signing, Unix seconds (decimal); the service refuses requests
                  more than ``app.window_seconds`` (default 300) away from its clock
``X-Nonce``       16-64 characters of ``A-Z a-z 0-9 _ -``, new for every request; a nonce seen
                  before from the same app within the window is refused
``X-Signature``   lower-case hex HMAC-SHA256(key as UTF-8, canonical string)

The canonical string is five lines joined by ``\\n`` (no newline at the end)::

    METHOD          upper case: POST
    TARGET          path and query exactly as sent: /api/app/v1/intakes
    TIMESTAMP       the X-Timestamp value: 1767225600
    NONCE           the X-Nonce value: 4f1c2a9be07d4d0e8c1a
    BODY_SHA256     lower-case hex SHA-256 of the raw body bytes (of b"" when there is none)

Example: key ``example-signing-key-0123``, body
``{"request_id":"a1b2c3d4e5","app_user_id":"u-1001","content":"路灯坏了"}`` (UTF-8) has
BODY_SHA256 ``a321bf910478716bc12e29022fe4e2c5c7aa0b0a75d6119dedf51e9cfc4bca72`` and, with
the values above, ``X-Signature: 504778511ed0d48f7f3233d24ba2b623811fb4fb4511e1608932beff6fc4e6f1``.
Sign the bytes you send: re-serialising the JSON after signing breaks the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from channels.errors import ChannelError

APP_ID = "X-App-Id"
TIMESTAMP = "X-Timestamp"
NONCE = "X-Nonce"
SIGNATURE = "X-Signature"
HEADERS = (APP_ID, TIMESTAMP, NONCE, SIGNATURE)

_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
# No leading zeros: the signed text is the decimal form of the number.
_TIMESTAMP = re.compile(r"^[1-9][0-9]{0,11}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_APP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{1,39}$")


SignatureCode = Literal["missing_signature", "unknown_app", "stale_request", "bad_nonce",
                        "bad_signature", "replayed_nonce"]


class SignatureRejected(ChannelError):
    """A request whose signature headers do not hold; ``code`` is the API error code."""

    def __init__(self, code: SignatureCode, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code: SignatureCode = code
        self.message = message
        self.details = details or {}


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """The four signature headers of a request, checked for form only."""

    app_id: str
    timestamp: int
    nonce: str
    signature: str


def canonical(method: str, target: str, timestamp: int | str, nonce: str,
              body: bytes) -> bytes:
    """The bytes that are signed (see the module docstring)."""
    return "\n".join((method.upper(), target, str(timestamp), nonce,
                      hashlib.sha256(body).hexdigest())).encode()


def sign(key: str, method: str, target: str, timestamp: int | str, nonce: str,
         body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of :func:`canonical` under ``key``."""
    return hmac.new(key.encode(), canonical(method, target, timestamp, nonce, body),
                    hashlib.sha256).hexdigest()


def signed_headers(app_id: str, key: str, method: str, target: str, body: bytes, *,
                   timestamp: int, nonce: str | None = None) -> dict[str, str]:
    """The headers an app sends (tests, the benchmark and app developers use this)."""
    nonce = nonce or secrets.token_hex(16)
    return {APP_ID: app_id, TIMESTAMP: str(timestamp), NONCE: nonce,
            SIGNATURE: sign(key, method, target, timestamp, nonce, body)}


def parse_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """The signature headers, or :class:`SignatureRejected` naming what is wrong."""
    missing = [h for h in HEADERS if not headers.get(h)]
    if missing:
        raise SignatureRejected("missing_signature", "请求未签名：缺少签名请求头",
                                {"headers": missing})
    app_id = headers[APP_ID].strip()
    if not _APP_ID.match(app_id):
        raise SignatureRejected("unknown_app", "未知的应用", {})
    raw_ts = headers[TIMESTAMP].strip()
    if not _TIMESTAMP.match(raw_ts):
        raise SignatureRejected("stale_request", "请求时间戳无效：应为 Unix 秒数",
                                {"header": TIMESTAMP})
    nonce = headers[NONCE].strip()
    if not _NONCE.match(nonce):
        raise SignatureRejected("bad_nonce", "X-Nonce 应为 16 到 64 位字母、数字、_ 或 -",
                                {"header": NONCE})
    signature = headers[SIGNATURE].strip()
    if not _HEX64.match(signature):
        raise SignatureRejected("bad_signature", "签名无效", {})
    return SignedHeaders(app_id, int(raw_ts), nonce, signature.lower())


def check_window(timestamp: int, now: float, window_seconds: int) -> None:
    """Refuse a request signed more than ``window_seconds`` before or after ``now``."""
    if abs(now - timestamp) > window_seconds:
        raise SignatureRejected(
            "stale_request", f"请求已过期：签名时间与服务器时间相差超过 {window_seconds} 秒，"
                             "请校准设备时间后重试",
            {"server_time": int(now), "window_seconds": window_seconds})


def verify(key: str, signed: SignedHeaders, method: str, target: str, body: bytes) -> None:
    """Raise ``bad_signature`` unless ``signed.signature`` is the request's signature
    (constant-time comparison)."""
    expected = sign(key, method, target, signed.timestamp, signed.nonce, body)
    if not hmac.compare_digest(expected, signed.signature):
        raise SignatureRejected("bad_signature", "签名无效", {})
