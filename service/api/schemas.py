"""Response pieces shared by several routers."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, PlainSerializer
from sqlalchemy.orm import Session

from service.errors import InvalidPhone
from service.models import CHINA_TZ, Taxpayer, Ticket, reference, utcnow
from taxlib.identifiers import normalize_phone
from taxlib.privacy import mask_identifier

Money = Annotated[Decimal, PlainSerializer(lambda value: f"{value:.2f}", return_type=str)]
ChinaTime = Annotated[datetime, PlainSerializer(lambda value: value.astimezone(CHINA_TZ).isoformat(), return_type=str)]


class TaxpayerOut(BaseModel):
    name: str
    kind: str
    category: str
    masked_identifier: str

    @classmethod
    def of(cls, taxpayer: Taxpayer) -> TaxpayerOut:
        return cls(name=taxpayer.name, kind=taxpayer.kind, category=taxpayer.category,
                   masked_identifier=mask_identifier(taxpayer.identifier))


def contact_phone(value: str | None) -> str | None:
    """A contact phone is optional, but when given it must be a mainland mobile number."""
    if value is None or not value.strip():
        return None
    phone = normalize_phone(value)
    if phone is None:
        raise InvalidPhone
    return phone


def save_with_reference(session: Session, row: Ticket, prefix: str) -> None:
    """Insert ``row`` and give it its reference, which needs the row id: one transaction."""
    row.created_at = utcnow()
    session.add(row)
    session.flush()
    row.reference = reference(prefix, row.created_at, row.id)
    session.commit()
