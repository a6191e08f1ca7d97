"""Character error rate, the measure for Chinese recognition (there are no spaces to count words by)."""
from __future__ import annotations

import re
import unicodedata

# Punctuation and spaces do not count: callers do not speak them and engines differ in placing them.
_IGNORED = re.compile(r"[\s\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65!-/:-@\[-`{-~·—…“”‘’]")


def comparable(text: str) -> str:
    return _IGNORED.sub("", unicodedata.normalize("NFKC", text)).upper()


def edit_distance(reference: str, hypothesis: str) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, ref_char in enumerate(reference, 1):
        current = [i]
        for j, hyp_char in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_char != hyp_char)))
        previous = current
    return previous[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Edits (substitutions, insertions, deletions) per reference character, punctuation ignored."""
    ref, hyp = comparable(reference), comparable(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
