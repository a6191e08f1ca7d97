"""Phrase lists for phone menus: what a caller may answer at a prompt. An engine's ``with_grammar(phrases)`` only
answers with one of them (or "" for anything else), which is far more robust on a phone line than free dictation.
The phone channel picks the list for each prompt; these are the common ones."""
from __future__ import annotations

DIGITS = [str(d) for d in range(10)]
YES_NO = ["是", "不是", "对", "不对", "好的", "没有了"]
NAVIGATION = ["转人工", "人工服务", "返回", "重听", "再说一遍", "返回上一级"]
IVR_ANSWERS = YES_NO + NAVIGATION + DIGITS
