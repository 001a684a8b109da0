"""The sharing policy end to end: what each partner learns through the real TAXII API.

One server (uvicorn on loopback) per module, with collections and partners of its own:
partners cleared GREEN, AMBER (also a RED recipient), AMBER+STRICT, RED but not a RED
recipient, RED and a recipient, a GREEN partner who may write ("scout"), the writer who seeds
the data, and a relay. The writer seeds the shared collection through TAXII POSTs with
objects at every TLP level, TLP 1.0 ids, granular and statement markings, an unmarked object,
multi-version objects, references (direct, transitive, nested, dangling, arriving later,
reclassified) and the scout's own pushes.

The suite proves, against a small reference model of the rules in the README (the
Model class below; expected views are computed from it, never asked of the server):
- every way to learn that an object exists (objects with every filter, manifest, object,
  versions, paging, X-TAXII-Date-Added-* headers, counts, references) shows a partner exactly
  the versions it may see, in date_added order, and nothing else; a withheld object answers
  like an id that was never stored;
- a partner always sees what it pushed itself;
- the views follow every push (references arriving later, raised and lowered versions) and
  every delete;
- pushes are checked for provenance, reserved TLP definitions, required markings and the
  handling extension, refusing only the bad objects of a push;
- per-collection clearance overrides change that collection only;
- taxii2-client and stix2's TAXIICollectionSource get exactly the GREEN view.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import stix2
import yaml
from requests.exceptions import HTTPError
from stix2.datastore.filters import Filter
from taxii2client.v21 import Collection, as_pages

from exchange.config import load_settings
from exchange.policy import partners
from tests.conftest import API_ROOT, Env, LiveServer, identity_of, start_server

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
PAGE = 100  # default and max page size: every unpaged listing fits in one page

# -- TLP, written out from the standards (not imported from the server) -------------------------
CLEAR, GREEN, AMBER, STRICT, RED = range(5)
RANKS = {"clear": CLEAR, "green": GREEN, "amber": AMBER, "amber+strict": STRICT, "red": RED}
NAMES = {rank: name.upper() for name, rank in RANKS.items()}
TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2 = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP1 = {"white": stix2.TLP_WHITE.id, "green": stix2.TLP_GREEN.id, "amber": stix2.TLP_AMBER.id,
        "red": stix2.TLP_RED.id}
MARKING_RANK = {**{TLP2[n]: RANKS[n] for n in TLP2},
                TLP1["white"]: CLEAR, TLP1["green"]: GREEN, TLP1["amber"]: AMBER,
                TLP1["red"]: RED}
HANDLING = "extension-definition--c80796b6-b55e-4e2b-be8c-4ec092ab6f5f"


def tlp2_definition(level: str) -> dict[str, Any]:
    """The TLP 2.0 marking definition as the OASIS TLP 2.0 extension publishes it."""
    return {"type": "marking-definition", "spec_version": "2.1", "id": TLP2[level],
            "created": "2022-10-01T00:00:00.000Z", "name": f"TLP:{level.upper()}",
            "extensions": {TLP2_EXTENSION: {"extension_type": "property-extension",
                                            "tlp_2_0": level}}}


def tlp1_definition(level: str) -> dict[str, Any]:
    """The TLP 1.0 marking definition of STIX 2.1 section 7.2.1.4, as stix2 ships it."""
    marking = {"white": stix2.TLP_WHITE, "green": stix2.TLP_GREEN, "amber": stix2.TLP_AMBER,
               "red": stix2.TLP_RED}[level]
    definition: dict[str, Any] = json.loads(marking.serialize())
    return definition


# -- collections and partners -------------------------------------------------------------------
MAIN = "5a1e0000-0000-4000-8000-000000000001"      # the shared collection of the tables
OVERRIDE = "5a1e0000-0000-4000-8000-000000000002"  # clearance overrides
PROV = "5a1e0000-0000-4000-8000-000000000003"      # provenance and reserved markings
REQUIRE = "5a1e0000-0000-4000-8000-000000000004"   # require_marking: true
SCRATCH = "5a1e0000-0000-4000-8000-000000000005"   # deletes: changed by one test only
NESTED = "5a1e0000-0000-4000-8000-000000000006"    # references in custom properties
CYCLE = "5a1e0000-0000-4000-8000-000000000007"     # objects that reference each other

WRITER, SCOUT, RELAY = identity_of("writer"), identity_of("scout"), identity_of("relay")
RELAYED = identity_of("relayed-agency")  # a named identity the relay may push for
STRANGER = identity_of("stranger")       # an identity nobody may push for

# partner id -> (groups, clearance, relay_for)
PARTNERS: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "writer": (("writers",), "red", ()),
    "green": (("readers",), "green", ()),
    "amber": (("readers",), "amber", ()),
    "strict": (("readers", "analysts"), "amber+strict", ()),
    "red-out": (("readers",), "red", ()),
    "red-in": (("readers",), "red", ()),
    "scout": (("readers", "scouts"), "green", ()),
    "relay": (("relays",), "green", (RELAYED,)),
}


def collection_def(ident: str, alias: str, **extra: Any) -> dict[str, Any]:
    return {"id": ident, "api_root": API_ROOT, "alias": alias, "title": alias.title(), **extra}


MAIN_DEF = collection_def(
    MAIN, "shared", read=["group:readers", "partner:writer"],
    write=["partner:writer", "partner:scout"], default_marking="amber",
    # amber is named but has no RED clearance: it must still not get RED
    red_recipients=["partner:writer", "partner:red-in", "partner:amber"])
OVERRIDE_DEF = collection_def(
    OVERRIDE, "override", read=["group:readers", "partner:writer"], write=["partner:writer"],
    default_marking="clear", red_recipients=["partner:writer", "partner:green"],
    clearance={"group:readers": "green", "group:analysts": "amber", "group:scouts": "red",
               "partner:green": "red", "partner:red-in": "clear"})
PROV_DEF = collection_def(
    PROV, "provenance", read=["partner:writer", "partner:relay"],
    write=["partner:writer", "partner:relay"], default_marking="amber",
    red_recipients=["partner:writer"])
REQUIRE_DEF = collection_def(
    REQUIRE, "marked-only", read=["partner:writer"], write=["partner:writer"],
    default_marking="amber", require_marking=True, red_recipients=["partner:writer"])
SCRATCH_DEF = collection_def(
    SCRATCH, "scratch", read=["group:readers", "partner:writer"],
    write=["partner:writer", "partner:scout"], default_marking="amber",
    red_recipients=["partner:writer", "partner:red-in"])
NESTED_DEF = collection_def(
    NESTED, "nested", read=["group:readers", "partner:writer"], write=["partner:writer"],
    default_marking="amber", red_recipients=["partner:writer"])
CYCLE_DEF = {**NESTED_DEF, "id": CYCLE, "alias": "cycle", "title": "Cycle"}
DEFS = {d["id"]: d for d in (MAIN_DEF, OVERRIDE_DEF, PROV_DEF, REQUIRE_DEF, SCRATCH_DEF,
                             NESTED_DEF, CYCLE_DEF)}


def clearance(collection: dict[str, Any], who: str) -> int:
    """Effective clearance: a partner override, else the highest group override, else the
    partner's own; RED without being a RED recipient is AMBER+STRICT."""
    groups, own, _ = PARTNERS[who]
    principals = {f"partner:{who}", *(f"group:{g}" for g in groups)}
    overrides = collection.get("clearance", {})
    if f"partner:{who}" in overrides:
        rank = RANKS[overrides[f"partner:{who}"]]
    else:
        rank = max((RANKS[tlp] for p, tlp in overrides.items() if p in principals),
                   default=RANKS[own])
    if rank == RED and principals.isdisjoint(collection.get("red_recipients", ())):
        rank = STRICT
    return rank


