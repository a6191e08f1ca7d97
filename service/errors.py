"""Typed domain exceptions. The HTTP edge (service.app) maps each to a status and a JSON body."""
from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base: ``code`` and ``message`` become {"error", "message"}; ``extra`` adds fields to the body."""

    status_code = 400
    code = "bad_request"
    message = "请求有误"

    def __init__(self, **extra: Any) -> None:
        super().__init__(self.code)
        self.extra = extra


class Unauthorized(ServiceError):
    status_code, code, message = 401, "unauthorized", "未授权的调用"


class InvalidIdentifier(ServiceError):
    status_code, code, message = 422, "invalid_identifier", "纳税人识别号或身份证号码格式不正确"


class InvalidPhone(ServiceError):
    status_code, code, message = 422, "invalid_phone", "手机号码格式不正确"


class NoMatch(ServiceError):
    status_code, code, message = 404, "no_match", "未找到与该证件号码和手机号码匹配的纳税人"


class TooManyRequests(ServiceError):
    status_code, code, message = 429, "too_many_requests", "验证请求过于频繁，请稍后再试"


class SmsDeliveryFailed(ServiceError):
    status_code, code, message = 502, "sms_failed", "短信发送失败，请稍后再试"


class VerificationNotFound(ServiceError):
    status_code, code, message = 404, "not_found", "验证请求不存在"


class WrongCode(ServiceError):
    status_code, code, message = 400, "wrong_code", "验证码不正确"


class CodeExpired(ServiceError):
    status_code, code, message = 410, "expired", "验证码已过期，请重新获取"


class VerificationLocked(ServiceError):
    status_code, code, message = 429, "locked", "验证码错误次数过多，请重新获取"


class AlreadyUsed(ServiceError):
    status_code, code, message = 409, "already_used", "该验证码已使用"


class GrantInvalid(ServiceError):
    status_code, code, message = 401, "grant_invalid", "身份验证已失效，请重新验证"


class RecordsImportError(Exception):
    """A CSV import refused as a whole; ``errors`` holds one Chinese line per bad row."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class KnowledgeUnavailable(ServiceError):
    status_code, code, message = 503, "kb_unavailable", "知识库暂时不可用"


class EntryNotFound(ServiceError):
    status_code, code, message = 404, "entry_not_found", "知识条目不存在"
