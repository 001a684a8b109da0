"""What only the SQLite store has: its query plans (every read an index range scan), schema
migrations, PRAGMAs and bulk loads. The behaviour every backend shares is tests/test_store.py."""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from exchange.model import (
    ALL,
    COMPLETE,
    FIRST,
    GREEN,
    RED,
    Outcome,
    Query,
    Search,
    Status,
    Visibility,
)
from exchange.stix import now_micros, timestamp_micros, version_key
from exchange.store import terms
from exchange.store.sqlite import SQLiteStore
from tests.test_store import (
    COLL,
    ONE,
    OTHER,
    TARGET,
    V1,
    V2,
    candidate,
    pending,
    read,
    referring,
    sdo,
    versions_of,
    write,
)
from tests.test_store_search import ME, OBJECTS, THEM, found
from tests.test_store_search import sco as sco_search
from tests.test_store_search import write as write_search

# -- SQLite: every read is an index range scan --------------------------------------------

def _assert_index_scan(plan: str) -> None:
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
    # SEARCH: a range of the index (this collection); SCAN would walk all of it, or the table.
    assert "SCAN objects" not in plan, plan
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan


@pytest.mark.parametrize("query", [
    pytest.param(Query(collection=COLL, limit=1000), id="default"),
    pytest.param(Query(collection=COLL, limit=1000, after=now_micros()), id="default-next-page"),
    pytest.param(Query(collection=COLL, limit=50, types=("indicator",)), id="one-type"),
    pytest.param(Query(collection=COLL, limit=50, types=("indicator",), after=1), id="type-page"),
    pytest.param(Query(collection=COLL, limit=1000, versions=(FIRST,)), id="first"),
    pytest.param(Query(collection=COLL, limit=1000, versions=(ALL,)), id="all"),
])
def test_sqlite_reads_are_index_range_scans(tmp_path: Path, query: Query):
    store = SQLiteStore(tmp_path / "plan.sqlite3")
    store.open()
    try:
        write(store, *(sdo(i) for i in range(50)), sdo(1, V2),
              *(sdo(i, kind="malware", is_family=True) for i in range(50)))
        _assert_index_scan(store.explain(query))
    finally:
        store.close()


GREEN_VIEW = Visibility(max_rank=1, pusher="alice")


@pytest.mark.parametrize("query", [
    pytest.param(Query(collection=COLL, limit=1000, visibility=GREEN_VIEW), id="default"),
    pytest.param(Query(collection=COLL, limit=1000, after=now_micros(), visibility=GREEN_VIEW),
                 id="next-page"),
    pytest.param(Query(collection=COLL, limit=50, types=("indicator", "malware"),
                       visibility=GREEN_VIEW), id="two-types"),
    pytest.param(Query(collection=COLL, limit=1000, versions=(FIRST,), visibility=GREEN_VIEW),
                 id="first"),
    pytest.param(Query(collection=COLL, limit=1000, versions=(ALL,), visibility=GREEN_VIEW),
                 id="all"),
    pytest.param(Query(collection=COLL, limit=1000, visibility=Visibility(max_rank=3,
                                                                          onward=True)),
                 id="onward"),
])
def test_sqlite_restricted_reads_are_one_range_per_rank(tmp_path: Path, query: Query):
    """A reader who may not see everything: every scan is a range of an index that leads with
    the collection and the rank (or the reader's own pushes), cut to the page; only the merge
    of those short ranges sorts, never the collection."""
    store = SQLiteStore(tmp_path / "plan.sqlite3")
    store.open()
    try:
        write(store, *(candidate(sdo(i)) for i in range(50)))
        store.write(COLL, [dataclasses.replace(candidate(sdo(60)), pusher="alice", rank=RED)],
                    None, lambda outcomes: pending())
        plan = store.explain(query)
        searches = [line for line in plan.splitlines() if line.startswith("SEARCH objects")]
        ranks = query.visibility.max_rank + 1 if query.visibility else 0
        assert len([s for s in searches if "rank=?" in s and "pusher" not in s]) \
            == ranks * max(1, len(query.types)), plan
        assert all("coll=?" in s for s in searches), plan
        assert "SCAN objects" not in plan, plan
        assert "SEARCH o USING INTEGER PRIMARY KEY (rowid=?)" in plan  # bodies of the page only
    finally:
        store.close()


