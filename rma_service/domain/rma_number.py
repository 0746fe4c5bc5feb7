"""RMA numbers: ``RMA-XXXX-XXXX``, eight Crockford base32 symbols, the last a Luhn mod 32
check symbol over the first seven. Random, so a number reveals nothing about volume."""
from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
N = len(ALPHABET)  # 32
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
# Crockford's reading of ambiguous symbols.
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Separators people paste: ASCII and Unicode hyphens and dashes.
_SEPARATORS = str.maketrans("", "", "-\u2010\u2011\u2012\u2013\u2014\u2212")


def _luhn_sum(codes: list[int], start_factor: int) -> int:
    total, factor = 0, start_factor
    for code in reversed(codes):
        addend = factor * code
        total += addend // N + addend % N
        factor = 1 if factor == 2 else 2
    return total


def check_symbol(body: str) -> str:
    """Luhn mod N check symbol for ``body`` (seven symbols)."""
    total = _luhn_sum([_INDEX[c] for c in body], start_factor=2)
    return ALPHABET[(N - total % N) % N]


def is_valid(code: str) -> bool:
    if len(code) != 8 or any(c not in _INDEX for c in code):
        return False
    return _luhn_sum([_INDEX[c] for c in code], start_factor=1) % N == 0


def generate() -> str:
    """A random canonical code (eight symbols, no prefix). Uniqueness is the database's job:
    the caller retries on a unique-index collision."""
    bits = secrets.randbits(35)  # seven symbols of 5 bits (N = 32), uniform, one read of the OS's random source
    body = "".join(ALPHABET[(bits >> shift) & 31] for shift in range(0, 35, 5))
    return body + check_symbol(body)


def format_number(code: str) -> str:
    return f"RMA-{code[:4]}-{code[4:]}"


def parse(text: str) -> str | None:
    """The canonical code of a number typed by a person or a program, or None.

    Case-insensitive; hyphens, spaces and the ``RMA`` prefix optional; ``O`` reads as ``0``
    and ``I``/``L`` as ``1``. A wrong check symbol gives None, so the caller never needs the
    database to reject a mistyped number.
    """
    if not isinstance(text, str) or len(text) > 40:
        return None
    cleaned = "".join(text.split()).translate(_SEPARATORS).upper()
    if len(cleaned) == 11 and cleaned.startswith("RMA"):
        cleaned = cleaned[3:]
    cleaned = cleaned.translate(_ALIASES)
    return cleaned if is_valid(cleaned) else None
