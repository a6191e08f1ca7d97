"""A verified taxpayer's own records: tax due, payments, refunds (authorised by X-Taxpayer-Grant)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import select

from service.api.deps import SessionDep, TaxpayerDep
from service.api.schemas import ChinaTime, Money, TaxpayerOut
from service.models import Payment, Refund, TaxDue

router = APIRouter(prefix="/me", tags=["records"])

REFUND_LABELS = {
    "submitted": "已提交", "reviewing": "审核中", "approved": "审核通过", "paid": "已退库/已到账",
    "rejected": "未通过", "returned": "已退回(请核对银行卡)",
}


class DueItem(BaseModel):
    tax_type: str
    period: str
    amount: Money
    due_date: date
    status: str


class TaxDueOut(BaseModel):
    taxpayer: TaxpayerOut
    items: list[DueItem]
    total: Money


class PaymentItem(BaseModel):
    tax_type: str
    period: str
    amount: Money
    paid_at: ChinaTime
    channel: str
    voucher_no: str
    status: str


class PaymentsOut(BaseModel):
    taxpayer: TaxpayerOut
    items: list[PaymentItem]


class RefundItem(BaseModel):
    tax_type: str
    period: str
    amount: Money
    applied_at: ChinaTime
    status: str
    status_label: str
    updated_at: ChinaTime
    note: str | None


class RefundsOut(BaseModel):
    taxpayer: TaxpayerOut
    items: list[RefundItem]


@router.get("/tax-due")
def tax_due(taxpayer: TaxpayerDep, session: SessionDep) -> TaxDueOut:
    dues = session.scalars(
        select(TaxDue).where(TaxDue.taxpayer_pk == taxpayer.id, TaxDue.status.in_(("unpaid", "overdue")))
        .order_by(TaxDue.due_date, TaxDue.id)
    ).all()
    items = [DueItem.model_validate(due, from_attributes=True) for due in dues]
    return TaxDueOut(taxpayer=TaxpayerOut.of(taxpayer), items=items, total=sum((i.amount for i in items), start=Decimal(0)))


@router.get("/payments")
def payments(taxpayer: TaxpayerDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=50)] = 5) -> PaymentsOut:
    rows = session.scalars(
        select(Payment).where(Payment.taxpayer_pk == taxpayer.id)
        .order_by(Payment.paid_at.desc(), Payment.id.desc()).limit(limit)
    ).all()
    return PaymentsOut(taxpayer=TaxpayerOut.of(taxpayer),
                       items=[PaymentItem.model_validate(row, from_attributes=True) for row in rows])


@router.get("/refunds")
def refunds(taxpayer: TaxpayerDep, session: SessionDep) -> RefundsOut:
    rows = session.scalars(
        select(Refund).where(Refund.taxpayer_pk == taxpayer.id).order_by(Refund.applied_at.desc(), Refund.id.desc())
    ).all()
    items = [RefundItem(tax_type=r.tax_type, period=r.period, amount=r.amount, applied_at=r.applied_at, status=r.status,
                        status_label=REFUND_LABELS[r.status], updated_at=r.updated_at, note=r.note) for r in rows]
    return RefundsOut(taxpayer=TaxpayerOut.of(taxpayer), items=items)