# -- synthetic STIX: documentation IP ranges, .example names ---------------------------------
T0, T1, T2 = "2024-01-01T00:00:00.000Z", "2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"
NEVER_TS = "2023-06-01T00:00:00.000Z"  # a version nobody ever pushed
_NS = uuid.UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8")


def sid(kind: str, name: str) -> str:
    return f"{kind}--{uuid.uuid5(_NS, f'https://policy.example/{name}')}"


def marked(tlp: str | None) -> dict[str, Any]:
    return {"object_marking_refs": [TLP2[tlp]]} if tlp else {}


def sdo(kind: str, key: str, tlp: str | None, /, *, modified: str = T0,
        by: str | None = WRITER, **props: Any) -> dict[str, Any]:
    """An SDO/SRO of the writer's (by=None: no created_by_ref); `key` names its id."""
    obj = {"type": kind, "spec_version": "2.1", "id": sid(kind, key), "created": T0,
           "modified": modified, "created_by_ref": by, **props, **marked(tlp)}
    return {k: v for k, v in obj.items() if v is not None}


def indicator(key: str, tlp: str | None, ip: str = "198.51.100.20", **kw: Any) -> dict[str, Any]:
    return sdo("indicator", key, tlp, name=f"Example C2 {ip}", pattern_type="stix",
               pattern=f"[ipv4-addr:value = '{ip}']", valid_from="2024-01-01T00:00:00Z", **kw)


def malware(key: str, tlp: str | None, **kw: Any) -> dict[str, Any]:
    return sdo("malware", key, tlp, name=f"{key}.example loader", is_family=True, **kw)


def relation(key: str, tlp: str | None, source: str, target: str,
             **kw: Any) -> dict[str, Any]:
    return sdo("relationship", key, tlp, relationship_type="related-to", source_ref=source,
               target_ref=target, **kw)


STATEMENT = sid("marking-definition", "statement")  # not a TLP marking

# Seeded into MAIN: the writer's own identity, then one object per case.
IDENT = {"type": "identity", "spec_version": "2.1", "id": WRITER, "created": T0, "modified": T0,
         "name": "Writer CERT (cert.example)", "identity_class": "organization",
         **marked("clear")}  # its own identity: no created_by_ref needed
CLEAR_IND = indicator("clear", "clear", "192.0.2.1")
GREEN_IND = indicator("green", "green", "192.0.2.2")
AMBER_IND = indicator("amber", "amber", "192.0.2.3")
STRICT_IND = indicator("strict", "amber+strict", "192.0.2.4")
RED_IND = indicator("red", "red", "192.0.2.5")
TLP1_GREEN = indicator("tlp1-green", None, "192.0.2.6", object_marking_refs=[TLP1["green"]])
TLP1_RED = indicator("tlp1-red", None, "192.0.2.7", object_marking_refs=[TLP1["red"]])
GRANULAR = indicator("granular", "green", "192.0.2.8", description="seen at bank.example",
                     granular_markings=[{"marking_ref": TLP2["amber+strict"],
                                         "selectors": ["description"]}])
UNMARKED = indicator("unmarked", None, "192.0.2.9")  # takes the default: AMBER
STATEMENT_GREEN = indicator("statement-green", None, "192.0.2.10",
                            object_marking_refs=[STATEMENT, TLP2["green"]])
STATEMENT_ONLY = indicator("statement-only", None, "192.0.2.11",
                           object_marking_refs=[STATEMENT])  # no TLP: default AMBER
H2_GREEN = indicator("h2-green", "green", "192.0.2.12",
                     extensions={HANDLING: {"extension_type": "property-extension",
                                            "handling_codes": ["H2"]}})
REL_H2 = relation("to-h2", "green", GREEN_IND["id"], H2_GREEN["id"])  # H2 withholds nothing
MV = [indicator("multi", tlp, "198.51.100.1", modified=ts, confidence=c)
      for tlp, ts, c in (("green", T0, 10), ("amber", T1, 50), ("red", T2, 90))]
DECL = [indicator("declassified", tlp, "198.51.100.2", modified=ts)
        for tlp, ts in (("amber", T0), ("green", T1))]
WMV_V1 = indicator("shared-versions", "green", "198.51.100.3")
WMV_V2 = indicator("shared-versions", "amber", "198.51.100.3", modified=T1, by=SCOUT)
WMV_V3 = indicator("shared-versions", "amber", "198.51.100.3", modified=T2)
MAL_RED = malware("red-loader", "red")
REL_RED = relation("to-red", "green", GREEN_IND["id"], MAL_RED["id"])
REL_OK = relation("to-clear", "green", GREEN_IND["id"], CLEAR_IND["id"])
REL_MV = relation("to-multi", "green", GREEN_IND["id"], MV[0]["id"])  # newest MV is RED
REL_DECL = relation("to-declassified", "green", GREEN_IND["id"], DECL[0]["id"])
ABSENT = sid("malware", "absent")  # never in MAIN (OVERRIDE holds a RED object with this id)
REL_ABSENT = relation("to-absent", "green", GREEN_IND["id"], ABSENT)
SIGHTING = sdo("sighting", "amber-seen", "green", sighting_of_ref=AMBER_IND["id"],
               where_sighted_refs=[WRITER], count=3)
REPORT = sdo("report", "strict-report", "clear", name="Weekly report", published=T0,
             object_refs=[CLEAR_IND["id"], STRICT_IND["id"]])
NOTE = sdo("note", "transitive", "green", content="see the relationship",
           object_refs=[REL_RED["id"]])  # -> REL_RED -> MAL_RED: RED, transitively
EXT_REF = indicator("extension-ref", "green", "203.0.113.1", extensions={
    sid("extension-definition", "context"): {"extension_type": "property-extension",
                                             "seen_with_ref": AMBER_IND["id"]}})
CUSTOM_REF = indicator("custom-ref", "green", "203.0.113.2", x_example_case_ref=AMBER_IND["id"])
RAISED = [malware("raised", "green"), malware("raised", "red", modified=T1)]
REF_RAISED = relation("to-raised", "green", GREEN_IND["id"], RAISED[0]["id"])
LOWERED = [malware("lowered", "amber"), malware("lowered", "green", modified=T1)]
REF_LOWERED = relation("to-lowered", "green", GREEN_IND["id"], LOWERED[0]["id"])
LATE = malware("late", "amber")
LATE_REF = sdo("report", "late-ref", "green", name="Early report", published=T0,
               object_refs=[LATE["id"]])
SCOUT_AMBER = indicator("scout-amber", "amber", "203.0.113.3", by=SCOUT)
SCOUT_MV = [indicator("scout-multi", tlp, "203.0.113.4", modified=ts, by=SCOUT)
            for tlp, ts in (("green", T0), ("amber", T1))]
SCOUT_REF = relation("scout-to-own", "green", GREEN_IND["id"], SCOUT_AMBER["id"], by=SCOUT)
# The writer's GREEN reference to the scout's AMBER object: withheld from the scout too.
W_TO_SCOUT = relation("writer-to-scout", "green", GREEN_IND["id"], SCOUT_AMBER["id"])
# The scout's AMBER v1 is the oldest: its "first"; the writer's GREEN v2 is everyone's "last".
FIRST_OWN = [indicator("scout-first", "amber", "203.0.113.5", by=SCOUT),
             indicator("scout-first", "green", "203.0.113.5", modified=T1)]

