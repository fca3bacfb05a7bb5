"""How the console shows amounts and moments: per the current display's locale (Babel's
currency patterns, ``¥1,234.56`` in zh-CN, ``CN¥1,234.56`` in English) and in the lender's
time zone with the offset shown (``2026-03-02 17:30:00 +08:00``). Amounts go through
``Decimal`` built from integer minor units, never a float.
"""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final

from babel.numbers import format_currency, format_decimal

from gateway.console.i18n import Display, current
from schemas.base import decimal_text

NONE: Final = "\u2013"  # an en dash stands for "no value"


def money(
    amount_minor: int | None, currency: str | None = None, *, at: Display | None = None
) -> str:
    """12345, CNY → ``¥123.45`` (zh-CN) / ``CN¥123.45`` (en); no currency → grouped number."""
    if amount_minor is None:
        return NONE
    locale = (at or current()).locale
    if not currency:
        return str(format_decimal(Decimal(amount_minor) / 100, format="#,##0.00", locale=locale))
    amount = Decimal(decimal_text(amount_minor, currency))
    return str(format_currency(amount, currency, locale=locale))


def offset(moment: datetime) -> str:
    """``+08:00`` for a moment in Shanghai."""
    delta = moment.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def timestamp(value: datetime | date | None, *, at: Display | None = None) -> str:
    """A moment in the lender's zone with its offset; a naive moment is taken as UTC; a bare
    date stays as it is (dates are calendar days, not moments)."""
    if value is None:
        return NONE
    if not isinstance(value, datetime):
        return value.isoformat()
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    local = aware.astimezone((at or current()).zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {offset(local)}"


def zone_label(at: Display | None = None) -> str:
    """``Asia/Shanghai (UTC+08:00)``: the zone the page's times are in."""
    display = at or current()
    now = datetime.now(UTC).astimezone(display.zone)
    return f"{display.zone.key} (UTC{offset(now)})"


__all__ = ["NONE", "money", "offset", "timestamp", "zone_label"]
