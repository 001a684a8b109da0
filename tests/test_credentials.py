"""Credentials partners and their connectors use, through a live server: several API tokens per
partner with expiry, revocation and last use; every way connectors send a token; throttled
failed logins."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import os
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import yaml
from stix2 import TAXIICollectionSource
from stix2.datastore.filters import Filter
from taxii2client.common import TokenAuth
from taxii2client.v21 import Collection

from exchange.cli import main
from exchange.config import load_settings
from exchange.errors import ConfigError, Throttled
from exchange.policy import auth as auth_module
from exchange.policy import partners
from exchange.policy.throttle import Throttle
from exchange.policy.usage import TokenUsage, last_used, state_name
from exchange.store.sqlite import SQLiteStore
from tests.conftest import ALICE, HIDDEN, OPEN, READONLY, Env, LiveServer
from tests.serving import eventually, start

TAXII = "application/taxii+json;version=2.1"
ACCEPT = {"Accept": TAXII}


@pytest.fixture(autouse=True)
def _no_exchange_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read EXCHANGE_* settings; the tests' environment must not leak in."""
    for name in list(os.environ):
        if name.startswith("EXCHANGE_") and name != "EXCHANGE_SCHEMAS_DIR":
            monkeypatch.delenv(name)


def config_of(env: Env) -> str:
    return str(env.settings.partners_file.parent / "config.yaml")


