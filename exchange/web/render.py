"""HTML answers: Jinja2 templates shipped in the package, with autoescaping on, and the
headers every page carries.

Object content comes from partners and is untrusted: templates only ever print it through
autoescaping (no `|safe`; data for a script goes through `json_script`, which escapes for
a script block), and the Content-Security-Policy allows scripts from this server's
own /ui/static/ only, so even a missed escape could not run an inline script.
"""

from __future__ import annotations

from typing import Any

import jinja2
import orjson
from markupsafe import Markup
from starlette.responses import HTMLResponse, Response

from ..model import TLP_NAMES

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("exchange.web", "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=jinja2.StrictUndefined,  # a misspelt variable fails the test, not the page
    trim_blocks=True, lstrip_blocks=True,
)
_ENV.globals["tlp_name"] = lambda rank: TLP_NAMES.get(rank, "none")


def json_script(value: Any) -> Markup:
    """JSON for a <script type="application/json"> block, which the HTML parser does not
    unescape: every '<', '>' and '&' is written as a JSON escape instead, so no string in
    the data can close the block or open a tag (as Django's json_script does)."""
    text = orjson.dumps(value).decode()
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e")
                  .replace("&", "\\u0026"))


_ENV.filters["json_script"] = json_script

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # pages show restricted data: not for shared caches
}

TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          413: "Too large", 429: "Too many requests", 500: "Server error"}


def page(template: str, status_code: int = 200, headers: dict[str, str] | None = None,
         **context: Any) -> Response:
    body = _ENV.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status_code, headers={**HEADERS, **(headers or {})})


def error(status_code: int, description: str, *, base: str = "/ui",
          headers: dict[str, str] | None = None, signed_in: bool = False) -> Response:
    return page("error.html", status_code, headers, base=base, signed_in=signed_in,
                csrf="", title=TITLES.get(status_code, "Error"), status=status_code,
                description=description)
