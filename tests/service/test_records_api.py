"""A verified taxpayer's own records, read with the grant from identity verification."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.service.service_support import LINA, YUNFAN, ZHANG
from service.api.records import REFUND_LABELS
from service.models import CHINA_TZ, REFUND_STATUSES, Grant, Payment, Refund, TaxDue, Taxpayer, utcnow

GrantFor = Callable[[dict[str, str]], dict[str, str]]
ZHANG_OUT = {"name": "张伟", "kind": "individual", "category": "normal", "masked_identifier": "110***********0880"}


def test_tax_due_lists_unpaid_and_overdue_with_total(client: TestClient, grant_for: GrantFor) -> None:
    body = client.get("/api/v1/me/tax-due", headers=grant_for(ZHANG)).json()
    assert body == {"taxpayer": ZHANG_OUT, "total": "1280.00", "items": [
        {"tax_type": "个人所得税", "period": "2025年", "amount": "1280.00", "due_date": "2026-06-30", "status": "unpaid"}]}
    body = client.get("/api/v1/me/tax-due", headers=grant_for(YUNFAN)).json()
    assert body["taxpayer"]["category"] == "VIP"
    assert [(i["tax_type"], i["period"], i["amount"], i["status"]) for i in body["items"]] == [
        ("企业所得税", "2026年第三季度", "12000.00", "overdue"), ("增值税", "2026年10月", "36500.00", "unpaid")]
    assert body["total"] == "48500.00"


def test_paid_dues_are_left_out(client: TestClient, grant_for: GrantFor, db: Session) -> None:
    zhang = db.scalar(select(Taxpayer).filter_by(id_number=ZHANG["identifier"]))
    db.add(TaxDue(taxpayer_pk=zhang.id, tax_type="个人所得税", period="2024年", amount=Decimal("99.50"),
                  due_date=date(2025, 6, 30), status="paid"))
    db.commit()
    body = client.get("/api/v1/me/tax-due", headers=grant_for(ZHANG)).json()
    assert [i["period"] for i in body["items"]] == ["2025年"] and body["total"] == "1280.00"


def test_taxpayer_without_records(client: TestClient, grant_for: GrantFor) -> None:
    headers = grant_for(LINA)
    assert client.get("/api/v1/me/tax-due", headers=headers).json()["items"] == []
    assert client.get("/api/v1/me/tax-due", headers=headers).json()["total"] == "0.00"
    assert client.get("/api/v1/me/payments", headers=headers).json()["items"] == []
    assert client.get("/api/v1/me/refunds", headers=headers).json() == {
        "taxpayer": {"name": "李娜", "kind": "individual", "category": "normal", "masked_identifier": "310***********0600"},
        "items": []}


def test_payments_newest_first_with_limit(client: TestClient, grant_for: GrantFor, db: Session) -> None:
    headers = grant_for(YUNFAN)
    items = client.get("/api/v1/me/payments", headers=headers).json()["items"]
    assert [i["status"] for i in items] == ["processing", "success", "success"]
    assert items[0] == {"tax_type": "印花税", "period": "2026年第三季度", "amount": "1210.40",
                        "paid_at": "2026-11-20T11:38:03+08:00", "channel": "电子税务局",
                        "voucher_no": items[0]["voucher_no"], "status": "processing"}
    paid = [datetime.fromisoformat(i["paid_at"]) for i in items]
    assert paid == sorted(paid, reverse=True)
    yunfan = db.scalar(select(Taxpayer).filter_by(taxpayer_id=YUNFAN["identifier"]))
    db.add_all(Payment(taxpayer_pk=yunfan.id, tax_type="印花税", period=f"2025年{m}月", amount=Decimal("10.00"),
                       paid_at=datetime(2025, m, 10, 9, tzinfo=CHINA_TZ), channel="电子税务局", voucher_no=f"V2025{m:02d}",
                       status="failed") for m in range(1, 10))
    db.commit()
    assert len(client.get("/api/v1/me/payments", headers=headers).json()["items"]) == 5  # default limit
    assert len(client.get("/api/v1/me/payments?limit=1", headers=headers).json()["items"]) == 1
    assert len(client.get("/api/v1/me/payments?limit=50", headers=headers).json()["items"]) == 12
    for limit in ("0", "51", "many"):
        response = client.get(f"/api/v1/me/payments?limit={limit}", headers=headers)
        assert response.status_code == 422 and response.json()["error"] == "invalid_request"


def test_refunds_newest_first_with_chinese_labels(client: TestClient, grant_for: GrantFor, db: Session) -> None:
    body = client.get("/api/v1/me/refunds", headers=grant_for(ZHANG)).json()
    assert body["items"] == [{"tax_type": "个人所得税", "period": "2025年", "amount": "860.00",
                              "applied_at": "2026-03-21T09:15:32+08:00", "status": "reviewing", "status_label": "审核中",
                              "updated_at": "2026-03-24T14:02:10+08:00", "note": "综合所得年度汇算退税，税务机关审核中"}]
    lina = db.scalar(select(Taxpayer).filter_by(id_number=LINA["identifier"]))
    start = datetime(2026, 1, 1, tzinfo=CHINA_TZ)
    db.add_all(Refund(taxpayer_pk=lina.id, tax_type="个人所得税", period=f"{2019 + n}年", amount=Decimal("1.00"),
                      applied_at=start + timedelta(days=n), updated_at=start + timedelta(days=n), status=status)
               for n, status in enumerate(REFUND_STATUSES))
    db.commit()
    items = client.get("/api/v1/me/refunds", headers=grant_for(LINA)).json()["items"]
    assert [(i["status"], i["status_label"]) for i in items] == [
        ("returned", "已退回(请核对银行卡)"), ("rejected", "未通过"), ("paid", "已退库/已到账"),
        ("approved", "审核通过"), ("reviewing", "审核中"), ("submitted", "已提交")]
    assert set(REFUND_LABELS) == set(REFUND_STATUSES)


def test_grant_reads_only_its_own_taxpayer(client: TestClient, grant_for: GrantFor) -> None:
    zhang, yunfan = grant_for(ZHANG), grant_for(YUNFAN)
    assert client.get("/api/v1/me/refunds", headers=zhang).json()["taxpayer"]["name"] == "张伟"
    refunds = client.get("/api/v1/me/refunds", headers=yunfan).json()
    assert refunds["taxpayer"]["name"] == "北京云帆科技有限公司"
    assert [(i["status"], i["status_label"]) for i in refunds["items"]] == [("paid", "已退库/已到账")]


@pytest.mark.parametrize("path", ["/api/v1/me/tax-due", "/api/v1/me/payments", "/api/v1/me/refunds"])
def test_missing_unknown_or_expired_grant(client: TestClient, grant_for: GrantFor, db: Session, path: str) -> None:
    headers = grant_for(ZHANG)
    for bad in ({}, {"X-Taxpayer-Grant": ""}, {"X-Taxpayer-Grant": "not-a-grant"}):
        response = client.get(path, headers=bad)
        assert response.status_code == 401
        assert response.json() == {"error": "grant_invalid", "message": response.json()["message"]}
    assert client.get(path, headers=headers).status_code == 200
    token_hash = hashlib.sha256(headers["X-Taxpayer-Grant"].encode()).hexdigest()
    db.execute(update(Grant).where(Grant.token_hash == token_hash).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert client.get(path, headers=headers).json()["error"] == "grant_invalid"
