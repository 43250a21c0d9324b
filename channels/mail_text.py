"""Text out of mail bytes: charsets as Chinese mail uses them, RFC 2047 header words, HTML
bodies, and the citizen's mobile number. Pure functions; used by :mod:`channels.mime`.

GB2312 / GBK labels are decoded as GB18030 (a superset; real mail labels GBK text GB2312),
Big5 as Big5-HKSCS. A label Python does not know (``x-unknown``) or bytes that do not fit their
label fall back to UTF-8, then GB18030; each fallback is recorded in the caller's notes.
Nothing here raises on what a sender can put in a mail.
"""

from __future__ import annotations

import base64
import binascii
import re
from html.parser import HTMLParser
from typing import Final

from config.textcheck import strip_control

# ---------------------------------------------------------------------------------- charsets

_AUTO_CHARSETS: Final = frozenset(
    {"", "us-ascii", "ascii", "unknown-8bit", "default"})
_ALIASES: Final = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030",
    "ms936": "gb18030", "gb_2312-80": "gb18030", "csgb2312": "gb18030", "euc-cn": "gb18030",
    "x-euc-cn": "gb18030", "chinese": "gb18030", "gb18030": "gb18030",
    "big5": "big5hkscs", "x-big5": "big5hkscs", "cn-big5": "big5hkscs", "csbig5": "big5hkscs",
    "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
}
_CHARSET_NAME: Final = re.compile(r"^[A-Za-z0-9_.:+-]{1,40}$")