def command(capsys: pytest.CaptureFixture[str], env: Env, *argv: str) -> tuple[int, str, str]:
    code = main(["--config", config_of(env), "partners", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def printed_token(out: str) -> str:
    found = re.search(r"^token:\s+(\S+)$", out, re.MULTILINE)
    assert found, out
    return found.group(1)


def bearer(token: str) -> dict[str, str]:
    return {**ACCEPT, "Authorization": f"Bearer {token}"}


def get(live: LiveServer, headers: dict[str, str], path: str = "", **kwargs: Any) -> httpx.Response:
    return httpx.get(live.collection(OPEN) + path, headers=headers, **kwargs)


def assert_refused(response: httpx.Response, says: str) -> None:
    """A 401 is a TAXII error body that says why, with the challenge."""
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == TAXII
    assert "Basic" in response.headers["www-authenticate"]
    body = response.json()
    assert body["http_status"] == "401" and body["title"]
    assert says in body["description"], body


def set_token(env: Env, partner_id: str, token: str, **changes: Any) -> None:
    """Edit one token's entry in the partners file, as an operator could by hand."""
    known = partners.load(env.settings.partners_file)
    digest = partners.token_digest(token)
    current = known[partner_id]
    known[partner_id] = dataclasses.replace(current, tokens=tuple(
        dataclasses.replace(t, **changes) if t.sha256 == digest else t for t in current.tokens))
    partners.save(env.settings.partners_file, known)


@pytest.fixture
def served(env: Env) -> Iterator[LiveServer]:
    server = start(env)
    yield server
    server.stop()


# -- several tokens per partner ------------------------------------------------------------

def test_a_new_token_is_printed_once_and_the_old_ones_keep_working(env: Env, capsys):
    code, out, _ = command(capsys, env, "token", "add", "alice", "--label", "splunk",
                           "--expires", "90d")
    assert code == 0 and "shown once" in out
    token = printed_token(out)
    assert token.startswith("txe_") and token != env.credentials["alice"].token
    text = env.settings.partners_file.read_text()
    assert token not in text and token[len("txe_"):] not in text
    [entry] = [t for t in yaml.safe_load(text)["partners"][0]["tokens"] if t.get("label")]
    assert entry["label"] == "splunk" and entry["sha256"] == partners.token_digest(token)
    assert entry["shown"] == token[:12]  # enough to recognise it, far too little to use it
    expires = datetime.fromisoformat(entry["expires"].replace("Z", "+00:00"))
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)

    live = start(env)
    try:
        for used in (token, env.credentials["alice"].token):  # rotation without downtime
            response = get(live, bearer(used))
            assert response.status_code == 200, response.text
            assert response.json()["id"] == OPEN
    finally:
        live.stop()


@pytest.mark.parametrize(("change", "says"), [
    pytest.param({"expires": "2020-01-01T00:00:00Z"}, "expired at 2020-01-01T00:00:00Z",
                 id="expired token -> 401 saying it expired"),
    pytest.param({"revoked": "2026-05-01T10:00:00Z"}, "revoked at 2026-05-01T10:00:00Z",
                 id="revoked token -> 401 saying it was revoked"),
    pytest.param(None, "unknown or revoked API token", id="unknown token -> 401"),
])
def test_expired_revoked_and_unknown_tokens_are_refused(env: Env, change, says):
    token = partners.add_token(env.settings.partners_file, "alice", label="old").token
    if change is None:
        token = "txe_" + "A" * 43
    else:
        set_token(env, "alice", token, **change)
    live = start(env)
    try:
        assert_refused(get(live, bearer(token)), says)
        response = get(live, bearer(env.credentials["alice"].token))
        assert response.status_code == 200  # its other token is unaffected
    finally:
        live.stop()


def test_a_token_expires_on_a_running_server_without_a_reload(env: Env):
    """Expiry is checked on every request, not only when the file is read."""
    token = partners.add_token(env.settings.partners_file, "alice", label="ci").token
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    set_token(env, "alice", token, expires=soon.strftime("%Y-%m-%dT%H:%M:%SZ"))
    live = start(env)
    try:
        assert get(live, bearer(token)).status_code == 200
        stamp = env.settings.partners_file.stat().st_mtime_ns
        eventually(lambda: get(live, bearer(token)).status_code == 401, seconds=10)
        assert_refused(get(live, bearer(token)), "expired at")
        assert env.settings.partners_file.stat().st_mtime_ns == stamp  # no file change needed
    finally:
        live.stop()


@pytest.mark.parametrize("by", [
    pytest.param("label", id="revoke by label"),
    pytest.param("shown", id="revoke by the first characters token list shows"),
    pytest.param("token", id="revoke by the whole token"),
])
def test_revoking_one_token_stops_it_at_once_on_a_running_server(env: Env, served, capsys, by):
    made = partners.add_token(env.settings.partners_file, "alice", label="sentinel")
    eventually(lambda: get(served, bearer(made.token)).status_code == 200)  # picked up
    which = {"label": "sentinel", "shown": made.token[:12], "token": made.token}[by]
    code, out, _ = command(capsys, env, "token", "revoke", "alice", which)
    assert code == 0 and f"revoked alice {made.token[:12]} sentinel" in out
    eventually(lambda: get(served, bearer(made.token)).status_code == 401)
    assert_refused(get(served, bearer(made.token)), "revoked at")
    assert get(served, bearer(env.credentials["alice"].token)).status_code == 200


@pytest.mark.parametrize(("argv", "problem"), [
    pytest.param(["token", "revoke", "alice", "nothing-like-it"], "no token of 'alice'",
                 id="revoke: no such label"),
    pytest.param(["token", "revoke", "nobody", "x"], "no partner 'nobody'",
                 id="revoke: no such partner"),
    pytest.param(["token", "add", "alice", "--expires", "yesterday"], "a number of days",
                 id="add: unreadable expiry"),
    pytest.param(["token", "add", "alice", "--expires", "2001-01-01"], "in the past",
                 id="add: expiry in the past"),
    pytest.param(["token", "add", "alice", "--label", "twice"], "labelled 'twice'",
                 id="add: a label the partner already uses"),
    pytest.param(["token", "list", "nobody"], "no partner 'nobody'", id="list: no such partner"),
])
def test_token_commands_refuse_mistakes_and_change_nothing(env: Env, capsys, argv, problem):
    partners.add_token(env.settings.partners_file, "alice", label="twice")
    before = env.settings.partners_file.read_bytes()
    code, _, err = command(capsys, env, *argv)
    assert code == 2 and problem in err
    assert env.settings.partners_file.read_bytes() == before


def test_revoking_twice_is_refused(env: Env, capsys):
    partners.add_token(env.settings.partners_file, "alice", label="once")
    assert command(capsys, env, "token", "revoke", "alice", "once")[0] == 0
    code, _, err = command(capsys, env, "token", "revoke", "alice", "once")
    assert code == 2 and "already revoked" in err


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("90d", "2027-04-01T12:00:00Z", id="days from now"),
    pytest.param("2027-03-01", "2027-03-01T00:00:00Z", id="a date: its midnight UTC"),
    pytest.param("2027-03-01T08:30:00+01:00", "2027-03-01T07:30:00Z", id="a time, in UTC"),
])
def test_expiry_forms(text, expected):
    now = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    assert partners.parse_expiry(text, now) == expected