# (phase, pusher, objects): pushed in this order, each as one TAXII POST.
PHASES: list[tuple[str, str, list[dict[str, Any]]]] = [
    ("base", "writer", [
        IDENT, CLEAR_IND, GREEN_IND, AMBER_IND, STRICT_IND, RED_IND, TLP1_GREEN, TLP1_RED,
        GRANULAR, UNMARKED, STATEMENT_GREEN, STATEMENT_ONLY, H2_GREEN, REL_H2, *MV, *DECL, WMV_V1,
        MAL_RED, REL_RED, REL_OK, REL_MV, REL_DECL, REL_ABSENT, SIGHTING, REPORT, NOTE,
        EXT_REF, CUSTOM_REF, RAISED[0], REF_RAISED, LOWERED[0], REF_LOWERED,
        LATE_REF,  # the referrer first ...
    ]),
    ("scout pushes", "scout", [SCOUT_AMBER, *SCOUT_MV, SCOUT_REF, WMV_V2, FIRST_OWN[0]]),
    ("late AMBER arrives", "writer", [LATE]),  # ... then what it references
    ("referenced raised to RED", "writer", [RAISED[1]]),
    ("referenced lowered to GREEN", "writer", [LOWERED[1]]),
    ("writer supersedes scout", "writer", [WMV_V3, FIRST_OWN[1], W_TO_SCOUT]),
]
READERS = ["green", "amber", "strict", "red-out", "red-in", "scout"]
LIMITS = {
    "green": "nothing above GREEN",
    "amber": "nothing above AMBER though a RED recipient",
    "strict": "nothing above AMBER+STRICT",
    "red-out": "no RED (not a RED recipient)",
    "red-in": "everything up to RED",
    "scout": "its own pushes, else nothing above GREEN",
}


# -- the reference model -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Version:
    obj: dict[str, Any]
    pusher: str

    @property
    def id(self) -> str:
        return str(self.obj["id"])

    @property
    def version(self) -> str:
        return str(self.obj["modified"])

    @property
    def key(self) -> tuple[str, str]:
        return self.id, self.version


def own_rank(obj: dict[str, Any], default: int) -> int:
    refs = [*obj.get("object_marking_refs", ()),
            *(g["marking_ref"] for g in obj.get("granular_markings", ()))]
    ranks = [MARKING_RANK[r] for r in refs if r in MARKING_RANK]
    return max(ranks, default=default)


def references(value: Any, top: bool = True) -> Iterator[str]:
    """Every *_ref / *_refs value, nested too, but not the author or the markings."""
    if isinstance(value, list):
        for item in value:
            yield from references(item, False)
    elif isinstance(value, dict):
        for name, item in value.items():
            if top and name in ("created_by_ref", "object_marking_refs", "granular_markings"):
                continue
            if name.endswith("_ref") and isinstance(item, str):
                yield item
            elif name.endswith("_refs") and isinstance(item, list):
                yield from (i for i in item if isinstance(i, str))
            else:
                yield from references(item, False)


class Model:
    """The README's sharing rules over what was pushed into one collection (push order is date_added
    order)."""

    def __init__(self, pushed: list[Version], default: int) -> None:
        self.order = {v: n for n, v in enumerate(pushed)}
        self.by_id: dict[str, list[Version]] = {}
        for v in pushed:
            self.by_id.setdefault(v.id, []).append(v)
        for versions in self.by_id.values():
            versions.sort(key=lambda v: v.version)
        self.rank = self._effective(pushed, default)

    def _effective(self, pushed: list[Version], default: int) -> dict[Version, int]:
        """max(own rank, effective rank of the newest version of each referenced id), to a
        fixpoint (transitive); an id not in the collection counts as CLEAR."""
        own = {v: own_rank(v.obj, default) for v in pushed}
        rank = dict(own)
        changed = True
        while changed:
            changed = False
            for v in pushed:
                found = [rank[self.by_id[r][-1]] for r in references(v.obj) if r in self.by_id]
                new = max([own[v], *found])
                if new != rank[v]:
                    rank[v], changed = new, True
        return rank

    def sees(self, v: Version, who: str, t: int) -> bool:
        return self.rank[v] <= t or v.pusher == who

    def picked(self, v: Version, who: str, t: int, selectors: Iterable[str]) -> bool:
        versions = self.by_id[v.id]
        below = [x for x in versions if self.rank[x] <= t]
        for selector in selectors:
            if selector == "all" and self.sees(v, who, t):
                return True
            if selector == "last":
                newest = versions[-1]
                if v is (newest if newest.pusher == who else (below[-1] if below else None)):
                    return True
            elif selector == "first":
                oldest = versions[0]
                if v is (oldest if oldest.pusher == who else (below[0] if below else None)):
                    return True
            elif v.version == selector and self.sees(v, who, t):
                return True
        return False

    def select(self, who: str, t: int, selectors: Iterable[str] = ("last",),
               ids: Iterable[str] | None = None,
               types: Iterable[str] | None = None) -> list[Version]:
        selectors, wanted = tuple(selectors), None if ids is None else set(ids)
        kinds = None if types is None else set(types)
        found = [v for ident, versions in self.by_id.items() for v in versions
                 if (wanted is None or ident in wanted)
                 and (kinds is None or v.obj["type"] in kinds)
                 and self.picked(v, who, t, selectors)]
        return sorted(found, key=self.order.__getitem__)

    def hidden_ids(self, who: str, t: int) -> set[str]:
        """Ids the partner sees no version of: they must never appear in what it gets."""
        return {i for i, vs in self.by_id.items() if not any(self.sees(v, who, t) for v in vs)}


def model_of(phases: Iterable[tuple[str, str, list[dict[str, Any]]]], default: int) -> Model:
    return Model([Version(o, who) for _, who, objs in phases for o in objs], default)


# -- the server ----------------------------------------------------------------------------------
def path(collection: str, rest: str = "objects/") -> str:
    return f"{API_ROOT}/collections/{collection}/{rest}"


@dataclass
class Seeded:
    live: LiveServer
    client: httpx.Client
    main: Model
    added: dict[tuple[str, str], str]  # (id, version) -> date_added, from the writer's view
    snapshots: dict[tuple[str, str], tuple[list[Any], list[Any]]]  # (phase, who) -> last, all
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)  # push batch -> status

    @property
    def env(self) -> Env:
        return self.live.env

    def get(self, url: str, who: str, **params: Any) -> httpx.Response:
        return self.client.get(url, params=params,
                               headers={"Accept": TAXII, **self.env.bearer(who)})

    def push(self, collection: str, who: str, objects: list[Any]) -> dict[str, Any]:
        response = self.client.post(
            path(collection), content=json.dumps({"objects": objects}),
            headers={"Accept": TAXII, "Content-Type": TAXII, **self.env.bearer(who)})
        assert response.status_code == 202, response.text
        status: dict[str, Any] = response.json()
        assert status["status"] == "complete", status
        return status


def write_policy_env(directory: Path) -> Env:
    """Like conftest.write_env, with this suite's collections and partners."""
    (directory / "collections").mkdir(parents=True)
    for item in DEFS.values():
        (directory / "collections" / f"{item['alias']}.yaml").write_text(yaml.safe_dump(item))
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({
        "store_path": "store.sqlite3", "partners_file": "partners.yaml",
        "collections_dir": "collections", "default_api_root": API_ROOT, "post_wait_seconds": 5,
        "api_roots": {API_ROOT: {"title": "Policy root", "max_content_length": 1024 * 1024,
                                 "max_page_size": PAGE, "default_page_size": PAGE}},
    }))
    settings = load_settings(config, environ={})
    credentials = {
        who: partners.add(settings.partners_file, who, who.title(), groups,
                          identity=identity_of(who), clearance=tlp, relay_for=relay)
        for who, (groups, tlp, relay) in PARTNERS.items()}
    return Env(settings, credentials)


