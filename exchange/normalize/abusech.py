"""abuse.ch feeds: URLhaus, Feodo Tracker, ThreatFox and MalwareBazaar.

One module per feed (`abusech_<feed>.py`) over what they share (`abusech_common.py`); the CSV
and JSON forms of one feed give the very same STIX objects for the same entries.
"""

from __future__ import annotations

from .abusech_bazaar import BazaarCsv
from .abusech_feodo import FeodoCsv, FeodoJson
from .abusech_threatfox import ThreatFoxCsv, ThreatFoxJson
from .abusech_urlhaus import UrlhausCsv, UrlhausJson
from .base import Parser

FORMATS: tuple[type[Parser], ...] = (UrlhausCsv, UrlhausJson, FeodoCsv, FeodoJson,
                                     ThreatFoxCsv, ThreatFoxJson, BazaarCsv)