def test_sqlite_read_by_id_seeks_the_id_index(tmp_path: Path):
    store = SQLiteStore(tmp_path / "plan.sqlite3")
    store.open()
    try:
        write(store, *(sdo(i) for i in range(50)))
        plan = store.explain(Query(collection=COLL, limit=1000, ids=(ONE,)))
        assert "USING INDEX objects_id (coll=? AND idh=?)" in plan, plan
        assert "SCAN objects" not in plan, plan
    finally:
        store.close()


V1_SCHEMA = """
CREATE TABLE objects (seq INTEGER PRIMARY KEY, coll TEXT NOT NULL, id TEXT NOT NULL,
    type TEXT NOT NULL, vkey TEXT NOT NULL, version TEXT NOT NULL, spec TEXT NOT NULL,
    added INTEGER NOT NULL, last INTEGER NOT NULL, first INTEGER NOT NULL,
    spec_latest INTEGER NOT NULL, body BLOB NOT NULL);
CREATE UNIQUE INDEX objects_version ON objects (coll, id, vkey, spec);
CREATE UNIQUE INDEX objects_added ON objects (coll, added);
CREATE TABLE clock (coll TEXT PRIMARY KEY, added INTEGER NOT NULL);
"""


@pytest.mark.parametrize("query", [
    pytest.param(Query(collection=COLL, limit=50, refers_to=TARGET["id"]), id="everything"),
    pytest.param(Query(collection=COLL, limit=50, refers_to=TARGET["id"], after=now_micros()),
                 id="everything-next-page"),
    pytest.param(Query(collection=COLL, limit=50, refers_to=TARGET["id"], visibility=GREEN_VIEW),
                 id="restricted"),
    pytest.param(Query(collection=COLL, limit=50, refers_to=TARGET["id"], visibility=GREEN_VIEW,
                       after=now_micros(), versions=(ALL,)), id="restricted-all-next-page"),
])
def test_sqlite_refers_to_is_one_range_of_the_refs_index(tmp_path: Path, query: Query):
    """Referrers are one range of refs (coll, dst, seq) in order, each joined to its version by
    seq, where the visibility is decided: no scan of objects, no sort."""
    store = SQLiteStore(tmp_path / "plan.sqlite3")
    store.open()
    try:
        write(store, candidate(TARGET), *(referring(i, rank=i % 3) for i in range(1, 60)))
        plan = store.explain(query)
        assert "SEARCH r USING PRIMARY KEY (coll=? AND dst=?" in plan, plan
        assert "SEARCH o USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
        if query.after is not None:
            assert "USING INDEX objects_added (coll=? AND added<?)" in plan \
                or "USING COVERING INDEX objects_added (coll=? AND added<?)" in plan, plan
    finally:
        store.close()


def test_a_schema_1_file_is_migrated_on_open(tmp_path: Path):
    """Files written before collection keys and id hashes keep their objects and order."""
    path = tmp_path / "v1.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(V1_SCHEMA)
    rows = [(COLL, sdo(1)), (COLL, sdo(1, V2)), (OTHER, sdo(2))]
    for added, (coll, obj) in enumerate(rows, start=1):
        last = int(obj["modified"] == V2 or coll == OTHER)
        old.execute("INSERT INTO objects (coll, id, type, vkey, version, spec, added, last, "
                    "first, spec_latest, body) VALUES (?, ?, ?, ?, ?, '2.1', ?, ?, ?, 1, ?)",
                    (coll, obj["id"], obj["type"], version_key(obj["modified"]),
                     obj["modified"], added, last, int(obj["modified"] == V1),
                     orjson.dumps(obj)))
    old.execute("INSERT INTO clock VALUES (?, 2), (?, 3)", (COLL, OTHER))
    old.commit()
    old.close()
    store = SQLiteStore(path)
    store.open()
    try:
        assert versions_of(read(store, versions=(ALL,))) == [(ONE, V1), (ONE, V2)]
        assert versions_of(read(store)) == [(ONE, V2)]
        assert [orjson.loads(e.body) for e in read(store, OTHER)] == [sdo(2)]
        write(store, sdo(3))  # and it takes new writes after the old ones
        assert [e.id for e in read(store)] == [ONE, sdo(3)["id"]]
    finally:
        store.close()


