"""Input formats turned into STIX 2.1: one module per format behind one parser contract."""

from __future__ import annotations

from .base import Context, Field, Parser, Produced, Record, Reject, Tally, normalize
from .shadowserver import Event4Sinkhole
from .stix_bundle import StixBundle

PARSERS: dict[str, type[Parser]] = {p.name: p for p in (Event4Sinkhole, StixBundle)}

__all__ = ["PARSERS", "Context", "Field", "Parser", "Produced", "Record", "Reject", "Tally",
           "normalize"]
