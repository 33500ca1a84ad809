"""Money: Decimal with two places, never float.

`to_money` is the one place that turns input into an amount; it refuses floats so a
binary fraction can never enter a balance.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import models

MONEY_PLACES = Decimal("0.01")
MAX_DIGITS = 14


def to_money(value: Decimal | int | str) -> Decimal:
    """Return `value` as a Decimal rounded half-up to 2 places; floats are refused."""
    if isinstance(value, float):
        raise TypeError("money must not be a float; pass a Decimal, int or string")
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{value!r} is not an amount of money") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite amount of money")
    return amount.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)


class MoneyField(models.DecimalField):
    """A DecimalField with the project's fixed precision (12 digits before the point, 2 after)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", MAX_DIGITS)
        kwargs.setdefault("decimal_places", 2)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        return name, "ispcore.core.money.MoneyField", args, kwargs