def keys(objects: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(o["id"], o.get("modified", "")) for o in objects]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    env = write_policy_env(tmp_path_factory.mktemp("policy"))
    live = start_server(env)
    client = httpx.Client(base_url=live.url, timeout=30)
    try:
        s = Seeded(live, client, model_of(PHASES, AMBER), {}, {})
        for phase, who, objects in PHASES:
            status = s.push(MAIN, who, objects)
            assert (status["success_count"], status["failure_count"]) == (len(objects), 0), status
            for reader in READERS:  # what each reader sees after this push
                last = s.get(path(MAIN), reader).json().get("objects", [])
                every = s.get(path(MAIN), reader, **{"match[version]": "all"}).json()
                s.snapshots[phase, reader] = keys(last), keys(every.get("objects", []))
        # date_added of every version, for the header checks: the writer sees everything.
        manifest = s.get(path(MAIN, "manifest/"), "writer", **{"match[version]": "all"}).json()
        assert manifest["more"] is False
        s.added = {(m["id"], m["version"]): m["date_added"] for m in manifest["objects"]}
        assert list(s.added) == [v.key for v in s.main.order], "the writer's view is not whole"
        push_overrides(s)
        push_cases(s)
        yield s
    finally:
        client.close()
        live.stop()


# -- checking what a partner gets -----------------------------------------------------------------
def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == TAXII
    body: dict[str, Any] = response.json()
    return body


def rows(kind: str, body: dict[str, Any]) -> list[Any]:
    if kind == "versions":
        return list(body.get("versions", []))
    if kind == "manifest":
        return [(m["id"], m["version"], m["date_added"], m["media_type"])
                for m in body.get("objects", [])]
    return list(body.get("objects", []))


def expected_rows(s: Seeded, kind: str, versions: list[Version]) -> list[Any]:
    if kind == "versions":
        return [v.version for v in versions]
    if kind == "manifest":
        return [(v.id, v.version, s.added[v.key], STIX) for v in versions]
    return [v.obj for v in versions]


def check_dates(s: Seeded, response: httpx.Response, versions: list[Version]) -> None:
    """X-TAXII-Date-Added-First/Last are the first/last entry served, absent when none."""
    first = response.headers.get("x-taxii-date-added-first")
    last = response.headers.get("x-taxii-date-added-last")
    if not versions:
        assert (first, last) == (None, None)
    else:
        assert (first, last) == (s.added[versions[0].key], s.added[versions[-1].key])


def check_no_leak(s: Seeded, who: str, response: httpx.Response) -> None:
    leaked = {i for i in s.main.hidden_ids(who, clearance(MAIN_DEF, who)) if i in response.text}
    assert not leaked, f"{who} was told of {leaked}"


def check_listing(s: Seeded, who: str, url: str, kind: str, params: dict[str, str],
                  expected: list[Version], limit: int | None = None) -> None:
    """One listing, or every page of it when `limit` is given: exact entries and order, `more`
    and `next`, the date headers of each page, and no withheld id anywhere."""
    if limit is None:
        pages, chunks = [s.get(url, who, **params)], [expected]
    else:
        pages = [s.get(url, who, limit=limit, **params)]
        while pages[-1].json().get("more"):
            assert len(pages) <= len(expected), "more pages than visible entries"
            pages.append(s.get(url, who, limit=limit, next=pages[-1].json()["next"], **params))
        chunks = [expected[n:n + limit] for n in range(0, len(expected), limit)] or [[]]
    got = [rows(kind, ok(p)) for p in pages]
    assert got == [expected_rows(s, kind, c) for c in chunks]
    for n, page in enumerate(pages):
        more = n < len(pages) - 1
        assert page.json()["more"] is more and ("next" in page.json()) is more
        check_dates(s, page, chunks[n])
        check_no_leak(s, who, page)


def assert_like_unknown(s: Seeded, who: str, ident: str, rest: str = "",
                        collection: str = MAIN, **params: str) -> None:
    """A withheld id answers exactly like an id that was never stored."""
    unknown = f"{ident.split('--')[0]}--{uuid.uuid4()}"
    hidden, never = (s.client.get(path(collection, f"objects/{i}/{rest}"), params=params,
                                  headers={"Accept": TAXII, **s.env.bearer(who)})
                     for i in (ident, unknown))
    assert hidden.status_code == never.status_code == 404, hidden.text
    assert hidden.text.replace(ident, "<id>") == never.text.replace(unknown, "<id>")
    # Same headers too (the ids have the same length, so even Content-Length).
    assert {k: v for k, v in hidden.headers.items() if k != "date"} == \
        {k: v for k, v in never.headers.items() if k != "date"}


def expect(s: Seeded, who: str, selectors: Iterable[str] = ("last",), **kw: Any) -> list[Version]:
    return s.main.select(who, clearance(MAIN_DEF, who), selectors, **kw)


# -- 2. every way to learn of an object, for every partner ---------------------------------------
def reads_objects(s: Seeded, who: str) -> None:
    check_listing(s, who, path(MAIN), "objects", {}, expect(s, who))


def reads_every_version(s: Seeded, who: str) -> None:
    for selectors in (("all",), ("first",), ("last",), ("first", "last")):
        check_listing(s, who, path(MAIN), "objects", {"match[version]": ",".join(selectors)},
                      expect(s, who, selectors))


def reads_each_timestamp(s: Seeded, who: str) -> None:
    for stamp in (T0, T1, T2, NEVER_TS, f"{T1},{T2}"):
        selectors = stamp.split(",")
        check_listing(s, who, path(MAIN), "objects", {"match[version]": stamp},
                      expect(s, who, selectors))


def reads_added_after(s: Seeded, who: str) -> None:
    versions = list(s.main.order)
    for cut in versions[::6]:  # withheld versions' date_added among them
        after = s.added[cut.key]
        for selectors in (("last",), ("all",)):
            expected = [v for v in expect(s, who, selectors) if s.added[v.key] > after]
            check_listing(s, who, path(MAIN), "objects",
                          {"added_after": after, "match[version]": ",".join(selectors)},
                          expected)


def reads_by_type(s: Seeded, who: str) -> None:
    for types in (["indicator"], ["malware"], ["relationship", "sighting", "report", "note"]):
        for selectors in (("last",), ("all",)):
            params = {"match[type]": ",".join(types), "match[version]": ",".join(selectors)}
            check_listing(s, who, path(MAIN), "objects", params,
                          expect(s, who, selectors, types=types))


def reads_by_id(s: Seeded, who: str) -> None:
    ids = [*s.main.by_id, sid("indicator", "never-pushed")]
    for selectors in (("last",), ("all",)):
        for chunk in (ids[:25], ids[25:]):  # match[id] takes up to 100; two lists of mixed ids
            params = {"match[id]": ",".join(chunk), "match[version]": ",".join(selectors)}
            check_listing(s, who, path(MAIN), "objects", params,
                          expect(s, who, selectors, ids=chunk))
        for ident in ids:  # one id at a time: withheld ones give an empty list, like unknown
            check_listing(s, who, path(MAIN), "objects", {"match[id]": ident},
                          expect(s, who, ids=[ident]))


def reads_manifest(s: Seeded, who: str) -> None:
    for selectors in (("last",), ("all",), ("first",), (T1,)):
        check_listing(s, who, path(MAIN, "manifest/"), "manifest",
                      {"match[version]": ",".join(selectors)}, expect(s, who, selectors))
    check_listing(s, who, path(MAIN, "manifest/"), "manifest", {"match[type]": "relationship"},
                  expect(s, who, types=["relationship"]))


