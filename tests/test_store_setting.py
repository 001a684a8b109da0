"""The store is chosen by one setting, opened by one factory, and a store that cannot answer
now (locked past its wait) is a TAXII 503 a client may retry, never a 500."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from exchange.config import load_settings
from exchange.errors import ConfigError
from exchange.store.factory import open_store
from exchange.store.sqlite import SQLiteStore
from tests.conftest import ALICE, Env, start_server

TAXII = "application/taxii+json;version=2.1"


def settings_with(tmp_path: Path, environ: dict[str, str] | None = None, **keys: object):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(keys))
    return load_settings(config, environ=environ or {})


@pytest.mark.parametrize("keys, environ, where", [
    pytest.param({}, {}, "taxii-exchange.sqlite3", id="default"),
    pytest.param({"store_path": "old.sqlite3"}, {}, "old.sqlite3", id="store_path as before"),
    pytest.param({"store": "sqlite:///data/x.sqlite3", "store_path": "old.sqlite3"}, {},
                 "data/x.sqlite3", id="store URL, relative to the config file, wins"),
    pytest.param({}, {"EXCHANGE_STORE": "sqlite:///env.sqlite3"}, "env.sqlite3",
                 id="EXCHANGE_STORE"),
])
def test_the_store_setting_names_the_file(tmp_path: Path, keys: dict[str, str],
                                          environ: dict[str, str], where: str):
    settings = settings_with(tmp_path, environ, **keys)
    assert settings.store_path == tmp_path / where
    store = open_store(settings)
    assert isinstance(store, SQLiteStore) and store.path == str(tmp_path / where)


@pytest.mark.parametrize("url", [
    "mongodb://db.example:27017/exchange?replicaSet=rs0",
    "mongodb+srv://cluster.db.example/exchange",
    "mongodb://h1.db.example,h2.db.example,h3.db.example/?replicaSet=rs0&w=majority",
])
def test_a_mongodb_url_opens_the_mongodb_store_without_connecting(tmp_path: Path, url: str):
    from exchange.store.mongo import MongoStore

    settings = settings_with(tmp_path, **{"store": url})
    assert settings.store_url == url
    store = open_store(settings)
    assert isinstance(store, MongoStore) and store.uri == url  # connects in open()
    env = settings_with(tmp_path, {"EXCHANGE_STORE": url})
    assert isinstance(open_store(env), MongoStore)


@pytest.mark.parametrize("url", ["mongodb://", "mongodb:///exchange", "mongo://db.example/x",
                                 "sqlite://relative.db", "sqlite:///", "postgres://db.example/x"])
def test_a_store_this_version_cannot_open_is_refused_at_start(tmp_path: Path, url: str):
    with pytest.raises(ConfigError, match="store"):
        settings_with(tmp_path, **{"store": url})


def indicator() -> dict[str, object]:
    t0 = "2026-11-01T00:00:00.000Z"
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
            "created": t0, "modified": t0, "created_by_ref": ALICE, "name": "busy",
            "pattern": "[domain-name:value = 'busy.example']", "pattern_type": "stix",
            "valid_from": t0}


def test_a_locked_store_answers_503_with_retry_after_and_loses_nothing(env: Env):
    live = start_server(env, SQLiteStore(env.settings.store_path, busy_seconds=0.2))
    holder = sqlite3.connect(env.settings.store_path, isolation_level=None)
    try:
        with httpx.Client(base_url=live.collection(), headers={
                "Accept": TAXII, "Content-Type": TAXII, **env.bearer("alice")}) as http:
            holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer
            answer = http.post("objects/", json={"objects": [indicator()]})
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == TAXII
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["title"] == "Service unavailable"
            assert http.get("objects/").status_code == 200  # readers go on (WAL)
            holder.execute("ROLLBACK")
            retried = http.post("objects/", json={"objects": [indicator()]})
            assert retried.status_code == 202 and retried.json()["success_count"] == 1
            assert len(http.get("objects/").json()["objects"]) == 1
    finally:
        holder.close()
        live.stop()
