"""The STIX shapes every format builds, so one fact is modelled one way whatever its source.

Two kinds of fact arrive from feeds:

- **Suspect infrastructure** (C2 servers, malware URLs, blocklisted hosts, malware files):
  `infrastructure_objects` gives the observable, an indicator over it (`valid_from` from first
  seen, `valid_until` when the source says it is gone), the infrastructure, the malware family
  and the relationships between them.
- **Victims** (sinkholed or scanned machines, honeypot attackers, compromised websites):
  `victim_objects` gives observed-data over the observables and a sighting where the source
  saw it. A victim's address is never made an indicator.

Every SDO and SRO id is a UUIDv5 over its natural key and every time comes from the data, so
the same input always gives the same objects; new information gives a new `modified`.

Every SDO and SRO is attributed to the source (`created_by_ref`) and carries the run's
markings, context objects too: a malware family, attack pattern or vulnerability is one object
per source and run markings (`Context.facet`), so a name one source gave under AMBER never
shows as CLEAR. Whom an object is about (victim or suspect infrastructure) and the source's
fields without a STIX property are property extensions (stix_extensions.py), never `x_`
properties.
"""

from __future__ import annotations

from typing import Any

from .. import stix_extensions as ext
from . import values as v
from .base import REFERENCE_TIME, Context

# Data-subject categories the sharing policy can use (the data subject extension).
VICTIM, SUSPECT = ext.VICTIM, ext.SUSPECT

# Infrastructure kinds: STIX infrastructure-type-ov value and how it relates to the malware.
C2 = ("command-and-control", "controls")
DISTRIBUTION = ("hosting-malware", "delivers")
BOTNET = ("botnet", "controls")
UNKNOWN = ("unknown", "")
PAYLOAD = None  # a malware file itself: indicator and family, no infrastructure


def malware(context: Context, family: str) -> dict[str, Any]:
    """A malware family as this source names it: its content is its normalised name, so it
    never changes."""
    name = family.strip().lower()
    if not name:
        raise v.BadValue("empty malware family name")
    return context_object(context, "malware", name, is_family=True)


def context_object(context: Context, kind: str, name: str,
                   references: tuple[dict[str, str], ...] = (), **more: Any) -> dict[str, Any]:
    """A malware family, attack pattern or vulnerability by its (normalised) name: one object
    per source and run markings (see Context.facet), attributed and marked like the facts
    that point at it. Its content is the name and fixed references, so it needs no time from
    the data and never changes."""
    obj: dict[str, Any] = {
        "type": kind, "spec_version": "2.1",
        "id": v.sdo_id(kind, context.source_id, context.facet, name),
        "created": REFERENCE_TIME, "modified": REFERENCE_TIME, "name": name, **more}
    if references:
        obj["external_references"] = [dict(r) for r in references]
    return context.stamp(obj)


def pattern(observable: dict[str, Any], port: int | None = None) -> str:
    """The STIX pattern matching one observable (an address with a port: connections to it)."""
    kind = observable["type"]
    if port is not None:
        if kind not in ("ipv4-addr", "ipv6-addr"):
            raise v.BadValue(f"a port goes with an IP address, not a {kind}")
        return (f"[network-traffic:dst_ref.type = '{kind}' AND network-traffic:dst_ref.value = "
                f"{_quoted(observable['value'])} AND network-traffic:dst_port = {int(port)}]")
    if kind in ("ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr"):
        return f"[{kind}:value = {_quoted(observable['value'])}]"
    if kind == "file":
        terms = [f"file:hashes.{_hash_key(name)} = {_quoted(value)}"
                 for name, value in sorted(observable["hashes"].items())]
        return "[" + " OR ".join(terms) + "]"
    raise v.BadValue(f"no pattern for a {kind} observable")


def _matched_id(observable: dict[str, Any]) -> str:
    """The id of what an indicator's pattern matches: one indicator per (source, pattern).

    A file's id also takes its name, which its pattern (hashes only) does not: keyed on the
    file itself, one sample reported under two names would get two indicators."""
    if observable["type"] == "file":
        return v.sco_id("file", {"hashes": observable["hashes"]})
    return str(observable["id"])


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _hash_key(name: str) -> str:
    return f"'{name}'" if "-" in name else name


def relationship(context: Context, source: str, kind: str, target: str,
                 time: str) -> dict[str, Any]:
    """A relationship whose id is its (source, type, target): created once, never re-versioned."""
    return context.stamp({
        "type": "relationship", "spec_version": "2.1",
        "id": v.sdo_id("relationship", context.source_id, source, kind, target),
        "created": time, "modified": time, "relationship_type": kind,
        "source_ref": source, "target_ref": target,
    })


