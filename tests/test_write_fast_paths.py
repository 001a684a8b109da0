"""The write path's shortcuts give exactly what the long way gives.

- A write asks the backend for the classification of the objects its new versions reference
  (`newest_facts`) instead of loading every version of them; a backend without that method
  takes the long way. Both must store the same rows, flags and effective ranks, on random
  batches whose objects reference each other (earlier, later, in cycles) and on batches of
  new objects nothing references (the common case of a feed load).
- The check finds an object's references from its top-level properties when its JSON body
  shows nothing nested is named like one; it must find exactly what the full walk finds.
- Checked candidates cross a process boundary during a bulk load: pickled, they come back
  equal, and a load with its producer in a child process stores what one in-process stores.
"""

from __future__ import annotations

import gc
import pickle
import random
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.ingest import Ingest, Writer, check_objects
from exchange.model import AMBER, Candidate, Indexed
from exchange.normalize import PARSERS, Context
from exchange.normalize.run import Run
from exchange.stix import check_object, references
from exchange.store import sqlite as sqlite_store
from exchange.store.sqlite import SQLiteStore
from tests.fixtures.shadowserver import SINKHOLE_HEADER, sinkhole_rows
from tests.test_store import COLL, write
from tests.test_store_visibility import Version, _candidate, _generate, _id

# Every stored fact of every version but its date_added (read from the clock).
_ROWS = ("SELECT id, type, vkey, version, spec, base, bh2, rank, h2, last, first, spec_latest, "
         "newer, older, pusher, top, bottom, body, src, vfrom, vuntil FROM objects ORDER BY seq")


