"""Text normalisation for what users type or ASR hears: full-width forms, spoken digits."""
from __future__ import annotations

import re
import unicodedata

_SPOKEN_DIGITS = str.maketrans("零〇一二三四五六七八九幺两", "0012345678912")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")


def to_halfwidth(text: str) -> str:
    """'１３８ＡＢ' -> '138AB' (NFKC also folds other compatibility forms)."""
    return unicodedata.normalize("NFKC", text)


def strip_control(text: str) -> str:
    """Remove control and invisible formatting characters; keep newlines and tabs."""
    return _CONTROL.sub("", text)


def digits_only(text: str) -> str:
    """The digits of a spoken or typed number: '幺三八 1234-5678' -> '13812345678'.

    Chinese digit words are read one by one (as people read phone numbers and codes),
    not as quantities: '一二三' is '123', never 'one hundred and twenty-three'.
    """
    return re.sub(r"\D", "", to_halfwidth(text).translate(_SPOKEN_DIGITS))


def compact_identifier(text: str) -> str:
    """An identifier typed with spaces, dashes or full-width letters, upper-cased: '9111 0101-78cc' -> '9111010178CC'."""
    cleaned = to_halfwidth(text).upper()
    return re.sub(r"[^0-9A-Z]", "", cleaned.translate(_SPOKEN_DIGITS))