def reads_each_object(s: Seeded, who: str) -> None:
    t = clearance(MAIN_DEF, who)
    for ident, versions in s.main.by_id.items():
        if not any(s.main.sees(v, who, t) for v in versions):
            for params in ({}, {"match[version]": "all"}, {"match[version]": "first"}):
                assert_like_unknown(s, who, ident, **params)
            continue
        for selectors in (("last",), ("all",), ("first",), (T0,), (T2,), (NEVER_TS,)):
            check_listing(s, who, path(MAIN, f"objects/{ident}/"), "objects",
                          {"match[version]": ",".join(selectors)},
                          expect(s, who, selectors, ids=[ident]))
        check_listing(s, who, path(MAIN, f"objects/{ident}/"), "objects", {},
                      expect(s, who, ids=[ident]))


def reads_each_versions(s: Seeded, who: str) -> None:
    t = clearance(MAIN_DEF, who)
    for ident, versions in s.main.by_id.items():
        seen = expect(s, who, ("all",), ids=[ident])
        if not seen:
            assert_like_unknown(s, who, ident, "versions/")
            continue
        assert seen == [v for v in versions if s.main.sees(v, who, t)]
        url = path(MAIN, f"objects/{ident}/versions/")
        check_listing(s, who, url, "versions", {}, seen)
        if len(seen) > 1:
            check_listing(s, who, url, "versions", {}, seen, limit=1)


def pages_objects(s: Seeded, who: str) -> None:
    for limit in (1, 2, 7):
        check_listing(s, who, path(MAIN), "objects", {"match[version]": "all"},
                      expect(s, who, ("all",)), limit=limit)
    check_listing(s, who, path(MAIN), "objects", {}, expect(s, who), limit=3)
    check_listing(s, who, path(MAIN), "objects", {"match[type]": "indicator,malware"},
                  expect(s, who, types=["indicator", "malware"]), limit=4)
    check_listing(s, who, path(MAIN, f"objects/{MV[0]['id']}/"), "objects",
                  {"match[version]": "all"}, expect(s, who, ("all",), ids=[MV[0]["id"]]), limit=1)


def pages_manifest(s: Seeded, who: str) -> None:
    check_listing(s, who, path(MAIN, "manifest/"), "manifest", {"match[version]": "all"},
                  expect(s, who, ("all",)), limit=2)
    check_listing(s, who, path(MAIN, "manifest/"), "manifest", {}, expect(s, who), limit=5)


def counts_match(s: Seeded, who: str) -> None:
    """`more` counts visible entries only: a page as large as the view is the last one."""
    for selectors in (("last",), ("all",)):
        visible = expect(s, who, selectors)
        params = {"match[version]": ",".join(selectors)}
        for limit in (len(visible), len(visible) - 1):
            check_listing(s, who, path(MAIN), "objects", params, visible, limit=limit)
        check_listing(s, who, path(MAIN, "manifest/"), "manifest", params, visible,
                      limit=len(visible))


WAYS: dict[str, Callable[[Seeded, str], None]] = {
    "reads objects": reads_objects,
    "reads match[version] all/first/last": reads_every_version,
    "reads match[version] timestamps": reads_each_timestamp,
    "reads added_after": reads_added_after,
    "reads match[type]": reads_by_type,
    "reads match[id]": reads_by_id,
    "reads manifest": reads_manifest,
    "gets each object by id": reads_each_object,
    "gets each object's versions": reads_each_versions,
    "pages objects (every page)": pages_objects,
    "pages manifest (every page)": pages_manifest,
    "counts with limit = visible count": counts_match,
}


@pytest.mark.parametrize(("who", "way"), [
    pytest.param(who, way, id=f"{who} {name} -> {LIMITS[who]}")
    for who in READERS for name, way in WAYS.items()])
def test_partner_learns_exactly_what_it_may_see(seeded: Seeded, who: str,
                                                way: Callable[[Seeded, str], None]):
    way(seeded, who)


@pytest.mark.parametrize(("who", "visible"), [
    pytest.param("green", {CLEAR, GREEN}, id="green -> CLEAR, GREEN"),
    pytest.param("amber", {CLEAR, GREEN, AMBER}, id="amber (RED recipient) -> up to AMBER"),
    pytest.param("strict", {CLEAR, GREEN, AMBER, STRICT}, id="strict -> up to AMBER+STRICT"),
    pytest.param("red-out", {CLEAR, GREEN, AMBER, STRICT}, id="red-out -> up to AMBER+STRICT"),
    pytest.param("red-in", {CLEAR, GREEN, AMBER, STRICT, RED}, id="red-in -> up to RED"),
])
def test_effective_ranks_pinned_by_hand(seeded: Seeded, who: str, visible: set[int]):
    """Single-version objects with their effective rank written out by hand (a check on the
    reference model too): own markings (TLP 2.0, TLP 1.0, granular, statement, none -> the
    AMBER default, H2) and references (direct, transitive, in an extension, dangling)."""
    ranks = {CLEAR_IND["id"]: CLEAR, GREEN_IND["id"]: GREEN, AMBER_IND["id"]: AMBER,
             STRICT_IND["id"]: STRICT, RED_IND["id"]: RED, TLP1_GREEN["id"]: GREEN,
             TLP1_RED["id"]: RED, GRANULAR["id"]: STRICT, UNMARKED["id"]: AMBER,
             STATEMENT_GREEN["id"]: GREEN, STATEMENT_ONLY["id"]: AMBER, H2_GREEN["id"]: GREEN,
             REL_RED["id"]: RED, REL_OK["id"]: GREEN, REL_MV["id"]: RED, REL_DECL["id"]: GREEN,
             REL_ABSENT["id"]: GREEN, SIGHTING["id"]: AMBER, REPORT["id"]: STRICT,
             NOTE["id"]: RED, EXT_REF["id"]: AMBER, CUSTOM_REF["id"]: AMBER,
             REL_H2["id"]: GREEN}
    model = {i: NAMES[seeded.main.rank[seeded.main.by_id[i][-1]]] for i in ranks}
    assert model == {i: NAMES[r] for i, r in ranks.items()}
    body = ok(seeded.get(path(MAIN), who, **{"match[id]": ",".join(ranks)}))
    listed = {o["id"] for o in body.get("objects", [])}
    wrong = {i: NAMES[r] for i, r in ranks.items() if (i in listed) != (r in visible)}
    assert not wrong, f"listed or withheld against its rank: {wrong}"


# -- the views follow every push ----------------------------------------------------------------
@pytest.mark.parametrize(("phase", "who"), [
    pytest.param(phase, who, id=f"after '{phase}': {who}")
    for phase, _, _ in PHASES for who in READERS])
def test_views_follow_each_push(seeded: Seeded, phase: str, who: str):
    upto = PHASES[:[name for name, _, _ in PHASES].index(phase) + 1]
    model, t = model_of(upto, AMBER), clearance(MAIN_DEF, who)
    last, every = seeded.snapshots[phase, who]
    assert last == [v.key for v in model.select(who, t)]
    assert every == [v.key for v in model.select(who, t, ("all",))]


def in_view(seeded: Seeded, phase: str, who: str) -> set[str]:
    return {i for i, _ in seeded.snapshots[phase, who][0]}


def test_reference_arriving_later_withholds_the_referrer(seeded: Seeded):
    assert LATE_REF["id"] in in_view(seeded, "scout pushes", "green")  # dangling: CLEAR
    assert LATE_REF["id"] not in in_view(seeded, "late AMBER arrives", "green")
    assert LATE_REF["id"] in in_view(seeded, "late AMBER arrives", "amber")


def test_referenced_object_raised_then_referrer_withheld(seeded: Seeded):
    before, after = "late AMBER arrives", "referenced raised to RED"
    assert {REF_RAISED["id"], RAISED[0]["id"]} <= in_view(seeded, before, "green")
    assert REF_RAISED["id"] not in in_view(seeded, after, "green")
    assert REF_RAISED["id"] not in in_view(seeded, after, "strict")
    assert (RAISED[0]["id"], T0) in seeded.snapshots[after, "green"][0]  # v1 stays GREEN
    assert (REF_RAISED["id"], T0) in seeded.snapshots[after, "red-in"][0]