@pytest.mark.parametrize("text", [
    pytest.param("0d", id="zero days"), pytest.param("2026-12-31", id="a past date"),
    pytest.param("-5d", id="negative"), pytest.param("90 days", id="words"),
])
def test_expiry_must_be_later_and_readable(text):
    with pytest.raises(ConfigError):
        partners.parse_expiry(text, datetime(2027, 1, 1, tzinfo=UTC))


# -- last used -----------------------------------------------------------------------------

class CountingStore(SQLiteStore):
    """The real store, counting the named-state writes that record a token's use."""

    usage_writes = 0

    def put_state(self, name: str, doc: dict[str, Any]) -> None:
        if name.startswith("token-used:"):
            type(self).usage_writes += 1
        super().put_state(name, doc)


def test_token_list_shows_last_use_from_the_store_and_never_a_secret(env: Env, capsys):
    made = partners.add_token(env.settings.partners_file, "alice", label="opencti",
                              expires="30d")
    CountingStore.usage_writes = 0
    live = start(env, CountingStore(env.settings.store_path))
    before = env.settings.partners_file.read_bytes()
    try:
        for _ in range(30):
            assert get(live, bearer(made.token)).status_code == 200
        # Noted in memory only: no store write on the requests' path ...
        assert CountingStore.usage_writes == 0
    finally:
        live.stop()
    # ... one write per token when the server stops (or once a minute while it runs) ...
    assert CountingStore.usage_writes == 1
    assert env.settings.partners_file.read_bytes() == before  # ... and never the partners file

    code, out, _ = command(capsys, env, "token", "list", "alice")
    assert code == 0
    header, *rows = [line.split("\t") for line in out.splitlines()]
    assert header == ["partner", "token", "label", "created", "expires", "last used", "state"]
    by_label = {row[2]: row for row in rows}
    assert set(by_label) == {"-", "opencti"}  # alice's first token has no label
    row = by_label["opencti"]
    assert row[0] == "alice" and row[1] == made.token[:12] and row[6] == "active"
    assert row[4] == made.entry.expires and row[3] == made.entry.created
    used = datetime.fromisoformat(row[5].replace("Z", "+00:00"))
    assert timedelta(0) <= datetime.now(UTC) - used < timedelta(minutes=5)
    assert by_label["-"][5] == "never"
    assert made.token not in out and made.entry.sha256 not in out

    code, out, _ = command(capsys, env, "token", "list")
    assert {line.split("\t")[0] for line in out.splitlines()[1:]} == {"alice", "bob", "carol"}


def test_last_use_is_written_once_per_interval_whatever_the_traffic(tmp_path: Path):
    store = SQLiteStore(tmp_path / "store.sqlite3")
    store.open()
    clock = [1_800_000_000.0]
    usage = TokenUsage(store, clock=lambda: clock[0])
    writes: list[str] = []
    real_put = store.put_state

    def put(name: str, doc: dict[str, Any]) -> None:
        writes.append(name)
        real_put(name, doc)

    store.put_state = put  # type: ignore[method-assign]
    for _ in range(1000):
        usage.seen("a" * 64, "alice")
    usage.seen("b" * 64, "bob")
    assert usage.flush() == 2 and sorted(writes) == [state_name("a" * 64), state_name("b" * 64)]
    assert usage.flush() == 0  # nothing used since
    assert last_used(store, "a" * 64) == "2027-01-15T08:00:00Z"

    # Another server process on the same store recorded a later use: it is kept.
    store.put_state(state_name("a" * 64), {"partner": "alice", "at": "2027-01-15T09:00:00Z"})
    clock[0] += 60
    usage.seen("a" * 64, "alice")
    usage.flush()
    assert last_used(store, "a" * 64) == "2027-01-15T09:00:00Z"
    store.close()


# -- every way connectors send a token -----------------------------------------------------

def basic_header(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def indicator(n: int) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://c.example/{n}')}",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "created_by_ref": ALICE, "name": f"C2 {n}", "pattern_type": "stix",
            "pattern": f"[ipv4-addr:value = '198.51.100.{n}']",
            "valid_from": "2026-01-01T00:00:00Z",
            "object_marking_refs": [AMBER_MARKING if n % 2 else GREEN_MARKING]}


AMBER_MARKING = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
GREEN_MARKING = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"

