"""What only the MongoDB store has: every find an index scan, writers in several processes
taking turns on the date_added clock, an unreachable server as a 503, and `serve` from a
mongodb:// URL. The behaviour every backend shares is tests/test_store.py."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from taxii2client.v21 import Collection

from exchange.errors import Unavailable
from exchange.model import ALL, FIRST, LAST, RED, Query, Search, Visibility
from exchange.stix import now_micros, version_key
from exchange.store import terms
from exchange.store.mongo import MongoStore
from exchange.store.mongo_plan import Scan, expired_scans, scans
from tests import backends
from tests.conftest import ALICE, OPEN, Env, free_port, start_server
from tests.test_store import COLL, candidate, sdo, write

REPO = Path(__file__).resolve().parent.parent
TAXII = "application/taxii+json;version=2.1"


def gap(*needs: str) -> list[pytest.MarkDecorator]:
    """Expected failures for what the session's MongoDB lacks (none on a real server)."""
    return [pytest.mark.xfail(strict=True, reason=reason) for reason in backends.gaps_for(needs)]


# -- every read is index scans ---------------------------------------------------------------
GREEN_ALICE = Visibility(max_rank=1, pusher="alice")
SHAPES = [
    pytest.param(view, selector, versions, id=f"{name}-{how}-{vname}")
    for name, view in (("everything", None), ("restricted", GREEN_ALICE),
                       ("onward", Visibility(max_rank=3, onward=True, not_from="bob")))
    for how, selector in (("ids", {"ids": ("indicator--x", "malware--y")}),
                          ("types", {"types": ("indicator", "malware")}), ("none", {}))
    for vname, versions in (("last", (LAST,)), ("first", (FIRST,)), ("all", (ALL,)),
                            ("explicit", (version_key("2024-01-01T00:00:00Z"),)))
]


def _stages(plan: dict[str, Any]) -> list[str]:
    found = [plan.get("stage", "")]
    for key in ("inputStage", "queryPlan"):
        if key in plan:
            found += _stages(plan[key])
    for child in plan.get("inputStages", []):
        found += _stages(child)
    return found


def _assert_index_scans(store: MongoStore, plan: list[Scan]) -> None:
    assert plan
    for scan, winning in zip(plan, store.explain(plan), strict=True):
        stages = _stages(winning)
        assert "COLLSCAN" not in stages, (scan.filter, winning)
        assert any("IXSCAN" in s for s in stages), (scan.filter, winning)


@pytest.fixture(scope="module")
def filled(mongo_server: backends.Mongo) -> Iterator[MongoStore]:
    """Enough versions, ranks and pushers that the planner has indexes to choose between
    (one store for the module: the plans only read)."""
    store = mongo_server.store(mongo_server.database())
    assert isinstance(store, MongoStore)
    store.open()
    batch = [dataclasses.replace(candidate(sdo(i, kind=kind, is_family=True)), rank=i % 5,
                                 pusher=("alice", "bob", "")[i % 3])
             for i in range(60) for kind in ("indicator", "malware")]
    try:
        write(store, *batch)
        write(store, *(sdo(i, "2024-02-01T00:00:00.000Z") for i in range(10)))
    except NotImplementedError as exc:  # mongomock: no sessions; each test fails with it
        store.failed = exc  # type: ignore[attr-defined]
    yield store
    store.close()


@pytest.mark.parametrize(("view", "selector", "versions"), SHAPES)
@pytest.mark.parametrize("page", [None, 1], ids=["first-page", "next-page"])
def test_every_query_shape_is_index_scans(filled: MongoStore, view: Visibility | None,
                                          selector: dict[str, Any], versions: tuple[str, ...],
                                          page: int | None, request: pytest.FixtureRequest):
    for mark in gap("explain"):
        request.applymarker(mark)
    if hasattr(filled, "failed"):
        raise filled.failed
    query = Query(collection=COLL, limit=100, versions=versions, visibility=view,
                  after=page, **selector)
    _assert_index_scans(filled, scans(query))
    _assert_index_scans(filled, scans(query, every=True))  # what a delete selects