def test_referenced_object_lowered_then_referrer_shown(seeded: Seeded):
    before, after = "referenced raised to RED", "referenced lowered to GREEN"
    assert REF_LOWERED["id"] not in in_view(seeded, before, "green")
    assert REF_LOWERED["id"] in in_view(seeded, after, "green")
    assert (LOWERED[1]["id"], T1) in seeded.snapshots[after, "green"][0]


def test_reference_cycle_follows_a_lowered_reference(seeded: Seeded):
    """Reports A and B reference each other, and B references L. Transitively, A and B reach
    A, B and L: while L is AMBER they are AMBER; once L's newest version is GREEN, everything
    they reach is GREEN, and so are they (the rules are recomputed when a referenced object
    gets a new version, raised or lowered)."""
    s = seeded
    low = [malware("cycle-l", "amber"), malware("cycle-l", "green", modified=T1)]
    a = sdo("report", "cycle-a", "green", name="A", published=T0,
            object_refs=[sid("report", "cycle-b")])
    b = sdo("report", "cycle-b", "green", name="B", published=T0,
            object_refs=[a["id"], low[0]["id"]])
    assert s.push(CYCLE, "writer", [low[0], a, b])["success_count"] == 3

    def listed(who: str) -> list[tuple[str, str]]:
        response = s.get(path(CYCLE), who, **{"match[version]": "all"})
        return keys(ok(response).get("objects", []))

    assert listed("green") == []
    assert listed("amber") == keys([low[0], a, b])
    s.push(CYCLE, "writer", [low[1]])
    assert listed("green") == keys([a, b, low[1]])


# -- 3. a partner always sees what it pushed ------------------------------------------------------
def test_green_writer_reads_back_its_amber_push(seeded: Seeded):
    s, ident = seeded, SCOUT_AMBER["id"]
    assert ok(s.get(path(MAIN), "scout", **{"match[id]": ident}))["objects"] == [SCOUT_AMBER]
    assert ident in {o["id"] for o in ok(s.get(path(MAIN), "scout"))["objects"]}
    assert ok(s.get(path(MAIN, f"objects/{ident}/"), "scout"))["objects"] == [SCOUT_AMBER]
    versions = ok(s.get(path(MAIN, f"objects/{ident}/versions/"), "scout"))
    assert versions == {"more": False, "versions": [T0]}
    manifest = ok(s.get(path(MAIN, "manifest/"), "scout", **{"match[id]": ident}))
    assert [(m["id"], m["version"]) for m in manifest["objects"]] == [(ident, T0)]
    # Its own newest AMBER version is its "last"; GREEN's last is the older GREEN one.
    mv = SCOUT_MV[0]["id"]
    assert ok(s.get(path(MAIN, f"objects/{mv}/"), "scout"))["objects"] == [SCOUT_MV[1]]
    assert ok(s.get(path(MAIN, f"objects/{mv}/"), "green"))["objects"] == [SCOUT_MV[0]]
    # What it pushed stays withheld from a partner of the same clearance, and what others
    # pushed that references it stays withheld from the scout.
    assert_like_unknown(s, "green", ident)
    assert_like_unknown(s, "green", ident, "versions/")
    assert_like_unknown(s, "scout", W_TO_SCOUT["id"])


def test_last_is_newest_visible_when_someone_else_pushed_the_newest(seeded: Seeded):
    """WMV: v1 GREEN (writer), v2 AMBER (scout), v3 AMBER (writer). The scout sees v1 and v2,
    but "last" is the newest at or below GREEN (v1): it did not push the newest version."""
    s, ident = seeded, WMV_V1["id"]
    assert ok(s.get(path(MAIN, f"objects/{ident}/versions/"), "scout"))["versions"] == [T0, T1]
    assert ok(s.get(path(MAIN, f"objects/{ident}/"), "scout"))["objects"] == [WMV_V1]
    assert ok(s.get(path(MAIN, f"objects/{ident}/"), "amber"))["objects"] == [WMV_V3]
    # "first" is symmetric: the scout pushed the oldest (AMBER) version, so that one.
    ident = FIRST_OWN[0]["id"]
    first = {"match[version]": "first"}
    assert ok(s.get(path(MAIN, f"objects/{ident}/"), "scout", **first))["objects"] == \
        [FIRST_OWN[0]]
    assert ok(s.get(path(MAIN, f"objects/{ident}/"), "green", **first))["objects"] == \
        [FIRST_OWN[1]]


def test_reference_nested_in_a_custom_property_withholds_the_referrer(seeded: Seeded):
    """"any *_ref / *_refs (also nested, e.g. in extensions)": a reference inside a custom
    property names the referenced object just as well, so it counts too; and the referrer's
    rank must not depend on what happened to its other references since."""
    s = seeded
    target = indicator("nested-target", "amber", "198.51.100.99")
    other = [malware("nested-other", "green"), malware("nested-other", "clear", modified=T1)]
    in_dict = relation("nested-in-dict", "green", GREEN_IND["id"], other[0]["id"],
                       x_example_context={"case_ref": target["id"]})
    in_list = indicator("nested-in-list", "green", "198.51.100.98",
                        x_example_cases=[{"related_ref": target["id"]}])
    assert s.push(NESTED, "writer", [target, other[0], in_dict, in_list])["success_count"] == 4

    def listed(who: str) -> list[tuple[str, str]]:
        response = s.get(path(NESTED), who, **{"match[version]": "all"})
        if who == "green":
            assert target["id"] not in response.text, "GREEN was told of the AMBER object"
        return keys(ok(response).get("objects", []))

    assert listed("green") == keys([other[0]])
    assert listed("amber") == keys([target, other[0], in_dict, in_list])
    for referrer in (in_dict, in_list):
        assert_like_unknown(s, "green", referrer["id"], collection=NESTED)
    s.push(NESTED, "writer", [other[1]])  # lowering another reference changes nothing here
    assert listed("green") == keys([other[0], other[1]])


# -- 4. provenance and reserved markings ---------------------------------------------------------
@dataclass(frozen=True)
class Case:
    batch: str  # one TAXII POST per batch, in order
    obj: dict[str, Any]
    refused: str | None  # part of the failure message; None: accepted


def handled(name: str, ext: dict[str, Any]) -> dict[str, Any]:
    return indicator(name, "green", "203.0.113.50",
                     extensions={HANDLING: {"extension_type": "property-extension", **ext}})