def infrastructure_objects(
    context: Context, observable: dict[str, Any], *, first_seen: str,
    last_seen: str | None = None, valid_until: str | None = None,
    family: str | None = None, kind: tuple[str, str] | None = C2, name: str | None = None,
    port: int | None = None, edited: str | None = None,
    labels: tuple[str, ...] = (), references: tuple[dict[str, str], ...] = (),
    extra: dict[str, Any] | None = None, extra_name: str = "",
    target: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Observable, indicator, infrastructure, malware family and their relationships
    (with `kind=PAYLOAD`, for a malware file: no infrastructure).

    `target` is what the infrastructure serves when the caller already built it (the malware
    or attack pattern a victim report sighted) instead of a `family` name: the indicator
    indicates it, and the infrastructure controls or delivers a malware target (by `kind`)
    and is related to any other. `extra` is kept in the fields extension of source family
    `extra_name` (a key of stix_extensions.SOURCE_FIELDS).

    `first_seen`/`last_seen`/`valid_until` (and `edited`, when the source dates its last edit
    of the record) are STIX timestamps from the data. `modified` is the newest of them, so a
    later report with newer facts makes a new version. With `port`, an address is the server
    on that port (a C2 at ip:port): its own indicator and infrastructure, apart from the same
    address on another port.
    """
    stamp = context.stamp
    observable = stamp(observable)
    value = observable.get("value")
    host = f"[{value}]" if observable["type"] == "ipv6-addr" else value
    label = name or (f"{host}:{port}" if port is not None else value) or pattern(observable)
    times = [t for t in (first_seen, last_seen, valid_until, edited) if t]
    modified = max(times)
    key = (context.source_id, _matched_id(observable)) + \
        ((str(port),) if port is not None else ())
    family_obj = target if target is not None else malware(context, family) if family else None
    what = f"{family_obj['name']} " if family_obj and family_obj["type"] == "malware" else ""
    role = kind[0].replace("-", " ") if kind else "malware file"
    indicator: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1", "id": v.sdo_id("indicator", *key),
        "created": first_seen, "modified": modified,
        "name": f"{what}{role}: {label}"[:250],
        "indicator_types": ["malicious-activity"], "pattern": pattern(observable, port),
        "pattern_type": "stix", "valid_from": first_seen,
    }
    if valid_until:
        # STIX requires valid_until after valid_from: a host gone the moment it was seen
        # is still valid for that instant.
        indicator["valid_until"] = valid_until if valid_until > first_seen else \
            v.later_by_millisecond(first_seen)
        indicator["modified"] = max(modified, indicator["valid_until"])
    _describe(indicator, context, labels, references)
    ext.extend(indicator, ext.subject(SUSPECT),
               ext.source_fields(extra_name, extra) if extra and extra_name else {})
    objects = [observable, stamp(indicator)]
    if family_obj is not None:
        objects.append(family_obj)
        objects.append(relationship(context, indicator["id"], "indicates", family_obj["id"],
                                    first_seen))
    if kind is None:
        return objects
    infra: dict[str, Any] = {
        "type": "infrastructure", "spec_version": "2.1",
        "id": v.sdo_id("infrastructure", *key), "created": first_seen,
        "modified": indicator["modified"], "name": f"{what}{kind[0]} {label}"[:250],
        "infrastructure_types": [kind[0]], "first_seen": first_seen,
    }
    ext.extend(infra, ext.subject(SUSPECT))
    if last_seen and last_seen >= first_seen:
        infra["last_seen"] = last_seen
    _describe(infra, context, labels, references)
    objects.append(stamp(infra))
    objects.append(relationship(context, indicator["id"], "indicates", infra["id"], first_seen))
    objects.append(relationship(context, infra["id"], "consists-of", observable["id"],
                                first_seen))
    link = kind[1] if family_obj is not None and family_obj["type"] == "malware" else \
        "related-to" if target is not None else ""
    if family_obj is not None and link:
        objects.append(relationship(context, infra["id"], link, family_obj["id"], first_seen))
    return objects


def victim_objects(
    context: Context, observables: list[dict[str, Any]], *, seen: str, key: str,
    family: str | None = None, sighting_of: dict[str, Any] | None = None,
    subject: str = VICTIM, extra: dict[str, Any] | None = None, extra_name: str = "",
) -> list[dict[str, Any]]:
    """Observed-data over `observables` (stamped and returned with it) and a sighting, by the
    source, of the malware family (or of `sighting_of`, an SDO the caller built).

    `key` identifies the observation within the source (e.g. the network-traffic id) and
    `seen` is its time from the data.
    """
    stamp = context.stamp
    objects = [stamp(o) for o in observables]
    target = sighting_of if sighting_of is not None else \
        malware(context, family) if family else None
    if target is None:
        raise v.BadValue("nothing to report a sighting of: no malware family")
    natural = (context.source_id, key)
    observed: dict[str, Any] = {
        "type": "observed-data", "spec_version": "2.1",
        "id": v.sdo_id("observed-data", *natural), "created": seen, "modified": seen,
        "first_observed": seen, "last_observed": seen, "number_observed": 1,
        "object_refs": [o["id"] for o in objects],
    }
    ext.extend(observed, ext.subject(subject),
               ext.source_fields(extra_name, extra) if extra and extra_name else {})
    sighting: dict[str, Any] = {
        "type": "sighting", "spec_version": "2.1", "id": v.sdo_id("sighting", *natural),
        "created": seen, "modified": seen, "first_seen": seen, "last_seen": seen,
        "count": 1, "sighting_of_ref": target["id"], "observed_data_refs": [observed["id"]],
        "where_sighted_refs": [context.source_id],
    }
    for obj in (observed, sighting):
        _apply_context(obj, context)
    return [*objects, target, stamp(observed), stamp(sighting)]


def _describe(obj: dict[str, Any], context: Context, labels: tuple[str, ...],
              references: tuple[dict[str, str], ...]) -> None:
    if labels:
        obj["labels"] = sorted(set(labels))
    if references:
        obj["external_references"] = list(references)
    _apply_context(obj, context)


def _apply_context(obj: dict[str, Any], context: Context) -> None:
    if context.confidence is not None:
        obj["confidence"] = context.confidence
