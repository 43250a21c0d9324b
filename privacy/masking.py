"""Masking of phone numbers and secrets: in free text (:func:`mask_text`) and in a mapping of
named values such as a log event (:func:`mask_fields`). Pure functions, no I/O.

A leaf: it imports nothing of the project (an import-linter contract).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PHONE_FIELDS: frozenset[str] = frozenset(
    {
        "caller",
        "callernumber",
        "callerid",
        "calleridnum",
        "connectedlinenum",
        "phone",
        "phonenumber",
        "number",
        "mobile",
        "telephone",
        "callee",
        "contactphone",
    }
)
"""Keys (lower-cased, ``_``/``-`` removed) whose values are phone numbers: in them any run of
7 or more digits is masked, not only the number shapes recognised in free text."""

# A Chinese mobile number, optionally +86 / 0086 / 86 in front and 3-4-4 grouping. The
# look-arounds keep it from matching inside longer digit runs (epoch milliseconds) and in the
# fraction of a decimal (Asterisk Uniqueids such as 1795398663.13800138000 are never phones).
_MOBILE = re.compile(
    r"(?<![\d.])(?P<prefix>(?:\+|00)?86[ -]?)?(?P<number>1[3-9]\d(?:[ -]?\d{4}){2})(?!\d|\.\d)"
)
# A landline with its area code set apart: 010-12345678, 0471 1234567, (0471)1234567.
# The separator is required: a bare 0-led digit run is as likely an id as a phone.
_LANDLINE = re.compile(r"(?<![\d.])(?:\(0\d{2,3}\)|0\d{2,3}[ -])\d{7,8}(?!\d|\.\d)")
# Phone fields inside free text, e.g. panoramisk's "CallerIDNum: 12345678" or a dict repr
# "'caller_number': '12345678'".
_FIELD_IN_TEXT = re.compile(
    r"(?i)(?<![a-z_])(?P<key>calleridnum|connectedlinenum|caller_?number|caller_?id|caller|phone"
    r"|mobile)['\"]?\s*[:=]\s*['\"]?(?P<digits>\+?\d{7,})(?!\d)"
)
_DIGIT_RUN = re.compile(r"\+?\d{7,}")

SECRET_MASK = "***"
# Names of secrets: a token, secret, password, API key, signature or Authorization header, also
# as the end of a longer name (admin_token, ami-secret, X-Signature).
_SECRET_NAME = r"(?:[a-z0-9]+[_-])*(?:tokens?|secret|password|passwd|api[_-]?key|authorization|signature)"
# "Bearer <token>" wherever it appears (an aiohttp parser error quotes the header line).
_BEARER = re.compile(r"(?i)(?<![a-z])(?P<scheme>bearer|basic)\s+(?P<value>[^\s'\",;]+)")
# A secret-named field in free text: "Secret: x", "admin_token=x", "'password': 'x'".
_SECRET_IN_TEXT = re.compile(
    r"(?i)(?<![a-z0-9])(?P<key>" + _SECRET_NAME + r")['\"]?\s*[:=]\s*['\"]?"
    r"(?:(?:bearer|basic)\s+)?(?P<value>[^\s'\",;&}]+)")
# The password of a URL: postgresql://user:password@host/db.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<value>[^@\s/]+)(?=@)",
                           re.IGNORECASE)
_SECRET_FIELD = re.compile(r"(?i)" + _SECRET_NAME)


def _mask_digits(raw: str) -> str:
    """Keep the first 3 and last 4 digits (2 and 2 for numbers shorter than 11 digits, so a
    7-digit local number still hides something); separators are dropped, ``+`` is kept."""
    plus = "+" if raw.startswith("+") else ""
    digits = "".join(ch for ch in raw if ch.isdigit())
    head, tail = (3, 4) if len(digits) >= 11 else (2, 2)
    return plus + digits[:head] + "*" * (len(digits) - head - tail) + digits[-tail:]


def _mask_mobile(match: re.Match[str]) -> str:
    return (match.group("prefix") or "") + _mask_digits(match.group("number"))


def _mask_field_in_text(match: re.Match[str]) -> str:
    start, end = match.span("digits")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + _mask_digits(match.group("digits")) + whole[end - offset :]


def _mask_group(name: str) -> Any:
    def replace(match: re.Match[str]) -> str:
        start, end = match.span(name)
        whole, offset = match.group(0), match.start()
        return whole[: start - offset] + SECRET_MASK + whole[end - offset :]
    return replace


def mask_secrets(text: str) -> str:
    """Mask bearer tokens, secret-named fields and URL passwords in free text.

    >>> mask_secrets("Authorization: Bearer s3cr3t-token, Secret: hotline")
    'Authorization: Bearer ***, Secret: ***'
    """
    text = _BEARER.sub(_mask_group("value"), text)
    text = _SECRET_IN_TEXT.sub(_mask_group("value"), text)
    return _URL_PASSWORD.sub(_mask_group("value"), text)


def mask_text(text: str) -> str:
    """Mask every phone number and secret (:func:`mask_secrets`) recognisable in free text.

    >>> mask_text("来电 13800138000, 回拨 010-12345678")
    '来电 138****8000, 回拨 010****5678'
    """
    text = _MOBILE.sub(_mask_mobile, text)
    text = _LANDLINE.sub(lambda m: _mask_digits(m.group(0)), text)
    return mask_secrets(_FIELD_IN_TEXT.sub(_mask_field_in_text, text))


def _is_phone_field(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("_", "").replace("-", "") in PHONE_FIELDS


def _is_secret_field(key: object) -> bool:
    return isinstance(key, str) and _SECRET_FIELD.fullmatch(key) is not None


def _mask_entry(key: object, value: Any) -> Any:
    if _is_secret_field(key) and value is not None and not isinstance(value, bool):
        if isinstance(value, Mapping):
            return {k: SECRET_MASK for k in value}
        return SECRET_MASK
    return _mask_value(value, _is_phone_field(key))


def _mask_value(value: Any, phone_field: bool) -> Any:
    if isinstance(value, str):
        masked = mask_text(value)
        return _DIGIT_RUN.sub(lambda m: _mask_digits(m.group(0)), masked) if phone_field else masked
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # A number logged as an int is as private as one logged as text.
        masked = _mask_value(str(value), phone_field)
        return value if masked == str(value) else masked
    if isinstance(value, Mapping):
        return {(mask_text(k) if isinstance(k, str) else k): _mask_entry(k, v)
                for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask_value(item, phone_field) for item in value]
    # Anything else (a CallRecord, an AMI message ...) would be rendered through repr() by a
    # log renderer, unmasked: render it here instead.
    return _mask_value(repr(value), phone_field)


def mask_fields(fields: Mapping[Any, Any]) -> dict[Any, Any]:
    """Mask phone numbers and secrets in every key and value of ``fields``, nested containers
    included: the whole value of a secret-named key, any run of 7 or more digits in a
    phone-named key (:data:`PHONE_FIELDS`), what :func:`mask_text` recognises elsewhere.
    Values that are neither text, numbers nor containers are masked as their ``repr()``.

    >>> mask_fields({"caller_number": "12345678", "admin_token": "t0k", "port": 5038})
    {'caller_number': '12****78', 'admin_token': '***', 'port': 5038}
    """
    return {(mask_text(key) if isinstance(key, str) else key): _mask_entry(key, value)
            for key, value in fields.items()}
