"""What an object page shows around one object: the objects it references (outgoing), the
versions that reference it (incoming: relationships, sightings, reports, groupings, notes,
opinions), a small graph of both, and the differences between two of its versions.

Every object here is read through the policy `Gate`, in the reader's view: what it may not see
is not read at all, so it appears in no list and as no node of the graph.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..model import LAST, Entry, Filters
from ..policy.gate import Gate, Target
from ..policy.partners import Partner
from ..stix import IDENTIFIER_RE, references
from . import objects

MAX_OUTGOING = 200  # a report may list thousands of objects: the page names the first ones
INCOMING_PAGE = 100
GRAPH_NODES = 50
_READ_CHUNK = 100


@dataclass(frozen=True, slots=True)
class Link:
    """One related object: how it is related (`via`: the properties), and, when the reader
    may see it in this collection, its summary (else None: named by id only)."""

    id: str
    via: tuple[str, ...]
    summary: objects.Summary | None
    detail: str = ""  # a relationship's type and direction, a sighting's count


@dataclass
class Related:
    outgoing: list[Link] = field(default_factory=list)
    outgoing_more: int = 0  # references beyond MAX_OUTGOING, not listed
    incoming: list[Link] = field(default_factory=list)
    incoming_after: int | None = None  # date_added to go on from (None: no more)
    entries: list[Entry] = field(default_factory=list)  # everything read: for the audit
    graph: dict[str, Any] = field(default_factory=dict)


def named_refs(obj: dict[str, Any]) -> dict[str, list[str]]:
    """The ids an object references, each with the top-level properties that hold it
    (`refers to` for one nested deeper, in an extension or an email's parts), in order."""
    found: dict[str, list[str]] = {}
    for ref in references(obj):
        found[ref] = []
    for name, value in obj.items():
        values = value if isinstance(value, list) else [value]
        if name.endswith(("_ref", "_refs")):
            for item in values:
                if isinstance(item, str) and item in found and name not in found[item]:
                    found[item].append(name)
    return {ref: names or ["refers to"] for ref, names in found.items()}


def _read(gate: Gate, partner: Partner, target: Target, ids: Iterable[str]) -> dict[str, Entry]:
    """The newest version the reader may see of each id (absent: it sees none here)."""
    wanted = list(dict.fromkeys(i for i in ids if IDENTIFIER_RE.match(i)))
    found: dict[str, Entry] = {}
    for start in range(0, len(wanted), _READ_CHUNK):
        chunk = tuple(wanted[start:start + _READ_CHUNK])
        page = gate.read(partner, target, Filters(limit=len(chunk), ids=chunk,
                                                  versions=(LAST,)), with_body=True)
        found.update((e.id, e) for e in page.entries)
    return found


def _detail(obj: dict[str, Any], center: str) -> str:
    kind = obj.get("type")
    if kind == "relationship":
        verb = str(obj.get("relationship_type", "related-to"))
        return f"this {verb} it" if obj.get("target_ref") == center and \
            obj.get("source_ref") != center else f"it {verb} this"
    if kind == "sighting" and isinstance(obj.get("count"), int):
        return f"seen {obj['count']} times"
    return ""


def gather(gate: Gate, partner: Partner, target: Target, obj: dict[str, Any],
           default_rank: int, after: int | None = None) -> Related:
    """The object's neighbours in the reader's view (both directions, one hop)."""
    center = str(obj.get("id", ""))
    related = Related()
    refs = named_refs(obj)
    listed = list(refs)[:MAX_OUTGOING]
    related.outgoing_more = len(refs) - len(listed)
    seen = _read(gate, partner, target, listed)
    related.entries += seen.values()
    for ref in listed:
        entry = seen.get(ref)
        related.outgoing.append(Link(ref, tuple(refs[ref]), objects.summary(entry, default_rank)
                                     if entry else None,
                                     _detail(objects.parse(entry), center) if entry else ""))
    page = gate.read(partner, target, Filters(limit=INCOMING_PAGE, refers_to=center,
                                              after=after), with_body=True)
    related.incoming_after = page.last_added if page.more else None
    bodies: dict[str, dict[str, Any]] = {}
    for entry in page.entries:
        found = objects.parse(entry)
        via = named_refs(found).get(center)
        if via is None:  # the refs index keys ids by a 64-bit hash: a collision is not a link
            continue
        related.entries.append(entry)
        bodies[entry.id] = found
        related.incoming.append(Link(entry.id, tuple(via), objects.summary(entry, default_rank),
                                     _detail(found, center)))
    related.graph = _graph(gate, partner, target, obj, related, bodies, seen, default_rank)
    return related


def _graph(gate: Gate, partner: Partner, target: Target, obj: dict[str, Any],
           related: Related, bodies: dict[str, dict[str, Any]], seen: dict[str, Entry],
           default_rank: int) -> dict[str, Any]:
    """Nodes and edges for graph.js. A relationship that links this object to another is
    drawn as an edge between the two (when the reader sees the other end); everything else
    related is a node with an edge named by the referencing property."""
    center = str(obj.get("id", ""))
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []

    def node(ident: str, summary: objects.Summary | None, role: str) -> bool:
        if ident in nodes:
            return True
        if len(nodes) >= GRAPH_NODES:
            return False
        nodes[ident] = {"id": ident, "type": summary.type if summary else ident.split("--")[0],
                        "label": (summary.label if summary else "") or ident,
                        "tlp": summary.tlp if summary else "", "role": role,
                        "linked": summary is not None}
        return True

    center_summary = objects.Summary(center, str(obj.get("type", "")), _label(obj), "", False,
                                     "", "")
    node(center, center_summary, "center")
    for link in related.outgoing:
        if link.summary is not None and node(link.id, link.summary, "outgoing"):
            edges.append({"source": center, "target": link.id, "label": ", ".join(link.via)})
    others = {ident: _other_end(found, center) for ident, found in bodies.items()}
    ends = _read(gate, partner, target, [o for o in others.values() if o])
    related.entries += ends.values()
    for link in related.incoming:
        found, other = bodies[link.id], others.get(link.id)
        end = ends.get(other) if other else None
        if end is not None:
            if node(other or "", objects.summary(end, default_rank), "incoming"):
                edges.append({"source": str(found.get("source_ref")),
                              "target": str(found.get("target_ref")),
                              "label": str(found.get("relationship_type", "related-to")),
                              "via": link.id})
        elif node(link.id, link.summary, "incoming"):
            edges.append({"source": link.id, "target": center, "label": ", ".join(link.via)})
    return {"center": center, "nodes": list(nodes.values()), "edges": edges,
            "truncated": len(nodes) >= GRAPH_NODES}


def _other_end(found: dict[str, Any], center: str) -> str | None:
    """A relationship's end that is not this object (None: not a relationship of it)."""
    if found.get("type") != "relationship":
        return None
    source, target = found.get("source_ref"), found.get("target_ref")
    if source == center and isinstance(target, str) and target != center:
        return target
    if target == center and isinstance(source, str) and source != center:
        return source
    return None


def _label(obj: dict[str, Any]) -> str:
    return next((str(obj[k]) for k in ("name", "value", "pattern", "relationship_type")
                 if isinstance(obj.get(k), str)), "")[:200]


# -- the differences between two versions ----------------------------------------------------

@dataclass(frozen=True, slots=True)
class Change:
    name: str
    kind: str  # added, removed, changed
    before: str  # '' when added
    after: str  # '' when removed


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS if isinstance(value, dict | list) else 0
    return orjson.dumps(value, option=option).decode()


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Property by property, in the newer version's order then the removed ones; nested
    values are compared whole and shown as JSON."""
    changes = []
    for name, value in after.items():
        if name not in before:
            changes.append(Change(name, "added", "", _text(value)))
        elif before[name] != value:
            changes.append(Change(name, "changed", _text(before[name]), _text(value)))
    changes += [Change(name, "removed", _text(value), "") for name, value in before.items()
                if name not in after]
    return changes
