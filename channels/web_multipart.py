"""``multipart/form-data`` submissions of the website form: text fields plus attachments.

Parts are read one at a time from the socket: text fields up to a per-field limit, files
streamed into the attachment store's staging area (:mod:`channels.attachments`). The whole body
is held to ``web.max_body_bytes``, the number of files to ``web.max_attachments``, each file to
``web.max_attachment_bytes`` and the allowed types; every refusal removes what was staged.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable

from aiohttp import BadContentDispositionHeader, BadContentDispositionParam, BodyPartReader
from aiohttp import MultipartReader, web

from channels.attachments import (
    AttachmentRejected,
    AttachmentStore,
    Staging,
    resolve_type,
    safe_name,
)
from channels.web_form import LABELS, FormInvalid, WebIntakeForm
from config.channels import WebConfig
from httpkit.bodies import check_declared_length, too_large
from httpkit.errors import ApiError

# Text fields beyond the ones the form has are read too (and ignored): bound their number.
MAX_TEXT_PARTS = 40
FORM_FIELDS = frozenset(WebIntakeForm.model_fields)
_BAD_DISPOSITION = (BadContentDispositionHeader, BadContentDispositionParam)


class _Budget:
    """Bytes of the body read so far, against ``max_body_bytes``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise too_large(self.limit)


def _first_then(first: bytes,
                read_chunk: Callable[[int], Awaitable[bytes]]) -> Callable[[int], Awaitable[bytes]]:
    """A reader that yields ``first`` (already read) and then the rest of the part."""
    pending = [first]

    async def read(size: int) -> bytes:
        if pending:
            return pending.pop()
        return await read_chunk(size)

    return read


async def _read_text(part: BodyPartReader, name: str, limit: int, budget: _Budget) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(min(limit + 1, 65536)):
        budget.spend(len(chunk))
        data += chunk
        if len(data) > limit:
            await part.release()
            raise FormInvalid({name: f"{LABELS.get(name, name)}过长"})
    try:
        return bytes(data).decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise FormInvalid({name: f"{LABELS.get(name, name)}不是有效的文字（应为 UTF-8）"}) \
            from None


def _overhead(part: BodyPartReader) -> int:
    """Bytes of a part's headers plus its boundary line (approximately: CRLFs, dashes)."""
    return 64 + sum(len(k) + len(v) + 4 for k, v in part.headers.items())


def _bad_disposition() -> ApiError:
    return ApiError(400, "invalid_multipart", "表单某一部分的 Content-Disposition 头格式有误",
                    {"reason": "content_disposition"})


async def _next_part(reader: MultipartReader) -> BodyPartReader | MultipartReader | None:
    """``reader.next()``. It parses each part's ``Content-Disposition`` and, when that is
    malformed, warns quoting the header (a citizen's file name, phone number and all): where
    warnings are errors (``-W error``, the tests) the warning is raised from here."""
    try:
        return await reader.next()
    except _BAD_DISPOSITION:
        raise _bad_disposition() from None


def _disposition(part: BodyPartReader) -> tuple[str, str | None]:
    """The part's field name and file name.

    For a malformed ``Content-Disposition`` aiohttp gives no name at all (the file would be
    dropped in silence) and warns (a log line, masked: :mod:`privacy.masking`). Refused here
    instead (400), nothing quoted. ``catch_warnings`` swaps process-wide state, which is safe
    only because nothing is awaited inside it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name, filename = part.name, part.filename
    if any(issubclass(w.category, _BAD_DISPOSITION) for w in caught):
        raise _bad_disposition()
    return name or "", filename


def _type_refused(name: str, mime: str, allowed: tuple[str, ...]) -> AttachmentRejected:
    return AttachmentRejected(
        "unsupported_attachment_type",
        f"不支持附件“{name}”的类型（{mime}）；可上传的类型：{'、'.join(allowed)}",
        {"file": name, "content_type": mime, "allowed": list(allowed)})


async def read_multipart_form(request: web.Request, cfg: WebConfig, store: AttachmentStore,
                              staging: Staging) -> dict[str, str]:
    """The text fields of the form; its files end up in ``staging`` (the caller commits or
    discards them). Raises :class:`FormInvalid`, :class:`AttachmentRejected` or
    :class:`ApiError` (413 / 400)."""
    check_declared_length(request, cfg.max_body_bytes)
    budget = _Budget(cfg.max_body_bytes)
    # A field value may be the longest text, each character up to 4 bytes of UTF-8.
    field_limit = cfg.max_text_chars * 4 + 1024
    reader = await request.multipart()
    fields: dict[str, str] = {}
    text_parts = 0
    while (part := await _next_part(reader)) is not None:
        if isinstance(part, MultipartReader):
            raise ApiError(400, "invalid_multipart", "不支持嵌套的 multipart 内容")
        # Part headers and boundaries count toward max_body_bytes too, and every part
        # (an empty file input included) toward the part limit: thousands of empty parts
        # with big headers must not slip past the body limit.
        budget.spend(_overhead(part))
        text_parts += 1
        if text_parts > MAX_TEXT_PARTS + cfg.max_attachments:
            raise ApiError(422, "invalid_field", "表单字段过多", {"fields": {}})
        name, part_filename = _disposition(part)
        if part_filename is None:
            if name not in FORM_FIELDS:
                # Fields the form does not have (a CSRF token, a captcha answer ...) are read
                # past, never echoed: their names are whatever the client wrote.
                while chunk := await part.read_chunk(65536):
                    budget.spend(len(chunk))
                continue
            if name in fields:
                raise FormInvalid({name: f"{LABELS.get(name, name)}只能填写一次"})
            fields[name] = await _read_text(part, name, field_limit, budget)
            continue
        first = await part.read_chunk(65536)
        if not first:
            continue          # an empty file input: browsers send it with filename=""
        filename = safe_name(part_filename)
        if len(staging.files) >= cfg.max_attachments:
            raise AttachmentRejected(
                "too_many_attachments", f"最多可上传 {cfg.max_attachments} 个附件",
                {"max_attachments": cfg.max_attachments})
        mime = resolve_type(part.headers.get("Content-Type"), filename)
        if mime not in cfg.allowed_attachment_types:
            raise _type_refused(filename, mime, cfg.allowed_attachment_types)
        staging.files.append(await store.stage(
            _first_then(first, part.read_chunk), name=filename, content_type=mime,
            max_bytes=cfg.max_attachment_bytes, on_bytes=budget.spend))
    return fields
