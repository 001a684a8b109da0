"""Settings (defaults < file < EXCHANGE_* environment), collection files, and `serve`
refusing to start on bad configuration."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from exchange.cli import main
from exchange.collections import STIX_21, load_collections
from exchange.config import DEFAULTS, REPO_DIR, ApiRootSettings, Settings, load_settings
from exchange.errors import ConfigError
from exchange.model import AMBER, AMBER_STRICT, GREEN, RED
from exchange.policy import partners


@pytest.fixture(autouse=True)
def _no_exchange_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`main` reads (and `serve` sets) EXCHANGE_* variables; none leak in or out."""
    for name in ("CONFIG", "HOST", "PORT", *(key.upper() for key in DEFAULTS)):
        monkeypatch.delenv(f"EXCHANGE_{name}", raising=False)


def write_yaml(path: Path, document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


# -- layering --------------------------------------------------------------------------

def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    assert (settings.title, settings.host, settings.port) == ("taxii-exchange", "127.0.0.1", 8000)
    assert settings.default_api_root == "cybercrime"
    assert settings.post_wait_seconds == 2.0
    assert settings.store_path == tmp_path / "taxii-exchange.sqlite3"
    assert settings.partners_file == tmp_path / "partners.yaml"
    assert settings.collections_dir == REPO_DIR / "collections"
    assert [r.name for r in settings.api_roots] == ["cybercrime", "trusted"]
    cybercrime = settings.api_root("cybercrime")
    assert cybercrime == ApiRootSettings("cybercrime", "Cybercrime exchange",
                                         "Indicators, sightings and partner submissions",
                                         10 * 1024 * 1024, 1000, 5000)
    assert settings.api_root("nope") is None


def test_file_overrides_defaults_and_environment_overrides_the_file(tmp_path: Path):
    config = write_yaml(tmp_path / "etc" / "config.yaml", {
        "title": "From file", "contact": "ops@example.org", "port": 9000,
        "store_path": "data/x.sqlite3", "partners_file": "/abs/partners.yaml",
        "post_wait_seconds": 1,
    })
    settings = load_settings(config, environ={})
    assert (settings.title, settings.contact, settings.port) == ("From file", "ops@example.org",
                                                                9000)
    assert settings.description == DEFAULTS["description"]  # not in the file: default
    assert settings.store_path == tmp_path / "etc" / "data" / "x.sqlite3"  # next to the file
    assert settings.partners_file == Path("/abs/partners.yaml")
    assert settings.post_wait_seconds == 1

    environ = {"EXCHANGE_PORT": "9100", "EXCHANGE_TITLE": "From env",
               "EXCHANGE_POST_WAIT_SECONDS": "0.25", "EXCHANGE_HOST": "0.0.0.0",
               "UNRELATED": "x", "PORT": "1"}
    settings = load_settings(config, environ=environ)
    assert (settings.title, settings.port, settings.host) == ("From env", 9100, "0.0.0.0")
    assert settings.post_wait_seconds == 0.25
    assert settings.contact == "ops@example.org"  # still from the file


def test_config_file_named_by_the_environment(tmp_path: Path):
    config = write_yaml(tmp_path / "config.yaml", {"title": "Named by EXCHANGE_CONFIG"})
    assert load_settings(None, environ={"EXCHANGE_CONFIG": str(config)}).title == \
        "Named by EXCHANGE_CONFIG"
    other = write_yaml(tmp_path / "other.yaml", {"title": "Given"})
    assert load_settings(other, environ={"EXCHANGE_CONFIG": str(config)}).title == "Given"


def test_public_url_is_taken_without_its_trailing_slash():
    settings = load_settings(None, environ={"EXCHANGE_PUBLIC_URL": "https://taxii.example/x/"})
    assert settings.public_url == "https://taxii.example/x"


def test_environment_can_clear_the_default_api_root():
    assert load_settings(None, environ={"EXCHANGE_DEFAULT_API_ROOT": ""}).default_api_root \
        is None


CYBERCRIME = ApiRootSettings("cybercrime", "Cybercrime exchange",
                             "Indicators, sightings and partner submissions")
TRUSTED = ApiRootSettings("trusted", "Trusted law-enforcement exchange",
                          "Restricted to vetted law-enforcement partners")
MINE = ApiRootSettings("mine", "Mine", "", 2048, 10, 10)


@pytest.mark.parametrize(("roots", "expected"), [
    pytest.param({"mine": {"title": "Mine", "max_content_length": 2048,
                           "default_page_size": 10, "max_page_size": 10}},
                 (CYBERCRIME, TRUSTED, MINE), id="a new root is added, the defaults remain"),
    pytest.param({"cybercrime": {"max_page_size": 100, "default_page_size": 50}},
                 (ApiRootSettings("cybercrime", CYBERCRIME.title, CYBERCRIME.description,
                                  max_page_size=100, default_page_size=50), TRUSTED),
                 id="a default root named in the file keeps the keys the file does not set"),
    pytest.param({"trusted": {"title": "LE only", "description": ""}},
                 (CYBERCRIME, ApiRootSettings("trusted", "LE only", "")),
                 id="the file's keys win over the default root's"),
    pytest.param({"trusted": None, "mine": {"title": "Mine", "max_content_length": 2048,
                                            "default_page_size": 10, "max_page_size": 10}},
                 (CYBERCRIME, MINE), id="null removes a default root"),
])
def test_api_roots_in_the_file_merge_with_the_defaults(
        tmp_path: Path, roots: dict[str, Any], expected: tuple[ApiRootSettings, ...]):
    config = write_yaml(tmp_path / "config.yaml", {"api_roots": roots})
    assert load_settings(config, environ={}).api_roots == expected


def test_the_shipped_collections_load_with_a_file_that_tunes_one_root(tmp_path: Path):
    config = write_yaml(tmp_path / "config.yaml",
                        {"collections_dir": str(REPO_DIR / "collections"),
                         "api_roots": {"cybercrime": {"title": "Ours", "max_page_size": 500,
                                                       "default_page_size": 100}}})
    settings = load_settings(config, environ={})
    assert {c.api_root for c in load_collections(settings)} == {"cybercrime", "trusted"}


# -- bad values ------------------------------------------------------------------------

@pytest.mark.parametrize(("environ", "message"), [
    pytest.param({"EXCHANGE_PORT": "eighty"}, "EXCHANGE_PORT='eighty' is not a int", id="port"),
    pytest.param({"EXCHANGE_PORT": "8000.5"}, "EXCHANGE_PORT='8000.5'", id="port-float"),
    pytest.param({"EXCHANGE_POST_WAIT_SECONDS": "soon"}, "EXCHANGE_POST_WAIT_SECONDS='soon'",
                 id="wait"),
    pytest.param({"EXCHANGE_PORT": "0"}, "EXCHANGE_.*port.*minimum", id="port-zero"),
    pytest.param({"EXCHANGE_PORT": "70000"}, "EXCHANGE_.*port.*maximum", id="port-too-big"),
    pytest.param({"EXCHANGE_POST_WAIT_SECONDS": "-1"}, "post_wait_seconds.*minimum",
                 id="negative-wait"),
    pytest.param({"EXCHANGE_POST_WAIT_SECONDS": "nan"}, "post_wait_seconds", id="nan-wait"),
    pytest.param({"EXCHANGE_POST_WAIT_SECONDS": "inf"}, "post_wait_seconds", id="inf-wait"),
    pytest.param({"EXCHANGE_TITLE": ""}, "title", id="empty-title"),
    pytest.param({"EXCHANGE_DEFAULT_API_ROOT": "nope"},
                 "default_api_root 'nope' is not a configured API root", id="unknown-root"),
    pytest.param({"EXCHANGE_CONFIG": "/nonexistent/config.yaml"},
                 "cannot read config /nonexistent/config.yaml", id="missing-file"),
    pytest.param({"EXCHANGE_PUBLIC_URL": "http://taxii.example"}, "public_url",
                 id="public-url-not-https"),
    pytest.param({"EXCHANGE_PUBLIC_URL": "https://taxii.example/?x=1"}, "public_url",
                 id="public-url-with-query"),
])
def test_bad_environment_values_are_refused_clearly(environ: dict[str, str], message: str):
    with pytest.raises(ConfigError, match=message):
        load_settings(None, environ=environ)


@pytest.mark.parametrize(("document", "message"), [
    pytest.param({"prot": 8000}, r"prot: unknown key \(did you mean port\?\)",
                 id="unknown-key"),
    pytest.param({"colour": "red"}, "colour: unknown key [(]known keys: api_roots, client_cert",
                 id="unknown-key-like-no-other"),
    pytest.param({"port": "8000"}, "port: '8000' is not of type 'integer'", id="wrong-type"),
    pytest.param({"post_wait_seconds": 120}, "post_wait_seconds: 120 is greater", id="too-long"),
    pytest.param({"post_wait_seconds": float("nan")}, "post_wait_seconds must be a number",
                 id="nan"),
    pytest.param({"api_roots": {"Bad Name": {"title": "x"}}}, "api_roots", id="bad-root-name"),
    pytest.param({"api_roots": {"r": {"title": "x", "page_size": 5}}},
                 "api_roots.r.page_size: unknown key", id="unknown-root-key"),
    pytest.param({"api_roots": {"api1": {"max_page_sise": 5}}},
                 r"api_roots.api1.max_page_sise: unknown key \(did you mean max_page_size\?\)",
                 id="a typo in a new root is named before its missing title"),
    pytest.param({"api_roots": {"cybercrime": {"max_page_sise": 5}}},
                 "api_roots.cybercrime.max_page_sise: unknown key",
                 id="a typo in a default root"),
    pytest.param({"api_roots": {"cybercrime": None, "trusted": None}},
                 "api_roots: {} should be non-empty", id="every root removed"),
    pytest.param({"trusted_proxies": ["127.0.0.1", 5]},
                 r"trusted_proxies\[1\]: 5 is not of type 'string'", id="list-item"),
    pytest.param({"api_roots": {"r": {"description": "no title"}}}, "'title' is a required",
                 id="root-without-title"),
    pytest.param({"api_roots": {"cybercrime": None}},
                 "default_api_root 'cybercrime' is not a configured API root",
                 id="default-root-not-configured"),
    pytest.param({"default_api_root": "trusted-typo"},
                 "default_api_root 'trusted-typo' is not a configured API root",
                 id="default-root-typo"),
    pytest.param({"api_roots": {"cybercrime": {"title": "x", "default_page_size": 6000}}},
                 "api root cybercrime: default_page_size exceeds max_page_size",
                 id="page-sizes"),
    pytest.param({"api_roots": {"cybercrime": {"title": "x", "max_content_length": 10}}},
                 "max_content_length: 10 is less than the minimum", id="tiny-body-limit"),
    pytest.param({"api_roots": {"extensions": {"title": "x"}}, "default_api_root": ""},
                 "api root 'extensions': that path is the server's own", id="reserved-root"),
    pytest.param(["port", 8000], r"\(top level\): .* is not of type 'object'", id="a-list"),
    pytest.param("port: [8000\n", "cannot read config", id="yaml-syntax"),
])
def test_bad_files_are_refused_with_the_file_and_the_key(tmp_path: Path, document: Any,
                                                         message: str):
    config = write_yaml(tmp_path / "config.yaml", document)
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(config, environ={})
    if not message.startswith(("default_api_root", "api root", "post_wait_seconds must")):
        assert str(config) in raised.value.description


# -- collections -----------------------------------------------------------------------

COLLECTION = {"id": "6b2f4c1e-5a43-4d6f-9a0c-2f1e8d7b3c41", "api_root": "cybercrime",
              "alias": "indicators", "title": "Indicators",
              "read": ["group:cert"], "write": ["partner:acme"], "default_marking": "green"}


def settings_for(directory: Path) -> Settings:
    return load_settings(None, environ={"EXCHANGE_COLLECTIONS_DIR": str(directory)})


def test_shipped_collections_and_default_settings_load(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    found = load_collections(settings)
    files = sorted((REPO_DIR / "collections").glob("*.yaml"))
    assert len(found) == len(files) >= 4
    roots = {r.name for r in settings.api_roots}
    for collection in found:
        assert collection.api_root in roots
        assert collection.media_types == (STIX_21,)
        assert collection.readers and collection.title
    aliases = {(c.api_root, c.alias) for c in found}
    assert len(aliases) == len(found)


def test_shipped_example_config_loads():
    example = REPO_DIR / "deploy" / "config.example.yaml"
    settings = load_settings(example, environ={})
    assert settings.default_api_root in {r.name for r in settings.api_roots}
    assert settings.store_path.is_absolute()


def test_a_collection_file_is_read_fully(tmp_path: Path):
    write_yaml(tmp_path / "c.yaml", {**COLLECTION, "description": "d",
                                     "media_types": [STIX_21, "application/stix+json"]})
    [collection] = load_collections(settings_for(tmp_path))
    assert collection.id == COLLECTION["id"] and collection.alias == "indicators"
    assert collection.description == "d"
    assert collection.media_types == (STIX_21, "application/stix+json")
    assert collection.readers == frozenset({"group:cert"})
    assert collection.writers == frozenset({"partner:acme"})
    assert (collection.default_rank, collection.require_marking) == (GREEN, False)


def test_a_collection_declares_its_sharing_policy(tmp_path: Path):
    write_yaml(tmp_path / "c.yaml", {**COLLECTION, "default_marking": "amber+strict",
                                     "require_marking": True,
                                     "clearance": {"group:cert": "amber", "partner:acme": "red"},
                                     "red_recipients": ["partner:acme"]})
    [collection] = load_collections(settings_for(tmp_path))
    assert (collection.default_rank, collection.require_marking) == (AMBER_STRICT, True)
    assert collection.clearances == {"group:cert": AMBER, "partner:acme": RED}
    assert collection.red_recipients == frozenset({"partner:acme"})


@pytest.mark.parametrize(("change", "message"), [
    pytest.param({"read": None}, "'read' is a required property", id="no-read"),
    pytest.param({"id": "indicators"}, "id: 'indicators' does not match", id="id-not-uuid"),
    pytest.param({"read": ["cert"]}, r"read\[0\]: 'cert' does not match", id="bare-principal"),
    pytest.param({"read": ["group:cert", "group:cert"]}, "non-unique", id="duplicate-reader"),
    pytest.param({"owner": "x"}, "owner: unknown key", id="unknown-key"),
    pytest.param({"alias": "Has Spaces"}, "alias", id="bad-alias"),
    pytest.param({"media_types": []}, "media_types", id="no-media-types"),
    pytest.param({"default_marking": None}, "'default_marking' is a required property",
                 id="no-default-marking"),
    pytest.param({"default_marking": "white"}, "default_marking", id="tlp-1.0-name"),
    pytest.param({"clearance": {"cert": "amber"}}, "clearance", id="clearance-bare-principal"),
    pytest.param({"clearance": {"group:cert": "top"}}, "clearance", id="clearance-unknown-tlp"),
    pytest.param({"red_recipients": ["cert"]}, "red_recipients", id="red-bare-principal"),
    pytest.param({"require_marking": "yes"}, "require_marking", id="require-not-boolean"),
])
def test_collection_schema_errors_name_the_file(tmp_path: Path, change: dict[str, Any],
                                                message: str):
    document = {k: v for k, v in {**COLLECTION, **change}.items() if v is not None}
    path = write_yaml(tmp_path / "broken.yaml", document)
    with pytest.raises(ConfigError, match=message) as raised:
        load_collections(settings_for(tmp_path))
    assert raised.value.description.startswith(f"{path}: ")


@pytest.mark.parametrize("content", [
    pytest.param("id: [\n", id="yaml-syntax"),
    pytest.param("", id="empty"),
    pytest.param("- a list\n", id="a-list"),
])
def test_unreadable_collection_files_are_named(tmp_path: Path, content: str):
    path = write_yaml(tmp_path / "broken.yaml", content)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_collections(settings_for(tmp_path))


def test_duplicate_collection_ids_are_refused(tmp_path: Path):
    write_yaml(tmp_path / "a.yaml", COLLECTION)
    second = write_yaml(tmp_path / "b.yaml", {**COLLECTION, "alias": "other"})
    with pytest.raises(ConfigError, match=f"{re.escape(str(second))}: collection id .* twice"):
        load_collections(settings_for(tmp_path))


def test_duplicate_aliases_are_refused_within_an_api_root(tmp_path: Path):
    write_yaml(tmp_path / "a.yaml", COLLECTION)
    other_id = "0d7a9e52-3b8c-4f1a-8e6d-5c2b9a4f7e13"
    write_yaml(tmp_path / "b.yaml", {**COLLECTION, "id": other_id, "api_root": "trusted"})
    assert len(load_collections(settings_for(tmp_path))) == 2  # another root: fine
    third = write_yaml(tmp_path / "c.yaml", {**COLLECTION, "id": "3f8b2a6d-7c1e-4e9b-a5d4-"
                                             "1b6c8e2f9a07"})
    with pytest.raises(ConfigError,
                       match=f"{re.escape(str(third))}: alias 'indicators' is used twice"):
        load_collections(settings_for(tmp_path))


def test_collection_in_an_unknown_api_root_is_refused(tmp_path: Path):
    path = write_yaml(tmp_path / "a.yaml", {**COLLECTION, "api_root": "elsewhere"})
    with pytest.raises(ConfigError,
                       match=f"{re.escape(str(path))}: api_root 'elsewhere' is not configured"):
        load_collections(settings_for(tmp_path))


def test_missing_collections_dir_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="is not a directory"):
        load_collections(settings_for(tmp_path / "nope"))


# -- serve -------------------------------------------------------------------------------

@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Record what `serve` would run instead of serving (a test must never block)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    # `serve` hands its options to worker processes through the environment: put it back,
    # or every server a later test starts would listen where this one was told to.
    names = ("EXCHANGE_HOST", "EXCHANGE_PORT", "EXCHANGE_CONFIG")
    saved = {name: os.environ.get(name) for name in names}
    yield calls
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def serve_config(tmp_path: Path) -> Path:
    return write_yaml(tmp_path / "config.yaml", {"store_path": "store.sqlite3",
                                                 "partners_file": "partners.yaml"})


def test_serve_refuses_to_start_without_a_partners_file(tmp_path: Path, capsys, no_uvicorn):
    config = serve_config(tmp_path)
    assert main(["--config", str(config), "serve", "--port", "8123"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "partners.yaml") in err
    assert "partners add" in err
    assert no_uvicorn == []
    assert not (tmp_path / "store.sqlite3").exists()


def test_serve_refuses_to_start_on_a_bad_config_file(tmp_path: Path, capsys, no_uvicorn):
    config = write_yaml(tmp_path / "config.yaml", {"port": "eighty"})
    assert main(["--config", str(config), "serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taxii-exchange: ") and str(config) in err and "port" in err
    assert no_uvicorn == []


def test_serve_refuses_to_start_on_a_bad_collection(tmp_path: Path, capsys, no_uvicorn):
    config = serve_config(tmp_path)
    partners.save(tmp_path / "partners.yaml", {})
    broken = write_yaml(tmp_path / "collections" / "broken.yaml", {"id": "x"})
    with config.open("a") as out:
        out.write("collections_dir: collections\n")
    assert main(["--config", str(config), "serve"]) == 2
    assert str(broken) in capsys.readouterr().err
    assert no_uvicorn == []


def test_serve_starts_with_settings_and_command_line_overrides(tmp_path: Path, no_uvicorn):
    config = serve_config(tmp_path)
    partners.save(tmp_path / "partners.yaml", {})
    assert main(["--config", str(config), "serve", "--host", "127.0.0.2", "--port", "8123",
                 "--no-access-log"]) == 0
    [options] = no_uvicorn
    assert (options["host"], options["port"], options["access_log"]) == ("127.0.0.2", 8123,
                                                                          False)
    # Worker processes rebuild the same settings from the environment.
    assert os.environ["EXCHANGE_CONFIG"] == str(config.resolve())
    assert load_settings().port == 8123
