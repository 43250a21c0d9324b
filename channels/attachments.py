"""Files citizens attach to a form, stored on disk content-addressed by SHA-256.

An upload is streamed chunk by chunk into a temporary file (never more than one chunk in
memory), hashed on the way, and only *staged*: when the whole form turns out to be valid it is
*committed* (moved to ``<root>/ab/cd/<sha256>``, fsync'd); when anything fails, every staged
file of the request is removed. Committed files are never deleted here: the same bytes may
belong to another intake.

File I/O runs in threads (``asyncio.to_thread``): the event loop never waits for the disk.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import os
import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import unquote

from channels.errors import ChannelError
from channels.intake import Attachment
from config.textcheck import has_control, strip_control

CHUNK_BYTES = 64 * 1024
MiB = 1024 * 1024

# Types browsers report as application/octet-stream are recognised by their extension.
EXTENSION_TYPES: dict[str, str] = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
    "webp": "image/webp", "pdf": "application/pdf", "mp3": "audio/mpeg", "wav": "audio/wav",
    "mp4": "video/mp4", "txt": "text/plain",
}
# Line breaks and tabs, which a file name has no use for either (the rest of the unsafe
# characters, bidi overrides included, are config.textcheck's).
_NAME_BREAKS = re.compile(r"[\t\n\r]")
_MIME = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+*-]+$")


AttachmentCode = Literal["attachment_too_large", "attachment_type_mismatch",
                         "unsupported_attachment_type", "too_many_attachments"]


class AttachmentRejected(ChannelError):
    """An attachment the service does not take: a stable ``code``, a Chinese ``message`` for
    the citizen, ``details`` naming the file and the limit."""

    def __init__(self, code: AttachmentCode, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code: AttachmentCode = code
        self.message = message
        self.details = details or {}


class TooLarge(ValueError):
    """A file copied into the store turned out larger than allowed."""


def safe_name(filename: str | None) -> str:
    """The base name only (no directories, percent-encoding undone), without unsafe
    characters (:mod:`config.textcheck`: controls, the lone surrogates aiohttp makes of bytes
    that are not UTF-8, and bidi overrides: ``invoice\\u202efdp.exe`` shows as
    ``invoiceexe.pdf``), at most 255 characters; "附件" when nothing is left."""
    name = filename or ""
    if "%" in name:
        # Browsers send UTF-8 as is; some clients (aiohttp, curl scripts) percent-encode it.
        with contextlib.suppress(UnicodeDecodeError):
            name = unquote(name, errors="strict")
    name = unicodedata.normalize("NFC", name)
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _NAME_BREAKS.sub("", strip_control(base)).strip()
    return name[-255:] if name else "附件"


def resolve_type(declared: str | None, name: str) -> str:
    """The MIME type of an upload: the declared one, or by extension when the browser said
    only ``application/octet-stream``."""
    mime = (declared or "").split(";", 1)[0].strip().lower()
    if not _MIME.match(mime):
        mime = "application/octet-stream"
    if mime == "application/octet-stream" and "." in name:
        return EXTENSION_TYPES.get(name.rsplit(".", 1)[-1].lower(), mime)
    return mime


class PlainTextCheck:
    """Whether an upload declared ``text/plain`` is text: UTF-8 (a BOM allowed) or GB18030
    (what Windows Notepad in China saves), holding no unsafe character
    (:mod:`config.textcheck`; a binary file has NUL bytes). Fed chunk by chunk, so the file
    is never held whole."""

    def __init__(self) -> None:
        self._decoders = {name: codecs.getincrementaldecoder(name)()
                          for name in ("utf-8-sig", "gb18030")}

    def feed(self, chunk: bytes, final: bool = False) -> None:
        """Decode the next ``chunk`` (``final``: the end of the file)."""
        for name, decoder in list(self._decoders.items()):
            try:
                text = decoder.decode(chunk, final)
            except UnicodeDecodeError:
                text = "\x00"
            if has_control(text):
                del self._decoders[name]

    @property
    def is_text(self) -> bool:
        """Still text in at least one of the encodings?"""
        return bool(self._decoders)


def content_matches(mime: str, head: bytes) -> bool:
    """Whether the first bytes fit the type, for the types that have a signature (a file
    renamed to .jpg is refused rather than stored as an image). ``text/plain`` is checked
    over the whole file (:class:`PlainTextCheck`)."""
    if mime == "image/jpeg":
        return head.startswith(b"\xff\xd8\xff")
    if mime == "image/png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if mime == "image/gif":
        return head.startswith((b"GIF87a", b"GIF89a"))
    if mime == "image/webp":
        return head.startswith(b"RIFF") and head[8:12] == b"WEBP"
    if mime == "application/pdf":
        return head.startswith(b"%PDF-")
    return True


def size_text(n: int) -> str:
    return f"{n / MiB:g} MB" if n >= MiB else f"{n // 1024} KB"


@dataclass(slots=True)
class StagedFile:
    """An upload written to a temporary file, not yet part of the store."""

    name: str
    content_type: str
    size: int
    sha256: str
    temp_path: Path


@dataclass(slots=True)
class Staging:
    """The files staged for one request; :meth:`discard` removes whatever is left."""

    store: AttachmentStore
    files: list[StagedFile] = field(default_factory=list)

    async def discard(self) -> None:
        paths = [f.temp_path for f in self.files]
        self.files.clear()
        if paths:
            await asyncio.to_thread(_unlink_all, paths)

    async def commit(self) -> tuple[Attachment, ...]:
        """Move every staged file into the store; the attachments for the intake."""
        done = tuple([await self.store.commit(f) for f in self.files])
        self.files.clear()
        return done


def _unlink_all(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class AttachmentStore:
    """Content-addressed attachment files under ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def staging(self) -> Staging:
        return Staging(self)

    async def stage(self, read_chunk: Callable[[int], Awaitable[bytes]], *, name: str,
                    content_type: str, max_bytes: int,
                    on_bytes: Callable[[int], None] | None = None) -> StagedFile:
        """Stream one upload (``read_chunk(n)`` returns b"" at its end) into a temporary file.

        Raises :class:`AttachmentRejected` (``attachment_too_large``,
        ``attachment_type_mismatch``) and removes the partial file on any error; whatever
        ``on_bytes`` raises (the request's total size budget) propagates the same way."""
        temp = self._tmp / f"{uuid.uuid4().hex}.part"
        handle = await asyncio.to_thread(_open_temp, temp)
        digest = hashlib.sha256()
        size = 0
        head = b""
        text = PlainTextCheck() if content_type == "text/plain" else None
        try:
            while chunk := await read_chunk(CHUNK_BYTES):
                size += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
                if size > max_bytes:
                    raise AttachmentRejected(
                        "attachment_too_large",
                        f"附件“{name}”超过 {size_text(max_bytes)} 的大小限制",
                        {"file": name, "max_bytes": max_bytes})
                if len(head) < 16:
                    head += chunk[:16]
                digest.update(chunk)
                await asyncio.to_thread(_write_chunk, handle, chunk, text)
            if text is not None:
                text.feed(b"", final=True)
            if not content_matches(content_type, head) or (text is not None
                                                           and not text.is_text):
                raise AttachmentRejected(
                    "attachment_type_mismatch",
                    f"附件“{name}”的内容与声明的类型（{content_type}）不符",
                    {"file": name, "content_type": content_type})
            await asyncio.to_thread(_sync_close, handle)
        except BaseException:
            # Cancellation (client gone) included: no partial file stays behind.
            await asyncio.shield(asyncio.to_thread(_close_unlink, handle, temp))
            raise
        return StagedFile(name, content_type, size, digest.hexdigest(), temp)

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        """Blocking (call in a thread): store ``data`` durably (fsync'd file and directory)
        at its content address; returns (sha256, path). Mail attachments use it."""
        sha = hashlib.sha256(data).hexdigest()
        final = self.path_for(sha)
        if final.exists() and final.stat().st_size == len(data):
            return sha, final
        temp = self._tmp / f"{uuid.uuid4().hex}.part"
        try:
            handle = _open_temp(temp)
            handle.write(data)
            _sync_close(handle)
            _move_into_place(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        return sha, final

    def put_file(self, source: Path, max_bytes: int) -> tuple[str, int, Path]:
        """Blocking (call in a thread): copy ``source`` durably to its content address;
        returns (sha256, size, path). Raises :class:`TooLarge` past ``max_bytes`` (a file
        still growing). Voicemail recordings use it."""
        temp = self._tmp / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            with open(source, "rb") as src:
                handle = _open_temp(temp)
                try:
                    while chunk := src.read(CHUNK_BYTES):
                        size += len(chunk)
                        if size > max_bytes:
                            raise TooLarge(f"{source.name} is over {max_bytes} bytes")
                        digest.update(chunk)
                        handle.write(chunk)
                except BaseException:
                    handle.close()
                    raise
                _sync_close(handle)
            sha = digest.hexdigest()
            final = self.path_for(sha)
            _move_into_place(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        return sha, size, final

    async def commit(self, staged: StagedFile) -> Attachment:
        """Move a staged file to its content address (kept if the bytes are already there)."""
        final = self.path_for(staged.sha256)
        await asyncio.to_thread(_move_into_place, staged.temp_path, final)
        return Attachment(name=staged.name, content_type=staged.content_type,
                          size=staged.size, sha256=staged.sha256, stored_path=str(final))


def _write_chunk(handle: IO[bytes], chunk: bytes, text: PlainTextCheck | None) -> None:
    # Decoding runs in the worker thread with the write: a 10 MB file is not decoded on the
    # event loop.
    if text is not None:
        text.feed(chunk)
    handle.write(chunk)


def _open_temp(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "xb")


def _sync_close(handle: IO[bytes]) -> None:
    # The citizen is told "受理" with these files: they must survive a crash.
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _close_unlink(handle: IO[bytes], path: Path) -> None:
    handle.close()
    path.unlink(missing_ok=True)


def _move_into_place(temp: Path, final: Path) -> None:
    if final.exists():
        temp.unlink(missing_ok=True)
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)
    fsync_dir(final.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive a crash (blocking)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
