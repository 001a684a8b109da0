"""Typed, frozen settings: built-in defaults < YAML file < EXCHANGE_* environment variables."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .schemas import validate

REPO_DIR = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
# Not available as API root names: the server's own paths.
RESERVED_PATHS = frozenset({"taxii2", "extensions", "ui", "healthz", "readyz", "metrics"})

DEFAULTS: dict[str, Any] = {
    "title": "taxii-exchange",
    "description": "Cross-border cybercrime threat exchange (TAXII 2.1)",
    "contact": "",
    "public_url": "",
    "host": "127.0.0.1",
    "port": 8000,
    "store": "",
    "store_path": "taxii-exchange.sqlite3",
    "partners_file": "partners.yaml",
    "peers_file": "peers.yaml",
    "collections_dir": str(REPO_DIR / "collections"),
    "default_api_root": "cybercrime",
    "post_wait_seconds": 2.0,
    # Bounds on what one request may cost (see README, Limits).
    "max_url_bytes": 16384,
    "max_header_bytes": 32768,
    "max_request_head_bytes": 65536,
    "request_timeout_seconds": 60.0,
    "keep_alive_seconds": 5,
    "rate_limit_per_second": 1000.0,
    "rate_limit_burst": 5000,
    "max_json_depth": 32,
    "max_json_containers": 500_000,
    "max_string_bytes": 1048576,
    "trusted_proxies": [],
    "client_cert_header": "",
    "tls_certificate": "",
    "tls_key": "",
    "tls_client_ca": "",
    "tls_client_certificate": "optional",
    "login_failures_per_address": 30,
    "login_failures_per_partner_and_address": 10,
    "login_failure_window_seconds": 300,
    "purge_interval_seconds": 3600,
    "ui_session_seconds": 28800,
    "log_format": "text",
    "metrics_token": "",
    "ui_upload_max_bytes": 20 * MIB,
    "api_roots": {
        "cybercrime": {"title": "Cybercrime exchange",
                       "description": "Indicators, sightings and partner submissions"},
        "trusted": {"title": "Trusted law-enforcement exchange",
                    "description": "Restricted to vetted law-enforcement partners"},
    },
}



def comma_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


# Environment variables that override single settings, with the type each one takes.
ENVIRONMENT: dict[str, Callable[[str], Any]] = {
    "title": str, "description": str, "contact": str, "public_url": str, "host": str, "port": int,
    "store": str, "store_path": str, "partners_file": str, "peers_file": str,
    "collections_dir": str, "default_api_root": str, "post_wait_seconds": float,
    "max_url_bytes": int, "max_header_bytes": int, "max_request_head_bytes": int,
    "request_timeout_seconds": float, "keep_alive_seconds": int,
    "rate_limit_per_second": float, "rate_limit_burst": int,
    "max_json_depth": int, "max_json_containers": int, "max_string_bytes": int,
    "trusted_proxies": comma_list, "client_cert_header": str, "tls_certificate": str,
    "tls_key": str, "tls_client_ca": str, "tls_client_certificate": str,
    "login_failures_per_address": int,
    "login_failures_per_partner_and_address": int, "login_failure_window_seconds": float,
    "purge_interval_seconds": float, "ui_session_seconds": int, "log_format": str,
    "metrics_token": str, "ui_upload_max_bytes": int,
}
LIMITS = ("max_url_bytes", "max_header_bytes", "max_request_head_bytes",
          "request_timeout_seconds", "keep_alive_seconds", "rate_limit_per_second",
          "rate_limit_burst", "max_json_depth", "max_json_containers", "max_string_bytes")


@dataclass(frozen=True, slots=True)
class ApiRootSettings:
    name: str
    title: str
    description: str = ""
    max_content_length: int = 10 * MIB
    default_page_size: int = 1000
    max_page_size: int = 5000  # stix2's TAXIICollectionSource asks for 5000 per page


@dataclass(frozen=True, slots=True)
class Settings:
    title: str
    description: str
    contact: str
    public_url: str  # '' or https://host[/prefix], without a trailing slash
    host: str
    port: int
    store_path: Path  # the SQLite file (`store: sqlite:///PATH`, or `store_path`)
    partners_file: Path
    peers_file: Path  # other TAXII servers to sync with (no file: none)
    collections_dir: Path
    default_api_root: str | None
    post_wait_seconds: float
    api_roots: tuple[ApiRootSettings, ...]
    max_url_bytes: int = 16384  # request target (path and query); 414 above
    max_header_bytes: int = 32768  # header names and values together; 431 above
    max_request_head_bytes: int = 65536  # the HTTP parser's bound on request line and headers
    request_timeout_seconds: float = 60.0  # for a request's head and body to arrive
    keep_alive_seconds: int = 5  # an idle keep-alive connection is closed after this
    rate_limit_per_second: float = 1000.0  # per partner, sustained; 0 turns the limit off
    rate_limit_burst: int = 5000  # per partner, requests at once
    max_json_depth: int = 32  # nesting of a pushed body, the envelope included
    max_json_containers: int = 500_000  # arrays and objects in a pushed body
    max_string_bytes: int = 1048576  # any string of a pushed body, as sent
    # Proxies whose X-Forwarded-For (and client certificate header) are believed.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    login_failures_per_address: int = 30
    login_failures_per_partner_and_address: int = 10
    login_failure_window_seconds: float = 300.0
    # How often `serve` deletes what is past its collection's retention (0: never; `purge`).
    purge_interval_seconds: float = 3600.0
    # How long an analyst stays signed in to the web pages (/ui/), from sign-in.
    ui_session_seconds: int = 28800
    # The largest file an analyst may upload on the pages (the whole form, in bytes).
    ui_upload_max_bytes: int = 20 * MIB
    # A header a trusted proxy puts the verified client certificate in ('' : none).
    client_cert_header: str = ""
    # TLS terminated by the server itself (None: plain HTTP, TLS in front of it).
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # with it, clients are asked for a certificate
    tls_client_certificate: str = "optional"  # or "required"
    log_format: str = "text"  # request log lines: uvicorn's text, or one JSON object each
    # When set, /metrics needs it as a bearer token (compared in constant time).
    metrics_token: str = field(default="", repr=False)
    # `store: mongodb://...` (or mongodb+srv://): the MongoDB store instead of the SQLite file.
    store_url: str = ""

    def api_root(self, name: str) -> ApiRootSettings | None:
        return next((r for r in self.api_roots if r.name == name), None)


MONGODB_SCHEMES = ("mongodb://", "mongodb+srv://")


def _store_path(base: Path, url: str, path: str) -> Path:
    """The store: a URL (`sqlite:///PATH`, relative to the config file, or a MongoDB URL) or,
    as before it, `store_path`. With a MongoDB URL the file is not used."""
    if not url or url.startswith(MONGODB_SCHEMES):
        return base / path
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise ConfigError("store must be sqlite:///PATH, mongodb://... or mongodb+srv://..., "
                          f"not {url!r}")
    return base / url.removeprefix("sqlite:///")


def over_defaults(document: dict[str, Any]) -> dict[str, Any]:
    """A file's settings laid over the defaults. Each key replaces the default, except
    `api_roots`, which merges by root name: a root the file names is the default root with the
    file's keys over it (or a new root), a root set to null is removed, and a default root the
    file does not name remains. So a file that tunes one root keeps the other, which the
    shipped collections live in, instead of making them fail to load."""
    merged = {**DEFAULTS, **document}
    roots = document.get("api_roots")
    if isinstance(roots, dict):  # anything else: the schema check says what is wrong
        merged["api_roots"] = combined = {name: dict(values)
                                          for name, values in DEFAULTS["api_roots"].items()}
        for name, values in roots.items():
            if values is None:
                combined.pop(name, None)
            elif isinstance(values, dict):
                combined[name] = {**combined.get(name, {}), **values}
            else:
                combined[name] = values
    return merged


def _store_url(url: str) -> str:
    """A MongoDB URL as given (pymongo reads it when the store opens), or '' for SQLite."""
    if not url.startswith(MONGODB_SCHEMES):
        return ""
    if url.rstrip("/") in ("mongodb:", "mongodb+srv:") or url.split("://", 1)[1][:1] in "/?":
        raise ConfigError(f"store {url!r} names no MongoDB host")
    return url


def load_settings(path: str | Path | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings; relative paths in a file are taken relative to that file."""
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = dict(DEFAULTS)
    base = Path.cwd()
    path = path or environ.get("EXCHANGE_CONFIG")
    if path:
        path = Path(path)
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        if not isinstance(document, dict):
            validate("config", document, str(path))  # says what it is instead of an object
        merged = over_defaults(document)
        validate("config", merged, str(path))
        base = path.resolve().parent
    for key, kind in ENVIRONMENT.items():
        raw = environ.get(f"EXCHANGE_{key.upper()}")
        if raw is not None:
            try:
                merged[key] = kind(raw)
            except ValueError:
                what = getattr(kind, "__name__", "value")
                raise ConfigError(f"EXCHANGE_{key.upper()}={raw!r} is not a {what}") from None
    # Defaults and the file were valid on their own, so a problem now is in the environment.
    validate("config", merged, "EXCHANGE_* environment variables")
    if not math.isfinite(merged["login_failure_window_seconds"]):
        raise ConfigError("login_failure_window_seconds must be a number of seconds")
    if not math.isfinite(merged["post_wait_seconds"]):  # the schema lets NaN through
        raise ConfigError("post_wait_seconds must be a number of seconds from 0 to 60, "
                          f"not {merged['post_wait_seconds']}")
    for key in ("request_timeout_seconds", "rate_limit_per_second"):
        if not math.isfinite(merged[key]):
            raise ConfigError(f"{key} must be a finite number, not {merged[key]}")
    roots = tuple(ApiRootSettings(name=name, **values)
                  for name, values in merged["api_roots"].items())
    for root in roots:
        if root.name in RESERVED_PATHS:
            raise ConfigError(f"api root {root.name!r}: that path is the server's own")
        if root.default_page_size > root.max_page_size:
            raise ConfigError(f"api root {root.name}: default_page_size exceeds max_page_size")
    try:
        proxies = tuple(ipaddress.ip_network(p, strict=False) for p in merged["trusted_proxies"])
    except ValueError as exc:
        raise ConfigError(f"trusted_proxies: {exc}") from None
    if merged["client_cert_header"] and not proxies:
        raise ConfigError("client_cert_header is believed only from trusted_proxies: set them")
    if (merged["tls_key"] or merged["tls_client_ca"]) and not merged["tls_certificate"]:
        raise ConfigError("tls_key and tls_client_ca need tls_certificate")

    def optional_file(key: str) -> Path | None:
        return base / merged[key] if merged[key] else None

    default_root = merged["default_api_root"] or None
    if default_root and default_root not in {r.name for r in roots}:
        raise ConfigError(f"default_api_root {default_root!r} is not a configured API root")
    return Settings(
        title=merged["title"], description=merged["description"], contact=merged["contact"],
        public_url=merged["public_url"].rstrip("/"), host=merged["host"], port=merged["port"],
        store_path=_store_path(base, merged["store"], merged["store_path"]),
        store_url=_store_url(merged["store"]),
        partners_file=base / merged["partners_file"],
        peers_file=base / merged["peers_file"],
        collections_dir=base / merged["collections_dir"], default_api_root=default_root,
        post_wait_seconds=merged["post_wait_seconds"], api_roots=roots,
        **{key: merged[key] for key in LIMITS},
        purge_interval_seconds=merged["purge_interval_seconds"],
        ui_session_seconds=merged["ui_session_seconds"],
        ui_upload_max_bytes=merged["ui_upload_max_bytes"],
        trusted_proxies=proxies,
        login_failures_per_address=merged["login_failures_per_address"],
        login_failures_per_partner_and_address=merged["login_failures_per_partner_and_address"],
        login_failure_window_seconds=merged["login_failure_window_seconds"],
        client_cert_header=merged["client_cert_header"].strip().lower(),
        tls_certificate=optional_file("tls_certificate"), tls_key=optional_file("tls_key"),
        tls_client_ca=optional_file("tls_client_ca"),
        tls_client_certificate=merged["tls_client_certificate"],
        log_format=merged["log_format"], metrics_token=merged["metrics_token"],
    )