# How each kind of credential is sent, as header dicts, for a partner's password and token.
HEADER_KINDS: dict[str, Callable[[str, str, str], dict[str, str]]] = {
    "basic password": lambda pid, password, token: {
        "Authorization": basic_header(pid, password)},
    "basic token": lambda pid, password, token: {"Authorization": basic_header(pid, token)},
    "bearer": lambda pid, password, token: {"Authorization": f"Bearer {token}"},
    "token": lambda pid, password, token: {"Authorization": f"Token {token}"},
    "token token=": lambda pid, password, token: {"Authorization": f'Token token="{token}"'},
    "x-api-key": lambda pid, password, token: {"X-API-Key": token},
}


class ApiKeyAuth(requests.auth.AuthBase):
    """What OpenCTI's TAXII connector does with `use_apikey`: a header of one's choice."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["X-API-Key"] = self.token
        return request


class CountingHasher:
    """argon2, counting the passwords it checks."""

    def __init__(self) -> None:
        self.real = partners.hasher
        self.checked: list[str] = []

    def verify(self, stored: str, password: str) -> bool:
        self.checked.append(password)
        return bool(self.real.verify(stored, password))


def counting_argon2(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    counting = CountingHasher()
    monkeypatch.setattr(auth_module, "hasher", counting)
    return counting.checked


@pytest.fixture
def stocked(env: Env) -> Iterator[LiveServer]:
    """A server where alice pushed GREEN and AMBER indicators to OPEN, which bob (cleared
    GREEN) may read too; carol has a hidden collection."""
    known = partners.load(env.settings.partners_file)
    known["bob"] = dataclasses.replace(known["bob"], groups=("ro", "rw"),
                                       clearance=partners.TLP_RANKS["green"])
    partners.save(env.settings.partners_file, known)
    live = start(env)
    body = {"objects": [indicator(n) for n in range(1, 7)]}
    pushed = httpx.post(live.collection(OPEN) + "objects/", json=body, headers={
        **bearer(env.credentials["alice"].token), "Content-Type": TAXII})
    assert pushed.status_code == 202 and pushed.json()["success_count"] == 6, pushed.text
    yield live
    live.stop()


def reads(live: LiveServer, headers: dict[str, str]) -> dict[str, Any]:
    """What a partner sees: the collections, the objects of OPEN, and whether HIDDEN exists."""
    headers = {**ACCEPT, **headers}
    listed = httpx.get(live.root + "collections/", headers=headers)
    objects = httpx.get(live.collection(OPEN) + "objects/", headers=headers)
    hidden = httpx.get(live.collection(HIDDEN), headers=headers)
    assert listed.status_code == 200 and objects.status_code == 200, objects.text
    return {"collections": listed.json(), "objects": objects.json(),
            "hidden": hidden.status_code}


def test_every_way_of_sending_credentials_names_one_partner_with_one_policy(env: Env, stocked,
                                                                            monkeypatch):
    checks = counting_argon2(monkeypatch)
    bob = env.credentials["bob"]
    seen = {kind: reads(stocked, make("bob", bob.password, bob.token))
            for kind, make in HEADER_KINDS.items()}
    reference = seen["bearer"]
    # bob is cleared GREEN: the AMBER half is withheld, whatever he logs in with.
    assert len(reference["objects"]["objects"]) == 3 and reference["hidden"] == 404
    for kind, found in seen.items():
        assert found == reference, kind
    # Only the password went through argon2 (once, then remembered); the token never did.
    assert checks == [bob.password]

    # Real clients: taxii2-client with the token as the Basic password, with its TokenAuth
    # (`Authorization: Token`), with an X-API-Key header; stix2's TAXIICollectionSource.
    url = stocked.collection(OPEN)
    for kwargs in ({"user": "bob", "password": bob.token},
                   {"auth": TokenAuth(bob.token)}, {"auth": ApiKeyAuth(bob.token)}):
        collection = Collection(url, **kwargs)
        got = collection.get_objects()
        assert got["objects"] == reference["objects"]["objects"], kwargs
    source = TAXIICollectionSource(Collection(url, user="bob", password=bob.token))
    assert {o.id for o in source.query([Filter("type", "=", "indicator")])} == \
        {o["id"] for o in reference["objects"]["objects"]}
    assert checks == [bob.password]


@pytest.mark.parametrize(("make", "says"), [
    pytest.param(lambda e: {"Authorization": basic_header("bob", e.credentials["alice"].token)},
                 "wrong partner id or password", id="token as the password of another partner"),
    pytest.param(lambda e: {"Authorization": basic_header("nobody",
                                                          e.credentials["alice"].token)},
                 "wrong partner id or password", id="token with an unknown partner id"),
    pytest.param(lambda e: {"Authorization": basic_header("alice", "txe_" + "B" * 43)},
                 "wrong partner id or password", id="unknown token as the password"),
    pytest.param(lambda e: {"Authorization": "Token txe_unknown"}, "unknown or revoked",
                 id="unknown token in Token"),
    pytest.param(lambda e: {"Authorization": "Token token="}, "unknown or revoked",
                 id="empty token= field"),
    pytest.param(lambda e: {"X-API-Key": "txe_unknown"}, "unknown or revoked",
                 id="unknown X-API-Key"),
    pytest.param(lambda e: {"X-API-Key": e.credentials["alice"].token,
                            "Authorization": f"Bearer {e.credentials['bob'].token}"},
                 "name different partners", id="X-API-Key and Bearer of two partners"),
    pytest.param(lambda e: {"Authorization": f"Digest {e.credentials['alice'].token}"},
                 "use Basic, Bearer or Token", id="another scheme"),
])
def test_credentials_that_do_not_name_one_partner_are_refused(env: Env, served, make, says):
    assert_refused(get(served, {**ACCEPT, **make(env)}), says)


def test_x_api_key_and_authorization_of_one_partner_are_accepted(env: Env, served):
    alice = env.credentials["alice"]
    headers = {**ACCEPT, "X-API-Key": alice.token,
               "Authorization": basic_header("alice", alice.password)}
    assert get(served, headers).status_code == 200


# -- failed logins throttled ---------------------------------------------------------------

def limited(env: Env, **settings: Any) -> Env:
    """The same files with other login limits (3 per partner and address, 6 per address)."""
    values = {"login_failures_per_address": 6, "login_failures_per_partner_and_address": 3,
              "login_failure_window_seconds": 300.0, **settings}
    return Env(dataclasses.replace(env.settings, **values), env.credentials)


def client_from(address: str) -> httpx.Client:
    """A client whose connections come from this loopback address (127.0.0.0/8 is all ours)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), headers=ACCEPT)


