"""Analyst pages (/ui/): server-rendered HTML over the same policy gate as the TAXII API."""