FILTER_SHAPES = [
    pytest.param({"refers_to": "malware--y"}, id="refers_to"),
    pytest.param({"refers_to": "malware--y", "after": 1}, id="refers_to-next-page"),
    pytest.param({"newest_first": True}, id="newest_first"),
    pytest.param({"newest_first": True, "before": now_micros()}, id="newest_first-next-page"),
    pytest.param({"after": 1, "before": now_micros()}, id="date-range"),
    pytest.param({"ranks": (1, 2)}, id="ranks"),
    pytest.param({"source": ALICE}, id="source"),
    pytest.param({"valid_at": now_micros()}, id="valid_at"),
    pytest.param({"search": Search(terms=("emotet",))}, id="search-exact"),
    pytest.param({"search": Search(terms=("a.example", "http://a.example/"))},
                 id="search-two-terms"),
    pytest.param({"search": Search(low="4:c6336400", high="4:c63364ff")}, id="search-cidr"),
    pytest.param({"search": Search(text="evil", prefix=True)}, id="search-prefix"),
    pytest.param({"search": Search(text="evil-shop")}, id="search-substring"),
    pytest.param({"search": Search(text="evil-shop"), "newest_first": True,
                  "before": now_micros(), "types": ("indicator",)},
                 id="search-substring-next-page-typed"),
]


@pytest.mark.parametrize("filters", FILTER_SHAPES)
@pytest.mark.parametrize("view", [pytest.param(None, id="everything"),
                                  pytest.param(GREEN_ALICE, id="restricted")])
def test_every_filter_and_search_shape_is_index_scans(
        filled: MongoStore, view: Visibility | None, filters: dict[str, Any],
        request: pytest.FixtureRequest):
    for mark in gap("explain"):
        request.applymarker(mark)
    if hasattr(filled, "failed"):
        raise filled.failed
    query = Query(collection=COLL, limit=50, visibility=view, **filters)
    _assert_index_scans(filled, scans(query))


def test_retention_finds_are_index_scans(filled: MongoStore, request: pytest.FixtureRequest):
    for mark in gap("explain"):
        request.applymarker(mark)
    if hasattr(filled, "failed"):
        raise filled.failed
    cutoffs = (now_micros(), now_micros(), None, now_micros() - 10, None)
    _assert_index_scans(filled, expired_scans(COLL, cutoffs, 1000))


# -- a store written before the search fields existed -----------------------------------------
@pytest.mark.parametrize("how", [pytest.param("reopen", id="reopen", marks=gap("transactions"))])
def test_versions_written_before_the_search_fields_get_them_on_open(
        mongo_server: backends.Mongo, how: str):
    uri = mongo_server.database()
    store = mongo_server.store(uri)
    assert isinstance(store, MongoStore)
    store.open()
    try:
        write(store, sdo(1, kind="malware", name="Emotet", is_family=True))
        store.db.objects.update_many({}, {"$unset": {
            "src": "", "vfrom": "", "vuntil": "", "terms": "", "texts": "", "grams": ""}})
        store.db.meta.delete_many({})
        searched = Query(collection=COLL, limit=5, search=terms.search("emotet"))
        assert store.query(searched, with_body=False).entries == []
        again = mongo_server.store(uri)
        again.open()
        try:
            assert [e.id for e in again.query(searched, with_body=False).entries] == \
                [sdo(1, kind="malware")["id"]]
        finally:
            again.close()
    finally:
        store.close()


# -- several processes writing one collection at once -----------------------------------------
WRITER = textwrap.dedent("""
    import json, sys, time
    from exchange.model import ALL, Query
    from exchange.store import terms
from exchange.store.mongo import MongoStore
    from tests.test_store import COLL, sdo, write

    uri, number, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    store = MongoStore(uri)
    store.open()
    print("ready", flush=True)
    while not __import__("os").path.exists(go):  # all four start writing together
        time.sleep(0.005)
    log = []
    for batch in range(15):
        newest = store.db.objects.find_one({"coll": COLL}, sort=[("added", -1)])
        before = newest["added"] if newest else 0
        ids = [number * 1000 + batch * 10 + i for i in range(4)]
        outcomes = write(store, *(sdo(i) for i in ids))
        assert all(o.stored for o in outcomes)
        log.append({"before": before, "ids": [sdo(i)["id"] for i in ids]})
    print(json.dumps(log), flush=True)
""")


