"""One contract suite for the Store protocol, run against every backend.

The `store` and `opener` fixtures (tests/conftest.py) are parametrized over the backends of
tests/backends.py: a backend is added there, with a function opening stores over fresh
storage, each call as a second server process over the *same* storage would. What only one
backend has (SQLite's query plans, migrations, PRAGMAs; MongoDB's explain plans and
concurrent writers) is tested in its own module.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from exchange.model import (
    ALL,
    COMPLETE,
    FIRST,
    LAST,
    RED,
    AuditEntry,
    Candidate,
    Entry,
    Outcome,
    Query,
    Status,
    Visibility,
)
from exchange.stix import format_micros, now_micros, version_key
from exchange.store import Store, terms
from exchange.store.copy import PARTS, key

Opener = Callable[[], Store]

COLL = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"
ROOT = "api1"


# -- helpers -----------------------------------------------------------------------------

def sdo(uid: int, modified: str = "2024-01-01T00:00:00.000Z", kind: str = "indicator",
        **extra: Any) -> dict[str, Any]:
    return {"type": kind, "spec_version": "2.1", "id": f"{kind}--{uuid.UUID(int=uid)}",
            "created": "2024-01-01T00:00:00.000Z", "modified": modified, **extra}


def sco(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "ipv4-addr", "spec_version": "2.1", "value": value,
            "id": f"ipv4-addr--{uuid.uuid5(uuid.NAMESPACE_URL, value)}", **extra}


def candidate(obj: dict[str, Any], body: bytes | None = None) -> Candidate:
    """A candidate as ingest makes one; `body` may be any serialisation of `obj`."""
    version = obj.get("modified", obj.get("created"))
    return Candidate(id=obj["id"], type=obj["type"], spec_version=obj["spec_version"],
                     version=version, body=body if body is not None else orjson.dumps(obj))


def write(store: Store, *objects: dict[str, Any] | Candidate, collection: str = COLL,
          status_id: str | None = None) -> list[Outcome]:
    """Write a batch the way Ingest.process does; return what the store did with each."""
    seen: list[Outcome] = []

    def finish(outcomes: list[Outcome]) -> Status:
        seen.extend(outcomes)
        return Status(id=sid, api_root=ROOT, collection=collection, partner="alice",
                      request_timestamp=now_micros(), total_count=len(outcomes),
                      status=COMPLETE,
                      successes=[{"id": o.id, "version": o.version} for o in outcomes])

    sid = status_id or str(uuid.uuid4())
    batch = [o if isinstance(o, Candidate) else candidate(o) for o in objects]
    assert store.write(collection, batch, sid, finish) is not None
    return seen


def read(store: Store, collection: str = COLL, *, limit: int = 1000,
         **filters: Any) -> list[Entry]:
    page = store.query(Query(collection=collection, limit=limit, **filters), with_body=True)
    assert not page.more
    return page.entries


def versions_of(entries: list[Entry]) -> list[tuple[str, str]]:
    return [(e.id, e.version) for e in entries]


def one(collection: str, object_id: str, versions: tuple[str, ...]) -> Query:
    """The versions of one object a delete takes."""
    return Query(collection=collection, limit=1, ids=(object_id,), versions=versions)


def pending(status_id: str | None = None, *, total: int = 1) -> Status:
    return Status(id=status_id or str(uuid.uuid4()), api_root=ROOT, collection=COLL,
                  partner="alice", request_timestamp=now_micros(), total_count=total,
                  pendings=[{"id": "indicator--x", "version": ""}] * total)


# -- objects -----------------------------------------------------------------------------

def test_query_returns_the_stored_bytes_exactly(store: Store):
    obj = sdo(1, name="Ünïcode – “quoted”", labels=["a", "b"])
    # Not orjson's own serialisation: spaces, another key order, escaped non-ASCII.
    body = ('{ "name": "\\u00dcn\\u00efcode \\u2013 \\u201cquoted\\u201d", "labels": ["a", "b"],'
            f' "modified": "{obj["modified"]}", "created": "{obj["created"]}",'
            f' "id": "{obj["id"]}", "spec_version": "2.1", "type": "indicator" }}').encode()
    assert orjson.loads(body) == obj
    [outcome] = write(store, candidate(obj, body))
    assert outcome == Outcome(obj["id"], obj["modified"], stored=True)

    [entry] = read(store)
    assert entry.body == body
    assert (entry.id, entry.version, entry.spec_version) == (obj["id"], obj["modified"], "2.1")
    assert entry.media_type == "application/stix+json;version=2.1"
    [bare] = store.query(Query(collection=COLL, limit=10), with_body=False).entries
    assert bare == Entry(entry.id, entry.version, entry.date_added, "2.1", b"")


def test_date_added_is_strictly_increasing_within_and_across_writes(opener: Opener):
    store = opener()
    before = now_micros()
    write(store, *(sdo(i) for i in range(5)))
    write(store, sdo(5))
    write(store, sdo(100), collection=OTHER)
    write(opener(), *(sdo(i) for i in range(6, 9)))  # another process, same storage
    entries = read(store)
    added = [e.date_added for e in entries]
    assert [e.id for e in entries] == [sdo(i)["id"] for i in range(9)]
    assert all(a < b for a, b in zip(added, added[1:], strict=False))
    assert added[0] >= before  # date_added is the time the server stored it
    assert added[-1] <= now_micros() + 1000  # one microsecond per object at most ahead


def test_a_new_version_gets_a_later_date_added_than_everything_before(store: Store):
    write(store, sdo(1), sdo(2))
    write(store, sdo(1, "2024-02-01T00:00:00.000Z"))
    entries = read(store, versions=(ALL,))
    assert versions_of(entries) == [(sdo(1)["id"], "2024-01-01T00:00:00.000Z"),
                                    (sdo(2)["id"], "2024-01-01T00:00:00.000Z"),
                                    (sdo(1)["id"], "2024-02-01T00:00:00.000Z")]
    assert [e.id for e in read(store)] == [sdo(2)["id"], sdo(1)["id"]]


def test_collections_are_isolated(store: Store):
    mine, theirs = sdo(1, name="mine"), sdo(1, name="theirs")  # same id and version
    assert write(store, mine)[0].stored
    assert write(store, theirs, collection=OTHER)[0] == \
        Outcome(mine["id"], mine["modified"], stored=True)  # not a conflict elsewhere
    write(store, sdo(2), collection=OTHER)
    assert [orjson.loads(e.body) for e in read(store)] == [mine]
    assert [orjson.loads(e.body) for e in read(store, OTHER)] == [theirs, sdo(2)]
    assert store.delete(one(COLL, mine["id"], (ALL,))) == 1
    assert read(store) == []
    assert len(read(store, OTHER)) == 2
    assert read(store, "33333333-3333-4333-8333-333333333333") == []


V1, V2, V3 = "2024-01-01T00:00:00.000Z", "2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"


@pytest.fixture
def out_of_order(store: Store) -> Store:
    """Object 1 in versions V2, V1, V3, added in that order; object 2 in V1 only."""
    write(store, sdo(1, V2))
    write(store, sdo(1, V1), sdo(2, V1))
    write(store, sdo(1, V3))
    return store


ONE, TWO = sdo(1)["id"], sdo(2)["id"]


@pytest.mark.parametrize(("versions", "expected"), [
    pytest.param((LAST,), [(TWO, V1), (ONE, V3)], id="last"),
    pytest.param((FIRST,), [(ONE, V1), (TWO, V1)], id="first"),
    pytest.param((ALL,), [(ONE, V2), (ONE, V1), (TWO, V1), (ONE, V3)], id="all"),
    pytest.param((version_key(V2),), [(ONE, V2)], id="explicit"),
    pytest.param((version_key("2024-02-01T00:00:00Z"),), [(ONE, V2)], id="explicit-other-form"),
    pytest.param((version_key(V1),), [(ONE, V1), (TWO, V1)], id="explicit-two-ids"),
    pytest.param((FIRST, LAST), [(ONE, V1), (TWO, V1), (ONE, V3)], id="first,last"),
    pytest.param((FIRST, version_key(V2)), [(ONE, V2), (ONE, V1), (TWO, V1)], id="first,V2"),
    pytest.param((LAST, version_key(V2)), [(ONE, V2), (TWO, V1), (ONE, V3)], id="last,V2"),
    pytest.param((LAST, ALL), [(ONE, V2), (ONE, V1), (TWO, V1), (ONE, V3)], id="last,all"),
    pytest.param((version_key("2025-01-01T00:00:00Z"),), [], id="no-such-version"),
])
def test_version_selection_after_versions_arrive_out_of_order(out_of_order: Store, versions,
                                                              expected):
    entries = read(out_of_order, versions=versions)
    assert versions_of(entries) == expected  # always in date_added order
    for entry in entries:
        assert orjson.loads(entry.body)["modified"] == entry.version


def test_version_selection_combines_with_ids_and_types(out_of_order: Store):
    write(out_of_order, sdo(3, V1, kind="malware", is_family=False))
    malware = sdo(3, kind="malware")["id"]
    assert versions_of(read(out_of_order, ids=(ONE,), versions=(FIRST,))) == [(ONE, V1)]
    assert versions_of(read(out_of_order, ids=(ONE, malware))) == [(ONE, V3), (malware, V1)]
    assert versions_of(read(out_of_order, ids=(ONE,), versions=(ALL,))) == \
        [(ONE, V2), (ONE, V1), (ONE, V3)]
    assert versions_of(read(out_of_order, types=("malware",))) == [(malware, V1)]
    assert versions_of(read(out_of_order, types=("indicator",), versions=(FIRST,))) == \
        [(ONE, V1), (TWO, V1)]
    assert versions_of(read(out_of_order, types=("indicator", "malware"))) == \
        [(TWO, V1), (ONE, V3), (malware, V1)]
    assert read(out_of_order, types=("tool",)) == []
    assert read(out_of_order, ids=(ONE,), types=("malware",)) == []


def test_spec_version_filter(store: Store):
    """The same version in two spec_versions: reads give the latest unless asked."""
    old = {**sdo(1), "spec_version": "2.0"}
    new = sdo(1, name="2.1 form")
    only_old = {**sdo(2), "spec_version": "2.0"}
    write(store, old, only_old)
    write(store, new)
    assert [(e.id, e.spec_version) for e in read(store)] == \
        [(only_old["id"], "2.0"), (new["id"], "2.1")]
    assert [orjson.loads(e.body) for e in read(store, spec_versions=("2.0",))] == [old, only_old]
    assert [orjson.loads(e.body) for e in read(store, spec_versions=("2.1",))] == [new]
    assert len(read(store, spec_versions=("2.0", "2.1"))) == 3
    assert read(store, spec_versions=("2.2",)) == []
    [entry] = read(store, spec_versions=("2.0",), ids=(only_old["id"],))
    assert entry.media_type == "application/stix+json;version=2.0"


def test_unversioned_object_gets_one_version_stamped_with_its_date_added(store: Store):
    obj = sco("198.51.100.7")
    [first] = write(store, obj)
    assert first.stored and not first.conflict
    [entry] = read(store)
    assert entry.version == first.version == format_micros(entry.date_added)
    assert read(store, versions=(version_key(first.version),)) == [entry]

    # The same object again, even serialised differently: not stored again, same version.
    reordered = candidate(obj, orjson.dumps(dict(reversed(list(obj.items())))))
    assert write(store, reordered)[0] == Outcome(obj["id"], first.version, stored=False)
    # Other content under the same id: refused, the stored one stays.
    [changed] = write(store, {**obj, "x_note": "different"})
    assert changed == Outcome(obj["id"], first.version, stored=False, conflict=True)
    assert read(store, versions=(ALL,)) == [entry]


def test_identical_repost_of_a_versioned_object_is_stored_once(store: Store):
    obj = sdo(1, name="x")
    assert write(store, obj)[0].stored
    reordered = candidate(obj, orjson.dumps(dict(sorted(obj.items()))))
    assert write(store, obj, reordered) == [Outcome(obj["id"], obj["modified"], stored=False)] * 2
    # and within one batch
    twice = write(store, sdo(2), sdo(2))
    assert [o.stored for o in twice] == [True, False]
    assert not any(o.conflict for o in twice)
    assert versions_of(read(store, versions=(ALL,))) == [(obj["id"], obj["modified"]),
                                                         (sdo(2)["id"], sdo(2)["modified"])]


def test_same_id_and_version_with_other_content_is_a_conflict(store: Store):
    original = sdo(1, name="original")
    write(store, original)
    [outcome] = write(store, sdo(1, name="forged"))
    assert outcome == Outcome(original["id"], original["modified"], stored=False, conflict=True)
    assert [orjson.loads(e.body) for e in read(store, versions=(ALL,))] == [original]
    # A conflict does not stop the rest of the batch.
    results = write(store, sdo(1, name="again"), sdo(2))
    assert [(o.stored, o.conflict) for o in results] == [(False, True), (True, False)]


def _pages(store: Store, limit: int, between: Callable[[int], None] | None = None,
           **filters: Any) -> tuple[list[Entry], list[int]]:
    seen: list[Entry] = []
    sizes: list[int] = []
    after = None
    for number in range(100):
        page = store.query(Query(collection=COLL, limit=limit, after=after, **filters),
                           with_body=False)
        seen.extend(page.entries)
        sizes.append(len(page.entries))
        if not page.more:
            return seen, sizes
        after = page.last_added
        if between:
            between(number)
    raise AssertionError("paging did not end")


def test_keyset_paging_gives_every_entry_once_oldest_first(store: Store):
    write(store, *(sdo(i) for i in range(21)))
    write(store, sdo(100), collection=OTHER)
    seen, sizes = _pages(store, 7)
    assert sizes == [7, 7, 7]
    assert [e.id for e in seen] == [sdo(i)["id"] for i in range(21)]
    seen, sizes = _pages(store, 8)
    assert sizes == [8, 8, 5]
    assert len({e.id for e in seen}) == 21
    assert store.query(Query(collection=COLL, limit=5, after=seen[-1].date_added),
                       with_body=False).entries == []


def test_keyset_paging_stays_correct_when_entries_are_added_between_pages(store: Store):
    write(store, *(sdo(i) for i in range(10)))

    def meanwhile(page: int) -> None:
        if page == 0:  # after the first page (objects 0-3): new objects, and new versions
            # of one already seen (1) and one not yet seen (8)
            write(store, sdo(20), sdo(1, V2), sdo(8, V2), sdo(21))
        if page == 2:
            write(store, sdo(22))

    seen, _ = _pages(store, 4, meanwhile)
    assert len(set(versions_of(seen))) == len(seen)  # no entry twice
    dates = [e.date_added for e in seen]
    assert dates == sorted(dates)
    # Every object in its latest version; the one seen before its update, in both.
    expected = {(sdo(i)["id"], V1) for i in range(10) if i != 8} | \
        {(sdo(i)["id"], V1) for i in (20, 21, 22)} | {(sdo(1)["id"], V2), (sdo(8)["id"], V2)}
    assert set(versions_of(seen)) == expected


def test_keyset_paging_with_type_and_id_filters(store: Store):
    kinds = ("indicator", "malware", "tool")
    write(store, *(sdo(i, kind=kinds[i % 3]) for i in range(30)))
    write(store, sdo(0, V2), sdo(4, V2, kind="malware"))  # newer versions move to the end
    everything = read(store)
    for filters in ({"types": ("indicator", "malware")}, {"types": ("malware",)},
                    {"types": ("tool", "indicator", "malware")},
                    {"ids": tuple(sdo(i, kind=kinds[i % 3])["id"] for i in (0, 4, 5, 9, 13))},
                    {"types": ("indicator",), "versions": (ALL,)}):
        expected = read(store, **filters)
        assert expected, filters
        for limit in (1, 2, 3):
            seen, _ = _pages(store, limit, **filters)
            assert [(e.id, e.version, e.date_added) for e in seen] == \
                [(e.id, e.version, e.date_added) for e in expected], (filters, limit)
    assert [e.id for e in read(store, types=kinds)] == [e.id for e in everything]
    assert versions_of(read(store, types=("malware",)))[-1] == \
        (sdo(4, kind="malware")["id"], V2)


def test_delete_one_version_moves_the_last_flag(out_of_order: Store):
    store = out_of_order
    assert store.delete(one(COLL, ONE, (version_key(V3),))) == 1
    assert versions_of(read(store, ids=(ONE,))) == [(ONE, V2)]
    assert versions_of(read(store, ids=(ONE,), versions=(FIRST,))) == [(ONE, V1)]
    assert store.delete(one(COLL, ONE, (FIRST,))) == 1
    assert versions_of(read(store, ids=(ONE,), versions=(FIRST,))) == [(ONE, V2)]
    assert versions_of(read(store, ids=(ONE,), versions=(LAST,))) == [(ONE, V2)]
    assert store.delete(one(COLL, ONE, (version_key(V3),))) == 0  # already gone
    assert versions_of(read(store)) == [(ONE, V2), (TWO, V1)]  # date_added order


def test_delete_last_then_a_new_version_is_last_again(out_of_order: Store):
    store = out_of_order
    assert store.delete(one(COLL, ONE, (LAST,))) == 1
    assert versions_of(read(store, ids=(ONE,))) == [(ONE, V2)]
    write(store, sdo(1, V3, name="re-added"))
    assert versions_of(read(store, ids=(ONE,))) == [(ONE, V3)]


def test_delete_all_versions(out_of_order: Store):
    store = out_of_order
    assert store.delete(one(COLL, ONE, (ALL,))) == 3
    assert read(store, ids=(ONE,), versions=(ALL,)) == []
    assert versions_of(read(store)) == [(TWO, V1)]
    assert store.delete(one(COLL, ONE, (ALL,))) == 0
    assert store.delete(one(OTHER, TWO, (ALL,))) == 0  # not in that collection
    # The id can be used afresh, with any content.
    assert write(store, sdo(1, V1, name="new"))[0].stored


def test_delete_an_unversioned_object(store: Store):
    obj = sco("192.0.2.1")
    write(store, obj)
    assert store.delete(one(COLL, obj["id"], (ALL,))) == 1
    assert read(store) == []
    assert write(store, {**obj, "x_note": "now different"})[0].stored


# -- statuses ----------------------------------------------------------------------------

@pytest.mark.emulator_gap(transactions=False)  # one document at a time
def test_status_round_trip(store: Store):
    status = pending(total=3)
    status.failures = [{"id": "indicator--y", "version": "", "message": "object 2: bad"}]
    store.save_status(status, b'{"objects": []}')
    assert store.get_status(ROOT, status.id) == status
    assert store.get_status("other-root", status.id) is None
    assert store.get_status(ROOT, str(uuid.uuid4())) is None


@pytest.mark.emulator_gap(transactions=False)  # one document at a time
def test_pending_request_returns_the_accepted_body(store: Store):
    body = b'{"objects": [ {"weird": "spacing \\u00e9"} ]}'
    status = pending()
    store.save_status(status, body)
    assert store.pending_request(status.id) == (status, body)
    assert store.pending_request(str(uuid.uuid4())) is None
    done = pending()
    done.status = COMPLETE
    store.save_status(done, None)
    assert store.pending_request(done.id) is None


@pytest.mark.emulator_gap(transactions=False)  # one document at a time
def test_claim_takes_a_lease_until_it_expires(opener: Opener):
    store, other = opener(), opener()
    first, second = pending(), pending()
    store.save_status(first, b"{}")
    store.save_status(second, b"{}")
    assert sorted(store.claim_pending(0.4)) == sorted([first.id, second.id])
    assert store.claim_pending(0.4) == []
    assert other.claim_pending(0.4) == []  # nor by another process
    assert other.claim_pending(0.4, first.id) == []
    time.sleep(0.5)
    assert sorted(other.claim_pending(30)) == sorted([first.id, second.id])
    assert store.claim_pending(30) == []


@pytest.mark.emulator_gap(transactions=False)  # one document at a time
def test_claim_one_request_by_id(store: Store):
    first, second = pending(), pending()
    store.save_status(first, b"{}")
    store.save_status(second, b"{}")
    assert store.claim_pending(30, second.id) == [second.id]
    assert store.claim_pending(30, second.id) == []
    assert store.claim_pending(30, str(uuid.uuid4())) == []
    assert store.claim_pending(30) == [first.id]


def test_complete_requests_are_never_claimed(store: Store):
    status = pending()
    store.save_status(status, b"{}")
    assert write(store, sdo(1), status_id=status.id)[0].stored
    assert store.claim_pending(30) == []
    assert store.claim_pending(30, status.id) == []
    saved = store.get_status(ROOT, status.id)
    assert saved is not None and saved.status == COMPLETE


def test_write_stores_objects_and_completes_the_status_together(store: Store):
    status = pending(total=2)
    store.save_status(status, b"{}")
    store.claim_pending(30, status.id)
    [one, two] = write(store, sdo(1), sdo(2), status_id=status.id)
    saved = store.get_status(ROOT, status.id)
    assert saved is not None and saved.status == COMPLETE
    assert saved.successes == [{"id": one.id, "version": one.version},
                               {"id": two.id, "version": two.version}]
    assert saved.pendings == []
    assert store.pending_request(status.id) is None
    assert len(read(store)) == 2


def test_write_on_a_complete_status_returns_none_and_stores_nothing(store: Store):
    status = pending()
    status.status = COMPLETE
    store.save_status(status, None)
    called = []

    def finish(outcomes: list[Outcome]) -> Status:
        called.append(outcomes)
        return status

    assert store.write(COLL, [candidate(sdo(1))], status.id, finish) is None
    assert called == []
    assert read(store, versions=(ALL,)) == []
    # and a request completed once cannot be completed twice
    sid = str(uuid.uuid4())
    write(store, sdo(2), status_id=sid)
    assert store.write(COLL, [candidate(sdo(3))], sid, finish) is None
    assert [e.id for e in read(store)] == [sdo(2)["id"]]


def test_a_failed_write_stores_nothing_and_leaves_the_request_pending(store: Store):
    status = pending()
    store.save_status(status, b"body")

    def finish(outcomes: list[Outcome]) -> Status:
        raise RuntimeError("crash before the commit")

    with pytest.raises(RuntimeError):
        store.write(COLL, [candidate(sdo(1))], status.id, finish)
    assert read(store, versions=(ALL,)) == []
    assert store.pending_request(status.id) == (status, b"body")
    assert write(store, sdo(1), status_id=status.id)[0].stored  # a retry works


# -- versions that reference an id (refers_to) ------------------------------------------------

TARGET = sdo(900, kind="malware", name="family", is_family=True)
CLEAR_TARGET = dataclasses.replace(candidate(TARGET), rank=0)  # referrers keep their own rank


def referring(uid: int, modified: str = "2024-01-01T00:00:00.000Z", rank: int = 0,
              pusher: str = "", **extra: Any) -> Candidate:
    """A relationship from indicator `uid` to TARGET, at a TLP rank, as ingest makes one."""
    obj = sdo(uid, modified, kind="relationship", relationship_type="indicates",
              source_ref=sdo(uid)["id"], target_ref=TARGET["id"], **extra)
    return dataclasses.replace(candidate(obj), refs=(sdo(uid)["id"], TARGET["id"]), rank=rank,
                               pusher=pusher)


def referrers(store: Store, view: Visibility | None = None, limit: int = 1000,
              **filters: Any) -> list[tuple[str, str]]:
    query = Query(collection=COLL, limit=limit, refers_to=TARGET["id"], visibility=view,
                  **filters)
    return versions_of(store.query(query, with_body=False).entries)


def test_refers_to_reads_the_newest_versions_that_reference_an_id(store: Store):
    nested = dataclasses.replace(candidate(sdo(5, kind="report", object_refs=[TARGET["id"]])),
                                 refs=(TARGET["id"],))
    write(store, candidate(TARGET), referring(1), referring(2), referring(2, V2), nested,
          candidate(sdo(3, kind="relationship", relationship_type="uses",
                        source_ref=sdo(3)["id"], target_ref=sdo(4)["id"])))
    newest = [(sdo(1, kind="relationship")["id"], "2024-01-01T00:00:00.000Z"),
              (sdo(2, kind="relationship")["id"], V2), (sdo(5, kind="report")["id"],
                                                        "2024-01-01T00:00:00.000Z")]
    assert sorted(referrers(store)) == sorted(newest)
    assert len(referrers(store, versions=(ALL,))) == 4
    assert referrers(store, versions=(ALL,), limit=1000) == \
        versions_of(sorted(store.query(Query(collection=COLL, limit=1000, refers_to=TARGET["id"],
                                             versions=(ALL,)), with_body=False).entries,
                           key=lambda e: e.date_added))  # oldest date_added first


def test_refers_to_pages_with_the_date_added_of_the_last_entry(store: Store):
    write(store, candidate(TARGET), *(referring(i) for i in range(1, 8)))
    seen, after = [], None
    while True:
        page = store.query(Query(collection=COLL, limit=3, refers_to=TARGET["id"], after=after),
                           with_body=False)
        seen += versions_of(page.entries)
        if not page.more:
            break
        after = page.last_added
    assert seen == [(sdo(i, kind="relationship")["id"], "2024-01-01T00:00:00.000Z")
                    for i in range(1, 8)]


@pytest.mark.parametrize("view, expected", [
    pytest.param(None, [1, 2, 3], id="unrestricted: every referrer"),
    pytest.param(Visibility(max_rank=1), [1], id="GREEN reader: not the AMBER or RED one"),
    pytest.param(Visibility(max_rank=1, pusher="carol"), [1, 3],
                 id="GREEN reader sees its own RED push"),
    pytest.param(Visibility(max_rank=2), [1, 2], id="AMBER reader"),
])
def test_refers_to_applies_the_visibility_inside_the_scan(store: Store, view: Visibility | None,
                                                          expected: list[int]):
    write(store, CLEAR_TARGET, referring(1, rank=1), referring(2, rank=2),
          referring(3, rank=RED, pusher="carol"))
    got = referrers(store, view, limit=1)  # one per page: a withheld row must not take a slot
    assert got == [(sdo(expected[0], kind="relationship")["id"], "2024-01-01T00:00:00.000Z")]
    assert [ident for ident, _ in referrers(store, view)] == \
        [sdo(i, kind="relationship")["id"] for i in expected]


def test_refers_to_the_newest_version_the_reader_may_see(store: Store):
    """A GREEN reader gets the GREEN first version of a relationship whose newest is AMBER."""
    write(store, CLEAR_TARGET, referring(1, rank=1), referring(1, V2, rank=2))
    assert referrers(store, Visibility(max_rank=1)) == \
        [(sdo(1, kind="relationship")["id"], "2024-01-01T00:00:00.000Z")]
    assert referrers(store, Visibility(max_rank=2)) == [(sdo(1, kind="relationship")["id"], V2)]


def test_everything_survives_reopening_the_store(opener: Opener):
    store = opener()
    status = pending()
    store.save_status(status, b"{}")
    write(store, sdo(1))
    store.close()
    again = opener()
    assert versions_of(read(again)) == [(ONE, V1)]
    assert again.pending_request(status.id) == (status, b"{}")
    assert again.get_status(ROOT, status.id) == status


@pytest.mark.emulator_gap(transactions=False)  # one document at a time
def test_named_state_survives_and_leases_exclude_other_processes(opener: Opener):
    """Bookmarks and leases (a peer's sync): one process holds a lease until it releases it or
    it runs out; the documents are durable."""
    first, second = opener(), opener()
    assert first.get_state("sync:peer:pull") is None
    first.put_state("sync:peer:pull", {"bookmark": "2026-11-01T00:00:00.000000Z"})
    assert second.get_state("sync:peer:pull") == {"bookmark": "2026-11-01T00:00:00.000000Z"}
    assert first.claim("lease:sync:peer:pull", 30, "one")
    assert first.claim("lease:sync:peer:pull", 30, "one")  # renewed by its holder
    assert not second.claim("lease:sync:peer:pull", 30, "two")
    second.release("lease:sync:peer:pull", "two")  # not its lease: nothing happens
    assert not second.claim("lease:sync:peer:pull", 30, "two")
    first.release("lease:sync:peer:pull", "one")
    assert second.claim("lease:sync:peer:pull", 0.05, "two")
    time.sleep(0.1)
    assert first.claim("lease:sync:peer:pull", 30, "one")  # it ran out
    assert opener().get_state("sync:peer:pull") == {"bookmark": "2026-11-01T00:00:00.000000Z"}


# -- dump and restore (store copy) -------------------------------------------------------

REFERENCED = f"indicator--{uuid.UUID(int=1, version=4)}"


def everything(store: Store, part: str, page: int = 1000) -> list[dict[str, Any]]:
    """A whole part, page by page as `store copy` reads it."""
    records: list[dict[str, Any]] = []
    after: Any = None
    while batch := store.dump(part, after, page):
        assert len(batch) <= page
        records += batch
        after = key(part, batch[-1])
    return records


def filled(store: Store) -> Store:
    """Versions in two collections (one referencing another, pushed by a partner), a pending
    request, a complete status, audit records and named state with a lease."""
    target = dict(sdo(1), id=REFERENCED)
    report = sdo(2, kind="report", object_refs=[REFERENCED])
    write(store, target, dict(sdo(1, "2024-02-01T00:00:00.000Z"), id=REFERENCED),
          sco("198.51.100.7"))
    store.write(COLL, [dataclasses.replace(candidate(report), refs=(target["id"],),
                                           pusher="p1")], None, lambda _: pending())
    write(store, sdo(3), collection=OTHER)
    store.save_status(pending("status-pending"), b'{"objects": []}')
    store.append_audit([AuditEntry(now_micros(), "alice", b'{"kind": "read"}'),
                        AuditEntry(now_micros(), "bob", b'{"kind": "push"}')])
    store.put_state("sync:peer:pull", {"bookmark": "2026-11-01T00:00:00.000000Z"})
    assert store.claim("lease:sync:peer:pull", 30, "host:1")
    return store


@pytest.mark.parametrize("page", [pytest.param(1, id="pages of 1"),
                                  pytest.param(1000, id="one page")])
def test_a_store_restored_from_its_dump_is_the_same_store(opener: Opener, other: Store,
                                                          page: int):
    """`store copy`: every part comes back record for record, and the copy answers reads with
    the same bytes in the same date_added order."""
    source, target = filled(opener()), other
    for part in PARTS:
        records = everything(source, part, page)
        target.restore(part, records)
        assert everything(target, part) == records, part
    assert everything(source, "objects")[0]["refs"] == []
    # Records are the same on every backend, so a copy can go from one to another.
    assert {r["name"]: r["doc"] for r in everything(source, "state")} == {
        "lease:sync:peer:pull": None,
        "sync:peer:pull": {"bookmark": "2026-11-01T00:00:00.000000Z"}}
    assert [r["refs"] for r in everything(source, "objects") if r["type"] == "report"] \
        == [[REFERENCED]]
    for collection in (COLL, OTHER):
        assert [dataclasses.astuple(e) for e in read(target, collection, versions=(ALL,))] \
            == [dataclasses.astuple(e) for e in read(source, collection, versions=(ALL,))]
    assert target.pending_request("status-pending") == source.pending_request("status-pending")
    assert target.get_state("sync:peer:pull") == {"bookmark": "2026-11-01T00:00:00.000000Z"}
    assert not target.claim("lease:sync:peer:pull", 30, "host:2")  # the lease came along
    # The search index is rebuilt from what is restored, and a second restore doubles nothing.
    target.restore("objects", everything(source, "objects"))
    for asked in ("198.51.100.7", "198.51.100.0/24"):
        assert [e.id for e in read(target, search=terms.search(asked))] \
            == [e.id for e in read(source, search=terms.search(asked))] != []


def test_restore_replaces_what_is_there_so_a_copy_can_run_again(opener: Opener, other: Store):
    source, target = filled(opener()), other
    for part in PARTS:
        target.restore(part, everything(source, part))
        target.restore(part, everything(source, part))  # an interrupted copy, run again
        assert everything(target, part) == everything(source, part), part
    changed = [dict(everything(source, "state")[0], doc={"bookmark": "later"})]
    target.restore("state", changed)
    assert everything(target, "state")[0] == changed[0]


def test_a_restored_store_keeps_its_rules(opener: Opener, other: Store):
    """After a copy, writes go on as before: date_added keeps increasing past everything
    restored, and a referenced object's new RED version withholds its referrer (the
    references came along)."""
    source, target = filled(opener()), other
    for part in PARTS:
        target.restore(part, everything(source, part))
    newest = max(r["added"] for r in everything(target, "objects"))
    red = dataclasses.replace(
        candidate(dict(sdo(1, "2024-03-01T00:00:00.000Z"), id=REFERENCED)), rank=RED)
    write(target, red)
    after = {(r["id"], r["version"]): r for r in everything(target, "objects")}
    assert after[(red.id, red.version)]["added"] > newest
    assert {r["rank"] for key, r in after.items() if r["type"] == "report"} == {RED}


def test_restore_moves_the_clock_past_what_it_restores(opener: Opener, other: Store):
    """A record from a store whose clock ran ahead of this machine's (date_added far in the
    future): a write after the restore still gets a later date_added."""
    source, target = opener(), other
    write(source, sdo(1))
    record = dict(everything(source, "objects")[0], added=now_micros() + 3_600_000_000)
    target.restore("objects", [record])
    write(target, sdo(2))
    added = [r["added"] for r in everything(target, "objects")]
    assert added[1] > added[0] == record["added"]


@pytest.mark.parametrize("part", PARTS)
def test_an_unknown_part_or_an_empty_store_dumps_nothing(store: Store, part: str):
    assert store.dump(part, None, 10) == []
    with pytest.raises(ValueError, match="no store part"):
        store.dump("everything", None, 10)
