"""Masking of citizen identifiers before they reach a log line.

One helper for every process: ``mask_text`` for strings, ``MaskingFilter`` for logging handlers.
"""
from __future__ import annotations

import logging
import re

from taxlib.identifiers import ID_NUMBER_PATTERN, PHONE_PATTERN, USCC_PATTERN

# Any long run of digits/letters that could be an identifier we did not recognise
# (a 15-digit old ID, a bank card) is masked too: over-masking a log is cheap.
_LONG_DIGITS = re.compile(r"(?<![0-9A-Za-z])\d{12,19}(?![0-9A-Za-z])")


def mask_identifier(value: str) -> str:
    """'110101198704020880' -> '110***********0880', '13812345678' -> '138****5678'."""
    v = value.strip()
    if len(v) <= 4:
        return "*" * len(v)
    if len(v) == 11 and v.isdigit():
        return f"{v[:3]}****{v[-4:]}"
    return f"{v[:3]}{'*' * (len(v) - 7)}{v[-4:]}"


def mask_text(text: str) -> str:
    """Mask every identifier-looking token in free text."""
    if not text:
        return text
    text = ID_NUMBER_PATTERN.sub(lambda m: mask_identifier(m.group(0)), text)
    text = USCC_PATTERN.sub(lambda m: mask_identifier(m.group(0)), text)
    text = PHONE_PATTERN.sub(lambda m: mask_identifier(re.sub(r"\D", "", m.group(1))), text)
    return _LONG_DIGITS.sub(lambda m: mask_identifier(m.group(0)), text)


_FORMATTER = logging.Formatter()


class MaskingFilter(logging.Filter):
    """Rewrites a record's message with identifiers masked (args are folded in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not lose the record
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:
            # Tracebacks quote values too (SQL parameters, exception messages).
            record.exc_text = mask_text(_FORMATTER.formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


_installed = False


def install_log_masking() -> None:
    """Mask identifiers in every log record this process creates, whatever its handlers.

    Wraps the log-record factory, so it covers loggers and handlers that third-party code
    (Rasa, Sanic, uvicorn) configures after this call. Idempotent.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()
    masking = MaskingFilter()

    def factory(*args, **kwargs):  # type: ignore[no-untyped-def]
        record = previous(*args, **kwargs)
        masking.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
