"""Normalising citizen text before rules and the learned model see it.

Citizens write full-width digits and letters (１２３４５, ＡＢＣ), mix English words, emoji and
phone numbers into their messages. Rules and the model must treat ``１２路`` and ``12路`` alike,
so both see the text folded by :func:`config.classify.fold` (Unicode NFKC, lower case, one
space for any run of white space; it lives in config because keywords are folded when the config
loads). The model additionally sees every run of digits as a single ``0``
(:func:`model_text`): phone numbers, house numbers and amounts would otherwise become thousands
of one-off features that only add noise.

Features are character n-grams (:func:`char_ngrams`) rather than words: Chinese has no spaces,
and character 1–3-grams catch 停水/燃气/公积金 without a word segmenter, which keeps
classification fast and free of a dictionary to maintain.
"""

from __future__ import annotations

import re

from config.classify import fold

_DIGITS = re.compile(r"\d+")
# A "segment" is a run of letters, digits or CJK characters (``\w`` in Python's Unicode
# regexes). N-grams never cross punctuation, spaces or emoji: "水，电" is not evidence of "水电".
_SEGMENT = re.compile(r"\w+")


def model_text(text: str) -> str:
    """The text as the model sees it: :func:`~config.classify.fold`, then every run of digits
    as ``0``."""
    return _DIGITS.sub("0", fold(text))


def has_content(text: str) -> bool:
    """Whether the text holds at least one letter, digit or CJK character (not only
    punctuation, emoji or white space)."""
    return _SEGMENT.search(text) is not None


def char_ngrams(text: str, n_min: int = 1, n_max: int = 3) -> list[str]:
    """Character n-grams (``n_min`` to ``n_max`` long) of the text's segments.

    The text should already be normalised with :func:`model_text`; this function is the
    analyzer of the training vectoriser *and* of the runtime model, so both agree exactly.
    """
    grams: list[str] = []
    for segment in _SEGMENT.findall(text):
        length = len(segment)
        for n in range(n_min, min(n_max, length) + 1):
            grams.extend(segment[i : i + n] for i in range(length - n + 1))
    return grams
