"""The one JSON responder."""

from __future__ import annotations

import json

from httpkit.responses import NO_STORE, json_bytes, json_response


def test_chinese_stays_readable_and_a_lone_surrogate_is_escaped() -> None:
    assert json_bytes({"m": "已受理"}) == '{"m": "已受理"}'.encode()
    assert json_bytes({"m": "\ud800"}) == b'{"m": "\\ud800"}'
    assert json_bytes({"a": 1, "b": [2]}, compact=True) == b'{"a":1,"b":[2]}'


def test_json_response_carries_status_headers_and_utf8_json() -> None:
    response = json_response({"deleted": "kb-1"}, 201, NO_STORE)
    assert response.status == 201
    assert response.content_type == "application/json"
    assert response.charset == "utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert isinstance(response.body, bytes)
    assert json.loads(response.body) == {"deleted": "kb-1"}
