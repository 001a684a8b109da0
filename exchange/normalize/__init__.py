"""Input formats turned into STIX 2.1: one module per format family behind one parser contract.

Each module lists its parsers in `FORMATS`; `PARSERS` maps every format name to its parser.
"""

from __future__ import annotations

from . import abusech, ioc_csv, misp, shadowserver, stix_bundle
from .base import Context, Field, Parser, Produced, Record, Reject, Tally, normalize

PARSERS: dict[str, type[Parser]] = {
    parser.name: parser
    for module in (shadowserver, abusech, misp, ioc_csv, stix_bundle)
    for parser in module.FORMATS
}

__all__ = ["PARSERS", "Context", "Field", "Parser", "Produced", "Record", "Reject", "Tally",
           "normalize"]
