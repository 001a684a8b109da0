"""The audit trail: every request for objects or statuses leaves a record (who, from where,
what, with what result), writes in their own transaction; `audit verify` names every record
edited, inserted or deleted in the store file; `audit export` hands a data-protection officer
JSON lines, by time and partner.

Requests go to a real server on loopback; the trail is read back with the real commands.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import sqlite3
import time
import uuid
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exchange.cli import main
from exchange.policy import partners
from exchange.store.chain import link
from tests import backends
from tests.conftest import (
    ALICE,
    HIDDEN,
    OPEN,
    READONLY,
    Env,
    LiveServer,
    start_server,
    with_backend,
)

TAXII = "application/taxii+json;version=2.1"
T0 = "2026-11-01T00:00:00.000Z"


def indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://audit.example/{n}')}",
            "created": T0, "modified": T0, "created_by_ref": ALICE, "name": f"audit {n}",
            "pattern": f"[domain-name:value = 'host{n}.audit.example']",
            "pattern_type": "stix", "valid_from": T0}


def config(env: Env) -> str:
    return str(env.settings.store_path.parent / "config.yaml")


def command(env: Env, *args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["--config", config(env), "audit", *args])
    return code, out.getvalue().splitlines()


def exported(env: Env, *args: str) -> list[dict[str, Any]]:
    path = env.settings.store_path.parent / "export.jsonl"
    assert command(env, "export", "--out", str(path), *args)[0] == 0
    return [json.loads(line) for line in path.read_text().splitlines()]


def client(live: LiveServer, partner: str) -> httpx.Client:
    return httpx.Client(base_url=live.root, headers={"Accept": TAXII, "Content-Type": TAXII,
                                                     **live.env.bearer(partner)})


def push(live: LiveServer, partner: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    with client(live, partner) as http:
        answer = http.post(f"collections/{OPEN}/objects/", json={"objects": objects})
    assert answer.status_code == 202, answer.text
    status: dict[str, Any] = answer.json()
    assert status["status"] == "complete"
    return status


@pytest.fixture
def served(env: Env) -> tuple[Env, LiveServer]:
    return env, start_server(env)


def test_each_request_for_objects_or_statuses_is_recorded(served: tuple[Env, LiveServer]):
    env, live = served
    objects = [indicator(n) for n in range(3)]
    try:
        status = push(live, "alice", objects)
        with client(live, "alice") as http:
            assert http.get(f"collections/{OPEN}/objects/", params={"limit": 2}).is_success
            assert http.get(f"collections/{OPEN}/manifest/").is_success
            one = objects[0]["id"]
            assert http.get(f"collections/{OPEN}/objects/{one}/").is_success
            assert http.get(f"collections/{OPEN}/objects/{one}/versions/").is_success
            assert http.get(f"status/{status['id']}/").is_success
            assert http.delete(f"collections/{OPEN}/objects/{objects[2]['id']}/").is_success
            assert http.get(f"collections/{HIDDEN}/objects/").status_code == 404
        with client(live, "bob") as http:
            assert http.post(f"collections/{READONLY}/objects/",
                             json={"objects": objects}).status_code == 403
        assert httpx.get(f"{live.root}collections/{OPEN}/objects/",
                         headers={"Accept": TAXII, "Authorization": "Bearer wrong"}
                         ).status_code == 401
    finally:
        live.stop()  # the batched read records are appended before the store closes

    every = exported(env)
    assert [r["seq"] for r in every] == list(range(1, len(every) + 1))
    records = [r for r in every if r["kind"] != "admin"]
    seen = [(r["kind"], r["partner"], r.get("result"), r.get("endpoint", "").split(" ")[0])
            for r in records]
    # The push is recorded when accepted (with its address) and when stored, each in the
    # transaction that wrote it; reads, failures included, as they were answered.
    expected = [("push", "alice", 202, "POST"), ("stored", "alice", None, ""),
                ("read", "alice", 200, "GET"), ("read", "alice", 200, "GET"),
                ("read", "alice", 200, "GET"), ("read", "alice", 200, "GET"),
                ("status", "alice", 200, "GET"), ("delete", "alice", 200, "DELETE"),
                ("read", "alice", 404, "GET"), ("push", "bob", 403, "POST"),
                ("read", "", 401, "GET")]
    assert sorted(seen, key=str) == sorted(expected, key=str)
    by_kind = {(r["kind"], r.get("result")): r for r in records}
    accepted = by_kind[("push", 202)]
    assert accepted["address"] == "127.0.0.1" and accepted["collection"] == OPEN
    assert accepted["total"] == 3 and accepted["status"] == status["id"]
    stored = by_kind[("stored", None)]
    assert stored["versions"] == [[o["id"], T0] for o in objects]
    assert stored["stored"] == 3 and stored["status"] == status["id"]
    page = next(r for r in records if r.get("query") == "limit=2")
    assert page["objects"] == {"count": 2, "versions": [[o["id"], T0] for o in objects[:2]]}
    deleted = by_kind[("delete", 200)]
    assert (deleted["id"], deleted["deleted"]) == (objects[2]["id"], 1)
    assert by_kind[("push", 403)]["error"] == "Forbidden"
    assert by_kind[("read", 401)]["error"] == "Authentication required"


def test_a_large_page_is_recorded_by_count_digest_and_range(served: tuple[Env, LiveServer]):
    env, live = served
    objects = [indicator(n) for n in range(150)]
    try:
        push(live, "alice", objects)
        with client(live, "alice") as http:
            page = http.get(f"collections/{OPEN}/objects/")
        assert len(page.json()["objects"]) == 150
    finally:
        live.stop()
    [read] = [r for r in exported(env) if r["kind"] == "read"]
    assert read["objects"]["count"] == 150 and len(read["objects"]["sha256"]) == 64
    assert read["objects"]["added"] == [page.headers["X-TAXII-Date-Added-First"],
                                        page.headers["X-TAXII-Date-Added-Last"]]


def test_export_takes_records_since_a_time_and_of_one_partner(served: tuple[Env, LiveServer]):
    env, live = served
    try:
        push(live, "alice", [indicator(1)])
        with client(live, "bob") as http:
            assert http.get(f"collections/{READONLY}/objects/").is_success
    finally:
        live.stop()
    every = exported(env)
    assert {r["partner"] for r in every} == {"", "alice", "bob"}  # '': the server at start
    assert {r["partner"] for r in exported(env, "--partner", "bob")} == {"bob"}
    last = every[-1]["at"]
    assert [r["seq"] for r in exported(env, "--since", last)] == \
        [r["seq"] for r in every if r["at"] >= last]
    assert exported(env, "--since", "2999-01-01") == []


# -- tampering --------------------------------------------------------------------------------
def trail_of(env: Env, requests: int = 8) -> Path:
    """A store whose trail holds what a server records at start (its 3 collections and 3
    partners: records 1-6), a push (7, 8) and some reads (9 on)."""
    live = start_server(env)
    try:
        push(live, "alice", [indicator(1)])
        with client(live, "alice") as http:
            for _ in range(requests):
                assert http.get(f"collections/{OPEN}/objects/").is_success
    finally:
        live.stop()
    return env.settings.store_path


def tamper(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for sql, args in statements:
            conn.execute(sql, args)
    conn.close()


def rechain(path: Path, start: int) -> None:
    """Recompute every hash from record `start` on, as a forger with the file could."""
    conn = sqlite3.connect(path)
    with conn:
        previous = conn.execute("SELECT hash FROM audit WHERE seq = ?", (start - 1,)).fetchone()
        digest = previous[0]
        for seq, body in conn.execute("SELECT seq, body FROM audit WHERE seq >= ? ORDER BY seq",
                                      (start,)).fetchall():
            digest = link(digest, body if isinstance(body, bytes) else body.encode())
            conn.execute("UPDATE audit SET hash = ? WHERE seq = ?", (digest, seq))
    conn.close()


def head(env: Env) -> str:
    code, lines = command(env, "verify")
    assert code == 0, lines
    return lines[-1].rsplit(" ", 1)[1]


def test_verify_passes_an_untouched_trail_and_prints_its_head(env: Env):
    trail_of(env)
    code, lines = command(env, "verify")
    assert code == 0
    assert lines[-1].startswith("audit trail intact: 16 records; last 16:")
    assert command(env, "verify", "--anchor", head(env))[0] == 0


@pytest.mark.parametrize("statements, named", [
    pytest.param([("UPDATE audit SET body = replace(body, '\"alice\"', '\"carol\"') "
                   "WHERE seq = 10", ())],
                 ["record 10 edited or inserted: its hash does not follow from the record "
                  "before", "record 10 edited: its time or partner differs from its body"],
                 id="body edited"),
    pytest.param([("UPDATE audit SET partner = 'carol' WHERE seq = 11", ())],
                 ["record 11 edited: its time or partner differs from its body"],
                 id="partner column edited"),
    pytest.param([("DELETE FROM audit WHERE seq = 12", ())], ["record 12 deleted"],
                 id="one record deleted"),
    pytest.param([("DELETE FROM audit WHERE seq BETWEEN 9 AND 11", ())],
                 ["records 9 to 11 deleted"], id="three records deleted"),
    pytest.param([("UPDATE audit SET seq = -seq WHERE seq >= 13", ()),
                  ("UPDATE audit SET seq = 1 - seq WHERE seq < 0", ()),
                  ("INSERT INTO audit (seq, at, partner, body, hash) SELECT 13, at, partner, "
                   "body, hash FROM audit WHERE seq = 12", ())],
                 ["record 13 edited or inserted: its hash does not follow from the record "
                  "before"], id="record inserted"),
])
def test_verify_names_every_record_edited_inserted_or_deleted(
        env: Env, statements: list[tuple[str, tuple[Any, ...]]], named: list[str]):
    path = trail_of(env)
    tamper(path, *[(sql, args) for sql, args in statements])
    code, lines = command(env, "verify")
    assert code == 1
    assert lines[:-1] == named
    assert lines[-1].startswith("audit trail BROKEN")


def test_an_anchor_catches_a_rewritten_or_shortened_chain(env: Env):
    path = trail_of(env)
    anchor = head(env)  # noted outside the store, e.g. in the operator's log
    tamper(path, ("UPDATE audit SET body = replace(body, '\"alice\"', '\"carol\"'), "
                  "partner = 'carol' WHERE seq = 9", ()))
    rechain(path, 9)
    assert command(env, "verify")[0] == 0  # the chain alone cannot tell
    code, lines = command(env, "verify", "--anchor", anchor)
    assert code == 1 and lines[0] == "record 16 is not the anchored one: the chain was rewritten"

    tamper(path, ("DELETE FROM audit WHERE seq >= 15", ()))
    code, lines = command(env, "verify", "--anchor", anchor)
    assert code == 1 and lines[0] == "record 16 (the anchor) is gone: the chain was cut short"


@pytest.mark.parametrize("anchor", ["10", "ten:" + "0" * 64, "10:abc"])
def test_a_malformed_anchor_is_refused(env: Env, anchor: str, capsys):
    trail_of(env, requests=0)
    assert main(["--config", config(env), "audit", "verify", "--anchor", anchor]) == 2
    assert "--anchor takes SEQ:HASH" in capsys.readouterr().err


def test_pushes_from_several_threads_chain_without_gaps(served: tuple[Env, LiveServer]):
    env, live = served
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: push(live, "alice", [indicator(n)]), range(20)))
    finally:
        live.stop()
    code, lines = command(env, "verify")
    assert code == 0 and lines[-1].startswith("audit trail intact: 46 records")


def test_requests_that_hand_over_no_objects_are_not_recorded(served: tuple[Env, LiveServer]):
    """Discovery, the API root and the collections: nothing about objects changes hands."""
    env, live = served
    try:
        with client(live, "alice") as http:
            for path in (f"{live.url}taxii2/", "", "collections/", f"collections/{OPEN}/"):
                assert http.get(path).is_success
    finally:
        live.stop()
    assert [r for r in exported(env) if r["kind"] != "admin"] == []


# -- administrative changes -------------------------------------------------------------------
def admin(env: Env) -> list[tuple[str, str, list[str] | None, str]]:
    return [(r["change"], r["name"], r.get("fields"), r.get("by", ""))
            for r in exported(env) if r["kind"] == "admin"]


def test_partner_and_collection_changes_are_recorded_whoever_makes_them(env: Env):
    live = start_server(env)  # a new store: what it serves is recorded once
    live.stop()
    live = start_server(env)  # nothing changed: nothing more
    live.stop()
    assert sorted(admin(env)) == sorted(
        [("collection added", c, None, "serve") for c in (OPEN, READONLY, HIDDEN)]
        + [("partner added", p, None, "serve") for p in ("alice", "bob", "carol")])

    run = ["--config", config(env), "partners"]
    with redirect_stdout(io.StringIO()):
        assert main([*run, "set", "bob", "--clearance", "green"]) == 0
        assert main([*run, "remove", "carol"]) == 0
        assert main([*run, "token", "add", "alice", "--label", "siem"]) == 0
    assert admin(env)[6:] == [("partner changed", "bob", ["clearance"], "partners command"),
                              ("partner removed", "carol", None, "partners command"),
                              ("partner changed", "alice", ["tokens"], "partners command")]
    # A hand edit a running server notices (it reloads the file within a second).
    live = start_server(env)
    try:
        partners.update(env.settings.partners_file, "bob", clearance="red")
        deadline = time.monotonic() + 10
        while len(admin(env)) < 10:
            assert time.monotonic() < deadline, admin(env)
            with client(live, "alice") as http:
                http.get("collections/")
            time.sleep(0.2)
    finally:
        live.stop()
    assert admin(env)[9:] == [("partner changed", "bob", ["clearance"], "serve")]


@pytest.mark.emulator_gap("server")  # the command opens the store from its URL
@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_the_partners_command_records_in_and_reads_the_servers_store_on_each_backend(
        env: Env, backend: str, request: pytest.FixtureRequest):
    """`partners` finds the store the config names (a SQLite file, or MongoDB): its changes
    leave audit records there, and `token list` shows the last uses the server kept there.
    So does `collections add`."""
    env = with_backend(env, backend, request)
    if env.settings.store_url:
        path = Path(config(env))
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()),
                                        "store": env.settings.store_url}))
    run = ["--config", config(env), "partners"]
    with redirect_stdout(io.StringIO()):  # no server has run: nothing to record in yet
        assert main([*run, "set", "carol", "--clearance", "amber"]) == 0
    live = start_server(env)
    try:
        with client(live, "alice") as http:
            assert http.get("collections/").status_code == 200
    finally:
        live.stop()  # the server keeps alice's token's last use as it stops
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([*run, "set", "bob", "--clearance", "green"]) == 0
        assert main([*run, "token", "list", "alice"]) == 0
    assert admin(env)[-1:] == [("partner changed", "bob", ["clearance"], "partners command")]
    with redirect_stdout(io.StringIO()):  # the collections command too
        assert main(["--config", config(env), "collections", "add", "--alias", "late",
                     "--title", "Late"]) == 0
    assert admin(env)[-1][::3] == ("collection added", "collections command")
    [row] = [line.split("\t") for line in out.getvalue().splitlines()
             if line.startswith("alice\t")]
    assert row[5].startswith(time.strftime("%Y-")), row  # a time, not "never"


def test_failed_logins_throttled_are_recorded(served: tuple[Env, LiveServer]):
    env, live = served
    try:
        for _ in range(12):
            httpx.get(f"{live.root}collections/{OPEN}/objects/", auth=("alice", "wrong"),
                      headers={"Accept": TAXII})
    finally:
        live.stop()
    records = exported(env)
    [record] = [r for r in records if r["kind"] == "throttled"]
    assert (record["partner"], record["address"]) == ("alice", "127.0.0.1")
    # Each refused read says how: 401 while the password was checked, 429 once throttled.
    results = [r["result"] for r in records if r["kind"] == "read"]
    assert results == [401] * 10 + [429] * 2, results


# -- pruning ----------------------------------------------------------------------------------
def test_prune_deletes_the_oldest_records_and_the_chain_goes_on(env: Env):
    path = trail_of(env)  # 16 records
    anchor = head(env)
    conn = sqlite3.connect(path)
    at_10 = conn.execute("SELECT body FROM audit WHERE seq = 10").fetchone()[0]
    conn.close()
    before = json.loads(at_10)["at"]  # records 1..9 were made before record 10
    assert command(env, "prune", "--before", before, "--dry-run") == (
        0, ["would delete 9 records, through record 9"])
    assert command(env, "verify")[1][-1].startswith("audit trail intact: 16 records")
    assert command(env, "prune", "--before", before) == (
        0, ["deleted 9 records, through record 9"])
    code, lines = command(env, "verify", "--anchor", anchor)
    assert code == 0, lines
    assert lines[-1].startswith("audit trail intact: 8 records; last 17:")  # 10-16, the prune
    [pruned] = [r for r in exported(env) if r["kind"] == "admin"]
    assert (pruned["change"], pruned["through"], pruned["seq"]) == ("audit pruned", 9, 17)

    # Live records keep chaining after a prune.
    trail_of(env, requests=2)
    assert command(env, "verify")[0] == 0


@pytest.mark.parametrize("statements, named", [
    pytest.param([("DELETE FROM audit WHERE seq BETWEEN 10 AND 12", ()),
                  ("UPDATE state SET doc = json_set(doc, '$.seq', 12, '$.hash', "
                   "(SELECT hex(hash) FROM audit WHERE seq = 13)) WHERE name = 'audit:base'",
                   ())],
                 "the chain starts after record 12, but the last prune recorded says 9",
                 id="more deleted than pruned, the start moved to hide it"),
    pytest.param([("DELETE FROM audit WHERE seq = 17", ())],
                 "the chain starts after record 9, but the last prune recorded says None",
                 id="the prune's own record deleted"),
])
def test_verify_catches_records_deleted_under_cover_of_a_prune(
        env: Env, statements: list[tuple[str, tuple[Any, ...]]], named: str):
    path = trail_of(env)
    conn = sqlite3.connect(path)
    before = json.loads(conn.execute("SELECT body FROM audit WHERE seq = 10").fetchone()[0])["at"]
    conn.close()
    assert command(env, "prune", "--before", before)[0] == 0
    tamper(path, *statements)
    code, lines = command(env, "verify")
    assert code == 1 and named in lines, lines
