"""Post-processing of recognised text.

Vosk's Chinese models return one token per word, separated by spaces ("我 要 反映 一个 问题").
Chinese is written without spaces, so spaces between two CJK characters are removed. Spaces
next to Latin letters, digits or Hangul stay: Korean and English separate words with spaces.
"""

from __future__ import annotations

import re

# CJK ideographs (unified + extensions A/B.. + compatibility), kana, CJK punctuation and the
# fullwidth forms. Hangul (U+AC00..) is deliberately absent.
_CJK = (r"\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
        r"\U00020000-\U0003134f")
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")


def join_cjk(text: str) -> str:
    """Remove whitespace that has a CJK character on both sides; trim the ends."""
    return _SPACE_BETWEEN_CJK.sub("", text).strip()
