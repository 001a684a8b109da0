"""The store backends every contract test runs on, and where the tests find MongoDB.

MongoDB, in order of preference:
1. `EXCHANGE_TEST_MONGO_URI`: a real server (a replica set: the store uses transactions),
   e.g. `mongodb://db.example:27017/?replicaSet=rs0`;
2. jongodb, the native MongoDB wire-protocol server of the npm package
   `@jongodb/memory-server-bin-linux-x64-gnu` (`npm install --prefix .` in the checkout, or
   its binary named by `EXCHANGE_JONGODB`), started once per test session as a single-node
   replica set;
3. mongomock, in the test process.

Each test gets a database of its own (jongodb cannot drop one). What an emulator does not do
is listed in GAPS; a test that needs it carries `emulator_gap(...)` and is an expected
failure (strict: it must fail) only when that emulator is the backend.
"""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exchange.config import Settings
from exchange.store import Store, factory

REPO = Path(__file__).resolve().parent.parent
JONGODB = REPO / "node_modules" / "@jongodb" / "memory-server-bin-linux-x64-gnu" / "bin" / \
    "jongodb"

# What each emulator lacks, found running this suite on it; the key is what tests name.
GAPS: dict[str, dict[str, str]] = {
    "jongodb": {
        "explain": "jongodb has no explain command",
        "write_conflicts": "jongodb's transactions are not isolated under concurrent "
                           "writers: a commit that fails with WriteConflict has already "
                           "published some of its writes (the retry finds them), and commits "
                           "overwrite each other's (lost updates)",
        "dead_writer": "jongodb lets other transactions see what the open transaction of a "
                       "killed process wrote; when that transaction is aborted its writes go, "
                       "so the process that finished the request on the strength of them "
                       "leaves it complete with none of its objects stored (a race: seen in "
                       "most runs, not all)",
    },
    "mongomock": {
        "transactions": "mongomock has no sessions or transactions",
        "explain": "mongomock has no explain command",
        "write_conflicts": "mongomock has no transactions and lives in one process",
        "server": "mongomock is not a server: nothing to stop or to serve from a URL",
    },
}


def _kind() -> str:
    if os.environ.get("EXCHANGE_TEST_MONGO_URI"):
        return "server"
    if _jongodb() is not None:
        return "jongodb"
    return "mongomock"


def _jongodb() -> Path | None:
    named = os.environ.get("EXCHANGE_JONGODB")
    for path in (Path(named) if named else None, JONGODB):
        if path is not None and path.is_file() and os.access(path, os.X_OK):
            return path
    return None


MONGO_KIND = _kind()  # decided at collection: the expected failures depend on it


# Gaps that show in most runs but not all: their expected failures are not strict.
RACES = {"dead_writer"}


def gap_marks(*needs: str) -> list[pytest.MarkDecorator]:
    """Expected failures for what the session's MongoDB lacks (none on a real server)."""
    known = GAPS.get(MONGO_KIND, {})
    return [pytest.mark.xfail(strict=need not in RACES, reason=known[need])
            for need in needs if need in known]


def gaps_for(needs: tuple[str, ...]) -> list[str]:
    """The reasons the current MongoDB cannot do what a test needs (none on a real server)."""
    known = GAPS.get(MONGO_KIND, {})
    # mongomock has no transactions: every test that writes objects needs them.
    return [known[need] for need in needs if need in known]


@dataclass
class Jongodb:
    """A jongodb process on a free loopback port; stopped at the end of the session."""

    binary: Path
    port: int
    process: subprocess.Popen[str] | None = None
    uri: str = ""
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def start(self, wait: float = 30.0) -> str:
        self.process = subprocess.Popen(
            [str(self.binary), "--host=127.0.0.1", f"--port={self.port}",
             "--topology-profile=singleNodeReplicaSet", "--replica-set-name=rs0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()

        def read() -> None:  # keep reading: a full pipe would stall the server
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                if line.startswith("JONGODB_URI="):
                    self.uri = line.strip().split("=", 1)[1]
                    ready.set()
                elif len(self.output) < 200:
                    self.output.append(line)

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not ready.wait(wait):
            self.stop()
            raise RuntimeError(f"jongodb did not start: {''.join(self.output)[-2000:]}")
        return self.uri

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(10)  # it ends at the end of the output
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class Mongo:
    """The session's MongoDB: `database()` gives the URI of a fresh database."""

    kind: str
    base: str  # a URI without a database path
    _mock_clients: dict[str, Any] = field(default_factory=dict)

    def database(self) -> str:
        name = f"t{uuid.uuid4().hex[:16]}"
        head, _, options = self.base.partition("?")
        host = head.split("://", 1)[1].split("/", 1)[0]
        scheme = head.split("://", 1)[0]
        return f"{scheme}://{host}/{name}" + (f"?{options}" if options else "")

    def store(self, uri: str) -> Store:
        """A store over `uri` as a new server process would open it."""
        from exchange.store.mongo import MongoStore

        if self.kind != "mongomock":
            return MongoStore(uri)
        import mongomock

        # mongomock keeps its data in the client: stores over one URI share one client.
        client = self._mock_clients.setdefault(uri, mongomock.MongoClient(uri))
        return MongoStore(uri, client=lambda: client)


_session: list[Mongo] = []  # the session's MongoDB once started


def start_mongo(port: int) -> Iterator[Mongo]:
    """The session's MongoDB (see the module's docstring); jongodb listens on `port`."""
    if MONGO_KIND == "server":
        _session.append(Mongo("server", os.environ["EXCHANGE_TEST_MONGO_URI"]))
    elif MONGO_KIND == "mongomock":
        _session.append(Mongo("mongomock", "mongodb://mongomock.example/"))
    server = None
    if MONGO_KIND == "jongodb":
        binary = _jongodb()
        assert binary is not None
        server = Jongodb(binary, port)
        _session.append(Mongo("jongodb", server.start()))
    try:
        yield _session[0]
    finally:
        _session.clear()
        if server is not None:
            server.stop()


def open_store(settings: Settings) -> Store:
    """The store the settings name, as `serve` opens it (mongomock: the session's client)."""
    if settings.store_url and _session:
        return _session[0].store(settings.store_url)
    return factory.open_store(settings)


Opener = Callable[[], Store]


def opener_for(backend: str, tmp_path: Path, mongo: Callable[[], Mongo]) -> Opener:
    """A function opening stores over one backend's fresh storage (each call: as another
    server process would)."""
    if backend == "sqlite":
        from exchange.store.sqlite import SQLiteStore

        path = tmp_path / "store" / "exchange.sqlite3"  # a real file, in a folder open() makes
        return lambda: SQLiteStore(path)
    server = mongo()
    uri = server.database()
    return lambda: server.store(uri)


BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("mongo", id="mongo")]
