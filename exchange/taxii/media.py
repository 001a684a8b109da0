"""Content negotiation (TAXII 2.1 section 1.6.8 and 3.1).

Media types are compared on type, subtype and the `version` parameter only; other parameters
(`charset=utf-8`) and the spaces clients put around `;` are accepted.
"""

from __future__ import annotations

from ..errors import NotAcceptable, UnsupportedMediaType

TAXII_21 = "application/taxii+json;version=2.1"
TAXII_TYPE = "application/taxii+json"


def _parse(media_range: str) -> tuple[str, dict[str, str]]:
    kind, *params = media_range.split(";")
    parsed = {}
    for param in params:
        name, _, value = param.partition("=")
        parsed[name.strip().lower()] = value.strip().strip('"')
    return kind.strip().lower(), parsed


def _taxii_21(kind: str, params: dict[str, str]) -> bool:
    return kind == TAXII_TYPE and params.get("version", "2.1") == "2.1"


def check_accept(header: str | None) -> None:
    """Raise NotAcceptable unless the client takes TAXII 2.1 JSON."""
    if not header:
        raise NotAcceptable(f"send 'Accept: {TAXII_21}'")
    for media_range in header.split(","):
        kind, params = _parse(media_range)
        if params.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        if kind in ("*/*", "application/*") or _taxii_21(kind, params):
            return
    raise NotAcceptable(f"this server answers only {TAXII_21}; the request accepts {header!r}")


def check_content_type(header: str | None) -> None:
    """Raise UnsupportedMediaType unless a pushed body is declared as TAXII 2.1 JSON."""
    kind, params = _parse(header or "")
    if not _taxii_21(kind, params):
        raise UnsupportedMediaType(f"send the body as 'Content-Type: {TAXII_21}'")
