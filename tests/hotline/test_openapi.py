"""The OpenAPI document against the running service: schemathesis generates requests for
every documented operation (valid and invalid ones) and checks that no answer is a 5xx and
that every answer — status code, content type, body, headers — is what the document says,
error bodies included.

The application is the one the service runs (``build_app`` + intake routes + /openapi.json),
served on a free port from a thread of its own (schemathesis' test functions are synchronous
and talk to it with ``requests``). Intakes go to the in-memory gateway; the AMI link is never
started (no Asterisk here), so seat actions answer 503 — a documented answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.core.failures import ServerError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from channels.http_state import IntakeHttpDeps
from channels.nonces import MemoryNonceStore
from channels.signing import signed_headers
from httpkit.server import HotlineRunner
from hotline.openapi import openapi_document
from tests.channels.fakes import MemoryGateway
from tests.channels.intake_http import (
    ADMIN,
    APP_ID,
    APP_KEY,
    ManualClock,
    build_full_app,
    channels_config,
)

# Hypothesis caches (constants, unicode data) go to the system's temporary directory, not to
# ``.hypothesis`` in the checkout; no example database is kept (``database=None`` below).
# Set at import: schemathesis' pytest plugin touches the cache while collecting.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "hotline-hypothesis")

DOCUMENT = openapi_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schemathesis.check
def no_unplanned_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 500, and a 5xx only where the document promises it (``/readyz`` and the seat
    actions answer 503 while Asterisk is away: that is their job, not a crash)."""
    status = response.status_code
    if status < 500:
        return None
    documented = DOCUMENT["paths"][case.operation.path][case.method.lower()]["responses"]
    if status == 500 or str(status) not in documented:
        raise ServerError(operation=case.operation.label, status_code=status)
    return None


# Rejections of schema-valid data the document cannot express: values from the config, which
# a reload changes (the configured pause reasons and department numbers, the attachment types
# of channels.yaml), and a file whose bytes are not of its type.
NOT_EXPRESSIBLE: dict[tuple[str, str], set[str]] = {
    ("POST", "/api/seats/{seat_id}/pause"): {"unknown_pause_reason"},
    ("POST", "/api/seats/{seat_id}/transfer"): {"unknown_department"},
    ("POST", "/api/seats/{seat_id}/three-way"): {"unknown_department"},
    ("POST", "/api/intake/web"): {"unsupported_attachment_type", "attachment_type_mismatch"},
}


@schemathesis.check
def valid_data_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' ST202: a request the document calls valid is not refused as invalid
    (400/413/415/422), except for :data:`NOT_EXPRESSIBLE` reasons. The document must be as
    strict as the handlers."""
    allowed = NOT_EXPRESSIBLE.get((case.method.upper(), case.operation.path), set())
    if response.status_code in (415, 422) and allowed:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            if response.json()["error"] in allowed:
                return None
    return positive_data_acceptance(ctx, response, case)  # type: ignore[no-any-return]


CHECKS = [no_unplanned_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, valid_data_accepted]


class ServiceThread:
    """The full application on 127.0.0.1:<free port>, run by an event loop in a thread."""

    def __init__(self, attachments: Path) -> None:
        self.clock = ManualClock()
        self.gateway = MemoryGateway()
        config = channels_config(str(attachments), rate_limit_per_minute=0)
        self.deps = IntakeHttpDeps(gateway=self.gateway, config=lambda: config,
                                   nonces=MemoryNonceStore(), clock=self.clock.wall)
        self.port = 0
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="openapi-service", daemon=True)

    def __enter__(self) -> ServiceThread:
        self._thread.start()
        if not self._started.wait(20):
            raise RuntimeError("service did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:       # reported to the test thread, not swallowed
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # The service's own runner: its low-level answers (a request line too long) are the
        # documented JSON errors too.
        runner = HotlineRunner(build_full_app(self.deps))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceThread]:
    with ServiceThread(tmp_path_factory.mktemp("openapi") / "att") as running:
        yield running


class Credentials(requests.auth.AuthBase):
    """The admin token for the agent API; a valid HMAC signature for the app API (so the
    generated bodies reach the handlers instead of stopping at 401)."""

    def __init__(self, service: ServiceThread) -> None:
        self.service = service

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        path = request.path_url
        if path.startswith("/api/app/"):
            body = request.body or b""
            raw = body.encode() if isinstance(body, str) else bytes(body)  # type: ignore[arg-type]
            now = int(self.service.clock.wall().timestamp())
            request.headers.update(signed_headers(APP_ID, APP_KEY, request.method or "GET",
                                                  path, raw, timestamp=now))
        elif path.startswith("/api/") and not path.startswith("/api/intake/"):
            request.headers["Authorization"] = f"Bearer {ADMIN}"
        return request


@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented(case: Any, service: ServiceThread) -> None:
    response = case.call(base_url=service.base_url, auth=Credentials(service), timeout=10)
    case.validate_response(response, checks=CHECKS)


def test_every_route_is_documented(service: ServiceThread) -> None:
    """A route added to the service without documentation fails here."""
    document = openapi_document()
    answer = requests.get(f"{service.base_url}/openapi.json", timeout=5)
    assert answer.status_code == 200
    assert json.loads(answer.text) == document
    app = build_full_app(service.deps)
    served = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        for route in resource:
            if route.method != "HEAD":
                served.add((path, route.method.lower()))
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served == documented


def test_every_error_answer_is_the_error_schema() -> None:
    document = openapi_document()
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    schema_ref = answer["content"]["application/json"]["schema"]
                    assert schema_ref == {"$ref": "#/components/schemas/ErrorBody"}, (
                        path, method, status)
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error", "message", "details"]
    assert error["additionalProperties"] is False
