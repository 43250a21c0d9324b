"""Control characters in citizens' and staff's text.

C0 controls except tab, newline and carriage return, and DEL: a mail body, a form or an API
client can carry them; they mean nothing to a reader, and PostgreSQL refuses NUL in text and
JSONB. Bodies are cleaned (:func:`strip_control`); single API fields are refused
(:func:`has_control`).
"""

from __future__ import annotations

import re
from typing import Final

CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def strip_control(text: str) -> str:
    """``text`` without control characters (tab, newlines kept)."""
    return CONTROL.sub("", text)


def has_control(text: str) -> bool:
    """Does ``text`` hold a control character?"""
    return CONTROL.search(text) is not None
