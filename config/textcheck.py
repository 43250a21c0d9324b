"""Unsafe characters in citizens' and staff's text: the one definition every channel and
staff API uses.

Unsafe are:

* C0 controls except tab, line feed and carriage return; DEL; the C1 controls. A mail body, a
  form or an API client can carry them; they mean nothing to a reader, and PostgreSQL refuses
  NUL in text and JSONB.
* Lone surrogates (U+D800–U+DFFF). JSON ``"\\ud800"`` decodes to one, and aiohttp turns bytes
  that are not UTF-8 into them; they cannot be encoded as UTF-8, so asyncpg, Redis payloads
  and even the JSON error answer that echoes them fail.
* Bidirectional controls (embeddings, overrides, isolates and marks: U+202A–U+202E,
  U+2066–U+2069, U+200E, U+200F, U+061C). U+202E in ``invoice\\u202Efdp.exe`` shows as
  ``invoiceexe.pdf``: a file name or an order note must read the way it is stored.

Bodies are cleaned (:func:`strip_control`); single API fields are refused
(:func:`has_control`). "Control" is meant broadly: Unicode lists the bidirectional marks as
format controls (``Bidi_Control``).

It lives in ``config/`` (a leaf) so that every slice may use it: telephony's seat actions check
their fields with it, and telephony may not import ``channels`` (an import-linter contract).
"""

from __future__ import annotations

import re
from typing import Final

UNSAFE_SCALARS: Final = (r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f"
                         r"\u202a-\u202e\u2066-\u2069")
"""The unsafe characters but the lone surrogates, as the inside of a regex character class."""
UNSAFE: Final = re.compile(f"[{UNSAFE_SCALARS}\\ud800-\\udfff]")

# The same rule as JSON Schema patterns (the OpenAPI document). Lone surrogates are left out:
# a JSON Schema string is made of Unicode scalar values, which they are not (and schemathesis
# ignores a pattern that names them).
SAFE_TEXT_PATTERN: Final = f"^[^{UNSAFE_SCALARS}]*$"
"""JSON Schema ``pattern``: no unsafe character."""
FILLED_TEXT_PATTERN: Final = f"^[^{UNSAFE_SCALARS}]*[^\\s{UNSAFE_SCALARS}][^{UNSAFE_SCALARS}]*$"
"""JSON Schema ``pattern``: no unsafe character, and something besides white space."""


def strip_control(text: str) -> str:
    """``text`` without unsafe characters (tab and line breaks kept)."""
    return UNSAFE.sub("", text)


def has_control(text: str) -> bool:
    """Does ``text`` hold an unsafe character?"""
    return UNSAFE.search(text) is not None