def _stored(path: Path) -> tuple[list[Any], list[Any]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(_ROWS).fetchall()
        refs = conn.execute("SELECT coll, dst, seq FROM refs ORDER BY coll, dst, seq").fetchall()
    return rows, refs


def _load(path: Path, batches: list[list[Version]]) -> tuple[list[Any], list[Any]]:
    store = SQLiteStore(path)
    store.open()
    try:
        for batch in batches:
            write(store, *[_candidate(v) for v in batch])
    finally:
        store.close()
    return _stored(path)


def _unreferenced(rng: random.Random, count: int) -> list[Version]:
    """New objects nothing references, each referencing ones before it (a feed's batch)."""
    out: list[Version] = []
    for n in range(1, count + 1):
        refs = tuple(rng.sample([v.id for v in out], min(len(out), rng.choice((0, 1, 3)))))
        ident = _id("report", 20_000 + n)
        out.append(Version(ident, "report", "2024-01-01T00:00:00.000Z",
                           base=rng.choice((0, 2, 2, 2, 4)), h2=rng.random() < 0.1,
                           pusher="", refs=refs))
    return out


def _batches(rng: random.Random, versions: list[Version]) -> list[list[Version]]:
    out = []
    while versions:
        size = rng.randint(1, 15)
        out.append(versions[:size])
        versions = versions[size:]
    return out


@pytest.mark.parametrize("kind", [
    pytest.param("referrers", id="objects referencing each other, in any order"),
    pytest.param("unreferenced", id="new objects nothing references"),
    pytest.param("mixed", id="new unreferenced objects after referenced ones"),
])
@pytest.mark.parametrize("seed", range(4))
def test_classification_by_facts_stores_what_loading_versions_stores(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, seed: int) -> None:
    rng = random.Random(seed)
    versions = {"referrers": lambda: _generate(rng, 30),
                "unreferenced": lambda: _unreferenced(rng, 60),
                "mixed": lambda: _generate(rng, 20) + _unreferenced(rng, 30)}[kind]()
    batches = _batches(rng, versions)
    fast = _load(tmp_path / "fast.sqlite3", batches)
    monkeypatch.delattr(sqlite_store._Backend, "newest_facts")
    slow = _load(tmp_path / "slow.sqlite3", batches)
    assert fast[0] and fast == slow


_ID = st.integers(1, 50).map(lambda n: _id("indicator", n))
_NAMES = st.sampled_from(["a_ref", "b_refs", "plain", "x_ref_not", "value", "c_refs"])
_TEXT = st.one_of(_ID, st.sampled_from(["plain text", 'says "_ref": here', 'x_refs":', ""]))
_NESTED = st.recursive(
    _TEXT | st.integers(0, 5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=3),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(top_refs=st.dictionaries(st.sampled_from(["src_ref", "dst_ref", "created_by_ref"]),
                                _ID, max_size=3),
       top_lists=st.dictionaries(st.sampled_from(["object_refs", "where_refs",
                                                 "object_marking_refs"]),
                                 st.lists(_ID, min_size=1, max_size=3), max_size=2),
       nested=st.dictionaries(st.sampled_from(["x_data", "x_more", "x_list_refs"]), _NESTED,
                              max_size=2))
def test_references_from_the_body_are_the_full_walks(
        top_refs: dict[str, str], top_lists: dict[str, list[str]],
        nested: dict[str, Any]) -> None:
    obj = {"type": "x-thing", "spec_version": "2.1", "id": _id("x-thing", 1),
           "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
           **top_refs, **top_lists, **nested}
    if "x_list_refs" in obj and not isinstance(obj["x_list_refs"], list):
        obj["x_list_refs"] = [obj["x_list_refs"]]
    try:
        walked = check_object(obj)
    except Exception:  # a shape the check refuses: both ways refuse it
        with pytest.raises(Exception):  # noqa: B017
            check_object(obj, orjson.dumps(obj))
        return
    assert check_object(obj, orjson.dumps(obj)).refs == walked.refs == references(obj)


def test_checked_candidates_cross_processes_unchanged() -> None:
    obj = {"type": "indicator", "spec_version": "2.1", "id": _id("indicator", 7),
           "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
           "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix",
           "valid_from": "2024-01-01T00:00:00.000Z", "name": "c2.example",
           "created_by_ref": _id("identity", 3)}
    checked = check_objects([obj], Writer(default_rank=2)).candidates
    assert checked and checked[0].indexed == Indexed(
        frozenset({"4:c6336407"}), (), _id("identity", 3), 1704067200000000, 2**62)
    bare = Candidate(id=obj["id"], type="indicator", spec_version="2.1", version=None,
                     body=b"{}")
    for candidate in (*checked, bare):
        assert pickle.loads(pickle.dumps(candidate, protocol=pickle.HIGHEST_PROTOCOL)) == \
            candidate


@pytest.mark.parametrize("parallel", [
    pytest.param(True, id="producer in a child process"),
    pytest.param(False, id="producer in this process"),
])
def test_a_load_stores_the_same_either_way_and_restores_the_collector(
        tmp_path: Path, parallel: bool) -> None:
    report = tmp_path / "2026-11-20-event4_sinkhole.csv"
    rows = sinkhole_rows(random.Random(7), 400)
    report.write_text("\n".join([SINKHOLE_HEADER, *rows, *rows[:50]]) + "\n")
    results = []
    for name, in_child in (("reference", False), ("load", parallel)):
        store = SQLiteStore(tmp_path / f"{name}.sqlite3", bulk=True)
        store.open()
        before = gc.get_threshold()
        try:
            run = Run(Ingest(store), collection=COLL, writer=Writer(default_rank=AMBER),
                      rejects=pytest.fail, batch=97)  # several transactions
            tally = run.files(PARSERS["shadowserver-event4-sinkhole"](), [report],
                              Context("Shadowserver Foundation", "amber"), parallel=in_child)
        finally:
            store.close()
        assert gc.get_threshold() == before
        assert tally.read == 450 and tally.stored > 400 * 3
        with sqlite3.connect(tmp_path / f"{name}.sqlite3") as conn:
            results.append(conn.execute(
                "SELECT id, type, body, rank, h2, last, first FROM objects "
                "WHERE type NOT IN ('ipv4-addr', 'ipv6-addr', 'network-traffic', "
                "'autonomous-system') ORDER BY seq").fetchall())
    assert results[0] == results[1]


def test_checked_bodies_hold_only_their_own_bytes() -> None:
    """A load holds thousands of checked bodies at once: each must cost about its length
    (orjson's own result keeps its 8 KB write buffer)."""
    objects = [{"type": "indicator", "spec_version": "2.1", "id": _id("indicator", n),
                "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
                "pattern": f"[ipv4-addr:value = '198.51.100.{n % 250}']", "pattern_type": "stix",
                "valid_from": "2024-01-01T00:00:00.000Z", "name": "c2.example"}
               for n in range(1, 301)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        checked = check_objects(objects, Writer(default_rank=2)).candidates
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(checked) == 300
    assert held / 300 < 4 * max(len(c.body) for c in checked)
