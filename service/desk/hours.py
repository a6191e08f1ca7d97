"""Business hours: ``always``, or weekday ranges with time ranges, China time, e.g.
``mon-fri 09:00-12:00,13:30-17:00; sat 09:00-12:00``; plus closed dates (holidays)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time

from service.models import CHINA_TZ

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class BusinessHours:
    spans: tuple[tuple[int, time, time], ...] | None  # (weekday, start, end); None: always open
    closed_dates: frozenset[date] = frozenset()

    @classmethod
    def parse(cls, text: str, holidays: str = "") -> BusinessHours:
        closed = frozenset(date.fromisoformat(d.strip()) for d in holidays.split(",") if d.strip())
        text = text.strip().lower()
        if text in ("", "always", "24x7"):
            return cls(None, closed)
        spans: list[tuple[int, time, time]] = []
        for part in filter(None, (p.strip() for p in text.split(";"))):
            days_text, _, ranges_text = part.partition(" ")
            first, _, last = days_text.partition("-")
            if first not in DAYS or (last and last not in DAYS) or not ranges_text.strip():
                raise ValueError(f"cannot read business hours {part!r}: expected e.g. 'mon-fri 09:00-17:00'")
            days = range(DAYS.index(first), DAYS.index(last or first) + 1)
            for span in ranges_text.replace(" ", "").split(","):
                match = _RANGE.match(span)
                if not match:
                    raise ValueError(f"cannot read time range {span!r}: expected e.g. 09:00-17:00")
                h1, m1, h2, m2 = map(int, match.groups())
                start = time(h1, m1)
                end = time(23, 59, 59, 999999) if (h2, m2) == (24, 0) else time(h2, m2)
                if end <= start:
                    raise ValueError(f"time range {span!r} ends before it starts")
                spans.extend((day, start, end) for day in days)
        return cls(tuple(spans), closed)

    def is_open(self, moment: datetime) -> bool:
        local = moment.astimezone(CHINA_TZ)
        if local.date() in self.closed_dates:
            return False
        if self.spans is None:
            return True
        now = local.time()
        return any(day == local.weekday() and start <= now < end for day, start, end in self.spans)
