"""Identity verification: start (SMS code), confirm (grant), and every refusal, on bodies and rows."""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tests.service.service_support import LINA, TOKEN, YUNFAN, ZHANG, CapturingSms
from service.api.deps import get_sms_sender
from service.errors import SmsDeliveryFailed
from service.models import Grant, Taxpayer, Verification, VerificationStart, utcnow

START = "/api/v1/identity/verifications"
Start = Callable[..., Any]


def confirm(client: TestClient, verification_id: str, code: str) -> Any:
    return client.post(f"{START}/{verification_id}/confirm", json={"code": code})


def count(db: Session, model: type) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model))


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_start_sends_a_code_and_stores_only_its_hmac(start: Start, sms: CapturingSms, db: Session) -> None:
    response = start(ZHANG, conversation_id="conv-42", channel="wechat")
    assert response.status_code == 201
    body = response.json()
    assert body == {"verification_id": body["verification_id"], "masked_phone": "138****4333", "expires_in": 300}
    [(phone, text)] = sms.sent
    assert phone == "13817414333"
    assert re.fullmatch(r"【12366纳税服务】您的验证码为\d{6}，5分钟内有效，请勿泄露给他人。", text)
    row = db.get(Verification, body["verification_id"])
    assert row is not None and re.fullmatch(r"[0-9a-f-]{36}", row.id)
    assert row.taxpayer_pk == db.scalar(select(Taxpayer.id).filter_by(id_number=ZHANG["identifier"]))
    assert re.fullmatch(r"[0-9a-f]{64}", row.code_hash) and sms.last_code not in row.code_hash
    assert hashlib.sha256(sms.last_code.encode()).hexdigest() != row.code_hash  # keyed, not a bare hash
    assert (row.attempts, row.confirmed_at, row.conversation_id, row.channel) == (0, None, "conv-42", "wechat")
    assert timedelta(seconds=295) < row.expires_at - utcnow() <= timedelta(seconds=300)


def test_start_accepts_uscc_and_loose_formatting(start: Start, sms: CapturingSms) -> None:
    assert start(YUNFAN).status_code == 201
    assert start({"identifier": " 9111010178cccc3fld ", "phone": "+86 139-2544-9920"}).status_code == 201
    assert [phone for phone, _ in sms.sent] == ["13925449920", "13925449920"]


@pytest.mark.parametrize(("who", "error"), [
    ({"identifier": "110101198704020881", "phone": ZHANG["phone"]}, "invalid_identifier"),  # bad check digit
    ({"identifier": "9111010178CCCC3FLA", "phone": YUNFAN["phone"]}, "invalid_identifier"),
    ({"identifier": "12345", "phone": ZHANG["phone"]}, "invalid_identifier"),
    ({"identifier": ZHANG["identifier"], "phone": "1381741433"}, "invalid_phone"),
    ({"identifier": ZHANG["identifier"], "phone": "02112345678"}, "invalid_phone"),
])
def test_start_rejects_malformed_input(start: Start, sms: CapturingSms, db: Session, who: dict[str, str], error: str) -> None:
    response = start(who)
    assert response.status_code == 422
    assert response.json()["error"] == error and response.json()["message"]
    assert sms.sent == [] and count(db, Verification) == 0 and count(db, VerificationStart) == 0


def test_no_match_gives_one_answer_whichever_part_is_wrong(start: Start, sms: CapturingSms, db: Session) -> None:
    wrong_phone = start({"identifier": ZHANG["identifier"], "phone": LINA["phone"]})
    unknown_identifier = start({"identifier": "110101199003070011", "phone": ZHANG["phone"]})
    assert wrong_phone.status_code == unknown_identifier.status_code == 404
    assert wrong_phone.json() == unknown_identifier.json() == {"error": "no_match", "message": wrong_phone.json()["message"]}
    assert sms.sent == [] and count(db, Verification) == 0


def test_rate_limit_counts_every_start_per_identifier(client: TestClient, start: Start, sms: CapturingSms, db: Session) -> None:
    for _ in range(3):
        assert start(ZHANG).status_code == 201
    for _ in range(2):  # failed matches count too: no free phone guessing
        assert start({"identifier": ZHANG["identifier"], "phone": LINA["phone"]}).status_code == 404
    limited = start(ZHANG)
    assert limited.status_code == 429 and limited.json()["error"] == "too_many_requests"
    assert len(sms.sent) == 3 and count(db, Verification) == 3
    assert start(LINA).status_code == 201  # another identifier is not affected
    db.execute(update(VerificationStart).values(created_at=utcnow() - timedelta(minutes=11)))
    db.commit()
    assert start(ZHANG).status_code == 201  # the window has moved on
    assert count(db, VerificationStart) == 1  # and the old starts are pruned


def test_rate_limit_is_configurable(make_client: Callable[..., TestClient]) -> None:
    client = make_client(verification_rate_limit=1)
    body = {**YUNFAN, "conversation_id": "c", "channel": "web"}
    assert client.post(START, json=body).status_code == 201
    assert client.post(START, json=body).json()["error"] == "too_many_requests"


def test_sms_failure_leaves_nothing_to_confirm(client: TestClient, start: Start, db: Session) -> None:
    class BrokenSms:
        async def send(self, phone: str, text: str) -> None:
            raise SmsDeliveryFailed

    client.app.dependency_overrides[get_sms_sender] = BrokenSms  # type: ignore[attr-defined]
    response = start(ZHANG)
    assert response.status_code == 502
    assert response.json() == {"error": "sms_failed", "message": response.json()["message"]}
    assert count(db, Verification) == 0