def test_concurrent_writers_in_four_processes_take_turns_on_the_clock(
        mongo_server: backends.Mongo, tmp_path: Path, request: pytest.FixtureRequest):
    """Every date_added is unique, and a write's versions come after everything committed
    before it began (strictly increasing in commit order, so a reader's `next` never skips
    a version committed later), and nothing is lost."""
    for mark in gap("write_conflicts"):
        request.applymarker(mark)
    uri = mongo_server.database()
    if mongo_server.kind == "mongomock":
        raise AssertionError("mongomock lives in this process: no other process can write")
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, uri, str(n), str(go)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
               for n in range(1, 5)]
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready", writer.stderr
        go.touch()
        results = [writer.communicate(timeout=300) for writer in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
            for pipe in (writer.stdout, writer.stderr):  # read or not, never left to the GC
                if pipe is not None:
                    pipe.close()
    failed = [err for writer, (_, err) in zip(writers, results, strict=True)
              if writer.returncode != 0]
    assert not failed, failed[0][-3000:]
    import json

    store = mongo_server.store(uri)
    store.open()
    try:
        entries = store.query(Query(collection=COLL, limit=10_000, versions=(ALL,)),
                              with_body=False).entries
    finally:
        store.close()
    added = {e.id: e.date_added for e in entries}
    assert len(entries) == len(added) == 4 * 15 * 4  # nothing lost, nothing twice
    assert len(set(added.values())) == len(added)  # unique
    for out, _ in results:
        for write_ in json.loads(out.strip().splitlines()[-1]):
            mine = [added[i] for i in write_["ids"]]
            assert mine == sorted(mine)
            assert min(mine) > write_["before"], "a write took a date_added below one " \
                "committed before it began"


# -- an unreachable server is a 503 ---------------------------------------------------------
def indicator() -> dict[str, object]:
    t0 = "2026-11-01T00:00:00.000Z"
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": t0, "modified": t0, "created_by_ref": ALICE, "name": "gone",
            "pattern": "[domain-name:value = 'gone.example']", "pattern_type": "stix",
            "valid_from": t0}


@pytest.mark.parametrize("kind", [pytest.param(backends.MONGO_KIND, id="stopped server",
                                               marks=gap("server"))])
def test_a_stopped_server_is_unavailable_503_with_retry_after(env: Env, kind: str):
    """The server stops under a running exchange: the store raises Unavailable and every
    TAXII request is a 503 with Retry-After and a TAXII error body, not a 500."""
    binary = backends._jongodb()
    if kind == "mongomock" or binary is None:
        raise AssertionError("no MongoDB server this test can stop (it starts jongodb)")
    server = backends.Jongodb(binary, free_port())
    uri = server.start().replace("/test?", "/gone?") + "&serverSelectionTimeoutMS=500"
    store = MongoStore(uri)
    settings = dataclasses.replace(env.settings, store_url=uri)
    live = start_server(Env(settings, env.credentials), store)
    try:
        with httpx.Client(base_url=live.collection(), timeout=30, headers={
                "Accept": TAXII, "Content-Type": TAXII, **env.bearer("alice")}) as http:
            assert http.post("objects/", json={"objects": [indicator()]}).status_code == 202
            assert len(http.get("objects/").json()["objects"]) == 1
            server.stop()
            with pytest.raises(Unavailable):
                store.query(Query(collection=OPEN, limit=1), with_body=False)
            for answer in (http.get("objects/"),
                           http.post("objects/", json={"objects": [indicator()]})):
                assert answer.status_code == 503, answer.text
                assert answer.headers["content-type"] == TAXII
                assert answer.headers["retry-after"] == "1"
                assert answer.json()["title"] == "Service unavailable"
    finally:
        live.stop()
        server.stop()


# -- serve from a mongodb:// URL ------------------------------------------------------------
@pytest.mark.parametrize("how", [pytest.param("serve", id="serve", marks=gap("server"))])
def test_serve_from_a_mongodb_url_pushes_and_pulls_with_taxii2_client(
        env: Env, mongo_server: backends.Mongo, how: str):
    config = env.settings.partners_file.parent / "config.yaml"
    document = yaml.safe_load(config.read_text())
    document["store"] = mongo_server.database()
    config.write_text(yaml.safe_dump(document))
    port = free_port()
    log = (config.parent / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "--config", str(config), how, "--port", str(port),
         "--no-access-log"], cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
        stderr=subprocess.STDOUT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")},
             "PYTHONPATH": str(REPO)})
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (config.parent / "serve.log").read_text()
            try:
                httpx.get(url + "taxii2/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.05)
        user, password = env.basic("alice")
        collection = Collection(f"{url}api1/collections/{OPEN}/", user=user, password=password)
        objects = [indicator() for _ in range(3)]
        status = collection.add_objects({"objects": objects})
        assert (status.status, status.success_count) == ("complete", 3)
        assert collection.get_objects()["objects"] == objects
        assert collection.get_object(objects[1]["id"])["objects"] == [objects[1]]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    store = mongo_server.store(document["store"])  # it is all in MongoDB
    store.open()
    try:
        page = store.query(Query(collection=OPEN, limit=10, visibility=Visibility(RED)),
                           with_body=False)
        assert [e.id for e in page.entries] == [o["id"] for o in objects]
    finally:
        store.close()
