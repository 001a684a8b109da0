"""abuse.ch Feodo Tracker: botnet command-and-control servers (ip:port), as the ipblocklist
JSON and CSV.

Each entry becomes C2 infrastructure (`build.C2`) of the `malware` family: the server at
ip:port (`port=`), so the same address on two ports is two servers. The observable is the
server's address (ipv4-addr or ipv6-addr); the indicator's pattern matches connections to it on
that port (network-traffic dst_ref and dst_port) and the names say `203.0.113.5:443`. The
indicator is valid from first_seen, until last_online (a date: the start of that day) once
the server is offline.
"""

from __future__ import annotations

from typing import Any

from . import build
from . import values as v
from .abusech_common import (
    CsvFeed,
    Feed,
    JsonFeed,
    endpoint_name,
    entry,
    extra,
    gone,
    required_time,
    text,
    time,
)
from .base import Field

SOURCE = "abuse.ch Feodo Tracker"
_KNOWN = frozenset({"first_seen_utc", "dst_ip", "dst_port", "c2_status", "last_online",
                    "malware"})
_FIELDS = (
    Field("first_seen_utc", "when the C2 was first seen (UTC; first_seen in the JSON)",
          "indicator.valid_from/created, infrastructure.first_seen", required=True),
    Field("dst_ip", "the C2 server's address (ip_address in the JSON)",
          "ipv4-addr/ipv6-addr.value, indicator.pattern", required=True),
    Field("dst_port", "the C2 port (port in the JSON)",
          "indicator.pattern (network-traffic:dst_port), indicator/infrastructure id and name "
          "(ip:port)", required=True),
    Field("c2_status", "online or offline (status in the JSON)",
          "offline: indicator.valid_until (= last_online)"),
    Field("last_online", "the day the C2 was last seen online",
          "infrastructure.last_seen, indicator.valid_until when offline"),
    Field("malware", "the malware family", "malware.name"),
    Field("(any other field)", "kept as reported (the JSON's hostname, as_number, as_name, "
                               "country)", "indicator.ext[abusech]"),
)


class _Feodo(Feed):
    default_source = SOURCE
    references = ({"source_name": SOURCE, "url": "https://feodotracker.abuse.ch/"},)
    aliases = {"first_seen": "first_seen_utc", "ip_address": "dst_ip", "port": "dst_port",
               "status": "c2_status"}

    def harmonise(self, fields: dict[str, Any]) -> dict[str, Any]:
        address = text(fields.get("dst_ip"))
        port = text(fields.get("dst_port"))
        if address is None or port is None:
            raise v.BadValue("no dst_ip or dst_port")
        kind, address = v.ip_address(address)
        number = v.port(port)
        first_seen = required_time(fields, "first_seen_utc")
        last_online = time(fields.get("last_online"))
        return entry(
            v.sco(kind, value=address), kind=build.C2, port=number,
            name=endpoint_name(kind, address, number),
            first_seen=first_seen, last_seen=last_online,
            valid_until=gone(text(fields.get("c2_status")) == "offline", first_seen,
                             last_online),
            family=text(fields.get("malware")),
            extra=extra(fields, _KNOWN))


class FeodoCsv(CsvFeed, _Feodo):
    name = "abusech-feodo-csv"
    description = "abuse.ch Feodo Tracker C2 blocklist, CSV (ipblocklist.csv)"
    fields = _FIELDS
    required = ("first_seen_utc", "dst_ip", "dst_port")


class FeodoJson(JsonFeed, _Feodo):
    name = "abusech-feodo-json"
    description = "abuse.ch Feodo Tracker C2 blocklist, JSON (ipblocklist.json: a list)"
    fields = _FIELDS

    def entries(self, document: Any) -> list[tuple[str | None, Any]]:
        if not isinstance(document, list):
            raise v.BadValue("not a Feodo Tracker blocklist: not a JSON list")
        return [(None, item) for item in document]