def as_partner(client: httpx.Client, live: LiveServer, partner_id: str, secret: str,
               **headers: str) -> httpx.Response:
    return client.get(live.collection(OPEN), headers={
        "Authorization": basic_header(partner_id, secret), **headers})


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == TAXII
    assert 1 <= int(response.headers["retry-after"]) <= 300
    body = response.json()
    assert body["http_status"] == "429" and "too many failed logins" in body["description"]


def test_wrong_passwords_are_throttled_per_partner_and_address_before_argon2(
        env: Env, monkeypatch, caplog):
    env = limited(env)
    checks = counting_argon2(monkeypatch)
    live = start(env)
    alice, bob = env.credentials["alice"], env.credentials["bob"]
    try:
        with client_from("127.0.0.2") as attacker:
            for n in range(3):
                assert as_partner(attacker, live, "alice", f"guess-{n}").status_code == 401
            assert len(checks) == 3
            for secret in ("guess-3", alice.password, alice.token):  # even the right one
                assert_throttled(as_partner(attacker, live, "alice", secret))
            assert len(checks) == 3  # refused before any argon2 work
            # Another partner from the same address is not locked out by alice's failures.
            response = attacker.get(live.collection(READONLY), headers={
                "Authorization": basic_header("bob", bob.password)})
            assert response.status_code == 200
        with client_from("127.0.0.3") as partner:  # alice from her own address: unaffected
            assert as_partner(partner, live, "alice", alice.password).status_code == 200
    finally:
        live.stop()
    assert "failed logins as 'alice' from 127.0.0.2: throttled" in caplog.text


def test_an_address_that_fails_too_often_is_refused_whatever_it_sends(env: Env):
    env = limited(env)
    live = start(env)
    try:
        with client_from("127.0.0.4") as attacker:
            for n in range(6):  # one guess at each of six partner ids: no pair reaches 3
                assert as_partner(attacker, live, f"user{n}", "guess").status_code == 401
            assert_throttled(attacker.get(live.collection(OPEN),
                                          headers=bearer(env.credentials["alice"].token)))
            assert_throttled(attacker.get(live.collection(OPEN),
                                          headers={"X-API-Key": "txe_" + "C" * 43}))
        with client_from("127.0.0.5") as other:
            response = other.get(live.collection(OPEN),
                                 headers=bearer(env.credentials["alice"].token))
            assert response.status_code == 200
    finally:
        live.stop()


