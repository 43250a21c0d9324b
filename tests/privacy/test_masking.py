"""Masking of phone numbers and secrets (privacy/masking.py): numbers in their many shapes and
secrets are masked, ids that merely look numeric are left alone. How the log handler applies
it: tests/hotline/test_logs.py."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from privacy.masking import mask_fields, mask_text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("来电 13800138000", "来电 138****8000"),
        ("+8613912345678", "+86139****5678"),
        ("8613912345678 called", "86139****5678 called"),
        ("0086 13912345678", "0086 139****5678"),
        ("138-0013-8000", "138****8000"),
        ("138 0013 8000", "138****8000"),
        ("回拨 010-12345678", "回拨 010****5678"),
        ("0471-1234567", "047****4567"),
        ("(0471)1234567", "047****4567"),
        ("SIP/trunk/13800138000-00000001", "SIP/trunk/138****8000-00000001"),
        ("CallerIDNum: 12345678\r\n", "CallerIDNum: 12****78\r\n"),
        ("{'caller_number': '87654321'}", "{'caller_number': '87****21'}"),
    ],
)
def test_phone_numbers_in_free_text_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "1795398663.0",  # an Asterisk Uniqueid / call id
        "1795398663.13800138000",  # a fraction is never a phone number
        "Uniqueid: 1795398663.42 Linkedid: 1795398663.41",
        "2026-11-23T02:24:00.123456+00:00",  # a timestamp
        "1795398663123",  # epoch milliseconds
        "listening on 127.0.0.1:5038 and :8080",  # ports
        "工单 20261123-000042",  # a ticket number
        "ticket_number: 20261123-000042",
        "Local/1001@seats-00000001;1",
        "5f0c1e0e-8b6a-4c43-9d7e-0a1b2c3d4e5f",  # an ASR uuid
        "wait 12.5 s, 3 attempts",
    ],
)
def test_ids_times_ports_and_tickets_are_left_alone(text: str) -> None:
    assert mask_text(text) == text


def test_fields_are_masked_in_keys_values_and_nested_containers() -> None:
    event = {
        "event": "call joined from 13800138000",
        "call_id": "1795398663.0",
        "caller_number": "12345678",  # a local number without area code: only by field name
        "CallerIDNum": 13800138000,  # an int is masked too
        "ConnectedLineNum": "6001234",
        "ticket": "20261123-000042",
        "port": 5038,
        "waiting": {"13912345678": {"phone": "075512345678", "seat": "1001"}},
        "history": ["first from 13800138000", ("010-12345678",)],
    }
    masked = mask_fields(event)
    assert masked == {
        "event": "call joined from 138****8000",
        "call_id": "1795398663.0",
        "caller_number": "12****78",
        "CallerIDNum": "138****8000",
        "ConnectedLineNum": "60***34",
        "ticket": "20261123-000042",
        "port": 5038,
        "waiting": {"139****5678": {"phone": "075*****5678", "seat": "1001"}},
        "history": ["first from 138****8000", ["010****5678"]],
    }


@dataclass
class _Caller:
    number: str


def test_objects_are_rendered_masked_not_through_a_later_repr() -> None:
    masked = mask_fields({"event": "x", "who": _Caller("13800138000")})
    assert masked["who"] == "_Caller(number='138****8000')"



TOKEN = "adm1n-T0ken-for-hotline-tests"


@pytest.mark.parametrize(("text", "masked"), [
    ("Authorization: Bearer " + TOKEN, "Authorization: Bearer ***"),
    # aiohttp's parser error for a header with a bad byte quotes the whole line.
    ("400, message:\n  Invalid header value char:\n\n    b'Bearer " + TOKEN + "\\x01'\n",
     "400, message:\n  Invalid header value char:\n\n    b'Bearer ***'\n"),
    ("Action: Login\r\nUsername: hotline\r\nSecret: " + TOKEN + "\r\n",
     "Action: Login\r\nUsername: hotline\r\nSecret: ***\r\n"),
    ("admin_token=" + TOKEN + "&x=1", "admin_token=***&x=1"),
    ("{'ami_secret': '" + TOKEN + "'}", "{'ami_secret': '***'}"),
    ("postgresql+asyncpg://hotline:" + TOKEN + "@db:5432/hotline",
     "postgresql+asyncpg://hotline:***@db:5432/hotline"),
    ("X-Signature: 9f86d081884c7d65", "X-Signature: ***"),
])
def test_secrets_in_free_text_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize("text", ["ticket GD20261123000042 signed", "sign_by 2026-11-23",
                                  "the token bucket refilled", "http://127.0.0.1:8080/healthz"])
def test_words_near_secrets_are_left_alone(text: str) -> None:
    assert mask_text(text) == text
