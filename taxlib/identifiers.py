"""Chinese identifiers: unified social credit codes, resident ID numbers, mobile phone numbers.

Check digits follow GB 32100-2015 (统一社会信用代码) and GB 11643-1999 (公民身份号码).
"""
from __future__ import annotations

import re
from datetime import date

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

# Candidate patterns: what *looks like* the identifier. Validity is a separate question.
USCC_PATTERN = re.compile(r"(?<![0-9A-Za-z])[0-9A-HJ-NP-RT-UW-Ya-hj-np-rt-uw-y]{2}\d{6}[0-9A-HJ-NP-RT-UW-Ya-hj-np-rt-uw-y]{10}(?![0-9A-Za-z])")
ID_NUMBER_PATTERN = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])")
PHONE_PATTERN = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d[- ]?\d{4}[- ]?\d{4})(?!\d)")


def uscc_check_char(first17: str) -> str:
    """The 18th character of a unified social credit code, computed from the first 17."""
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17.upper(), _USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    code = code.strip().upper()
    if len(code) != 18 or any(c not in USCC_ALPHABET for c in code):
        return False
    if not code[2:8].isdigit():
        return False
    return uscc_check_char(code[:17]) == code[17]


def id_check_char(first17: str) -> str:
    """The 18th character of a resident ID number, computed from the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS))
    return _ID_CHECK[total % 11]


def is_valid_id_number(number: str) -> bool:
    number = number.strip().upper()
    if len(number) != 18 or not number[:17].isdigit() or number[17] not in "0123456789X":
        return False
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return id_check_char(number[:17]) == number[17]


def normalize_phone(text: str) -> str | None:
    """'+86 138-1234-5678' -> '13812345678'; None when it is not a mainland mobile number."""
    digits = re.sub(r"[\s-]", "", text)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits if re.fullmatch(r"1[3-9]\d{9}", digits) else None


def classify_identifier(text: str) -> str | None:
    """'id_number' or 'taxpayer_id' for a valid identifier, None otherwise.

    A resident's taxpayer identification number is their ID number, so a valid 18-digit
    resident ID is an ``id_number``; any other valid unified social credit code is a ``taxpayer_id``.
    """
    value = text.strip().upper()
    if is_valid_id_number(value):
        return "id_number"
    if is_valid_uscc(value):
        return "taxpayer_id"
    return None