def test_a_bulk_store_flushes_less_but_keeps_the_server_durable(tmp_path: Path):
    server, bulk = SQLiteStore(tmp_path / "a.sqlite3"), SQLiteStore(tmp_path / "a.sqlite3",
                                                                    bulk=True)
    server.open()
    bulk.open()
    try:
        flags = [s._conn().execute("PRAGMA synchronous").fetchone()[0] for s in (server, bulk)]
        write(bulk, sdo(1))
        assert versions_of(read(server)) == [(ONE, V1)]  # one file, both see the same data
    finally:
        server.close()
        bulk.close()
    assert flags == [2, 1]  # FULL for the server, NORMAL for bulk loads


def test_only_what_cannot_be_redone_waits_for_the_disk(tmp_path: Path):
    """An accepted push is fsynced before the client hears of it; the lease on it and the
    write of its objects are not (both are redone from the recorded body after a power
    loss), and the connection is FULL again for the next acknowledgement."""
    store = SQLiteStore(tmp_path / "a.sqlite3")
    store.open()
    level = lambda: store._conn().execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
    seen: dict[str, int] = {}
    try:
        status = pending()
        store.save_status(status, b'{"objects": []}')
        seen["after accepting"] = level()
        assert store.claim_pending(5.0, status.id) == [status.id]
        seen["after the lease"] = level()

        def finish(outcomes: list[Outcome]) -> Status:  # runs inside the write's transaction
            seen["inside the write of a push"] = level()
            return dataclasses.replace(status, status=COMPLETE, pendings=[])

        store.write(COLL, [candidate(sdo(1))], status.id, finish)
        seen["after the write"] = level()
    finally:
        store.close()
    assert seen == {"after accepting": 2, "after the lease": 2,
                    "inside the write of a push": 1, "after the write": 2}


V2_SCHEMA = """
CREATE TABLE colls (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE objects (seq INTEGER PRIMARY KEY, coll INTEGER NOT NULL, idh INTEGER NOT NULL,
    id TEXT NOT NULL, type TEXT NOT NULL, vkey TEXT NOT NULL, version TEXT NOT NULL,
    spec TEXT NOT NULL, added INTEGER NOT NULL, last INTEGER NOT NULL, first INTEGER NOT NULL,
    spec_latest INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX objects_id ON objects (coll, idh);
CREATE UNIQUE INDEX objects_added ON objects (coll, added);
CREATE INDEX objects_type ON objects (coll, type, added);
CREATE TABLE clock (coll TEXT PRIMARY KEY, added INTEGER NOT NULL);
PRAGMA user_version = 2;
"""


