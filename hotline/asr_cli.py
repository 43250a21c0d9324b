"""``hotline asr transcribe FILES...``: recorded calls and voicemail through the configured
recogniser, each transcript printed and written to its call.

The model is the one ``asr.yaml`` names (``mode: local``: ``model_path``, loaded in a thread;
``mode: remote``: the vosk-server pool). A file's call is ``--call-id`` (one file only) or the
file's name when it is an Asterisk Uniqueid/Linkedid (``1795399483.7.wav``: how MixMonitor
recordings are named); its final segments go to ``call_transcripts`` through
:class:`asr.sink.CallTranscripts` with purpose ``recording``, so the call's ticket shows them.

Exit status: 0 every file transcribed, 1 some file failed (each named on stderr with the
reason), 2 configuration, model or database unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:        # the CLI must start fast: the heavy modules are imported in run()
    from asr.files import FileTranscript
    from asr.local import LocalRecognizer
    from asr.remote import RemoteRecognizer
    from asr.server import CallRef, Purpose
    from asr.sink import CallTranscripts
    from config.schema import HotlineConfig
    from telephony.store import CallStore

log = logging.getLogger(__name__)

# Asterisk's Uniqueid / Linkedid: "<epoch seconds>.<sequence>" (MixMonitor names files by it).
CALL_ID_STEM: Final = re.compile(r"^\d{6,20}\.\d{1,10}$")
# What --call-id accepts: a Linkedid, or a voicemail intake's call id (Asterisk's msg_id,
# "1795399262-00000000"); call_transcripts.call_id holds 64 characters.
CALL_ID_OPTION: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

EXIT_OK: Final = 0
EXIT_FILE_FAILED: Final = 1
EXIT_UNUSABLE: Final = 2


class _Unusable(Exception):
    """Config, model or database cannot be used: exit 2 with this (Chinese-first) message."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``hotline asr transcribe`` on the ``hotline`` command's subparsers."""
    asr = sub.add_parser("asr", help="语音识别 / speech recognition")
    asr_sub = asr.add_subparsers(dest="asr_command", required=True)
    tr = asr_sub.add_parser(
        "transcribe", help="转写录音文件并写入对应通话 / transcribe recordings to their calls",
        description="转写录音文件（语音留言、通话录音），打印文本，并写入对应通话的转写记录。"
                    " Transcribe recordings, print them, store them on their calls.")
    tr.add_argument("files", nargs="+", type=Path, metavar="FILES",
                    help="录音文件 / recordings (WAV; other formats via sox)")
    tr.add_argument("--call-id", default=None,
                    help="写入该通话（仅限单个文件）/ the call of the (single) file; default: "
                         "the file name when it is an Asterisk Uniqueid like 1795399483.7.wav")
    tr.add_argument("--concurrency", type=int, default=None,
                    help="同时转写的文件数 / files at once (default and maximum: asr.max_streams)")
    tr.add_argument("--no-progress", action="store_true", help="不显示进度条 / no progress bar")
    tr.add_argument("--config", type=Path, default=None,
                    help="config directory (default: $HOTLINE_CONFIG_DIR or the packaged one)")


def main(args: argparse.Namespace) -> int:
    """Entry point of ``hotline asr ...`` (``args`` from :func:`add_parser`): loads the
    configuration and runs :func:`run`."""
    from config.errors import ConfigError
    from config.loader import load_config
    from hotline.logs import configure_logging

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"配置错误 / configuration error:\n{exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    # Logs (warnings up) go to stderr with the transcripts alone on stdout.
    configure_logging("WARNING", cfg.service.log_format)
    return asyncio.run(run(args, cfg))


