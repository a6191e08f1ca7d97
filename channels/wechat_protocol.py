"""WeChat official-account protocol as pure functions: request signatures (constant-time) with a replay window,
safe-mode (AES) decryption, message XML parsed without DTDs or entities, and the rendering of replies for the
customer-service API (buttons as numbered options, texts split at 2048 UTF-8 bytes).

wechatpy does the sha1 of the sorted parts (``WeChatSigner``), the AES-CBC/PKCS#7 envelope with its AppID check
(``PrpCrypto``) and the typed message classes (``parse_message``). Written here: the comparisons (wechatpy uses
``!=``), the timestamp window (wechatpy has none), the refusal of DTDs (the parser stops at the declaration, before
any entity is read), and the WeChat-specific rendering the project needs.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import re
import struct
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy.crypto import PrpCrypto
from wechatpy.events import BaseEvent, ClickEvent
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.messages import TextMessage, VoiceMessage
from wechatpy.parser import parse_message
from wechatpy.utils import WeChatSigner

from service.errors import ServiceError
from taxlib.text import strip_control, to_halfwidth

MAX_TEXT_BYTES = 2048  # a customer-service text message's content
OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BadSignature(ServiceError):
    status_code, code, message = 403, "invalid_signature", "签名校验失败"


class StaleRequest(ServiceError):
    status_code, code, message = 403, "stale_request", "请求时间戳无效或已过期"


class UnsafeXml(ServiceError):
    status_code, code, message = 400, "unsafe_xml", "不接受包含 DTD 或实体声明的 XML"


class BadMessage(ServiceError):
    status_code, code, message = 400, "invalid_message", "消息格式不正确"


class WrongAccount(ServiceError):
    status_code, code, message = 403, "wrong_app_id", "消息不属于本公众号"


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key of a 43-character EncodingAESKey (Base64 without its final '=')."""
    if len(encoding_aes_key) != 43:
        raise ValueError("the EncodingAESKey has 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ValueError("the EncodingAESKey is not Base64") from exc
    if len(key) != 32:
        raise ValueError("the EncodingAESKey does not decode to 32 bytes")
    return key


def sign(*parts: str) -> str:
    """sha1 of the lexicographically sorted parts, concatenated (WeChat's request and msg_signature)."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def signature_ok(expected_parts: tuple[str, ...], signature: str | None) -> bool:
    return bool(signature) and hmac.compare_digest(sign(*expected_parts).encode(), signature.encode())


def check_request(token: str, query: dict[str, str], now: float, max_skew: int) -> None:
    """Every request WeChat makes carries ``signature`` = sign(token, timestamp, nonce); a timestamp further than
    ``max_skew`` seconds from ``now`` is refused as a replay."""
    timestamp, nonce = query.get("timestamp") or "", query.get("nonce") or ""
    if not re.fullmatch(r"\d{1,12}", timestamp):
        raise StaleRequest()
    if not signature_ok((token, timestamp, nonce), query.get("signature")):
        raise BadSignature()
    if abs(now - int(timestamp)) > max_skew:
        raise StaleRequest()


class _DtdRefused(Exception):
    pass


def _refuse_dtd(*_args: Any) -> None:
    raise _DtdRefused()


class _ExpatWithoutDtd:
    """xml.parsers.expat for xmltodict, with parsers that stop at a document type declaration: no DTD is read, so
    no entity is ever declared, let alone expanded (xmltodict's own ``disable_entities`` stays on behind it)."""

    @staticmethod
    def ParserCreate(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 (expat's name)
        parser = expat.ParserCreate(*args, **kwargs)
        parser.StartDoctypeDeclHandler = _refuse_dtd
        parser.EntityDeclHandler = _refuse_dtd
        return parser


def xml_dict(body: bytes) -> dict[str, Any]:
    """The children of the ``<xml>`` root; a DTD, anything not UTF-8, or malformed XML is refused."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage() from exc
    try:
        root = xmltodict.parse(text, expat=_ExpatWithoutDtd)
    except (_DtdRefused, ValueError) as exc:  # ValueError: xmltodict's own entity refusal
        raise UnsafeXml() from exc
    except ExpatError as exc:
        raise BadMessage() from exc
    fields = root.get("xml") if isinstance(root, dict) else None
    if not isinstance(fields, dict):
        raise BadMessage()
    return fields


def decrypt(key: bytes, app_id: str, token: str, query: dict[str, str], encrypted: Any) -> bytes:
    """Safe-mode message: check msg_signature = sign(token, timestamp, nonce, Encrypt), then decrypt (AES-256-CBC,
    IV = the key's first 16 bytes; random(16) ‖ length ‖ XML ‖ AppID) and check the AppID."""
    if not isinstance(encrypted, str) or not encrypted:
        raise BadMessage()
    parts = (token, query.get("timestamp") or "", query.get("nonce") or "", encrypted)
    if not signature_ok(parts, query.get("msg_signature")):
        raise BadSignature()
    try:
        return PrpCrypto(key).decrypt(encrypted, app_id).encode("utf-8")
    except InvalidAppIdException as exc:
        raise WrongAccount() from exc
    except (ValueError, struct.error, UnicodeError, IndexError, TypeError) as exc:
        raise BadMessage() from exc


@dataclass
class Incoming:
    """What the service needs of one pushed message or event."""

    openid: str
    kind: str  # text, voice, image, video, shortvideo, location, link, file, event, …
    message_id: str  # MsgId; events: "<event>-<CreateTime>"
    text: str = ""
    recognition: str | None = None  # voice: WeChat's own speech recognition, when the account has it on
    media_id: str = ""  # voice: the audio, downloadable for three days through the media API
    media_format: str = ""  # voice: amr or speex
    event: str = ""  # subscribe, unsubscribe, click, view, scan, …
    event_key: str = ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadMessage()
    return value


def read_message(body: bytes) -> Incoming:
    """Parse a (decrypted) pushed message into an ``Incoming``, refusing anything malformed."""
    fields = xml_dict(body)  # the DTD refusal and well-formedness, before wechatpy's own parse
    try:
        message = parse_message(body.decode("utf-8"))
        openid = _text(message.source)
        kind = _text(fields.get("MsgType")).lower()
        created = message.time or 0
        if kind == "event":
            event = message.event if isinstance(message, BaseEvent) else _text(fields.get("Event")).lower()
            key = _text(message.key) if isinstance(message, ClickEvent) else ""
            incoming = Incoming(openid, kind, f"{event}-{created}"[:64], event=event, event_key=key)
        else:
            incoming = Incoming(openid, kind, str(message.id) if message.id else f"{kind}-{created}")
            if isinstance(message, TextMessage):
                incoming.text = _text(message.content)
            elif isinstance(message, VoiceMessage):
                incoming.recognition = _text(message.recognition) or None
                incoming.media_id = _text(message.media_id)[:128]
                incoming.media_format = _text(message.format).lower()[:16]
    except (KeyError, AttributeError, TypeError, ValueError) as exc:  # e.g. a MsgId or CreateTime not a number
        raise BadMessage() from exc
    if not OPENID.match(openid) or not kind:
        raise BadMessage()
    return incoming


# ---------------------------------------------------------------------------------------------- outgoing texts


def numbered(buttons: list[dict[str, Any]] | None) -> list[tuple[str, str, str]]:
    """(number, title, payload) for each button. Buttons whose payloads are distinct digits (the satisfaction
    rating: 1 满意 … 0 投诉) keep them as their numbers, so the digit the user sends is the payload itself."""
    items = []
    for button in buttons or []:
        if not isinstance(button, dict):
            continue
        payload = str(button.get("payload") or button.get("title") or "")
        title = str(button.get("title") or payload)
        if payload:
            items.append((title, payload))
    payloads = [payload for _, payload in items]
    digits = all(re.fullmatch(r"\d{1,2}", p) for p in payloads) and len(set(payloads)) == len(payloads)
    return [(payload if digits else str(i), title, payload) for i, (title, payload) in enumerate(items, 1)]


def render(text: str, buttons: list[dict[str, Any]] | None) -> str:
    """A reply as WeChat text: buttons become "回复 1：title" lines, unless they are digits the text already names
    (the rating question says "回复 1 满意，2 一般…" itself)."""
    options = numbered(buttons)
    text = text or ""
    if not options:
        return text
    if all(number == payload and re.search(rf"(?<!\d){number}(?!\d)", text) for number, _, payload in options):
        return text
    lines = "\n".join(f"回复 {number}：{title}" for number, title, _ in options)
    return f"{text}\n\n{lines}" if text else lines


def choice(buttons: list[dict[str, Any]] | None, reply: str) -> str | None:
    """The payload a user's reply picks among ``buttons``: its number, or its exact title."""
    key = to_halfwidth(strip_control(reply)).strip().rstrip("。.！!")
    if not key:
        return None
    for number, title, payload in numbered(buttons):
        if key == number or key == title:
            return payload
    return None


_BREAKS = ("\n", "。！？!?；;", "，,、 ")  # preferred cut points, best first


def split_text(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """Parts of at most ``limit`` UTF-8 bytes, cut after a paragraph, else a sentence, else a clause, and only as a
    last resort anywhere (never inside a character)."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest.encode("utf-8")) > limit:
        size, end = 0, 0
        for end, char in enumerate(rest):  # the longest prefix that fits
            size += len(char.encode("utf-8"))
            if size > limit:
                break
        head = rest[:end]
        cut = 0
        for marks in _BREAKS:
            at = max(head.rfind(mark) for mark in marks)
            if at + 1 >= len(head) // 3:  # not a tiny first part
                cut = at + 1
                break
        cut = cut or max(1, len(head))
        part, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if part:
            parts.append(part)
    if rest:
        parts.append(rest)
    return parts