def test_behind_a_trusted_proxy_each_forwarded_client_counts_on_its_own(env: Env):
    env = limited(env, trusted_proxies=(ipaddress.ip_network("127.0.0.9/32"),))
    live = start(env)
    alice = env.credentials["alice"]
    try:
        with client_from("127.0.0.9") as proxy:
            def via(client_address: str, secret: str) -> httpx.Response:
                # What nginx's $proxy_add_x_forwarded_for sends: the client's claim, then the
                # address the proxy saw.
                return as_partner(proxy, live, "alice", secret,
                                  **{"X-Forwarded-For": f"192.0.2.77, {client_address}"})

            for n in range(3):
                assert via("203.0.113.5", f"guess-{n}").status_code == 401
            assert_throttled(via("203.0.113.5", alice.password))
            assert via("203.0.113.6", alice.password).status_code == 200
        with client_from("127.0.0.6") as direct:
            # Not a trusted proxy: its X-Forwarded-For is ignored, so inventing a new one each
            # time does not escape the count of its own address.
            for n in range(3):
                response = as_partner(direct, live, "alice", "guess",
                                      **{"X-Forwarded-For": f"198.51.100.{n}"})
                assert response.status_code == 401
            assert_throttled(as_partner(direct, live, "alice", alice.password,
                                        **{"X-Forwarded-For": "198.51.100.200"}))
    finally:
        live.stop()


def test_the_throttle_window_ends_and_memory_stays_bounded():
    clock = [1000.0]
    events: list[tuple[str, str | None]] = []
    throttle = Throttle(per_address=4, per_partner_and_address=2, window_seconds=60,
                        max_entries=100, clock=lambda: clock[0],
                        on_throttled=lambda address, partner: events.append((address, partner)))
    for _ in range(2):
        throttle.failed("192.0.2.1", "alice")
    with pytest.raises(Throttled) as raised:
        throttle.check("192.0.2.1", "alice")
    assert raised.value.retry_after == 60
    throttle.check("192.0.2.1", "bob")  # the pair, not the address
    assert events == [("192.0.2.1", "alice")]  # the seam hears each throttle event once
    clock[0] += 45
    with pytest.raises(Throttled) as raised:
        throttle.check("192.0.2.1", "alice")
    assert raised.value.retry_after == 15
    clock[0] += 15
    throttle.check("192.0.2.1", "alice")  # the window is over

    # One IPv6 host holds a /64: its addresses count together; the next /64 on its own.
    for n in range(4):
        throttle.failed(f"2001:db8::{n + 1}", None)
    with pytest.raises(Throttled):
        throttle.check("2001:db8::ffff", None)
    throttle.check("2001:db8:0:1::1", None)
    assert ("2001:db8::/64", None) in events

    # An attacker with many addresses cannot grow the tables without limit.
    for n in range(10_000):
        throttle.failed(str(ipaddress.IPv4Address("198.18.0.0") + n), f"user{n}")
    assert len(throttle) <= 200


@pytest.mark.parametrize(("environ", "expected"), [
    pytest.param({}, ((), 30, 10, 300.0), id="defaults: no proxy, 30 and 10 in 5 minutes"),
    pytest.param({"EXCHANGE_TRUSTED_PROXIES": "192.0.2.10, 2001:db8::/64",
                  "EXCHANGE_LOGIN_FAILURES_PER_ADDRESS": "50",
                  "EXCHANGE_LOGIN_FAILURES_PER_PARTNER_AND_ADDRESS": "5",
                  "EXCHANGE_LOGIN_FAILURE_WINDOW_SECONDS": "60"},
                 ((ipaddress.ip_network("192.0.2.10/32"), ipaddress.ip_network("2001:db8::/64")),
                  50, 5, 60.0), id="from the environment"),
])
def test_proxy_and_throttle_settings(environ, expected):
    settings = load_settings(None, environ=environ)
    assert (settings.trusted_proxies, settings.login_failures_per_address,
            settings.login_failures_per_partner_and_address,
            settings.login_failure_window_seconds) == expected


@pytest.mark.parametrize("environ", [
    pytest.param({"EXCHANGE_TRUSTED_PROXIES": "proxy.example"}, id="a name, not an address"),
    pytest.param({"EXCHANGE_LOGIN_FAILURES_PER_ADDRESS": "0"}, id="zero failures"),
    pytest.param({"EXCHANGE_LOGIN_FAILURE_WINDOW_SECONDS": "nan"}, id="no window"),
])
def test_bad_proxy_or_throttle_settings_refuse_to_start(environ):
    with pytest.raises(ConfigError):
        load_settings(None, environ=environ)
