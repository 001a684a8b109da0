"""The store's visibility rules against a plain Python model of them, on random collections.

Objects get random versions, TLP ranks, H2 flags, pushers and references (to objects that
arrive earlier or later, in cycles, and to ones that never arrive), written in random batches
and deleted now and then. Every read shape (newest, oldest, all, explicit versions; by type,
by id; paged with small pages) in every view (each clearance, with and without own pushes,
onward) must give exactly what the model says, in date_added order.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest

from exchange.model import ALL, CLEAR, FIRST, LAST, RED, Candidate, Query, Visibility
from exchange.stix import version_key
from exchange.store import Store
from tests.test_store import COLL, write

TYPES = ("indicator", "relationship", "report")


@dataclass
class Version:
    id: str
    type: str
    modified: str
    base: int
    h2: bool
    pusher: str
    refs: tuple[str, ...]
    added: int = 0

    @property
    def body(self) -> bytes:
        obj = {"type": self.type, "spec_version": "2.1", "id": self.id,
               "created": "2024-01-01T00:00:00.000Z", "modified": self.modified,
               "object_refs": list(self.refs) or None}
        return orjson.dumps({k: v for k, v in obj.items() if v is not None})


@dataclass
class Model:
    versions: list[Version] = field(default_factory=list)

    def of(self, ident: str) -> list[Version]:
        return sorted((v for v in self.versions if v.id == ident),
                      key=lambda v: version_key(v.modified))

    def effective(self) -> dict[int, tuple[int, bool]]:
        """Effective (rank, h2) per version: the least fixpoint over references to the newest
        version of each referenced id, reached by rising from each version's own facts."""
        facts = {id(v): (v.base, v.h2) for v in self.versions}
        changed = True
        while changed:
            changed = False
            for v in self.versions:
                rank, h2 = v.base, v.h2
                for ref in v.refs:
                    versions = self.of(ref)
                    if versions:
                        ref_rank, ref_h2 = facts[id(versions[-1])]
                        rank, h2 = max(rank, ref_rank), h2 or ref_h2
                if (rank, h2) != facts[id(v)]:
                    facts[id(v)], changed = (rank, h2), True
        return facts

    def read(self, view: Visibility, versions: tuple[str, ...], types: tuple[str, ...] = (),
             ids: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        facts = self.effective()
        t, me = view.max_rank, view.pusher

        def seen(v: Version) -> bool:
            rank, h2 = facts[id(v)]
            sent_back = bool(view.not_from) and v.pusher == view.not_from
            return rank <= t and not (view.onward and h2) and not sent_back

        chosen: list[Version] = []
        for ident in dict.fromkeys(v.id for v in self.versions):
            all_versions = self.of(ident)
            if ALL in versions:
                chosen += [v for v in all_versions if seen(v) or v.pusher == me and me]
                continue
            picked: list[Version] = []
            for selector, pick in ((LAST, -1), (FIRST, 0)):
                if selector not in versions:
                    continue
                if me and all_versions[pick].pusher == me:
                    picked.append(all_versions[pick])
                else:
                    ranked = [v for v in all_versions if facts[id(v)][0] <= t]
                    if ranked and seen(ranked[pick]):
                        picked.append(ranked[pick])
            keys = {s for s in versions if s not in (LAST, FIRST)}
            picked += [v for v in all_versions if version_key(v.modified) in keys
                       and (seen(v) or v.pusher == me and me)]
            chosen += list({id(v): v for v in picked}.values())
        chosen = [v for v in chosen if (not types or v.type in types)
                  and (not ids or v.id in ids)]
        return [(v.id, v.modified) for v in sorted(chosen, key=lambda v: v.added)]


def _id(kind: str, n: int) -> str:
    return f"{kind}--{uuid.UUID(int=n, version=4)}"


def _generate(rng: random.Random, count: int) -> list[Version]:
    idents = [(_id(rng.choice(TYPES), n), n) for n in range(1, count + 1)]
    out = []
    for ident, n in idents:
        for month in sorted(rng.sample(range(1, 10), rng.choice((1, 1, 2, 3)))):
            # References to any other object, so they can arrive later and form cycles.
            others = [i for i, _ in idents if i != ident]
            refs = tuple(rng.sample(others, rng.choice((0, 1, 2))))
            if rng.random() < 0.1:
                refs += (_id("malware", 10_000 + n),)  # never arrives
            out.append(Version(ident, ident.split("--")[0], f"2024-0{month}-01T00:00:00.000Z",
                               base=rng.choice((CLEAR, 1, 2, 3, RED)),
                               h2=rng.random() < 0.15, pusher=rng.choice(("", "p1", "p2")),
                               refs=refs))
    rng.shuffle(out)  # versions and referenced objects arrive in any order
    return out


def _candidate(v: Version) -> Candidate:
    return Candidate(id=v.id, type=v.type, spec_version="2.1", version=v.modified,
                     body=v.body, rank=v.base, h2=v.h2, refs=v.refs, pusher=v.pusher)


def _all_pages(store: Store, query: Query) -> Iterator[tuple[str, str]]:
    after = None
    while True:
        page = store.query(Query(collection=COLL, limit=query.limit, ids=query.ids,
                                 types=query.types, versions=query.versions, after=after,
                                 visibility=query.visibility), with_body=True)
        for entry in page.entries:
            assert orjson.loads(entry.body)["modified"] == entry.version
            yield entry.id, entry.version
        if not page.more:
            return
        after = page.last_added


VIEWS = [Visibility(max_rank=t, pusher=p, onward=o) for t in range(5) for p in ("", "p1")
         for o in (False, True)] + [Visibility(max_rank=t, onward=True, not_from="p2")
                                    for t in (2, 4)]


@pytest.mark.parametrize("seed", range(6))
def test_every_view_reads_what_the_model_says(store: Store, seed: int):
    rng = random.Random(seed)
    model = Model()
    pending = _generate(rng, 40)
    while pending:
        batch, pending = pending[: rng.randint(1, 12)], pending[rng.randint(1, 12):]
        outcomes = write(store, *[_candidate(v) for v in batch])
        stored = {(o.id, o.version) for o in outcomes if o.stored}
        for v in batch:
            if (v.id, v.modified) in stored and v not in model.versions:
                model.versions.append(v)
        if rng.random() < 0.2 and model.versions:  # delete a version now and then
            gone = rng.choice(model.versions)
            query = Query(collection=COLL, limit=1, ids=(gone.id,),
                          versions=(version_key(gone.modified),))
            assert store.delete(query) == 1
            model.versions.remove(gone)
    full = store.query(Query(collection=COLL, limit=10_000, versions=(ALL,)),
                       with_body=False).entries
    added = {(e.id, e.version): e.date_added for e in full}
    for v in model.versions:
        v.added = added[(v.id, v.modified)]
    some_ids = tuple(rng.sample(sorted({v.id for v in model.versions}), 5))
    some_version = version_key(rng.choice(model.versions).modified)
    for view in VIEWS:
        for versions in ((LAST,), (FIRST,), (ALL,), (some_version,), (FIRST, LAST)):
            for types, ids in (((), ()), (("indicator",), ()), (TYPES[1:], ()),
                               ((), some_ids)):
                query = Query(collection=COLL, limit=rng.choice((1, 3, 50)), ids=ids,
                              types=types, versions=versions, visibility=view)
                expected = model.read(view, versions, types, ids)
                assert list(_all_pages(store, query)) == expected, (view, versions,
                                                                     types, ids)


def test_a_reference_cycle_follows_a_declassification(store: Store):
    """A and B reference each other; A is declassified: the cycle does not hold itself up."""
    a, b = _id("report", 1), _id("report", 2)
    write(store, _candidate(Version(a, "report", "2024-01-01T00:00:00.000Z", RED, False,
                                    "", (b,))),
          _candidate(Version(b, "report", "2024-01-01T00:00:00.000Z", CLEAR, False,
                             "", (a,))))
    write(store, _candidate(Version(a, "report", "2024-02-01T00:00:00.000Z", CLEAR, False,
                                    "", (b,))))
    green = Visibility(max_rank=1)
    seen = store.query(Query(collection=COLL, limit=10, visibility=green), with_body=False)
    red = store.query(Query(collection=COLL, limit=10, visibility=Visibility(max_rank=RED)),
                      with_body=False)
    assert [e.id for e in red.entries] == [b, a]
    # The least answer: A no longer holds B up, so both are shown again.
    assert [e.id for e in seen.entries] == [b, a]