def test_a_schema_2_file_gets_its_visibility_facts_on_open(tmp_path: Path):
    """Objects keep their date_added; ranks come from their markings (unmarked: AMBER), and
    what references a withheld object is withheld with it."""
    from exchange.markings import TLP
    from exchange.model import AMBER, GREEN, Visibility
    from exchange.store.sqlite_plan import id_hash

    def valid(obj: dict[str, Any]) -> dict[str, Any]:  # RFC 4122 ids, as stored objects have
        kind, number = obj["id"].split("--")
        return {**obj, "id": f"{kind}--{uuid.UUID(int=uuid.UUID(number).int, version=4)}"}

    green = valid(sdo(1, object_marking_refs=[TLP["green"]]))
    unmarked = valid(sdo(2))
    red = valid(sdo(3, kind="malware", is_family=True, object_marking_refs=[TLP["red"]]))
    pointer = valid(sdo(4, kind="relationship", relationship_type="indicates",
                        source_ref=green["id"], target_ref=red["id"],
                        object_marking_refs=[TLP["green"]]))
    path = tmp_path / "v2.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(V2_SCHEMA)
    old.execute("INSERT INTO colls (key, id) VALUES (1, ?)", (COLL,))
    for added, obj in enumerate((green, unmarked, red, pointer), start=1):
        old.execute("INSERT INTO objects (coll, idh, id, type, vkey, version, spec, added, last, "
                    "first, spec_latest, body) VALUES (1, ?, ?, ?, ?, ?, '2.1', ?, 1, 1, 1, ?)",
                    (id_hash(obj["id"]), obj["id"], obj["type"], version_key(obj["modified"]),
                     obj["modified"], added, orjson.dumps(obj)))
    old.execute("INSERT INTO clock VALUES (?, 4)", (COLL,))
    old.commit()
    old.close()
    store = SQLiteStore(path)
    store.open()
    try:
        def seen(rank: int) -> list[str]:
            view = Visibility(max_rank=rank)
            return [e.id for e in read(store, visibility=view)]

        assert [e.date_added for e in read(store)] == [1, 2, 3, 4]
        assert seen(GREEN) == [green["id"]]
        assert seen(AMBER) == [green["id"], unmarked["id"]]
        assert seen(RED) == [o["id"] for o in (green, unmarked, red, pointer)]
    finally:
        store.close()


def test_new_objects_are_inserted_once_and_not_updated(tmp_path: Path):
    """A write touches each new row once: recomputing nothing that was just decided."""
    store = SQLiteStore(tmp_path / "once.sqlite3")
    store.open()
    statements: list[str] = []
    try:
        store._conn().set_trace_callback(statements.append)
        write(store, *(sdo(i) for i in range(20)))
        assert not [s for s in statements if s.startswith("UPDATE objects")]
        statements.clear()
        write(store, sdo(3, V2))  # a new version: only the old one's flags change
        assert len([s for s in statements if s.startswith("UPDATE objects")]) == 1
    finally:
        store.close()



# -- the search index: its tables, their migration and their query plans ------------------------
@pytest.fixture
def searched(tmp_path: Path) -> Iterator[SQLiteStore]:
    """The search tests' objects (tests/test_store_search.py) in a SQLite file."""
    opened = SQLiteStore(tmp_path / "search.sqlite3")
    opened.open()
    try:
        write_search(opened, *OBJECTS.values())
        write_search(opened, OBJECTS["ip"], sco_search("ipv4-addr", "198.51.100.8"),
                     collection=OTHER)
        yield opened
    finally:
        opened.close()


def _index_rows(searched: SQLiteStore) -> tuple[int, int]:
    conn = searched._conn()
    return (conn.execute("SELECT count(*) FROM terms").fetchone()[0],
            conn.execute("SELECT count(*) FROM grams WHERE grams MATCH '\"example\"'")
            .fetchone()[0])


def test_delete_and_purge_remove_their_terms(searched: SQLiteStore) -> None:
    terms_before, grams_before = _index_rows(searched)
    gone = searched.delete(Query(collection=COLL, limit=1, ids=(OBJECTS["url"]["id"],)))
    assert gone == 1
    assert found(searched, search=terms.search("http://login.evil-shop.example/Pay.php")) == []
    assert found(searched, search=terms.search("*pay.php*")) == []
    assert _index_rows(searched) == (terms_before - 1, grams_before - 1)
    # Retention: everything at GREEN goes (a cutoff in the future).
    searched.purge(COLL, [None, 2**62, None, None, None], limit=1000)
    assert found(searched, search=terms.search("198.51.100.0/24")) == ["ind-amber"]
    assert found(searched, search=terms.search("*example*")) == ["ind-amber"]
    conn = searched._conn()
    left = {row[0] for row in conn.execute("SELECT term FROM terms WHERE coll = 1")}
    assert left == terms.terms(OBJECTS["ind-amber"])


