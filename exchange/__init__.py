"""taxii-exchange: a STIX 2.1 / TAXII 2.1 threat-exchange server."""

__version__ = "0.1.0"
