"""Kubernetes resource quantities in the form the API server stores them (``resource.Quantity``'s canonical string).

Argo CD compares the rendered manifest with the live object; the API server rewrites every quantity
to its canonical form (``cpu: 0.5`` is stored as ``500m``, ``1024Mi`` as ``1Gi``), so a manifest
that says it otherwise stays OutOfSync for ever (argo-cd #17682, #21135). The rules, from
k8s.io/apimachinery ``pkg/api/resource/quantity.go`` (``ParseQuantity``, ``CanonicalizeBytes``):

- the suffix decides the format: none or ``n u m k M G T P E`` is decimal (DecimalSI), ``Ki … Ei``
  is binary (BinarySI); a value below 1 with a binary suffix becomes decimal;
- the value is rounded *up* to a whole number of nano units (``0.0000000001`` → ``1n``);
- decimal: the exponent is the largest multiple of 3 that leaves an integer mantissa
  (``0.5`` → ``500m``, ``1000m`` → ``1``, ``1500m`` → ``1500m``, ``2000`` → ``2k``);
- binary: a value of at least 1024 that is a whole number is divided by 1024 while it stays whole
  (``2048Mi`` → ``2Gi``, ``1.5Gi`` → ``1536Mi``); a smaller or fractional one is written decimal
  (``0.5Ki`` → ``512``, ``1.1Ki`` → ``1126400m``);
- zero is ``0``; a value above 2^63-1 is capped there; a decimal exponent with no SI prefix is written ``eN``.

Exponent notation in the *input* (``1e3``) is not accepted here: :func:`parse_quantity` takes the
suffixes above only, which is what the settings ever say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext

QUANTITY_RE = re.compile(r"^(?P<num>\d+(\.\d+)?|\.\d+)(?P<unit>n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
DECIMAL_EXPONENTS = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
BINARY_POWERS = {"": 0, "Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}  # powers of 1024
_DECIMAL_SUFFIX = {exp: suffix for suffix, exp in DECIMAL_EXPONENTS.items()}
_BINARY_SUFFIX = {power: suffix for suffix, power in BINARY_POWERS.items()}
NANO = Decimal("1e-9")
MAX_QUANTITY = Decimal(2**63 - 1)  # ParseQuantity caps larger values at this (a simple cap, not an error)


@dataclass(frozen=True)
class Quantity:
    """An exact non-negative quantity (``value`` in base units: cores, bytes) and the format its suffix chose."""

    value: Decimal
    binary: bool  # BinarySI (Ki…Ei) rather than DecimalSI

    def canonical(self) -> str:
        """The API server's string for this quantity (``CanonicalizeBytes``)."""
        if self.value == 0:
            return "0"
        if self.binary and self.value >= 1024 and self.value == self.value.to_integral_value():
            mantissa, power = int(self.value), 0
            while mantissa % 1024 == 0 and power < max(_BINARY_SUFFIX):
                mantissa //= 1024
                power += 1
            return f"{mantissa}{_BINARY_SUFFIX[power]}"
        return _canonical_decimal(self.value)


def parse_quantity(text: str) -> Quantity:
    """``text`` (``500m``, ``0.5``, ``1.5Gi``…) as an exact quantity; ValueError when it is not one."""
    match = QUANTITY_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number, unit = Decimal(match["num"]), match["unit"] or ""
    with localcontext() as exact:
        exact.prec = len(match["num"]) + 40  # enough digits for 1024**6 and nano rounding: no silent rounding
        if unit in BINARY_POWERS and unit:
            value = number * (Decimal(1024) ** BINARY_POWERS[unit])
        else:
            value = number.scaleb(DECIMAL_EXPONENTS[unit])
        if value.as_tuple().exponent < -9:
            value = value.quantize(NANO, rounding=ROUND_CEILING)
    value = min(value, MAX_QUANTITY)
    # ParseQuantity: a binary-suffixed value below one is formatted decimal.
    return Quantity(value=value, binary=bool(unit) and unit in BINARY_POWERS and value >= 1)


def canonical_quantity(text: str) -> str:
    """``text`` as the API server stores it: ``0.5`` → ``500m``, ``1024Mi`` → ``1Gi``; ValueError when not a quantity."""
    return parse_quantity(text).canonical()


def _canonical_decimal(value: Decimal) -> str:
    """``AsCanonicalBytes`` + the DecimalSI suffix: the largest multiple-of-3 exponent with an integer mantissa."""
    sign, digits, exponent = value.normalize().as_tuple()
    mantissa = int("".join(map(str, digits)))
    while exponent % 3 != 0:
        mantissa *= 10
        exponent -= 1
    suffix = _DECIMAL_SUFFIX.get(exponent)
    return f"{mantissa}{suffix}" if suffix is not None else f"{mantissa}e{exponent}"
