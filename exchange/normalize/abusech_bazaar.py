"""abuse.ch MalwareBazaar: malware samples, as the CSV export.

Each sample becomes a malware file (`build.PAYLOAD`: file, indicator over its hashes, family,
no infrastructure): the file observable holds the SHA-256, MD5 and SHA-1 digests, its name and
MIME type; `signature` is the family (`n/a`: none).
"""

from __future__ import annotations

from typing import Any

from . import build
from . import values as v
from .abusech_common import CsvFeed, entry, extra, reference, required_time, text
from .base import Field

SOURCE = "abuse.ch MalwareBazaar"
_DIGESTS = tuple((f"{name}_hash", v.HASH_NAMES[name]) for name in ("sha256", "md5", "sha1"))
_KNOWN = frozenset({"first_seen_utc", "sha256_hash", "md5_hash", "sha1_hash", "file_name",
                    "mime_type", "signature"})
_KEPT = ("reporter", "file_type_guess", "clamav", "vtpercent", "imphash", "ssdeep", "tlsh")


class BazaarCsv(CsvFeed):
    name = "abusech-malwarebazaar-csv"
    description = "abuse.ch MalwareBazaar CSV export (full, recent): malware samples"
    fields = (
        Field("first_seen_utc", "when MalwareBazaar first saw the sample (UTC)",
              "indicator.valid_from/created", required=True),
        Field("sha256_hash", "SHA-256 of the sample",
              "file.hashes.SHA-256, indicator.pattern, external_references[]", required=True),
        Field("md5_hash", "MD5 of the sample", "file.hashes.MD5, indicator.pattern"),
        Field("sha1_hash", "SHA-1 of the sample", "file.hashes.SHA-1, indicator.pattern"),
        Field("file_name", "the sample's file name", "file.name"),
        Field("mime_type", "the sample's MIME type", "file.mime_type"),
        Field("signature", "the malware family (n/a: unknown)", "malware.name"),
        *(Field(name, "kept as reported", f"indicator.ext[abusech].{name}")
          for name in _KEPT),
        Field("(any other column)", "kept as reported", "indicator.ext[abusech]"),
    )
    default_source = SOURCE
    report_types = ("indicator", "malware")
    references = ({"source_name": SOURCE, "url": "https://bazaar.abuse.ch/"},)
    required = ("first_seen_utc", "sha256_hash")

    def harmonise(self, fields: dict[str, Any]) -> dict[str, Any]:
        hashes = {}
        for column, algorithm in _DIGESTS:
            found = text(fields.get(column))
            if found is not None:
                hashes[algorithm] = v.hash_value(algorithm, found)
        sha256 = hashes.get("SHA-256")
        if sha256 is None:
            raise v.BadValue("no sha256_hash")
        sample: dict[str, Any] = {"hashes": hashes}
        for column, prop in (("file_name", "name"), ("mime_type", "mime_type")):
            found = text(fields.get(column))
            if found is not None:
                sample[prop] = found
        return entry(
            v.sco("file", **sample), kind=build.PAYLOAD, name=sha256,
            first_seen=required_time(fields, "first_seen_utc"),
            family=text(fields.get("signature")),
            references=reference(SOURCE, f"https://bazaar.abuse.ch/sample/{sha256}/", sha256),
            extra=extra(fields, _KNOWN))
