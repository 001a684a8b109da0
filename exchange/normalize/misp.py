"""MISP events (MISP core format JSON) and MISP feeds (a directory of event files).

Both formats share one implementation; they differ only in how event files are found:

- `misp-event` reads one event file, `{"Event": {...}}`.
- `misp-feed` reads a feed directory: `manifest.json` (event uuid -> summary) and, for each
  uuid it lists, `<uuid>.json`, one event at a time. Files the manifest does not list
  (`hashes.csv`, stray events) are ignored. A listed event whose file is missing, unreadable,
  invalid or holds another event is one reject with that file as its source.

Each attribute is a record (row = its 1-based index within the event, the attributes of the
event's objects numbered after the event's own, in order; source = the event file):

- `to_ids` true: suspect infrastructure (`build.infrastructure_objects`), kind C2 when the
  category is "Network activity" and a tag names command and control, PAYLOAD for hash types,
  UNKNOWN otherwise; the family from a `misp-galaxy:malpedia="..."` (or another malware-family
  galaxy) tag on the attribute, else on the event.
- `to_ids` false: the observable as observed-data only (MISP names no one who sighted it, so no
  sighting), its data subject from an `x-exchange:data-subject="..."` tag, else "unknown".
  That tag saying "victim" also keeps a `to_ids` attribute from becoming an indicator (a
  victim is never indicated). AS numbers are always observed-data: no shared pattern exists
  for them.
- Deleted attributes (revocations) and types without a STIX home here (text, comment,
  attachment ...) are rejects, counted, not silently dropped.

Each event then becomes one record more (row 0, read after its attributes) giving a STIX
`report`: a MISP event is a titled, dated, published collection of intelligence, which is
what a report is (a grouping is for context not yet analysed and has no `published`). Its id
is a UUIDv5 over the event uuid, its creator the event's Orgc, an identity named like a
source identity (`Context(name).identity()`) so an organisation is one identity whether it
creates events or feeds this exchange. Its `object_refs` are the objects its attributes
produce, recomputed from the event record (stateless; an event is in memory anyway).

TLP: objects carry the run's TLP unless the event's (or the attribute's) `tlp:` tags name a
stricter one: that event's (attribute's) objects are then built with a derived context
(`dataclasses.replace(context, tlp=...)`). A laxer tag never relaxes the run's marking. An
object already produced from the same file (e.g. one address in two events) keeps the marking
it was first produced with.

Unmapped scalar fields of events and attributes, and their tags, are kept in its fields extension;
nested lists other than tags (Galaxy, Sighting, ShadowAttribute ...) are not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from .. import stix_extensions as ext
from ..schemas import problem
from . import build
from . import values as v
from .base import Context, Field, Parser, Record, Reject
from .jsondoc import Document, load_json

_EXTRA = "misp"  # whose fields extension keeps what has no STIX home
_KEPT_IN = "ext[misp]"
_UNKNOWN_SUBJECT = "unknown"
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
_C2_TAG = re.compile(r"(?<![a-z0-9])(c2|cnc|c&c|botnet[-_ ]?cc|command[-_ ]and[-_ ]control)"
                     r"(?![a-z0-9])")
_FAMILY_TAG = re.compile(r"^misp-galaxy:(malpedia|malware|ransomware|botnet|banker|rat|"
                         r"stealer|backdoor)=(.*)$")
_SUBJECT_TAG = re.compile(r"^x-exchange:data-subject=(.*)$")
_SUBJECTS = frozenset({build.VICTIM, build.SUSPECT, _UNKNOWN_SUBJECT})
_TLP_RANK = {"clear": 0, "green": 1, "amber": 2, "amber+strict": 3, "red": 4}
_TLP_TAGS = {"tlp:white": "clear", **{f"tlp:{name}": name for name in _TLP_RANK}}

# MISP attribute fields with a STIX home; any other scalar field goes to the MISP fields extension.
_ATTRIBUTE_MAPPED = frozenset({"value", "to_ids", "timestamp", "first_seen", "last_seen",
                               "Tag"})
_EVENT_MAPPED = frozenset({"uuid", "info", "date", "timestamp", "publish_timestamp", "Tag",
                           "Orgc", "Attribute", "Object"})


# -- values -------------------------------------------------------------------------------------

def _ip(text: str) -> dict[str, Any]:
    kind, value = v.ip_address(text)
    return v.sco(kind, value=value)


def _domain(text: str) -> dict[str, Any]:
    return v.sco("domain-name", value=v.domain(text))


def _split(text: str, last: bool = False) -> tuple[str, str]:
    """The two halves of a composite MISP value (`domain|ip`, `filename|md5` ...)."""
    head, bar, tail = text.rpartition("|") if last else text.partition("|")
    if not bar or not head.strip() or not tail.strip():
        raise v.BadValue(f"composite value lacks '|' between two parts: {text[:80]!r}")
    return head, tail


_Parsed = tuple[list[dict[str, Any]], dict[str, Any]]  # observables, extra fields


def _single(make: Callable[[str], dict[str, Any]], text: str) -> _Parsed:
    return [make(text)], {}


def _ip_port(text: str) -> _Parsed:
    address, port = _split(text, last=True)
    return [_ip(address)], {"port": v.port(port)}


def _domain_ip(text: str) -> _Parsed:
    name, address = _split(text)
    return [_domain(name), _ip(address)], {}


def _url(text: str) -> dict[str, Any]:
    return v.sco("url", value=v.url(text))


def _hash(algorithm: str, text: str) -> _Parsed:
    return [v.sco("file", hashes={algorithm: v.hash_value(algorithm, text)})], {}


def _named_hash(algorithm: str, text: str) -> _Parsed:
    name, digest = _split(text, last=True)
    return [v.sco("file", hashes={algorithm: v.hash_value(algorithm, digest)},
                  name=name.strip())], {}


def _email(text: str) -> dict[str, Any]:
    return v.sco("email-addr", value=v.email(text))


def _asn(text: str) -> dict[str, Any]:
    return v.sco("autonomous-system", number=v.asn(text))


_PARSERS: dict[str, Callable[[str], _Parsed]] = {
    "ip-src": partial(_single, _ip), "ip-dst": partial(_single, _ip),
    "ip-src|port": _ip_port, "ip-dst|port": _ip_port,
    "domain": partial(_single, _domain), "hostname": partial(_single, _domain),
    "domain|ip": _domain_ip,
    "url": partial(_single, _url), "uri": partial(_single, _url),
    **{name: partial(_hash, algorithm) for name, algorithm in v.HASH_NAMES.items()},
    **{f"filename|{name}": partial(_named_hash, algorithm)
       for name, algorithm in v.HASH_NAMES.items()},
    "email-src": partial(_single, _email), "email-dst": partial(_single, _email),
    "AS": partial(_single, _asn),
}
_PAYLOAD_TYPES = frozenset(name for name in _PARSERS if name.removeprefix("filename|")
                           in v.HASH_NAMES)
_CONTEXT_ONLY = frozenset({"AS"})  # never an indicator: no pattern for it in build


# -- tags ---------------------------------------------------------------------------------------

def _tag_names(item: dict[str, Any]) -> tuple[str, ...]:
    return tuple(tag["name"] for tag in item.get("Tag") or ())


def _strictest(*tlps: str | None) -> str | None:
    named = [t for t in tlps if t]
    return max(named, key=_TLP_RANK.__getitem__) if named else None


def _tlp(tags: tuple[str, ...]) -> str | None:
    return _strictest(*(_TLP_TAGS.get(t.strip().lower()) for t in tags))


def _first_match(pattern: re.Pattern[str], *tag_lists: tuple[str, ...]) -> str | None:
    """What the last group of `pattern` finds in the first tag it matches (lower case)."""
    for tags in tag_lists:
        for tag in tags:
            match = pattern.search(tag.strip().lower())
            found = match.group(match.lastindex or 0).strip(' "') if match else ""
            if found:
                return found
    return None


def _subject(*tag_lists: tuple[str, ...]) -> str | None:
    found = _first_match(_SUBJECT_TAG, *tag_lists)
    return found if found in _SUBJECTS else None


def _with_tlp(context: Context, *tlps: str | None) -> Context:
    """The context whose marking is the strictest of the run's and the data's."""
    tlp = _strictest(context.tlp, *tlps)
    return context if tlp == context.tlp else replace(context, tlp=tlp)


def _extra(item: dict[str, Any], mapped: frozenset[str]) -> dict[str, Any]:
    """Scalar fields without a STIX home, under STIX dictionary-safe keys, and the tags."""
    out: dict[str, Any] = {
        v.extra_key(k): value
        for k, value in item.items()
        if k not in mapped and isinstance(value, str | int | float) and value != ""
    }
    tags = _tag_names(item)
    if tags:
        out["tags"] = list(tags)
    return out


# -- reading ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Event:
    """What an event tells its attributes and its report."""

    uuid: str
    info: str
    created: str
    modified: str
    published: str
    tags: tuple[str, ...]
    tlp: str | None
    creator: str | None  # the Orgc name
    extra: dict[str, Any]


def _excerpt(document: Any) -> str:
    try:
        return orjson.dumps(document).decode()[:200]
    except TypeError:
        return repr(document)[:200]


def _event(document: dict[str, Any]) -> _Event:
    event = document["Event"]
    created = v.loose_timestamp(event["date"])  # a plain date: its midnight (UTC)
    edited = v.epoch_timestamp(event["timestamp"])
    published = event.get("publish_timestamp")
    tags = _tag_names(event)
    extra = _extra(event, _EVENT_MAPPED)
    orgc = event.get("Orgc") or {}
    if orgc.get("uuid"):
        extra["orgc_uuid"] = orgc["uuid"]
    return _Event(
        uuid=event["uuid"].lower(), info=event["info"].strip(), created=created,
        modified=max(created, edited),
        published=v.epoch_timestamp(published) if published and int(published) > 0 else created,
        tags=tags, tlp=_tlp(tags), creator=orgc.get("name"), extra=extra)


def _attributes(event: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any] | None]]:
    """Every attribute of the event in row order, with the MISP object holding it."""
    for attribute in event.get("Attribute") or ():
        yield attribute, None
    for obj in event.get("Object") or ():
        for attribute in obj.get("Attribute") or ():
            yield attribute, obj


def _harmonise(attribute: Any, holder: dict[str, Any] | None, event: _Event) -> dict[str, Any]:
    found = problem("input-misp-attribute", attribute)
    if found is not None:
        raise v.BadValue(found)
    if attribute.get("deleted") in (True, "1"):
        raise v.BadValue("deleted MISP attribute (revoked at its source)")
    kind = attribute["type"]
    parse = _PARSERS.get(kind)
    if parse is None:
        raise v.BadValue(f"unsupported MISP attribute type {kind[:80]}")
    observables, extra = parse(attribute["value"])
    edited = v.epoch_timestamp(attribute["timestamp"]) if "timestamp" in attribute \
        else event.modified
    first = _seen(attribute, "first_seen") or edited
    last = _seen(attribute, "last_seen")
    tags = _tag_names(attribute)
    extra = {**_extra(attribute, _ATTRIBUTE_MAPPED), **extra}
    if last is not None and last < first:  # inconsistent: kept as sent, not used
        extra["last_seen"], last = attribute["last_seen"], None
    if holder is not None:
        extra["object"] = _extra(holder, frozenset({"Attribute", "ObjectReference"}))
    subject = _subject(tags, event.tags)
    indicated = attribute.get("to_ids") in (True, "1")
    return {
        "type": kind, "uuid": attribute["uuid"].lower(), "observables": observables,
        "suspect": indicated and subject != build.VICTIM and kind not in _CONTEXT_ONLY,
        "subject": subject or (build.SUSPECT if indicated else _UNKNOWN_SUBJECT),
        "kind": _infrastructure_kind(kind, attribute.get("category"), tags, event.tags),
        "family": _first_match(_FAMILY_TAG, tags, event.tags),
        "first": first, "last": last,
        "modified": max(t for t in (first, last, edited) if t),
        "tlp": _tlp(tags), "event": event, "extra": extra,
    }


def _seen(attribute: dict[str, Any], name: str) -> str | None:
    """MISP `first_seen`/`last_seen`: ISO 8601 with a time zone (UTC when it has none)."""
    value = attribute.get(name)
    return v.loose_timestamp(value, iso8601=True) if value else None


def _infrastructure_kind(kind: str, category: Any, *tag_lists: tuple[str, ...],
                         ) -> tuple[str, str] | None:
    if kind in _PAYLOAD_TYPES:
        return build.PAYLOAD
    if category == "Network activity" and _first_match(_C2_TAG, *tag_lists) is not None:
        return build.C2
    return build.UNKNOWN


def _read_event(path: Path, expected: str | None = None) -> Iterator[Record | Reject]:
    """An event file's attribute records, then its event record (row 0); one row-0 reject
    when the file cannot be read as an event."""
    source = str(path)
    try:
        loaded = load_json(path)
    except v.BadValue as exc:
        yield Reject(source, 0, str(exc), "")
        return
    document = loaded.value
    # The event's own fields decide every attribute's marking and report: a bad one there
    # loses the event; a bad attribute (or MISP object) loses only itself.
    own = _own_fields(document.get("Event") if isinstance(document, dict) else None)
    raw, flaw = loaded.check(own)
    if flaw is not None:
        yield Reject(source, 0, f"event {flaw}", raw[:200])
        return
    found = problem("input-misp-event", _envelope(document, loaded))
    if found is not None:
        yield Reject(source, 0, found, _excerpt(document))
        return
    try:
        event = _event(document)
        if expected is not None and event.uuid != expected.lower():
            raise v.BadValue(f"event uuid {event.uuid} is not the {expected} its manifest "
                             f"lists")
    except v.BadValue as exc:
        yield Reject(source, 0, str(exc), raw)
        return
    good: list[dict[str, Any]] = []
    for row, (attribute, holder) in enumerate(_attributes(document["Event"]), start=1):
        attribute_raw, flaw = loaded.check(attribute)
        if flaw is None and holder is not None:
            flaw = _object_flaw(holder, loaded)
        if flaw is not None:
            yield Reject(source, row, flaw, attribute_raw)
            continue
        try:
            values = _harmonise(attribute, holder, event)
        except v.BadValue as exc:
            yield Reject(source, row, str(exc), attribute_raw)
            continue
        good.append(values)
        yield Record(source, row, attribute_raw, values, values["modified"])
    yield Record(source, 0, raw, {"event": event, "attributes": good}, event.modified)


def _own_fields(event: Any) -> Any:
    """An event without its attributes and objects (its report's raw line)."""
    if not isinstance(event, dict):
        return event
    return {k: x for k, x in event.items() if k not in ("Attribute", "Object")}


def _object_flaw(holder: dict[str, Any], loaded: Document) -> str | None:
    """Why a MISP object's own fields (kept with each of its attributes) cannot be kept."""
    flaw = loaded.check(_own_fields(holder))[1]
    return None if flaw is None else f"its MISP object's {flaw}"


def _envelope(document: Any, loaded: Document) -> Any:
    """The document the event schema checks: MISP objects with a bad field are left out
    (their attributes are rejected one by one), so they cannot cost the event."""
    event = document.get("Event") if isinstance(document, dict) else None
    objects = event.get("Object") if isinstance(event, dict) else None
    if not isinstance(event, dict) or not isinstance(objects, list):
        return document
    kept = [o for o in objects if not isinstance(o, dict) or _object_flaw(o, loaded) is None]
    return {**document, "Event": {**event, "Object": kept}}


# -- STIX ---------------------------------------------------------------------------------------

def _attribute_objects(values: dict[str, Any], context: Context) -> list[dict[str, Any]]:
    event: _Event = values["event"]
    context = _with_tlp(context, event.tlp, values["tlp"])
    observables = [dict(o) for o in values["observables"]]
    if not values["suspect"]:
        return _observed(context, observables, values)
    objects: list[dict[str, Any]] = []
    for observable in observables:
        made = build.infrastructure_objects(
            context, observable, first_seen=values["first"], last_seen=values["last"],
            family=values["family"], kind=values["kind"], extra=values["extra"],
            extra_name=_EXTRA, edited=values["modified"])
        objects += made
    return objects


def _observed(context: Context, observables: list[dict[str, Any]],
              values: dict[str, Any]) -> list[dict[str, Any]]:
    """An observable MISP does not call actionable: observed-data only, no verdict."""
    objects = [context.stamp(o) for o in observables]
    first = values["first"]
    observed: dict[str, Any] = {
        "type": "observed-data", "spec_version": "2.1",
        "id": v.sdo_id("observed-data", context.source_id, "misp-attribute", values["uuid"]),
        "created": first, "modified": values["modified"], "first_observed": first,
        "last_observed": values["last"] or first, "number_observed": 1,
        "object_refs": [o["id"] for o in objects],
    }
    ext.extend(observed, ext.subject(values["subject"]),
               ext.source_fields(_EXTRA, values["extra"]))
    if context.confidence is not None:
        observed["confidence"] = context.confidence
    return [*objects, context.stamp(observed)]


def _event_objects(values: dict[str, Any], context: Context) -> list[dict[str, Any]]:
    """The event's report (and its creator's identity), over its attributes' objects."""
    event: _Event = values["event"]
    refs: dict[str, None] = {}
    for attribute in values["attributes"]:
        try:
            refs.update(dict.fromkeys(o["id"] for o in _attribute_objects(attribute, context)))
        except v.BadValue:
            continue  # that attribute was rejected on its own row
    if not refs:
        raise v.BadValue("event has no attribute that could be converted: no report")
    report: dict[str, Any] = {
        "type": "report", "spec_version": "2.1",
        "id": v.sdo_id("report", context.source_id, "misp-event", event.uuid),
        "created": event.created, "modified": event.modified, "published": event.published,
        "name": event.info, "report_types": ["threat-report"], "object_refs": list(refs),
        "external_references": [{"source_name": "misp", "external_id": event.uuid}],
    }
    if event.extra:
        ext.extend(report, ext.source_fields(_EXTRA, event.extra))
    _with_tlp(context, event.tlp).stamp(report)
    if not event.creator:
        return [report]
    creator = Context(event.creator).identity()
    report["created_by_ref"] = creator["id"]
    return [creator, report]


# -- formats ------------------------------------------------------------------------------------

_FIELDS: tuple[Field, ...] = (
    Field("Event.uuid", "the event's UUID",
          "report.id (UUIDv5 over it), report.external_references[misp].external_id",
          required=True),
    Field("Event.info", "the event's title", "report.name", required=True),
    Field("Event.date", "the date the event refers to (YYYY-MM-DD)",
          "report.created; report.published when never published", required=True),
    Field("Event.timestamp", "last change (Unix seconds)",
          "report.modified; attribute time when the attribute has none", required=True),
    Field("Event.publish_timestamp", "last publication (Unix seconds, 0 if never)",
          "report.published"),
    Field("Event.Orgc.name", "the organisation that created the event",
          "identity.name, report.created_by_ref (Orgc.uuid: report.ext[misp].orgc_uuid)"),
    Field("Event.Tag[].name", "event tags: tlp:, malware galaxies, C2, data subject",
          "object_marking_refs (stricter TLP only), malware.name, infrastructure_types, "
          "ext[data-subject], report.ext[misp].tags"),
    Field("Event.(other fields)", "threat_level_id, analysis, distribution, ... as sent",
          f"report.{_KEPT_IN}"),
    Field("Attribute.type", f"one of {', '.join(_PARSERS)}; others are rejected",
          "the observable's type", required=True),
    Field("Attribute.value", "the value (composite types split at '|')",
          "ipv4-addr/ipv6-addr/domain-name/url/email-addr.value, file.hashes/name, "
          f"autonomous-system.number; the port of ip|port in {_KEPT_IN}.port", required=True),
    Field("Attribute.uuid", "the attribute's UUID",
          f"observed-data.id (UUIDv5 over it), {_KEPT_IN}.uuid", required=True),
    Field("Attribute.to_ids", "actionable: true makes suspect infrastructure",
          "indicator + infrastructure (false: observed-data)"),
    Field("Attribute.first_seen", "first seen (ISO 8601)",
          "indicator.valid_from, infrastructure.first_seen, observed-data.first_observed"),
    Field("Attribute.last_seen", "last seen (ISO 8601)",
          "infrastructure.last_seen, observed-data.last_observed"),
    Field("Attribute.timestamp", "last change (Unix seconds)",
          "valid_from/first_observed when no first_seen; modified"),
    Field("Attribute.category", "MISP category; 'Network activity' + a C2 tag makes a C2",
          f"infrastructure_types, {_KEPT_IN}.category"),
    Field("Attribute.Tag[].name", "attribute tags, before the event's",
          f"as Event.Tag, and {_KEPT_IN}.tags"),
    Field("Attribute.deleted", "true: a revocation, rejected"),
    Field("Object[].Attribute[]", "attributes of MISP objects, numbered after the event's",
          f"as Attribute; the object's name, uuid ... in {_KEPT_IN}.object"),
    Field("Attribute.(other fields)", "comment, object_relation, distribution, ... as sent",
          f"indicator/observed-data.{_KEPT_IN}"),
)


class _Misp(Parser):
    """What both MISP formats share: the fields and the conversion."""

    fields = _FIELDS
    default_source = "MISP"
    source_fields = _EXTRA
    report_types = ("threat-report",)

    def to_stix(self, record: Record, context: Context) -> list[dict[str, Any]]:
        if "attributes" in record.values:
            return _event_objects(record.values, context)
        return _attribute_objects(record.values, context)


class MispEvent(_Misp):
    name = "misp-event"
    description = "MISP event (MISP core format JSON, {\"Event\": {...}})"

    def records(self, path: Path) -> Iterator[Record | Reject]:
        yield from _read_event(path)


class MispFeed(_Misp):
    """A MISP feed directory; files its manifest does not list are ignored."""

    name = "misp-feed"
    description = "MISP feed directory: manifest.json and the <uuid>.json events it lists"
    fields = (Field("manifest.json", "event uuid -> summary; each listed <uuid>.json is read, "
                    "other files are ignored", "(the events it lists)", required=True),
              *_FIELDS)
    reads_directories = True

    def records(self, path: Path) -> Iterator[Record | Reject]:
        manifest = path / "manifest.json"
        try:
            listed = load_json(manifest).value
        except v.BadValue as exc:
            yield Reject(str(manifest), 0, str(exc), "")
            return
        found = problem("input-misp-manifest", listed)
        if found is not None:
            yield Reject(str(manifest), 0, found, _excerpt(listed))
            return
        for index, (key, summary) in enumerate(listed.items(), start=1):
            if not _UUID.match(key):
                yield Reject(str(manifest), index, f"manifest key is not an event uuid: "
                             f"{key[:80]!r}", _excerpt({key: summary}))
                continue
            yield from _read_event(path / f"{key}.json", expected=key)


FORMATS: tuple[type[Parser], ...] = (MispEvent, MispFeed)
