"""misp input formats."""

from __future__ import annotations

from .base import Parser

FORMATS: tuple[type[Parser], ...] = ()
