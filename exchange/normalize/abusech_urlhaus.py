"""abuse.ch URLhaus: URLs distributing malware, as the CSV export and as the JSON export or API.

Each entry becomes suspect infrastructure hosting malware (`build.DISTRIBUTION`) over the URL:
the indicator is valid from `dateadded`, until `last_online` once the URL is offline. The
malware family is `threat` when it names one (it is usually the category `malware_download`),
else the first tag that is not a generic one (file type, CPU architecture, delivery hint:
`elf`, `32-bit`, `ua-wget` ...), else none. Every tag is a label.
"""

from __future__ import annotations

from typing import Any

from . import build
from . import values as v
from .abusech_common import (
    CsvFeed,
    Feed,
    JsonFeed,
    entry,
    export_entries,
    extra,
    gone,
    items,
    reference,
    required_time,
    text,
    time,
)
from .base import Field

SOURCE = "abuse.ch URLhaus"
# URLhaus threat categories: a `threat` outside them names a malware family.
_CATEGORIES = frozenset({"malware_download", "botnet_cc", "payload_delivery", "phishing"})
# Tags that describe the file or the delivery, never the malware family.
GENERIC_TAGS = frozenset({
    "16-bit", "32-bit", "64-bit", "aarch64", "arc", "arm", "arm4", "arm5", "arm6", "arm7",
    "armv4", "armv5", "armv6", "armv7", "i386", "i486", "i586", "i686", "m68k", "mips",
    "mipsel", "mpsl", "powerpc", "ppc", "sh4", "sparc", "spc", "x64", "x86", "x86-64", "x86_64",
    "7z", "apk", "bat", "bin", "cmd", "dll", "doc", "docx", "elf", "exe", "gz", "hta", "html",
    "img", "iso", "jar", "js", "lnk", "msi", "pdf", "ps1", "rar", "rtf", "sh", "tar", "txt",
    "vbs", "xls", "xlsx", "xlsm", "zip", "ascii", "base64", "encrypted", "geofenced", "hex",
    "opendir", "powershell", "script", "payload", "malware", "malware_download", "dropper",
    "downloader", "loader", "stealer", "rat", "trojan", "botnet", "ransomware", "miner",
    "coinminer", "backdoor", "banker", "spyware", "worm", "exploit", "webshell", "phishing",
})
_GENERIC_PREFIXES = ("dropped-by-", "ua-", "cve-")
_KNOWN = frozenset({"id", "dateadded", "url", "url_status", "last_online", "threat", "tags",
                    "urlhaus_link", "reporter"})
_FIELDS = (
    Field("id", "URLhaus entry id", "external_references[].external_id, ext[abusech].id"),
    Field("dateadded", "when URLhaus added the URL (UTC; date_added in the API)",
          "indicator.valid_from/created, infrastructure.first_seen", required=True),
    Field("url", "the malware distribution URL", "url.value, indicator.pattern", required=True),
    Field("url_status", "online, offline or unknown",
          "offline: indicator.valid_until (= last_online)"),
    Field("last_online", "when the URL was last seen online (UTC)",
          "infrastructure.last_seen, indicator.valid_until when offline"),
    Field("threat", "URLhaus threat category (malware_download)",
          "malware.name when it names a family; ext[abusech].threat"),
    Field("tags", "URLhaus tags", "labels; malware.name: the first non-generic tag"),
    Field("urlhaus_link", "the entry's URLhaus page (urlhaus_reference in the API)",
          "external_references[].url"),
    Field("reporter", "who reported the URL", "ext[abusech].reporter"),
    Field("(any other field)", "kept as reported", "indicator.ext[abusech]"),
)


class _Urlhaus(Feed):
    default_source = SOURCE
    references = ({"source_name": SOURCE, "url": "https://urlhaus.abuse.ch/"},)
    options = (Field("generic_tags", "comma-separated tags that never name a malware family, "
                                     "over the built-in ones (file types, architectures ...)"),)
    aliases = {"date_added": "dateadded", "urlhaus_reference": "urlhaus_link"}

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        super().__init__(settings)
        self.generic = GENERIC_TAGS | {t.lower() for t in items(self.settings.get("generic_tags"))}

    def harmonise(self, fields: dict[str, Any]) -> dict[str, Any]:
        address = text(fields.get("url"))
        if address is None:
            raise v.BadValue("no url")
        first_seen = required_time(fields, "dateadded")
        last_online = time(fields.get("last_online"))
        tags = items(fields.get("tags"))
        threat = text(fields.get("threat"))
        family = threat if threat and threat.lower() not in _CATEGORIES else next(
            (tag for tag in tags if self._names_family(tag.lower())), None)
        entry_id = text(fields.get("id"))
        return entry(
            v.sco("url", value=v.url(address)), kind=build.DISTRIBUTION, first_seen=first_seen,
            last_seen=last_online,
            valid_until=gone(text(fields.get("url_status")) == "offline", first_seen,
                             last_online),
            family=family, labels=tuple(t.lower() for t in tags),
            references=reference(SOURCE, text(fields.get("urlhaus_link")), entry_id),
            extra=extra(fields, _KNOWN, id=entry_id, threat=threat,
                        reporter=text(fields.get("reporter"))))

    def _names_family(self, tag: str) -> bool:
        return tag not in self.generic and not tag.startswith(_GENERIC_PREFIXES)


class UrlhausCsv(CsvFeed, _Urlhaus):
    name = "abusech-urlhaus-csv"
    description = "abuse.ch URLhaus CSV export (csv, csv_recent, csv_online): malware URLs"
    fields = _FIELDS
    required = ("dateadded", "url")


class UrlhausJson(JsonFeed, _Urlhaus):
    name = "abusech-urlhaus-json"
    description = ("abuse.ch URLhaus JSON export ({id: [entry]}) or API answer "
                   "({query_status, urls: [...]}): malware URLs")
    fields = _FIELDS
    id_field = "id"

    def entries(self, document: Any) -> list[tuple[str | None, Any]]:
        return export_entries(document, "urls", "URLhaus")
