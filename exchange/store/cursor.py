"""Opaque, stateless `next` tokens for keyset pagination.

date_added is unique within a collection (the store allots it strictly increasing), so it is
the whole keyset key: a page resumes with one index seek, in any process, at any later time.
"""

from __future__ import annotations

import base64
import binascii

from ..errors import Invalid

_PREFIX = "v1:"


def encode(date_added: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{date_added}".encode()).decode().rstrip("=")


def decode(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        digits = raw[len(_PREFIX):]
        if raw.startswith(_PREFIX) and digits.isascii() and digits.isdigit() \
                and len(digits) <= 18:
            return int(digits)  # at most 18 digits: always fits the stores' 64-bit integers
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise Invalid("'next' is not a token this server issued")
