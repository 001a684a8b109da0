"""The write path: Ingest.accept/process, the Worker, and what survives a crash."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from exchange.config import REPO_DIR
from exchange.errors import Invalid, Unprocessable
from exchange.ingest import Ingest, Worker, Writer
from exchange.model import ALL, AMBER, COMPLETE, PENDING, Query, Status
from exchange.store import Store
from exchange.store.sqlite import SQLiteStore
from tests.conftest import ALICE, API_ROOT, OPEN, Env, free_port

COLL = OPEN
TAXII = "application/taxii+json;version=2.1"


def indicator(n: int, modified: str = "2024-01-01T00:00:00.000Z", **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.UUID(int=n, version=4)}",
            "created": "2024-01-01T00:00:00.000Z", "modified": modified, "created_by_ref": ALICE,
            "pattern": f"[ipv4-addr:value = '198.51.100.{n % 256}']", "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z", **extra}


def some_indicators(count: int, start: int = 1) -> list[dict[str, Any]]:
    # Random ids, so every test's objects are its own (uuid4: version 4, variant 8-b).
    return [{**indicator(start + i), "id": f"indicator--{uuid.uuid4()}"} for i in range(count)]


# alice pushes into COLL; a request stored by one process is checked again by another with
# the writer the server would give it.
WRITER = Writer(default_rank=AMBER, pusher="alice", identity=ALICE,
                identities=frozenset({ALICE}))


def new_ingest(store: Store) -> Ingest:
    return Ingest(store, lambda partner, collection: WRITER if partner == "alice" else None)


def envelope(*objects: Any) -> bytes:
    return orjson.dumps({"objects": list(objects)})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "exchange.sqlite3"


@pytest.fixture
def stores(db: Path) -> Iterator[Callable[[], SQLiteStore]]:
    """Opens stores over one SQLite file, as separate server processes would."""
    opened: list[SQLiteStore] = []

    def open_store() -> SQLiteStore:
        store = SQLiteStore(db)
        store.open()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(stores: Callable[[], SQLiteStore]) -> SQLiteStore:
    return stores()


@pytest.fixture
def ingest(store: SQLiteStore) -> Ingest:
    return new_ingest(store)


def accept(ingest: Ingest, body: bytes) -> Status:
    return ingest.accept(api_root=API_ROOT, collection=COLL, writer=WRITER, body=body)


def stored(store: Store, collection: str = COLL) -> list[dict[str, Any]]:
    page = store.query(Query(collection=collection, limit=10_000, versions=(ALL,)),
                       with_body=True)
    return [orjson.loads(e.body) for e in page.entries]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def state(store: Store, status_id: str) -> str | None:
    status = store.get_status(API_ROOT, status_id)
    return status.status if status else None


def assert_counts_add_up(status: Status) -> None:
    successes, failures, pendings = status.counts
    assert successes + failures + pendings == status.total_count


# -- accept and process --------------------------------------------------------------------

def test_envelope_is_accepted_then_processed(ingest: Ingest, store: SQLiteStore):
    objects = some_indicators(3)
    status = accept(ingest, envelope(*objects))
    assert status.status == PENDING
    assert status.total_count == 3 and status.counts == (0, 0, 3)
    assert status.pendings == [{"id": o["id"], "version": o["modified"]} for o in objects]
    assert store.get_status(API_ROOT, status.id) == status  # recorded before the answer
    assert stored(store) == []

    done = ingest.process(status.id)
    assert done is not None and done.status == COMPLETE
    assert done.counts == (3, 0, 0)
    assert done.successes == [{"id": o["id"], "version": o["modified"]} for o in objects]
    assert store.get_status(API_ROOT, status.id) == done
    assert stored(store) == objects
    assert ingest.process(status.id) is None  # nothing left to do


def test_bundle_body_is_accepted(ingest: Ingest, store: SQLiteStore):
    objects = some_indicators(2)
    bundle = {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}
    status = accept(ingest, orjson.dumps(bundle))
    assert status.total_count == 2
    ingest.process(status.id)
    assert stored(store) == objects


def test_process_in_a_fresh_ingest_reads_the_stored_request(ingest: Ingest,
                                                            store: SQLiteStore):
    objects = some_indicators(2)
    status = accept(ingest, envelope(*objects))
    done = new_ingest(store).process(status.id)  # as another process would, from the store alone
    assert done is not None and done.counts == (2, 0, 0)
    assert stored(store) == objects


@pytest.mark.parametrize("body", [
    pytest.param(b"", id="empty"),
    pytest.param(b'{"objects": [', id="truncated"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"{'objects': []}", id="python-repr"),
])
def test_malformed_json_is_invalid(ingest: Ingest, store: SQLiteStore, body: bytes):
    with pytest.raises(Invalid, match="not valid JSON"):
        accept(ingest, body)
    assert store.claim_pending(30) == []


@pytest.mark.parametrize("document", [
    pytest.param([], id="list"),
    pytest.param("objects", id="string"),
    pytest.param({}, id="no-objects"),
    pytest.param({"objects": {"type": "indicator"}}, id="objects-not-a-list"),
    pytest.param({"type": "indicator", "objects": []}, id="typed-not-a-bundle"),
    pytest.param(indicator(1), id="bare-object"),
])
def test_a_body_that_is_not_an_envelope_is_unprocessable(ingest: Ingest, store: SQLiteStore,
                                                         document: Any):
    with pytest.raises(Unprocessable, match="envelope|bundle"):
        accept(ingest, orjson.dumps(document))
    assert store.claim_pending(30) == []


def test_failures_are_itemised_and_counts_add_up(ingest: Ingest, store: SQLiteStore):
    good = some_indicators(2)
    bad_time = {**indicator(7), "id": f"indicator--{uuid.uuid4()}", "modified": "yesterday"}
    no_pattern = {k: v for k, v in indicator(8).items() if k != "pattern"}
    objects: list[Any] = [good[0], "not an object", bad_time, {"type": "indicator"}, no_pattern,
                          good[1]]
    status = accept(ingest, envelope(*objects))
    assert status.total_count == 6
    assert status.counts == (0, 4, 2)
    assert_counts_add_up(status)
    by_index = {f["message"].split(":")[0]: f for f in status.failures}
    assert set(by_index) == {"object 1", "object 2", "object 3", "object 4"}
    assert by_index["object 1"] == {"id": "", "version": "",
                                    "message": "object 1: a STIX object must be a JSON object"}
    assert by_index["object 2"]["id"] == bad_time["id"]
    assert "'modified'" in by_index["object 2"]["message"]
    assert by_index["object 2"]["version"] == "yesterday"
    assert "'id' is missing" in by_index["object 3"]["message"]
    assert by_index["object 4"]["id"] == no_pattern["id"]
    assert "requires 'pattern'" in by_index["object 4"]["message"]

    done = ingest.process(status.id)
    assert done is not None and done.counts == (2, 4, 0)
    assert_counts_add_up(done)
    assert done.failures == status.failures
    assert stored(store) == good


def test_conflicts_and_reposts_are_reported_per_object(ingest: Ingest, store: SQLiteStore):
    original, other = some_indicators(2)
    first = accept(ingest, envelope(original))
    ingest.process(first.id)

    forged = {**original, "pattern": "[ipv4-addr:value = '203.0.113.66']"}
    again = accept(ingest, envelope(original, forged, other))
    done = ingest.process(again.id)
    assert done is not None and done.total_count == 3
    assert_counts_add_up(done)
    assert done.successes == [
        {"id": original["id"], "version": original["modified"],
         "message": "already stored, unchanged"},
        {"id": other["id"], "version": other["modified"]},
    ]
    [conflict] = done.failures
    assert conflict["id"] == original["id"] and conflict["version"] == original["modified"]
    assert "different object with this id and version" in conflict["message"]
    assert stored(store) == [original, other]


def test_a_push_with_nothing_valid_is_complete_at_once(ingest: Ingest, store: SQLiteStore):
    status = accept(ingest, envelope({"type": "indicator"}, 42))
    assert status.status == COMPLETE and status.counts == (0, 2, 0)
    assert store.pending_request(status.id) is None
    assert store.claim_pending(30) == []
    assert ingest.process(status.id) is None
    empty = accept(ingest, envelope())
    assert empty.status == COMPLETE and empty.total_count == 0
    assert store.get_status(API_ROOT, empty.id) == empty


def test_unversioned_objects_get_their_version_from_the_store(ingest: Ingest,
                                                              store: SQLiteStore):
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "value": "192.0.2.9",
           "id": "ipv4-addr--1b9c3e4a-4a5f-5a6b-8c7d-9e0f1a2b3c4d"}
    status = accept(ingest, envelope(sco))
    assert status.pendings == [{"id": sco["id"], "version": ""}]
    done = ingest.process(status.id)
    assert done is not None
    [success] = done.successes
    [entry] = store.query(Query(collection=COLL, limit=10), with_body=False).entries
    assert success == {"id": sco["id"], "version": entry.version}


# -- the Worker -----------------------------------------------------------------------------

@pytest.fixture
def start_worker() -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(ingest: Ingest, **timing: float) -> Worker:
        worker = Worker(ingest, **{"lease_seconds": 5.0, "sweep_seconds": 0.05, **timing})
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def test_worker_processes_a_submitted_request(stores, start_worker):
    ingest = new_ingest(stores())
    worker = start_worker(new_ingest(stores()), sweep_seconds=30)  # only what is submitted
    objects = some_indicators(3)
    status = accept(ingest, envelope(*objects))
    done = worker.submit(status.id).result(timeout=10)
    assert done is not None and done.status == COMPLETE and done.counts == (3, 0, 0)
    assert stored(ingest.store) == objects
    assert worker.submit(status.id).result(timeout=10) is None  # already complete


def test_accepted_request_survives_a_crash_before_processing(stores, start_worker, db):
    """accept() returned, the process died: a new process completes the request."""
    before = stores()
    objects = some_indicators(50)
    status = accept(new_ingest(before), envelope(*objects))
    before.close()  # the process is gone; nothing processed it

    after = stores()
    assert state(after, status.id) == PENDING
    start_worker(new_ingest(SQLiteStore(db)), lease_seconds=0.5)
    wait_for(lambda: state(after, status.id) == COMPLETE, 10, "the request to complete")
    done = after.get_status(API_ROOT, status.id)
    assert done is not None and done.counts == (50, 0, 0)
    assert after.pending_request(status.id) is None
    assert stored(after) == objects


def test_request_claimed_by_a_dead_process_is_retried_when_its_lease_expires(
        stores, start_worker, db):
    objects = some_indicators(5)
    dead = stores()
    status = accept(new_ingest(dead), envelope(*objects))
    started = time.monotonic()
    assert dead.claim_pending(0.5) == [status.id]  # claimed, then the process died
    dead.close()

    observer = stores()
    start_worker(new_ingest(SQLiteStore(db)), lease_seconds=0.5)
    wait_for(lambda: state(observer, status.id) == COMPLETE, 10, "the request to complete")
    assert time.monotonic() - started >= 0.5  # not before the lease ran out
    assert stored(observer) == objects


class FailingOnce(Ingest):
    def __init__(self, store: SQLiteStore) -> None:
        super().__init__(store, lambda partner, collection: WRITER)
        self.calls = 0

    def process(self, status_id: str) -> Status | None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("disk on fire")
        return super().process(status_id)


def test_a_request_whose_processing_failed_stays_pending_and_is_retried(stores, start_worker):
    store = stores()
    objects = some_indicators(2)
    status = accept(new_ingest(store), envelope(*objects))
    flaky = FailingOnce(stores())
    worker = start_worker(flaky, lease_seconds=0.3)
    with pytest.raises(RuntimeError, match="disk on fire"):
        worker.submit(status.id).result(timeout=10)
    assert state(store, status.id) == PENDING
    wait_for(lambda: state(store, status.id) == COMPLETE, 10, "the retry")
    assert flaky.calls == 2
    assert stored(store) == objects


class Recording(Ingest):
    """Records every request it starts processing (shared between two 'processes')."""

    def __init__(self, store: SQLiteStore, log: list[str], lock: threading.Lock) -> None:
        super().__init__(store, lambda partner, collection: WRITER)
        self.log, self.lock = log, lock

    def process(self, status_id: str) -> Status | None:
        with self.lock:
            self.log.append(status_id)
        return super().process(status_id)


def test_two_workers_on_one_file_never_process_a_request_twice(stores, start_worker, db):
    front = stores()
    ingest = new_ingest(front)
    batches = [some_indicators(4) for _ in range(15)]
    accepted = [accept(ingest, envelope(*batch)) for batch in batches]
    log: list[str] = []
    lock = threading.Lock()
    workers = [start_worker(Recording(SQLiteStore(db), log, lock), sweep_seconds=0.01)
               for _ in range(2)]
    # Both are told about every request, and both sweep for pending ones at the same time.
    futures = [w.submit(s.id) for s in accepted for w in workers]
    results = [f.result(timeout=20) for f in futures]

    assert collections.Counter(log) == {s.id: 1 for s in accepted}
    answered = collections.Counter(r.id for r in results if r is not None)
    assert all(count == 1 for count in answered.values())  # the other worker's answer: None
    for status in accepted:
        final = front.get_status(API_ROOT, status.id)
        assert final is not None and final.status == COMPLETE
        assert final.counts == (4, 0, 0)
        assert not any("already stored" in s.get("message", "") for s in final.successes)
    everything = stored(front)
    assert len(everything) == 60
    assert sorted(o["id"] for o in everything) == \
        sorted(o["id"] for batch in batches for o in batch)


# -- a real server, killed -9 right after it answered 202 ----------------------------------

def _serve(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    # This checkout's code (`python -m exchange` from its root), not an installed script's.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "exchange", "--config", str(config), "serve", "--port",
             str(port), "--no-access-log"],
            cwd=REPO_DIR, stdout=out, stderr=subprocess.STDOUT,
            env={**environment, "PYTHONPATH": str(REPO_DIR)})


def _until_up(process: subprocess.Popen[bytes], url: str, headers: dict[str, str],
              log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server did not start: {log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_server_killed_right_after_202_completes_the_push_after_restart(env: Env,
                                                                          tmp_path: Path):
    config = tmp_path / "env" / "config.yaml"
    document = yaml.safe_load(config.read_text())
    document["post_wait_seconds"] = 0  # answer 202 pending at once
    config.write_text(yaml.safe_dump(document))
    headers = {**env.bearer("alice"), "Accept": TAXII}
    log = tmp_path / "server.log"
    objects = some_indicators(400)

    port = free_port()
    server = _serve(config, port, log)
    try:
        base = f"http://127.0.0.1:{port}/"
        _until_up(server, base + "taxii2/", headers, log)
        answer = httpx.post(f"{base}{API_ROOT}/collections/{COLL}/objects/",
                            content=envelope(*objects),
                            headers={**headers, "Content-Type": TAXII}, timeout=10)
        server.kill()  # SIGKILL: no shutdown, no flush, whatever it was doing
        server.wait()
    finally:
        _stop(server)
    assert answer.status_code == 202, answer.text
    status_id = answer.json()["id"]
    assert answer.json()["total_count"] == 400

    port = free_port()
    server = _serve(config, port, log)
    try:
        base = f"http://127.0.0.1:{port}/"
        _until_up(server, base + "taxii2/", headers, log)

        def complete() -> dict[str, Any] | None:
            reply = httpx.get(f"{base}{API_ROOT}/status/{status_id}/", headers=headers)
            assert reply.status_code == 200, reply.text
            body: dict[str, Any] = reply.json()
            return body if body["status"] == "complete" else None

        def all_or_nothing() -> dict[str, Any] | None:
            manifest = httpx.get(f"{base}{API_ROOT}/collections/{COLL}/manifest/",
                                 headers=headers).json()
            assert len(manifest.get("objects", [])) in (0, 400)  # never half a push
            return complete()

        # A request the killed process had claimed waits for its lease (5 s) to run out.
        final = wait_for(all_or_nothing, 30, "the status to complete after the restart")
        assert (final["success_count"], final["failure_count"], final["pending_count"]) == \
            (400, 0, 0)
        pulled: list[dict[str, Any]] = []
        url = f"{base}{API_ROOT}/collections/{COLL}/objects/?limit=150"
        while True:
            page = httpx.get(url, headers=headers).json()
            pulled.extend(page.get("objects", []))
            if not page["more"]:
                break
            url = f"{base}{API_ROOT}/collections/{COLL}/objects/?limit=150&next={page['next']}"
        assert pulled == objects
    finally:
        _stop(server)