def tampered(base: dict[str, Any], /, **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def ipv4(value: str) -> dict[str, Any]:
    sco_ns = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
    ident = uuid.uuid5(sco_ns, json.dumps({"value": value}, separators=(",", ":")))
    return {"type": "ipv4-addr", "spec_version": "2.1", "id": f"ipv4-addr--{ident}",
            "value": value}


# batch -> (pusher, collection). The standard TLP definitions go in a push of their own: the
# tampered ones above share their ids, and a status names objects by id.
BATCHES = {"writer -> provenance": ("writer", PROV), "writer -> standard TLP": ("writer", PROV),
           "relay -> provenance": ("relay", PROV), "writer -> marked-only": ("writer", REQUIRE)}
NOT_MINE = "is not this partner's identity"
REQUIRED_AUTHOR = "created_by_ref is required"
RESERVED = "reserved"
BAD_HANDLING = "handling extension"
NO_TLP = "requires a TLP marking"
TLP_AMBER_TAMPERED = tampered(tlp2_definition("amber"), name="TLP:GREEN")
TLP_RED_TAMPERED = tampered(tlp2_definition("red"), extensions={TLP2_EXTENSION: {
    "extension_type": "property-extension", "tlp_2_0": "clear"}})
TLP1_RED_TAMPERED = tampered(tlp1_definition("red"), definition={"tlp": "white"})
TLP_GREEN_AUTHORED = tampered(tlp2_definition("green"), created_by_ref=WRITER)
CASES = [
    pytest.param(Case("writer -> provenance", indicator("others", "green", by=identity_of(
        "green")), NOT_MINE), id="SDO by another partner's identity -> refused"),
    pytest.param(Case("writer -> provenance", indicator("no-author", "green", by=None),
                      REQUIRED_AUTHOR), id="SDO without created_by_ref -> refused"),
    pytest.param(Case("writer -> provenance", relation("no-author", "green", CLEAR_IND["id"],
                                                       GREEN_IND["id"], by=None),
                      REQUIRED_AUTHOR), id="relationship without created_by_ref -> refused"),
    pytest.param(Case("writer -> provenance", sdo("sighting", "no-author", "green", by=None,
                                                  sighting_of_ref=CLEAR_IND["id"]),
                      REQUIRED_AUTHOR), id="sighting without created_by_ref -> refused"),
    pytest.param(Case("writer -> provenance", IDENT, None),
                 id="own identity without created_by_ref -> accepted"),
    pytest.param(Case("writer -> provenance", {**IDENT, "id": STRANGER, "name": "Stranger"},
                      REQUIRED_AUTHOR), id="another identity without created_by_ref -> refused"),
    pytest.param(Case("writer -> provenance", indicator("mine", "green"), None),
                 id="SDO by own identity -> accepted"),
    pytest.param(Case("writer -> provenance", ipv4("192.0.2.77"), None),
                 id="SCO without created_by_ref -> accepted"),
    pytest.param(Case("writer -> provenance", {
        "type": "marking-definition", "spec_version": "2.1", "id": STATEMENT, "created": T0,
        "definition_type": "statement", "definition": {"statement": "(c) cert.example"}},
        None), id="statement marking without created_by_ref -> accepted"),
    pytest.param(Case("writer -> provenance", TLP_AMBER_TAMPERED, RESERVED),
                 id="TLP:AMBER id named TLP:GREEN -> refused"),
    pytest.param(Case("writer -> provenance", TLP_RED_TAMPERED, RESERVED),
                 id="TLP:RED id with tlp_2_0 clear -> refused"),
    pytest.param(Case("writer -> provenance", TLP1_RED_TAMPERED, RESERVED),
                 id="TLP 1.0 RED id defined white -> refused"),
    pytest.param(Case("writer -> provenance", TLP_GREEN_AUTHORED, RESERVED),
                 id="TLP:GREEN with an extra property -> refused"),
    pytest.param(Case("writer -> provenance", handled("h5", {"handling_codes": ["H5"]}),
                      BAD_HANDLING), id="handling code H5 -> refused"),
    pytest.param(Case("writer -> provenance", handled("h3-bare", {"handling_codes": ["H3"]}),
                      BAD_HANDLING), id="H3 without handling_conditions -> refused"),
    pytest.param(Case("writer -> provenance", handled("h-empty", {}), BAD_HANDLING),
                 id="handling extension with nothing in it -> refused"),
    pytest.param(Case("writer -> provenance", handled("h2", {"handling_codes": ["H2"]}), None),
                 id="handling H2 -> accepted"),
    pytest.param(Case("writer -> provenance", handled("h3", {
        "handling_codes": ["H0", "H3"], "handling_conditions": "Only for case 2024/17.",
        "source_reliability": "B", "information_accuracy": "2"}), None),
        id="H0+H3 with conditions, graded -> accepted"),
    pytest.param(Case("writer -> standard TLP", tlp2_definition("amber"), None),
                 id="standard TLP:AMBER definition -> accepted"),
    pytest.param(Case("writer -> standard TLP", tlp2_definition("red"), None),
                 id="standard TLP:RED definition -> accepted"),
    pytest.param(Case("writer -> standard TLP", tlp1_definition("green"), None),
                 id="standard TLP 1.0 GREEN definition -> accepted"),
    pytest.param(Case("relay -> provenance", indicator("relayed", "green", by=RELAYED), None),
                 id="relay for its named identity -> accepted"),
    pytest.param(Case("relay -> provenance", indicator("not-relayed", "green", by=STRANGER),
                      NOT_MINE), id="relay for an identity not named -> refused"),
    pytest.param(Case("relay -> provenance", indicator("relay-own", "green", by=RELAY), None),
                 id="relay under its own identity -> accepted"),
    pytest.param(Case("relay -> provenance", indicator("relay-none", "green", by=None),
                      REQUIRED_AUTHOR), id="relay without created_by_ref -> refused"),
    pytest.param(Case("writer -> marked-only", indicator("req-unmarked", None), NO_TLP),
                 id="require_marking: unmarked -> refused"),
    pytest.param(Case("writer -> marked-only", indicator(
        "req-statement", None, object_marking_refs=[STATEMENT]), NO_TLP),
        id="require_marking: statement marking only -> refused"),
    pytest.param(Case("writer -> marked-only", indicator("req-green", "green"), None),
                 id="require_marking: TLP:GREEN -> accepted"),
    pytest.param(Case("writer -> marked-only", indicator(
        "req-tlp1", None, object_marking_refs=[TLP1["white"]]), None),
        id="require_marking: TLP 1.0 WHITE -> accepted"),
    pytest.param(Case("writer -> marked-only", indicator(
        "req-granular", None, description="x", granular_markings=[
            {"marking_ref": TLP2["amber"], "selectors": ["description"]}]), None),
        id="require_marking: granular TLP only -> accepted"),
]


def batch(name: str) -> list[Case]:
    return [p.values[0] for p in CASES if p.values[0].batch == name]


def push_cases(s: Seeded) -> None:
    for name, (who, collection) in BATCHES.items():
        s.statuses[name] = s.push(collection, who, [c.obj for c in batch(name)])


def version_of(obj: dict[str, Any]) -> str:
    return str(obj.get("modified", obj.get("created", "")))


@pytest.mark.parametrize("case", CASES)
def test_push_checks(seeded: Seeded, case: Case):
    status = seeded.statuses[case.batch]
    failures = [f for f in status.get("failures", []) if f["id"] == case.obj["id"]]
    successes = [x for x in status.get("successes", []) if x["id"] == case.obj["id"]]
    if case.refused is None:
        assert (len(successes), failures) == (1, []), status
        if case.obj["type"] != "ipv4-addr":
            assert successes[0]["version"] == version_of(case.obj)
    else:
        assert (successes, len(failures)) == ([], 1), status
        assert case.refused in failures[0]["message"], failures[0]
        assert failures[0]["version"] == version_of(case.obj)


@pytest.mark.parametrize("name", list(BATCHES))
def test_push_counts_add_up_and_the_valid_objects_are_stored(seeded: Seeded, name: str):
    status, cases = seeded.statuses[name], batch(name)
    accepted = [c.obj for c in cases if c.refused is None]
    assert status["total_count"] == len(cases)
    assert (status["success_count"], status["failure_count"], status["pending_count"]) == \
        (len(accepted), len(cases) - len(accepted), 0)
    assert len(status.get("successes", [])) == status["success_count"]
    assert len(status.get("failures", [])) == status["failure_count"]
    # The writer (RED, a recipient) sees everything there: what was stored, and nothing else.
    collection = BATCHES[name][1]
    stored = ok(seeded.get(path(collection), "writer", limit=PAGE,
                           **{"match[version]": "all"})).get("objects", [])
    batches = [n for n, (_, c) in BATCHES.items() if c == collection]
    everything = [c.obj for n in batches for c in batch(n) if c.refused is None]
    assert stored == everything
    for case in cases:
        if case.refused is not None and case.obj["id"] not in {o["id"] for o in everything}:
            answer = seeded.get(path(collection, f"objects/{case.obj['id']}/"), "writer")
            assert answer.status_code == 404


# -- 5. per-collection clearance overrides -------------------------------------------------------
OVERRIDDEN = [indicator(f"override-{level}", level, f"203.0.113.{60 + n}")
              for n, level in enumerate(RANKS)]
OVERRIDDEN += [indicator("override-unmarked", None, "203.0.113.70"),  # default here: CLEAR
               malware("absent", "red")]  # the id MAIN's REL_ABSENT references: not MAIN's


def push_overrides(s: Seeded) -> None:
    status = s.push(OVERRIDE, "writer", OVERRIDDEN)
    assert status["success_count"] == len(OVERRIDDEN), status


@pytest.mark.parametrize(("who", "rank"), [
    pytest.param("green", RED, id="green: partner entry red, a recipient -> sees RED"),
    pytest.param("amber", GREEN, id="amber: group entry green -> lowered to GREEN"),
    pytest.param("strict", AMBER, id="strict: highest group entry amber -> AMBER"),
    pytest.param("red-out", GREEN, id="red-out: group entry green -> GREEN"),
    pytest.param("red-in", CLEAR, id="red-in: partner entry clear beats group -> CLEAR"),
    pytest.param("scout", STRICT, id="scout: group entry red, not a recipient -> AMBER+STRICT"),
])
def test_clearance_overrides_apply_to_their_collection_only(seeded: Seeded, who: str,
                                                            rank: int):
    assert clearance(OVERRIDE_DEF, who) == rank  # the reference function agrees with the id
    model = Model([Version(o, "writer") for o in OVERRIDDEN], CLEAR)
    for selectors in (("last",), ("all",)):
        body = ok(seeded.get(path(OVERRIDE), who, **{"match[version]": ",".join(selectors)}))
        assert keys(body.get("objects", [])) == [v.key for v in model.select(who, rank, selectors)]
    for obj in OVERRIDDEN:
        if model.rank[model.by_id[obj["id"]][0]] > rank:
            assert_like_unknown(seeded, who, obj["id"], collection=OVERRIDE)
    # The same partner in MAIN keeps its own clearance.
    reads_objects(seeded, who)
    reads_every_version(seeded, who)


# -- deletes: only what the deleter sees; the view follows -----------------------------------------
def test_delete_removes_only_what_the_deleter_sees(seeded: Seeded):
    s = seeded
    x = [indicator("del-x", "green", "192.0.2.90"),
         indicator("del-x", "amber", "192.0.2.90", modified=T1)]
    y = indicator("del-y", "red", "192.0.2.91")
    z = [malware("del-z", "green"), malware("del-z", "red", modified=T1)]
    r = relation("del-r", "green", z[0]["id"], sid("identity", "not-stored"))
    assert s.push(SCRATCH, "writer", [*x, y, *z, r])["success_count"] == 6
    headers = {"Accept": TAXII, **s.env.bearer("scout")}
    objects = path(SCRATCH, "objects/")

    assert r["id"] not in {o["id"] for o in ok(s.get(objects, "green")).get("objects", [])}
    # The scout (GREEN, may write) deletes X: only the GREEN version goes.
    assert s.client.delete(f"{objects}{x[0]['id']}/", headers=headers).status_code == 200
    versions = ok(s.get(f"{objects}{x[0]['id']}/versions/", "amber"))
    assert versions["versions"] == [T1]
    assert s.get(f"{objects}{x[0]['id']}/", "green").status_code == 404
    # Y is RED: for the scout it is not there, exactly like an id never stored.
    unknown = f"indicator--{uuid.uuid4()}"
    gone = s.client.delete(f"{objects}{y['id']}/", headers=headers)
    never = s.client.delete(f"{objects}{unknown}/", headers=headers)
    assert gone.status_code == never.status_code == 404
    assert gone.text.replace(y["id"], "<id>") == never.text.replace(unknown, "<id>")
    assert ok(s.get(f"{objects}{y['id']}/", "red-in"))["objects"] == [y]
    # Deleting Z's RED version lowers Z: R, which references it, comes back for GREEN.
    writer = {"Accept": TAXII, **s.env.bearer("writer")}
    deleted = s.client.delete(f"{objects}{z[0]['id']}/", params={"match[version]": T1},
                              headers=writer)
    assert deleted.status_code == 200
    listed = ok(s.get(objects, "green", **{"match[version]": "all"})).get("objects", [])
    assert keys(listed) == keys([z[0], r])


# -- 6. real clients as the GREEN partner ---------------------------------------------------------
def green_collection(s: Seeded) -> Collection:
    return Collection(s.live.collection(MAIN), user="green",
                      password=s.env.credentials["green"].password)


def test_taxii2client_gets_the_green_view(seeded: Seeded):
    s = seeded
    latest, every = expect(s, "green"), expect(s, "green", ("all",))
    with green_collection(s) as collection:
        pages = list(as_pages(collection.get_objects, per_request=3))
        assert [o for p in pages for o in p.get("objects", [])] == [v.obj for v in latest]
        assert [p["more"] for p in pages] == [True] * (len(pages) - 1) + [False]
        pages = list(as_pages(collection.get_objects, per_request=4, version="all"))
        assert [o for p in pages for o in p.get("objects", [])] == [v.obj for v in every]
        pages = list(as_pages(collection.get_manifest, per_request=5, version="all"))
        assert [(m["id"], m["version"], m["date_added"]) for p in pages for m in p["objects"]] \
            == [(v.id, v.version, s.added[v.key]) for v in every]
        for ident in s.main.by_id:
            mine = expect(s, "green", ("all",), ids=[ident])
            if mine:
                assert collection.get_object(ident)["objects"] == \
                    [v.obj for v in expect(s, "green", ids=[ident])]
                assert collection.object_versions(ident)["versions"] == \
                    [v.version for v in mine]
                continue
            unknown = f"{ident.split('--')[0]}--{uuid.uuid4()}"
            errors = []
            for asked in (ident, unknown):
                with pytest.raises(HTTPError) as raised:
                    collection.get_object(asked)
                errors.append((raised.value.response.status_code,
                               raised.value.response.text.replace(asked, "<id>")))
            assert errors[0] == errors[1] and errors[0][0] == 404


def as_dict(obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(obj.serialize())
    return result


def test_stix2_source_gets_the_green_view(seeded: Seeded):
    s = seeded
    with green_collection(s) as collection:
        source = stix2.TAXIICollectionSource(collection)
        assert sorted(keys(map(as_dict, source.query()))) == \
            sorted(v.key for v in expect(s, "green"))
        relationships = source.query([Filter("type", "=", "relationship")])
        assert sorted(keys(map(as_dict, relationships))) == \
            sorted(v.key for v in expect(s, "green", types=["relationship"]))
        for ident in s.main.by_id:
            mine = expect(s, "green", ("all",), ids=[ident])
            found = source.get(ident)
            if not mine:
                assert found is None  # like an unknown id
                assert source.all_versions(ident) == []
                continue
            newest = stix2.parse(expect(s, "green", ids=[ident])[0].obj, allow_custom=True)
            assert found is not None and as_dict(found) == as_dict(newest)
            assert source.all_versions(ident) == \
                [stix2.parse(v.obj, allow_custom=True) for v in mine]
        assert source.get(sid("indicator", "never-pushed")) is None
        assert source.all_versions(MV[0]["id"]) == [stix2.parse(MV[0])]
