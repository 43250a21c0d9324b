"""What a value must look like to be safe in an AMI action field.

AMI is line based: a bare ``\\n`` ends a header and a blank line ends an action, so one CR or LF
in a caller number or a pause reason would let a citizen (or a compromised desk) inject headers
or a whole new action with the service's privileges. These rules live in config, the leaf every
package may import, because two layers apply them: the config schema rejects a bad queue name,
interface or pause reason at load time, and :func:`telephony.actions.check_value` checks every
value again when an action is built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""C0/C1 control characters and the Unicode line/paragraph separators: never in any field."""

# Whitelists, per kind of field. Asterisk channel names look like
# ``Local/talk@citizen-00000000;1`` or ``PJSIP/1001-0000000a``; interfaces like
# ``Local/1001@seats/n`` or ``PJSIP/1001``.
PATTERNS: Final[Mapping[str, re.Pattern[str]]] = {
    "channel": re.compile(r"^[A-Za-z][A-Za-z0-9]{0,15}/[A-Za-z0-9@;._+:#*/-]{1,120}$"),
    "interface": re.compile(r"^[A-Za-z][A-Za-z0-9]{0,15}/[A-Za-z0-9@._+:/-]{1,120}$"),
    "context": re.compile(r"^[A-Za-z0-9_-]{1,79}$"),
    "exten": re.compile(r"^[A-Za-z0-9*#+_-]{1,79}$"),
    "queue": re.compile(r"^[A-Za-z0-9_-]{1,79}$"),
    "number": re.compile(r"^\+?[0-9*#]{1,32}$"),
    "priority": re.compile(r"^[0-9]{1,5}$"),
    "variable": re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"),
    "application": re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$"),
    "digits": re.compile(r"^[0-9]{1,6}$"),
    "bool": re.compile(r"^(true|false)$"),
}
MAX_TEXT: Final = 120
"""Longest free-text value (member names, pause reasons)."""


def unsafe_reason(value: object, kind: str | None = None) -> str | None:
    """Why ``value`` is not safe for an AMI field of ``kind``, or ``None`` when it is.

    ``kind`` names a whitelist in :data:`PATTERNS`; ``None`` means free text (no control
    characters, at most :data:`MAX_TEXT` characters).
    """
    if not isinstance(value, str):
        return "not a string"
    if CONTROL.search(value):
        return "contains a control character (CR, LF, NUL ...)"
    if kind is None:
        return f"longer than {MAX_TEXT} characters" if len(value) > MAX_TEXT else None
    return None if PATTERNS[kind].match(value) else f"not a valid {kind}"
