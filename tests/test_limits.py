"""Bounds on what one request may cost, through a real `serve` process (the HTTP parser's bound
and the timeouts live in the serve path, not in create_app) and through the live server.

Every refusal is a TAXII error body with the TAXII media type, whoever answers it: the app
(its own bounds: 414, 431) or the connection (the parser's bound, bad HTTP, a slow request).
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import (
    ALICE,
    API_ROOT,
    OPEN,
    Env,
    LiveServer,
    free_port,
    start_server,
    write_env,
)

TAXII = "application/taxii+json;version=2.1"
ROOT = Path(__file__).resolve().parent.parent
OBJECTS = f"/{API_ROOT}/collections/{OPEN}/objects/"


def indicator(n: int) -> dict[str, object]:
    return {"type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{uuid.uuid5(uuid.NAMESPACE_URL, f'https://limits.example/{n}')}",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "created_by_ref": ALICE, "pattern": f"[ipv4-addr:value = '192.0.2.{n % 250}']",
            "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"}


@dataclass
class Served:
    port: int
    env: Env
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, partner: str = "alice") -> str:
        return self.env.credentials[partner].token


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`python -m exchange serve` over a store holding 100 indicators, with short timeouts."""
    directory = tmp_path_factory.mktemp("served")
    env = write_env(directory)
    config = directory / "config.yaml"
    document = yaml.safe_load(config.read_text())
    document.update(request_timeout_seconds=1, keep_alive_seconds=1)
    config.write_text(yaml.safe_dump(document))
    port = free_port()
    log = (directory / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "--config", str(config), "serve", "--port",
         str(port), "--no-access-log"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        # Settings come from the config file only: other tests may leave EXCHANGE_* behind.
        env={**{k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")},
             "PYTHONPATH": str(ROOT)})
    served = Served(port, env, proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (directory / "serve.log").read_text()
            try:
                httpx.get(served.url + "/taxii2/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.05)
        pushed = httpx.post(served.url + OBJECTS, timeout=30,
                            content=json.dumps({"objects": [indicator(n) for n in range(100)]}),
                            headers={"Accept": TAXII, "Content-Type": TAXII,
                                     "Authorization": f"Bearer {served.token()}"})
        assert pushed.json()["success_count"] == 100, pushed.text
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, str]:
        assert self.headers["content-type"] == TAXII, self
        document: dict[str, str] = json.loads(self.body)
        assert document["http_status"] == str(self.status)
        return document


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP/1.1 response (with a content-length) from the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def exchange(served: Served, request: bytes) -> Answer:
    """Send a raw request, a piece at a time, stopping when the server answers early (it
    refuses an oversized head before the client has finished sending it)."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        for start in range(0, len(request), 16384):
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(request[start:start + 16384])
            except (BrokenPipeError, ConnectionResetError):
                break
        return read_answer(sock)


def get(served: Served, target: str, *extra: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: limits.example", f"Accept: {TAXII}",
             f"Authorization: Bearer {served.token()}", *extra, "", ""]
    return "\r\n".join(lines).encode()


IDS = ",".join(indicator(n)["id"] for n in range(100))  # type: ignore[misc]
MANY_IDS = ",".join(str(indicator(n)["id"]) for n in range(5000))


@pytest.mark.parametrize(("target", "extra", "status", "says"), [
    pytest.param(f"{OBJECTS}?match[id]={IDS}", (), 200, "",
                 id="100 ids in match[id] (4.9 KB) -> 200 with every object"),
    pytest.param(f"{OBJECTS}?next={'A' * 10_000}", (), 400, "not a token this server issued",
                 id="next of 10 KB not issued here -> 400"),
    pytest.param(f"{OBJECTS}?next={'A' * 20_000}", (), 414, "max_url_bytes",
                 id="next of 20 KB, over the app's bound -> 414"),
    pytest.param(f"{OBJECTS}?match[id]={MANY_IDS}", (), 414, "max_request_head_bytes",
                 id="5,000 ids in match[id] (240 KB), over the parser's bound -> 414"),
    pytest.param(f"{OBJECTS}?next={'A' * 70_000}", (), 414, "65535",
                 id="URL of 70 KB -> 414 from the parser"),
    pytest.param("/taxii2/", ("X-Big: " + "a" * 40_000,), 431, "max_header_bytes",
                 id="header of 40 KB, over the app's bound -> 431"),
    pytest.param("/taxii2/", tuple(f"X-Many-{n}: {'a' * 100}" for n in range(400)), 431,
                 "max_header_bytes", id="400 headers of 100 bytes -> 431"),
    pytest.param("/taxii2/", ("X-Big: " + "a" * 100_000,), 431, "max_request_head_bytes",
                 id="header of 100 KB, over the parser's bound -> 431"),
    pytest.param("/taxii2/", ("X-Big: " + "a" * 4_000_000,), 431, "max_request_head_bytes",
                 id="header of 4 MB -> 431 without reading it all"),
])
def test_long_request_lines_and_headers(served: Served, target: str, extra: tuple[str, ...],
                                        status: int, says: str):
    answer = exchange(served, get(served, target, *extra))
    assert answer.status == status, answer
    assert answer.headers["content-type"] == TAXII
    if status == 200:
        assert len(json.loads(answer.body)["objects"]) == 100
    else:
        assert says in answer.error()["description"]
    # The server is still there for everyone else.
    assert exchange(served, get(served, "/taxii2/")).status == 200


@pytest.mark.parametrize("request_bytes", [
    pytest.param(b"NOT HTTP AT ALL\r\n\r\n", id="garbage request line"),
    pytest.param(b"GET /taxii2/ HTTP/1.1\r\nBad Header\r\n\r\n", id="header without a colon"),
    pytest.param(b"GET /taxii2/ HTTP/1.1\r\nContent-Length: x\r\n\r\n", id="bad content-length"),
])
def test_bad_http_is_a_taxii_400(served: Served, request_bytes: bytes):
    answer = exchange(served, request_bytes)
    assert answer.status == 400
    assert answer.error()["title"] == "Bad Request"


# -- timeouts: the serve process above waits 1 s for a request, 1 s on an idle connection ----

def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("sent", [
    pytest.param(b"", id="a connection that sends nothing"),
    pytest.param(b"GET /taxii2/ HTTP/1.1\r\nHost: limits.example\r\n",
                 id="a head that stops half way"),
    pytest.param(b"POST " + OBJECTS.encode() + b" HTTP/1.1\r\nHost: limits.example\r\n"
                 b"Accept: " + TAXII.encode() + b"\r\nAuthorization: Bearer TOKEN\r\n"
                 b"Content-Type: " + TAXII.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
                 b'{"objects": [', id="a body that stops half way"),
])
def test_a_request_that_does_not_arrive_in_time_is_408(served: Served, sent: bytes):
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        sock.sendall(sent.replace(b"TOKEN", served.token().encode()))
        answer = read_answer(sock)
        assert answer.status == 408
        assert "request_timeout_seconds" in answer.error()["description"]
        assert read_until_closed(sock) == b""


def test_an_idle_keep_alive_connection_is_closed(served: Served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        for _ in range(2):  # kept alive between requests that follow each other
            sock.sendall(get(served, "/taxii2/"))
            assert read_answer(sock).status == 200
        assert read_until_closed(sock) == b""  # then closed once idle


# -- rate per partner and the shape of pushed bodies: through the live server --------------

def live_with(env: Env, **limits: object) -> LiveServer:
    return start_server(Env(dataclasses.replace(env.settings, **limits), env.credentials))


@pytest.fixture
def throttled(env: Env) -> Iterator[LiveServer]:
    """Three requests per partner, then none for 100 s."""
    server = live_with(env, rate_limit_burst=3, rate_limit_per_second=0.01)
    yield server
    server.stop()


def test_rate_limit_is_per_partner_with_retry_after(throttled: LiveServer):
    env = throttled.env
    alice_basic = httpx.Client(auth=env.basic("alice"), headers={"Accept": TAXII})
    alice_bearer = httpx.Client(headers={"Accept": TAXII, **env.bearer("alice")})
    bob = httpx.Client(headers={"Accept": TAXII, **env.bearer("bob")})
    nobody = httpx.Client(headers={"Accept": TAXII})
    with alice_basic, alice_bearer, bob, nobody:
        url = throttled.url + "taxii2/"
        for _ in range(5):  # refused credentials spend no one's allowance
            assert nobody.get(url).status_code == 401
        # alice's three, whichever credential she signs in with
        assert [c.get(url).status_code for c in (alice_basic, alice_bearer, alice_basic)] == \
            [200, 200, 200]
        for client in (alice_bearer, alice_basic):
            refused = client.get(url)
            assert refused.status_code == 429
            assert refused.headers["content-type"] == TAXII
            assert refused.json()["http_status"] == "429"
            assert "rate_limit_per_second" in refused.json()["description"]
            assert 1 <= int(refused.headers["Retry-After"]) <= 100
        # a push is refused before its body is looked at
        pushed = alice_bearer.post(throttled.collection() + "objects/",
                                   json={"objects": [indicator(1)]},
                                   headers={"Content-Type": TAXII})
        assert pushed.status_code == 429
        # bob has his own bucket
        assert [bob.get(url).status_code for _ in range(3)] == [200, 200, 200]
        assert bob.get(url).status_code == 429


def test_rate_limit_zero_is_off(env: Env):
    server = live_with(env, rate_limit_per_second=0, rate_limit_burst=1)
    try:
        with httpx.Client(headers={"Accept": TAXII, **env.bearer("alice")}) as client:
            assert {client.get(server.url + "taxii2/").status_code for _ in range(20)} == {200}
    finally:
        server.stop()


def nested(depth: int) -> object:
    """A value that, inside an object inside the envelope, makes the body `depth` deep."""
    value: object = "deep"
    for _ in range(depth - 3):
        value = [value]
    return value


@pytest.mark.parametrize(("body", "status", "says"), [
    pytest.param({"objects": [{**indicator(1), "x_list": nested(8)}]}, 202, "",
                 id="nesting 8 deep, at the bound -> 202"),
    pytest.param({"objects": [{**indicator(1), "x_list": nested(9)}]}, 400, "max_json_depth",
                 id="nesting 9 deep -> 400"),
    pytest.param("[" * 400_000 + "]" * 400_000, 400, "max_json_depth",
                 id="800 KB of brackets -> 400 before parsing"),
    pytest.param({"objects": [{**indicator(1), "description": "[{" * 500}]}, 202, "",
                 id="brackets inside a string do not nest -> 202"),
    pytest.param({"objects": [{**indicator(1), "description": "d" * 2048}]}, 202, "",
                 id="string of 2048 bytes, at the bound -> 202"),
    pytest.param({"objects": [{**indicator(1), "description": "d" * 2049}]}, 413,
                 "max_string_bytes", id="string of 2049 bytes -> 413"),
    pytest.param({"objects": [{**indicator(1), "description": '"' * 1100}]}, 413,
                 "max_string_bytes", id="string of 1100 quotes (2200 bytes escaped) -> 413"),
    pytest.param({"objects": [{**indicator(1), "x_" + "k" * 3000: 1}]}, 413,
                 "max_string_bytes", id="property name of 3000 bytes -> 413"),
    pytest.param({"objects": [{**indicator(1), "x_list": [[]] * 196}]}, 202, "",
                 id="200 arrays and objects, at the bound -> 202"),
    pytest.param({"objects": [{**indicator(1), "x_list": [[]] * 197}]}, 413,
                 "max_json_containers", id="201 arrays and objects -> 413"),
    pytest.param("[" + "{}," * 300_000 + "{}]", 413, "max_json_containers",
                 id="900 KB of empty objects -> 413 before parsing"),
])
def test_pushed_body_depth_and_strings(env: Env, body: object, status: int, says: str):
    server = live_with(env, max_json_depth=8, max_string_bytes=2048, max_json_containers=200)
    try:
        with httpx.Client(headers={"Accept": TAXII, "Content-Type": TAXII,
                                   **env.bearer("alice")}) as client:
            content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            answer = client.post(server.collection() + "objects/", content=content)
            assert answer.status_code == status, answer.text
            assert answer.headers["content-type"] == TAXII
            stored = client.get(server.collection() + "objects/").json().get("objects", [])
            if status == 202:
                assert answer.json()["success_count"] == 1, answer.text
                assert len(stored) == 1
            else:
                assert says in answer.json()["description"]
                assert stored == []  # nothing stored
    finally:
        server.stop()