def test_confirm_returns_a_grant_stored_as_sha256(client: TestClient, start: Start, sms: CapturingSms, db: Session) -> None:
    verification_id = start(YUNFAN).json()["verification_id"]
    response = confirm(client, verification_id, sms.last_code)
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 1800 and len(body["grant"]) >= 40
    assert body["taxpayer"] == {"name": "北京云帆科技有限公司", "kind": "enterprise", "category": "VIP",
                                "masked_identifier": "911***********3FLD"}
    grant = db.scalar(select(Grant))
    assert grant is not None and grant.token_hash == hashlib.sha256(body["grant"].encode()).hexdigest()
    assert grant.taxpayer.name == "北京云帆科技有限公司"
    assert timedelta(seconds=1795) < grant.expires_at - utcnow() <= timedelta(seconds=1800)
    assert db.get(Verification, verification_id).confirmed_at is not None


def test_confirmed_verification_cannot_be_used_twice(client: TestClient, start: Start, sms: CapturingSms, db: Session) -> None:
    verification_id = start(ZHANG).json()["verification_id"]
    assert confirm(client, verification_id, sms.last_code).status_code == 200
    again = confirm(client, verification_id, sms.last_code)
    assert again.status_code == 409 and again.json()["error"] == "already_used"
    assert count(db, Grant) == 1


def test_wrong_codes_count_down_then_lock(client: TestClient, start: Start, sms: CapturingSms, db: Session) -> None:
    verification_id = start(ZHANG).json()["verification_id"]
    code = sms.last_code
    for left in (4, 3, 2, 1):
        response = confirm(client, verification_id, wrong(code))
        assert response.status_code == 400
        assert response.json() == {"error": "wrong_code", "message": response.json()["message"], "attempts_left": left}
    fifth = confirm(client, verification_id, wrong(code))
    assert fifth.status_code == 429 and fifth.json()["error"] == "locked"
    right = confirm(client, verification_id, code)  # too late, even with the right code
    assert right.status_code == 429 and right.json()["error"] == "locked"
    db.expire_all()
    row = db.get(Verification, verification_id)
    assert (row.attempts, row.confirmed_at) == (5, None) and count(db, Grant) == 0


def test_max_attempts_is_configurable(make_client: Callable[..., TestClient], sms: CapturingSms) -> None:
    client = make_client(otp_max_attempts=2)
    verification_id = client.post(START, json={**LINA, "conversation_id": "c", "channel": "web"}).json()["verification_id"]
    assert confirm(client, verification_id, wrong(sms.last_code)).json()["attempts_left"] == 1
    assert confirm(client, verification_id, wrong(sms.last_code)).json()["error"] == "locked"


def test_expired_code_is_refused(client: TestClient, start: Start, sms: CapturingSms, db: Session) -> None:
    verification_id = start(ZHANG).json()["verification_id"]
    db.execute(update(Verification).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    response = confirm(client, verification_id, sms.last_code)
    assert response.status_code == 410 and response.json()["error"] == "expired"
    assert count(db, Grant) == 0


def test_unknown_verification(client: TestClient) -> None:
    response = confirm(client, "00000000-0000-4000-8000-000000000000", "123456")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.parametrize("code", ["12345", "abcdef", "1234567"])
def test_code_must_be_six_digits(client: TestClient, start: Start, db: Session, code: str) -> None:
    verification_id = start(ZHANG).json()["verification_id"]
    response = confirm(client, verification_id, code)
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"
    assert db.get(Verification, verification_id).attempts == 0


def test_fixed_code_for_conversation_tests(make_client: Callable[..., TestClient], sms: CapturingSms,
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        client = make_client(otp_fixed_code="246810")
    assert "otp_fixed_code_in_use" in caplog.text
    verification_id = client.post(START, json={**ZHANG, "conversation_id": "c", "channel": "web"}).json()["verification_id"]
    assert sms.last_code == "246810"
    assert confirm(client, verification_id, "246810").status_code == 200


PROTECTED = [
    ("POST", START), ("POST", f"{START}/x/confirm"), ("GET", "/api/v1/me/tax-due"), ("GET", "/api/v1/me/payments"),
    ("GET", "/api/v1/me/refunds"), ("POST", "/api/v1/tickets"), ("GET", "/api/v1/tickets?conversation_id=c"),
    ("POST", "/api/v1/handoffs"), ("GET", "/api/v1/handoffs?conversation_id=c"),
]
BAD_AUTH: list[dict[str, Any]] = [
    {}, {"Authorization": "Bearer wrong-token-000000000"}, {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN}, {"Authorization": "Bearer 令牌".encode()},
]


def test_api_requires_the_service_token(client: TestClient, db: Session) -> None:
    client.headers.pop("Authorization")
    for method, path in PROTECTED:
        for headers in BAD_AUTH:
            response = client.request(method, path, json={**ZHANG, "conversation_id": "c", "channel": "web"},
                                      headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json() == {"error": "unauthorized", "message": response.json()["message"]}
    assert count(db, VerificationStart) == 0


def test_logs_mask_identifiers(client: TestClient, start: Start, sms: CapturingSms, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        verification_id = start(ZHANG).json()["verification_id"]
        confirm(client, verification_id, wrong(sms.last_code))
        confirm(client, verification_id, sms.last_code)
        start({"identifier": ZHANG["identifier"], "phone": LINA["phone"]})  # no_match
        for _ in range(6):
            start(YUNFAN)  # one past the rate limit
    demo = [r for r in caplog.records if r.getMessage().startswith("demo SMS to")]
    assert demo and all(r.levelno == logging.WARNING for r in demo)
    assert demo[0].getMessage() == f"demo SMS to 138****4333: {sms.sent[0][1]}"
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (ZHANG["identifier"], ZHANG["phone"], LINA["phone"], YUNFAN["identifier"], YUNFAN["phone"]):
        assert secret not in text
    assert "identity.rate_limited identifier=911***********3FLD" in text