async def run(args: argparse.Namespace, cfg: HotlineConfig) -> int:
    """``hotline asr transcribe``: see the module docstring for what it does and exits with."""
    from asr.files import transcribe_files

    files: list[Path] = list(args.files)
    if args.call_id is not None and len(files) != 1:
        print("--call-id 只能用于单个文件 / --call-id needs exactly one file", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.call_id is not None and not CALL_ID_OPTION.match(args.call_id):
        print(f"--call-id 格式无效 / --call-id is not a call id: {args.call_id[:80]!r}",
              file=sys.stderr)
        return EXIT_UNUSABLE
    asr = cfg.asr
    concurrency = asr.max_streams if args.concurrency is None else args.concurrency
    if not 1 <= concurrency <= asr.max_streams:
        print(f"--concurrency 须在 1 与 asr.max_streams ({asr.max_streams}) 之间 / "
              f"--concurrency must be 1..{asr.max_streams}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        async with AsyncExitStack() as stack:
            # The model first: a wrong model_path is the likeliest error, said before any
            # database file is made.
            recognizer = await stack.enter_async_context(_open_recognizer(cfg))
            transcripts, calls = await stack.enter_async_context(_open_database(cfg))
            writer = _CallWriter(transcripts, calls, args.call_id)
            results = await transcribe_files(
                files, recognizer, progress=not args.no_progress, concurrency=concurrency,
                sample_rate=asr.sample_rate, on_result=writer.write)
    except _Unusable as exc:
        print(exc, file=sys.stderr)
        return EXIT_UNUSABLE
    results = [r if r.path not in writer.errors
               else FileTranscript(r.path, r.segments, writer.errors[r.path]) for r in results]
    failed = [r for r in results if r.error is not None]
    for result in results:
        if result.error is None:
            print(_block(result, writer.calls.get(result.path)))
    for result in failed:
        print(f"转写失败 / failed: {result.path}: {result.error}", file=sys.stderr)
    return EXIT_FILE_FAILED if failed else EXIT_OK


def _block(result: FileTranscript, call_id: str | None) -> str:
    """One file's transcript as printed (Chinese-first headings)."""
    call = f"通话 / call: {call_id}" if call_id else "通话 / call: （未关联 / none）"
    text = result.text or "（未识别到语音 / no speech recognised）"
    return f"== 文件 / file: {result.path}\n{call}\n转写 / transcript:\n{text}\n"


@asynccontextmanager
async def _open_database(cfg: HotlineConfig
                         ) -> AsyncIterator[tuple[CallTranscripts, CallStore]]:
    """The database (migrated): the transcripts (no live publishing: no Redis) and the calls."""
    from sqlalchemy.exc import SQLAlchemyError

    from asr.sink import CallTranscripts
    from channels.keys import StreamKeys
    from db.engine import migrate, open_engine
    from telephony.store import CallStore

    url = cfg.service.database_url.get_secret_value()
    try:
        async with open_engine(url) as engine:
            try:
                await migrate(engine)
            except (SQLAlchemyError, OSError) as exc:
                raise _Unusable(f"数据库不可用 / database unusable "
                                f"({cfg.service.safe_database_url()}): {exc}") from exc
            yield (CallTranscripts(engine, None, StreamKeys.from_config(cfg.channels).prefix),
                   CallStore(engine))
    except (SQLAlchemyError, OSError) as exc:      # the engine itself (bad URL, no driver)
        raise _Unusable(f"数据库不可用 / database unusable "
                        f"({cfg.service.safe_database_url()}): {exc}") from exc


@asynccontextmanager
async def _open_recognizer(cfg: HotlineConfig
                           ) -> AsyncIterator[LocalRecognizer | RemoteRecognizer]:
    """The recogniser ``asr.yaml`` configures; :class:`_Unusable` names the model path."""
    from asr.local import LocalRecognizer
    from asr.model import ModelMissing, load_model
    from asr.remote import RemoteRecognizer
    from hotline.asr_parts import resolve_model_path

    asr = cfg.asr
    if asr.mode == "remote":
        if not asr.remote.urls:
            raise _Unusable("asr.yaml: mode 为 remote 但 remote.urls 为空 / remote mode needs "
                            "remote.urls (ws://host:2700)")
        async with RemoteRecognizer(asr) as remote:
            yield remote
        return
    try:
        # find_spec and Vosk's ~2 s load read the disk: never on the loop.
        path = await asyncio.to_thread(resolve_model_path, asr.model_path)
        model = await asyncio.to_thread(load_model, path)
    except ModelMissing as exc:
        configured = "" if exc.path == asr.model_path else f" (asr.model_path: {asr.model_path})"
        raise _Unusable(f"{exc}{configured}") from exc
    async with LocalRecognizer(model, asr) as local:
        yield local


class _CallWriter:
    """``on_result`` of :func:`transcribe_files`: stores each file's finals on its call."""

    def __init__(self, transcripts: CallTranscripts, calls: CallStore,
                 call_id: str | None) -> None:
        self._transcripts = transcripts
        self._calls = calls
        self._call_id = call_id
        self.calls: dict[Path, str] = {}        # file -> the call its transcript went to
        self.errors: dict[Path, str] = {}       # file -> why its transcript was not stored

    async def write(self, result: FileTranscript) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        if result.error is not None:
            return
        ref = await self._call_of(result.path)
        if ref is None:
            return
        # One transaction per file, replacing an earlier run's rows (the stream id is the
        # file's name); a database error fails this file, it is not kept in memory and lost.
        try:
            await self._transcripts.replace_stream(ref, f"file:{result.path.name}",
                                                   list(result.segments))
        except (SQLAlchemyError, OSError, RuntimeError) as exc:
            self.errors[result.path] = f"转写未能保存 / not stored: {exc}"
            return
        self.calls[result.path] = ref.linkedid

    async def _call_of(self, path: Path) -> CallRef | None:
        """``--call-id``, or the file name's Uniqueid/Linkedid; ``call_transcripts`` is keyed
        by the Linkedid, so a Uniqueid the call store knows is mapped to its call's."""
        from sqlalchemy.exc import SQLAlchemyError

        from asr.server import CallRef

        call_id = self._call_id
        if call_id is None:
            if not CALL_ID_STEM.match(path.stem):
                return None
            call_id = path.stem
        purpose: Purpose = "recording"
        try:
            record = await self._calls.get(call_id)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("通话记录不可读，按文件名关联 / call store unreadable, using %s: %s",
                        call_id, exc)
            record = None
        if record is None:       # not a queue call's Uniqueid: the id is the Linkedid itself
            return CallRef(call_id, call_id, purpose)
        return CallRef(record.linkedid, record.call_id, purpose)
