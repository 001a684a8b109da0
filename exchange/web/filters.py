"""The pages' filters and search box, read from a GET form into the store's `Filters`.

Every filter becomes a term of the store's scan (model.Filters): the pages never filter a page
after the fact. A malformed value is the analyst's mistake: `Invalid`, a 400 page that says
which field to mend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from ..errors import Invalid
from ..model import ALL, LAST, TLP_NAMES, TLP_RANKS, Filters
from ..stix import IDENTIFIER_RE, now_micros, to_micros
from ..store import cursor, terms

PAGE_SIZE = 50
_TYPE_RE = re.compile(r"^[a-z0-9-]{3,250}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The form's fields, in the order links carry them (`next` is added by the pager).
FIELDS = ("q", "type", "tlp", "source", "from", "to", "valid", "versions", "limit")


@dataclass(frozen=True, slots=True)
class Form:
    """What the analyst asked for, as the form shows it again, and as the store reads it."""

    values: dict[str, Any]  # field -> text (tlp: list of names)
    filters: Filters

    def query(self, **more: str) -> str:
        """The form's fields as a query string (links keep the filters)."""
        pairs: list[tuple[str, str]] = []
        for name in FIELDS:
            value = self.values.get(name)
            if isinstance(value, list):
                pairs += [(name, v) for v in value]
            elif value:
                pairs.append((name, str(value)))
        pairs += [(k, v) for k, v in more.items() if v]
        return urlencode(pairs)

    def next_query(self, last_added: int | None, more: bool) -> str:
        """The link to the next (older) page, or '' when this is the last."""
        if not more or last_added is None:
            return ""
        return self.query(next=cursor.encode(last_added))


def read(params: QueryParams, max_rank: int, most: int, *,
         page_size: int = PAGE_SIZE) -> Form:
    """The form's filters; `max_rank` is the highest TLP the reader receives (the TLP filter
    offers no other), `most` the API root's page size bound."""
    values: dict[str, Any] = {name: params.get(name, "").strip() for name in FIELDS}
    values["tlp"] = [t.strip().lower() for t in params.getlist("tlp") if t.strip()]
    search = None
    if values["q"]:
        try:
            search = terms.search(values["q"])
        except ValueError as exc:
            raise Invalid(f"search: {exc}") from None
    ranks = []
    for name in values["tlp"]:
        if name not in TLP_RANKS or TLP_RANKS[name] > max_rank:
            raise Invalid(f"TLP: {name[:20]!r} is not a TLP this partner receives")
        ranks.append(TLP_RANKS[name])
    source = values["source"]
    if source and not (source.startswith("identity--") and IDENTIFIER_RE.match(source)):
        raise Invalid("source: an identity id, identity--…")
    after = before = None
    if values["from"]:
        after = _day(values["from"], "from") - 1
    if values["to"]:
        before = _day(values["to"], "to") + 86_400_000_000  # to the end of that day
    if params.get("next"):
        mark = cursor.decode(params["next"])
        before = mark if before is None else min(before, mark)
    every = values["versions"] == "all"
    values["versions"] = "all" if every else ""
    filters = Filters(limit=_limit(values["limit"] or None, most, page_size),
                      types=_types(values["type"]), versions=(ALL,) if every else (LAST,),
                      after=after, newest_first=True, before=before,
                      ranks=tuple(sorted(set(ranks))), source=source,
                      valid_at=now_micros() if values["valid"] else None, search=search)
    return Form(values, filters)


def tlp_choices(max_rank: int) -> list[str]:
    """The TLP names the filter offers a reader: only those it receives."""
    return [TLP_NAMES[rank] for rank in range(max_rank + 1)]


def _types(raw: str) -> tuple[str, ...]:
    types = tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    bad = next((t for t in types if not _TYPE_RE.match(t)), None)
    if bad is not None:
        raise Invalid(f"{bad!r} is not a STIX type")
    if len(types) > 50:
        raise Invalid("at most 50 types at once")
    return types


def _limit(raw: str | None, most: int, page_size: int) -> int:
    if raw is None:
        return min(page_size, most)
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise Invalid("limit must be a positive integer")
    return min(int(raw), most)


def _day(raw: str, name: str) -> int:
    if not _DATE_RE.match(raw):
        raise Invalid(f"{name}: a date as YYYY-MM-DD")
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise Invalid(f"{name}: {raw!r} is not a date") from None
    return to_micros(day)
