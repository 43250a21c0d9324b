"""``asr.text.join_cjk``: Vosk's space-separated Chinese words joined, other spaces kept."""

from __future__ import annotations

import pytest

from asr.text import join_cjk


@pytest.mark.parametrize(("vosk", "expected"), [
    ("我 要 反映 一个 问题", "我要反映一个问题"),
    ("  文新 街道  路灯 坏了 ", "文新街道路灯坏了"),
    ("拨打 12345 热线", "拨打 12345 热线"),            # digits keep their spaces
    ("我 用 wifi 上网", "我用 wifi 上网"),
    ("안녕하세요 도로에 물이", "안녕하세요 도로에 물이"),  # Korean separates words
    ("东京 の 天気", "东京の天気"),                     # kana
    ("你好 ， 谢谢 。", "你好，谢谢。"),                # CJK and fullwidth punctuation
    ("𠀀 字", "𠀀字"),                                  # extension B ideograph
    ("", ""),
])
def test_join_cjk(vosk: str, expected: str) -> None:
    assert join_cjk(vosk) == expected
