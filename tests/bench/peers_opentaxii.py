"""OpenTAXII 0.10.0b1 as a benchmark peer: its own virtualenv, its configuration, its data
and its documented gunicorn run.

OpenTAXII pins SQLAlchemy < 2 and would downgrade this project's packages, so it lives in a
virtualenv of its own (made once, reused while it holds that version), by default under
`~/.cache/taxii-exchange-bench/opentaxii-0.10.0b1`.

The server runs as its documentation says (docs/installation/running.rst and its
Dockerfile): `gunicorn opentaxii.http:app --workers 2 --config python:opentaxii.http
--timeout 300`, with `OPENTAXII_CONFIG` naming a YAML file whose TAXII 2.1 persistence API
and auth API are SQL on SQLite files (examples/taxii2/opentaxii.yml, TAXII 1 switched off).
Its loggers are set to warning, as medallion's are, and taxii-exchange runs without an access
log: no server writes a line per request.

The API root (a fixed id: TAXII 2.1 paths in OpenTAXII are /taxii2/<api-root-uuid>/), the
collection and an account are made with OpenTAXII's own Python API, as its CLI commands
`opentaxii-add-api-root` and `opentaxii-add-collection` do; the account is not an admin but
has read and write on that collection only (`opentaxii-create-account` can make an admin
only, and `opentaxii-sync-data` drops TAXII 2 permissions). The same API issues the JWT an
account gets from POST /management/auth.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.10.0b1"
# --no-control-socket (gunicorn 25.1 and later): otherwise every gunicorn on the machine
# shares ~/.gunicorn/gunicorn.ctl.
REQUIREMENTS = (f"opentaxii=={VERSION}", "gunicorn>=25.1")
DEFAULT_VENV = Path.home() / ".cache" / "taxii-exchange-bench" / f"opentaxii-{VERSION}"
API_ROOT = "7c1f6e0a-3b2d-4e59-8a47-0d9c2b6f1e35"
WORKERS = 2
PACKAGES = ("opentaxii", "gunicorn", "flask", "werkzeug", "sqlalchemy", "marshmallow")


class PeerError(RuntimeError):
    """OpenTAXII could not be installed or set up."""


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _installed(venv: Path) -> dict[str, str]:
    """The versions of OpenTAXII and what it runs on in `venv` ({} if it has none)."""
    python = venv_python(venv)
    if not python.exists():
        return {}
    script = ("import importlib.metadata as m, json, platform, sqlite3\n"
              f"found = {{p: m.version(p) for p in {PACKAGES!r}}}\n"
              "found['python'] = platform.python_version()\n"
              "found['sqlite'] = sqlite3.sqlite_version\n"
              "print(json.dumps(found))")
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
    if done.returncode != 0:
        return {}
    found: dict[str, str] = json.loads(done.stdout)
    return found


def ensure_venv(venv: Path = DEFAULT_VENV, log: Path | None = None) -> dict[str, str]:
    """A virtualenv holding OpenTAXII VERSION and gunicorn: made and filled with pip unless
    it already holds them; the versions found in it."""
    found = _installed(venv)
    if found.get("opentaxii") == VERSION:
        return found
    venv.parent.mkdir(parents=True, exist_ok=True)
    print(f"[bench] installing OpenTAXII {VERSION} into {venv} ...", file=sys.stderr,
          flush=True)
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
             [str(venv_python(venv)), "-m", "pip", "install", "--quiet", *REQUIREMENTS]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if log is not None:
            with log.open("a", encoding="utf-8") as out:
                out.write(f"$ {' '.join(step)}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            raise PeerError(f"{' '.join(step[:4])} failed: {done.stderr.strip()[-800:]}")
    found = _installed(venv)
    if found.get("opentaxii") != VERSION:
        raise PeerError(f"{venv} holds OpenTAXII {found.get('opentaxii')}, not {VERSION}")
    return found


def write_config(directory: Path) -> Path:
    """OPENTAXII_CONFIG for a server whose data and accounts are SQLite files in
    `directory`, with a fresh JWT secret."""
    config = directory / "opentaxii.yml"
    document = {
        "domain": "127.0.0.1",
        "support_basic_auth": True,
        "return_server_error_details": False,
        "taxii1": None,  # TAXII 2.1 only, as in its examples/taxii2/opentaxii.yml
        "taxii2": {
            "persistence_api": {
                "class": "opentaxii.persistence.sqldb.Taxii2SQLDatabaseAPI",
                "parameters": {"db_connection": f"sqlite:///{directory / 'data.db'}",
                               "create_tables": True}},
            "title": "OpenTAXII (bench)",
            "public_discovery": False,
            "max_content_length": 209715200,
        },
        "auth_api": {
            "class": "opentaxii.auth.sqldb.SQLDatabaseAPI",
            "parameters": {"db_connection": f"sqlite:///{directory / 'auth.db'}",
                           "create_tables": True, "secret": secrets.token_hex(32),
                           # the JWT must outlive the longest column
                           "token_ttl_secs": 86400}},
        "logging": {"opentaxii": "warning", "root": "warning"},
    }
    # JSON is YAML: no YAML writer needed in the other virtualenv
    config.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return config


# Run with the virtualenv's Python: OpenTAXII's own API, as its CLI commands use it.
_SETUP = """
import json, sys
from opentaxii.cli import app
from opentaxii.entities import Account

api_root, username, password = sys.argv[1:4]
with app.app_context():
    server = app.taxii_server
    persistence = server.servers.taxii2.persistence.api
    persistence.add_api_root(title="Benchmark root", description="benchmark", default=True,
                             is_public=False, api_root_id=api_root)
    collection = persistence.add_collection(api_root_id=api_root, title="Benchmark",
                                            description="benchmark", alias="bench")
    server.auth.api.update_account(
        Account(id=None, username=username, is_admin=False,
                permissions={str(collection.id): ["read", "write"]}), password)
    token = server.auth.authenticate(username, password)
    print(json.dumps({"collection": str(collection.id), "token": token}))
"""


@dataclass(frozen=True)
class Setup:
    api_root: str
    collection: str
    username: str
    password: str
    token: str


def environment(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPENTAXII_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OPENTAXII_CONFIG"] = str(config)
    return env


def set_up(venv: Path, config: Path, username: str) -> Setup:
    """The API root, the collection and an account with read and write on it; its JWT."""
    password = secrets.token_urlsafe(18)
    done = subprocess.run([str(venv_python(venv)), "-c", _SETUP, API_ROOT, username, password],
                          env=environment(config), cwd=config.parent, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise PeerError(f"OpenTAXII setup failed: {done.stderr.strip()[-800:]}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return Setup(API_ROOT, found["collection"], username, password, found["token"])


def command(venv: Path, port: int) -> list[str]:
    """Its documented gunicorn run, on loopback."""
    return [str(venv / "bin" / "gunicorn"), "opentaxii.http:app",
            "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
            "--config", "python:opentaxii.http", "--timeout", "300",
            "--log-level", "warning", "--no-control-socket"]


def describe(found: dict[str, str]) -> str:
    """A report line: what the peer ran on."""
    return (f"- OpenTAXII {found.get('opentaxii')} (its own virtualenv: Python "
            f"{found.get('python')}, gunicorn {found.get('gunicorn')} with {WORKERS} sync "
            f"workers, Flask {found.get('flask')}, werkzeug {found.get('werkzeug')}, "
            f"SQLAlchemy {found.get('sqlalchemy')}, marshmallow {found.get('marshmallow')}; "
            f"SQLite {found.get('sqlite')} files for data and accounts)")
