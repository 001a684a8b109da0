"""What the request log and the metrics learn about a request while it is answered.

A leaf module: the protocol layer fills in the partner, the routing layer the route, and the
observer (requests.py) reads them once the answer is out. The object travels in the ASGI
scope, and is shared by the copies of the scope that middleware makes.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

FACTS = "exchange.request"  # scope key


@dataclass(slots=True)
class RequestFacts:
    partner: str | None = None  # once authenticated
    route: str | None = None  # the matched route's template, e.g. /{root}/collections/


def note_partner(scope: MutableMapping[str, Any], partner: str) -> None:
    facts = scope.get(FACTS)
    if facts is not None:
        facts.partner = partner
