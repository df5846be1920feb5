"""Language helpers shared by stages: lexical tokens for English and CJK text, and detection."""

from __future__ import annotations

import re

# A CJK ideograph, kana or hangul syllable is one token; other scripts split into words.
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]|[^\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def lexical_tokens(text: str) -> list[str]:
    """Lower-cased words, with each CJK character a token of its own."""
    return [t.lower() for t in _TOKEN.findall(text)]


def is_cjk_token(token: str) -> bool:
    return len(token) == 1 and ord(token) > 0x2E80


def is_chinese(text: str) -> bool:
    """Whether text is mainly Chinese (so replies and notices are given in Chinese)."""
    cjk = len(_CJK.findall(text))
    letters = sum(ch.isalpha() for ch in text)
    return cjk > 0 and cjk >= 0.3 * max(letters, 1)