def test_a_schema_4_file_gets_its_search_index_on_open(searched: SQLiteStore,
                                                       tmp_path: Path) -> None:
    searched.close()
    path = tmp_path / "search.sqlite3"
    old = sqlite3.connect(path)  # back to what schema 4 had
    old.executescript("DROP INDEX objects_src; DROP TABLE terms; DROP TABLE grams; "
                      "ALTER TABLE objects DROP COLUMN src; "
                      "ALTER TABLE objects DROP COLUMN vfrom; "
                      "ALTER TABLE objects DROP COLUMN vuntil; PRAGMA user_version = 4;")
    old.close()
    again = SQLiteStore(path)
    again.open()
    try:
        assert again._conn().execute("PRAGMA user_version").fetchone()[0] == 5
        assert found(again, search=terms.search("198.51.100.7")) == ["ind-amber", "ind-ip",
                                                                     "ip"]
        assert found(again, search=terms.search("*evil-shop*")) == ["ind-amber", "ind-url",
                                                                   "url", "domain"]
        assert found(again, source=THEM) == ["ind-future", "ind-expired"]
        assert found(again, valid_at=timestamp_micros("2025-01-01T00:00:00Z")) == \
            ["ind-amber", "ind-url", "ind-ip"]
    finally:
        again.close()


# -- EXPLAIN: every search and filter shape is an index scan ---------------------------------

SEEING_ALL, GREEN_PUSHER = None, Visibility(max_rank=GREEN, pusher="alice")


@pytest.mark.parametrize("filters, needs", [
    pytest.param({}, "USING INDEX objects_latest", id="browse"),
    pytest.param({"types": ("indicator",)}, "USING INDEX objects_type", id="type"),
    pytest.param({"source": ME}, "USING INDEX objects_src", id="source"),
    pytest.param({"ranks": (GREEN,)}, "USING INDEX objects_rank", id="TLP"),
    pytest.param({"valid_at": 1}, "USING INDEX objects_type", id="valid"),
    pytest.param({"before": 10, "after": 1}, "USING INDEX objects_latest", id="date range"),
    pytest.param({"search": Search(terms=("emotet",))}, "USING PRIMARY KEY (coll=? AND term=?",
                 id="exact term"),
    pytest.param({"search": Search(terms=("a.example", "b.example"))},
                 "USING PRIMARY KEY (coll=? AND term=?", id="two exact terms"),
    pytest.param({"search": Search(low="4:00", high="4:ff")},
                 "USING PRIMARY KEY (coll=? AND term>? AND term<?)", id="CIDR range"),
    pytest.param({"search": Search(text="evil", prefix=True)}, "SCAN g VIRTUAL TABLE",
                 id="prefix"),
    pytest.param({"search": Search(text="evil"), "before": 10}, "SCAN g VIRTUAL TABLE",
                 id="substring, next page"),
])
@pytest.mark.parametrize("view", [pytest.param(SEEING_ALL, id="sees everything"),
                                  pytest.param(GREEN_PUSHER, id="green")])
def test_search_and_filter_plans_are_index_scans(searched: SQLiteStore, filters: dict[str, Any],
                                                 needs: str, view: Visibility | None) -> None:
    query = Query(collection=COLL, limit=50, newest_first=True, visibility=view, **filters)
    plan = searched.explain(query)
    assert "SCAN objects" not in plan and "SCAN o " not in plan + " ", plan
    if view is None or "search" in filters:
        assert needs in plan, plan
    else:  # one range per rank of an index that leads with the collection and the rank
        assert "rank=?" in plan, plan
    searched = filters.get("search")
    # Each range comes in date_added order straight from its index: a sort only ever merges
    # short ranges already cut to the page, but for what a CIDR range found.
    lines = plan.splitlines()
    sorted_ranges = [lines[i - 1] for i, line in enumerate(lines)
                     if "TEMP B-TREE" in line and lines[i - 1].startswith("SEARCH")]
    assert len(sorted_ranges) == int(searched is not None and searched.kind == "range"), plan
    if searched is not None:
        assert "SEARCH o USING INDEX objects_added (coll=? AND added=?)" in plan or \
            "SEARCH o USING INTEGER PRIMARY KEY (rowid=?)" in plan, plan