def _auto_decode(data: bytes) -> str:
    """Unlabelled 8-bit text as Chinese mail has it: UTF-8, else GB18030, else whichever of
    the two loses fewer characters (a stray byte must not turn a GBK mail into noise)."""
    for codec in ("utf-8", "gb18030"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    return _lossy_utf8_or_gb(data)


def _lossy_utf8_or_gb(data: bytes) -> str:
    """Bytes valid in neither UTF-8 nor GB18030, decoded with replacement characters in the
    one they resemble: UTF-8 when most of the 8-bit bytes form valid 3- or 4-byte UTF-8
    sequences (Chinese in UTF-8; a corrupted UTF-8 mail), else GB18030 (GBK text with a stray
    byte, e.g. the 0x80 dovecot stores for a NUL). Two-byte sequences do not count: GBK pairs
    often happen to be valid two-byte UTF-8."""
    text = data.decode("utf-8", errors="replace")
    valid = sum(n for n in (len(ch.encode()) for ch in text if ch != "\ufffd") if n >= 3)
    high = sum(1 for byte in data if byte > 0x7F)
    return text if valid * 2 >= high else data.decode("gb18030", errors="replace")


def decode_bytes(data: bytes, charset: str | None, notes: list[str] | None = None) -> str:
    """Decode ``data`` labelled ``charset``; never raises. Fallbacks are appended to ``notes``."""
    label = (charset or "").strip().strip('"').lower()
    if label in _AUTO_CHARSETS:
        if data.isascii():
            return data.decode("ascii")
        return _auto_decode(data)
    codec = _ALIASES.get(label, label)
    if not _CHARSET_NAME.match(codec):
        codec = "?"
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        for other in ("utf-8", "gb18030"):
            if other != codec:
                try:
                    text = data.decode(other)
                except UnicodeDecodeError:
                    continue
                add_note(notes, f"charset_mislabelled:{label}->{other}")
                return text
        add_note(notes, f"charset_decode_errors:{label}")
        if codec == "utf-8":
            return _lossy_utf8_or_gb(data)
        return data.decode(codec, errors="replace")
    except (LookupError, ValueError, TypeError):
        # Unknown name, or a codec that is not bytes -> str (base64, rot13 ...).
        add_note(notes, f"charset_unknown:{label[:40]}")
        if data.isascii():
            return data.decode("ascii")
        return _auto_decode(data)


def add_note(notes: list[str] | None, note: str) -> None:
    if notes is not None and note not in notes:
        notes.append(note)


# ----------------------------------------------------------------------------------- headers

# RFC 2047 encoded word; the charset may carry an RFC 2231 language (=?utf-8*zh?B?...?=).
_ENCODED_WORD: Final = re.compile(r"=\?([^?*\s]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=")
_FOLD: Final = re.compile(r"\r?\n(?=[ \t])")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SPACES: Final = re.compile(r"[ \t]+")


def raw_header_text(value: str) -> str:
    """A header as the byte parser stored it (8-bit bytes as surrogates) -> text, unfolded."""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        value = _auto_decode(value.encode("utf-8", errors="surrogateescape"))
    return _FOLD.sub("", value)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "bB":
            raw = payload.encode("ascii")
            raw += b"=" * (-len(raw) % 4)
            return base64.b64decode(raw, validate=True)
        return binascii.a2b_qp(payload.encode("ascii"), header=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def decode_header_text(value: str, notes: list[str] | None = None) -> str:
    """Decode a header value: raw 8-bit text and RFC 2047 encoded words, on one line.

    Adjacent encoded words in one charset are joined as bytes before decoding, because
    Chinese mailers split a multi-byte character across two words."""
    text = raw_header_text(value)
    out: list[str] = []
    pending: bytearray = bytearray()
    pending_charset: str | None = None
    last_end = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            out.append(decode_bytes(bytes(pending), pending_charset, notes))
        pending, pending_charset = bytearray(), None

    for match in _ENCODED_WORD.finditer(text):
        between = text[last_end:match.start()]
        data = _word_bytes(match.group(2), match.group(3))
        if data is None:        # undecodable word: keep it as written
            continue
        # Whitespace between two encoded words is not part of the text (RFC 2047 §6.2).
        if between and not (between.isspace() and pending_charset is not None):
            flush()
            out.append(between)
        charset = match.group(1).lower()
        if pending_charset is not None and charset != pending_charset:
            flush()
        pending_charset = charset
        pending.extend(data)
        last_end = match.end()
    flush()
    out.append(text[last_end:])
    joined = _CONTROL.sub(" ", "".join(out))
    return _SPACES.sub(" ", joined).strip()


# -------------------------------------------------------------------------------------- body

class _HtmlText(HTMLParser):
    """HTML -> readable text: scripts and styles dropped, block elements on their own lines."""

    _BLOCK: Final = frozenset({
        "p", "div", "br", "li", "tr", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
        "blockquote", "pre", "hr", "section", "article", "header", "footer", "dd", "dt", "dl",
        "address", "center", "form", "fieldset", "figure", "figcaption", "main", "nav"})
    _HIDDEN: Final = frozenset({"script", "style", "head", "title", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCK:
            self.chunks.append("\n")
        elif tag in ("td", "th"):
            self.chunks.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


_BLANK_LINES: Final = re.compile(r"\n{3,}")
_TAG: Final = re.compile(r"<[^>]*>")


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body (entities unescaped, line breaks kept)."""
    parser = _HtmlText()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.chunks)
    except (AssertionError, ValueError, IndexError):
        # html.parser's markup-section code asserts on junk such as "<![bogus": strip tags.
        text = _TAG.sub(" ", markup)
    text = strip_control(text.replace("\xa0", " ").replace("\r", ""))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clean_text(text: str) -> str:
    text = strip_control(text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# ----------------------------------------------------------------------------------- phones

_MOBILE: Final = re.compile(
    r"(?<![\d])(?:\+?86[ -]?)?(1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?![\d])")
_PHONE_CUE: Final = re.compile(r"(?i)电话|手机|联系|tel|phone|mobile")


def find_mobile(text: str) -> str | None:
    """A mainland mobile number the citizen gave: one on a line that says 电话/手机/联系
    first, else the last one (signatures come last)."""
    found: list[tuple[bool, str]] = []
    for line in text.split("\n"):
        cue = bool(_PHONE_CUE.search(line))
        for match in _MOBILE.finditer(line):
            found.append((cue, "".join(match.groups())))
    if not found:
        return None
    cued = [number for cue, number in found if cue]
    return cued[0] if cued else found[-1][1]
