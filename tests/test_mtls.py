"""Mutual TLS: the server terminates TLS itself and knows partners by their client
certificates; behind a proxy, from the certificate the proxy verified. Every test makes its own
CA and certificates (trustme) and drives a real server over TLS on loopback."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import trustme
import yaml
from cryptography import x509
from taxii2client.v21 import Collection

from exchange.cli import main
from exchange.config import load_settings
from exchange.errors import ConfigError
from exchange.policy import partners
from exchange.server import uvicorn_options
from exchange.tls import TLSClientCertProtocol
from tests.conftest import ALICE, OPEN, READONLY, Env, LiveServer
from tests.serving import start

TAXII = "application/taxii+json;version=2.1"
ACCEPT = {"Accept": TAXII}
ALICE_SUBJECT_CN = "alice-connector.partners.example"


@pytest.fixture(autouse=True)
def _no_exchange_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EXCHANGE_") and name != "EXCHANGE_SCHEMAS_DIR":
            monkeypatch.delenv(name)


@dataclass
class Pki:
    """A client CA, the server's certificate, and client certificates as files."""

    directory: Path
    ca: trustme.CA
    server: trustme.LeafCert
    clients: dict[str, trustme.LeafCert]

    def file(self, name: str, blob: trustme.Blob) -> str:
        path = self.directory / name
        if not path.exists():
            blob.write_to_path(path)
        return str(path)

    @property
    def ca_file(self) -> str:
        return self.file("ca.pem", self.ca.cert_pem)

    def cert_files(self, who: str) -> tuple[str, str]:
        leaf = self.clients[who]
        return (self.file(f"{who}.crt", leaf.cert_chain_pems[0]),
                self.file(f"{who}.key", leaf.private_key_pem))

    def pem(self, who: str) -> str:
        return self.clients[who].cert_chain_pems[0].bytes().decode()

    def subject(self, who: str) -> str:
        return x509.load_pem_x509_certificate(self.pem(who).encode()).subject.rfc4514_string()

    def fingerprint(self, who: str) -> str:
        der = ssl.PEM_cert_to_DER_cert(self.pem(who))
        return hashlib.sha256(der).hexdigest()

    def context(self, who: str | None) -> ssl.SSLContext:
        """What a client uses: trust the server's CA, present `who`'s certificate."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if who is not None:
            context.load_cert_chain(*self.cert_files(who))
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = trustme.CA(organization_name="Exchange partners CA")
    rogue = trustme.CA(organization_name="Someone else's CA")
    clients = {
        "alice": ca.issue_cert("alice@partners.example", common_name=ALICE_SUBJECT_CN,
                               organization_name="Alice CERT"),
        "bob": ca.issue_cert("bob@partners.example", common_name="bob-siem.partners.example"),
        "stranger": ca.issue_cert("x@other.example", common_name="stranger.other.example"),
        "rogue": rogue.issue_cert("alice@partners.example", common_name=ALICE_SUBJECT_CN,
                                  organization_name="Alice CERT"),
    }
    return Pki(tmp_path_factory.mktemp("pki"), ca, ca.issue_cert("127.0.0.1"), clients)


def tls_env(env: Env, pki: Pki, required: bool = False) -> Env:
    """Serve HTTPS with the client CA; alice is known by subject, bob by fingerprint."""
    path = env.settings.partners_file
    partners.update(path, "alice", cert_subjects=(pki.subject("alice"),))
    fingerprint = pki.fingerprint("bob")
    partners.update(path, "bob", cert_fingerprints=(
        ":".join(fingerprint[i:i + 2] for i in range(0, 64, 2)).upper(),))  # as openssl shows
    server_cert = pki.file("server.pem", pki.server.private_key_and_cert_chain_pem)
    settings = dataclasses.replace(
        env.settings, tls_certificate=Path(server_cert), tls_client_ca=Path(pki.ca_file),
        tls_client_certificate="required" if required else "optional")
    return Env(settings, env.credentials)


@pytest.fixture
def tls_live(env: Env, pki: Pki) -> Iterator[LiveServer]:
    live = start(tls_env(env, pki))
    yield live
    live.stop()


def https_get(live: LiveServer, pki: Pki, who: str | None, url: str | None = None,
              headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(verify=pki.context(who)) as client:
        return client.get(url or live.collection(OPEN), headers={**ACCEPT, **(headers or {})})


def bearer(env: Env, partner: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.credentials[partner].token}"}


@pytest.mark.parametrize(("who", "auth", "collection", "status", "says"), [
    pytest.param("alice", None, OPEN, 200, None, id="alice's certificate (subject) -> alice"),
    pytest.param("bob", None, READONLY, 200, None, id="bob's certificate (fingerprint) -> bob"),
    pytest.param("bob", None, OPEN, 404, None, id="bob's certificate -> bob's policy"),
    pytest.param("stranger", None, OPEN, 401, "not a partner's",
                 id="a certificate of no partner -> 401"),
    pytest.param("stranger", "alice", OPEN, 200, None,
                 id="a certificate of no partner and alice's token -> alice"),
    pytest.param("alice", "alice", OPEN, 200, None, id="certificate and token of alice"),
    pytest.param("alice", "bob", READONLY, 401, "name different partners",
                 id="alice's certificate with bob's token -> 401"),
    pytest.param(None, "alice", OPEN, 200, None, id="no certificate (optional) and a token"),
    pytest.param(None, None, OPEN, 401, "send HTTP Basic", id="nothing at all -> 401"),
])
def test_a_verified_client_certificate_names_a_partner(env: Env, pki: Pki, tls_live, who, auth,
                                                       collection, status, says):
    response = https_get(tls_live, pki, who, tls_live.collection(collection),
                         bearer(env, auth) if auth else None)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == TAXII
    if says:
        assert says in response.json()["description"]
    elif status == 200:
        assert response.json()["id"] == collection


def test_the_partner_by_certificate_reads_what_it_reads_with_a_token(env: Env, pki: Pki,
                                                                     tls_live, monkeypatch):
    # requests lets these variables override a session's `verify` (taxii2-client sets that).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    alice = env.credentials["alice"]
    with httpx.Client(verify=pki.context(None)) as plain:
        pushed = plain.post(tls_live.collection(OPEN) + "objects/", json={"objects": [{
            "type": "indicator", "spec_version": "2.1",
            "id": "indicator--0b1f7e9c-3a4d-4e5f-8a6b-7c8d9e0f1a2b",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
            "name": "C2", "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z",
            "created_by_ref": ALICE,
            "pattern": "[ipv4-addr:value = '203.0.113.9']"}]},
            headers={**ACCEPT, "Content-Type": TAXII, **bearer(env, "alice")})
        assert pushed.status_code == 202 and pushed.json()["success_count"] == 1
        by_token = plain.get(tls_live.collection(OPEN) + "objects/",
                             headers={**ACCEPT, **bearer(env, "alice")}).json()
    by_cert = https_get(tls_live, pki, "alice", tls_live.collection(OPEN) + "objects/").json()
    assert by_cert == by_token and len(by_cert["objects"]) == 1

    # taxii2-client (requests) with `cert=`: the certificate alone, or with the password.
    cert = pki.cert_files("alice")
    for kwargs in ({}, {"user": "alice", "password": alice.password}):
        collection = Collection(tls_live.collection(OPEN), verify=pki.ca_file, cert=cert,
                                **kwargs)
        assert collection.title == "Open" and collection.can_write
        assert collection.get_objects()["objects"] == by_token["objects"]
    with pytest.raises(requests.HTTPError) as refused:
        Collection(tls_live.collection(OPEN), verify=pki.ca_file,
                   cert=pki.cert_files("stranger")).refresh()
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize("who", [
    pytest.param(None, id="no certificate where one is required -> handshake refused"),
    pytest.param("rogue", id="a certificate from another CA -> handshake refused"),
])
def test_the_handshake_refuses_clients_without_a_good_certificate(env: Env, pki: Pki, who):
    live = start(tls_env(env, pki, required=True))
    try:
        with pytest.raises(httpx.TransportError):
            https_get(live, pki, who, headers=bearer(env, "alice"))
        assert https_get(live, pki, "alice").status_code == 200
    finally:
        live.stop()


def test_another_ca_is_refused_even_when_certificates_are_optional(env: Env, pki: Pki,
                                                                   tls_live):
    """With CERT_OPTIONAL a certificate that fails verification still ends the handshake:
    the rogue copy of alice's subject never reaches the partner lookup."""
    with pytest.raises(httpx.TransportError):
        https_get(tls_live, pki, "rogue")


# -- behind a reverse proxy ----------------------------------------------------------------

def client_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), headers=ACCEPT)


@pytest.fixture
def proxied(env: Env, pki: Pki) -> Iterator[LiveServer]:
    """Plain HTTP behind a proxy at 127.0.0.9 that passes the certificate it verified."""
    env = tls_env(env, pki)
    settings = dataclasses.replace(env.settings, tls_certificate=None, tls_client_ca=None,
                                   trusted_proxies=(ipaddress.ip_network("127.0.0.9/32"),),
                                   client_cert_header="x-ssl-client-cert")
    live = start(Env(settings, env.credentials))
    yield live
    live.stop()


@pytest.mark.parametrize(("source", "who", "status"), [
    pytest.param("127.0.0.9", "alice", 200, id="alice's certificate from the proxy -> alice"),
    pytest.param("127.0.0.9", "stranger", 401, id="a stranger's from the proxy -> 401"),
    pytest.param("127.0.0.6", "alice", 401,
                 id="alice's certificate header from a non-proxy -> ignored, 401"),
])
def test_a_certificate_header_is_believed_only_from_the_proxy(pki: Pki, proxied, caplog,
                                                              source, who, status):
    header = {"X-SSL-Client-Cert": quote(pki.pem(who))}  # as $ssl_client_escaped_cert
    with client_from(source) as client:
        response = client.get(proxied.collection(OPEN), headers=header)
    assert response.status_code == status, response.text
    ignored = "ignored the x-ssl-client-cert header from 127.0.0.6" in caplog.text
    assert ignored == (source == "127.0.0.6")


def test_an_empty_certificate_header_from_the_proxy_leaves_other_credentials(env: Env,
                                                                             proxied):
    with client_from("127.0.0.9") as proxy:
        response = proxy.get(proxied.collection(OPEN),
                             headers={"X-SSL-Client-Cert": "", **bearer(env, "alice")})
        assert response.status_code == 200
        assert proxy.get(proxied.collection(OPEN),
                         headers={"X-SSL-Client-Cert": ""}).status_code == 401


# -- settings, flags and the partners file -------------------------------------------------

def test_certificates_are_given_to_partners_on_the_command_line(env: Env, pki: Pki, capsys):
    config = str(env.settings.partners_file.parent / "config.yaml")
    fingerprint = pki.fingerprint("bob")
    assert main(["--config", config, "partners", "set", "alice", "--cert-subject",
                 f" CN={ALICE_SUBJECT_CN},O=Alice CERT "]) == 0
    assert main(["--config", config, "partners", "set", "bob", "--cert-fingerprint",
                 fingerprint.upper()]) == 0
    document = yaml.safe_load(env.settings.partners_file.read_text())
    by_id = {p["id"]: p for p in document["partners"]}
    assert by_id["alice"]["certificates"] == [
        {"subject": f"CN={ALICE_SUBJECT_CN},O=Alice CERT"}]
    assert by_id["bob"]["certificates"] == [{"sha256": fingerprint}]
    before = env.settings.partners_file.read_bytes()
    for argv, problem in (
            (["set", "carol", "--cert-fingerprint", fingerprint], "given to both"),
            (["set", "carol", "--cert-subject", "not a subject"], "RFC 4514"),
            (["set", "carol", "--cert-fingerprint", "abc"], "SHA-256")):
        assert main(["--config", config, "partners", *argv]) == 2
        assert problem in capsys.readouterr().err
    assert env.settings.partners_file.read_bytes() == before
    assert main(["--config", config, "partners", "set", "bob", "--no-cert"]) == 0
    assert "certificates" not in {p["id"]: p for p in yaml.safe_load(
        env.settings.partners_file.read_text())["partners"]}["bob"]


@pytest.mark.parametrize(("environ", "expected"), [
    pytest.param({}, {"proxy_headers": False}, id="plain HTTP, uvicorn's proxy handling off"),
    pytest.param({"EXCHANGE_TLS_CERTIFICATE": "/etc/x/server.pem"},
                 {"ssl_certfile": "/etc/x/server.pem", "ssl_keyfile": None},
                 id="TLS without client certificates"),
    pytest.param({"EXCHANGE_TLS_CERTIFICATE": "/etc/x/server.pem",
                  "EXCHANGE_TLS_KEY": "/etc/x/server.key",
                  "EXCHANGE_TLS_CLIENT_CA": "/etc/x/ca.pem"},
                 {"ssl_keyfile": "/etc/x/server.key", "ssl_ca_certs": "/etc/x/ca.pem",
                  "ssl_cert_reqs": ssl.CERT_OPTIONAL, "http": TLSClientCertProtocol},
                 id="client CA: certificates optional by default"),
    pytest.param({"EXCHANGE_TLS_CERTIFICATE": "/etc/x/server.pem",
                  "EXCHANGE_TLS_CLIENT_CA": "/etc/x/ca.pem",
                  "EXCHANGE_TLS_CLIENT_CERTIFICATE": "required"},
                 {"ssl_cert_reqs": ssl.CERT_REQUIRED}, id="client certificates required"),
])
def test_tls_settings_become_uvicorn_options(environ, expected):
    options: dict[str, Any] = uvicorn_options(load_settings(None, environ=environ))
    assert {key: options.get(key) for key in expected} == expected


@pytest.mark.parametrize(("environ", "problem"), [
    pytest.param({"EXCHANGE_TLS_CLIENT_CA": "/etc/x/ca.pem"}, "need tls_certificate",
                 id="a client CA without a server certificate"),
    pytest.param({"EXCHANGE_CLIENT_CERT_HEADER": "X-SSL-Client-Cert"}, "trusted_proxies",
                 id="a certificate header without trusted proxies"),
    pytest.param({"EXCHANGE_TLS_CERTIFICATE": "/x.pem",
                  "EXCHANGE_TLS_CLIENT_CERTIFICATE": "sometimes"}, "tls_client_certificate",
                 id="neither optional nor required"),
])
def test_inconsistent_tls_settings_refuse_to_start(environ, problem):
    with pytest.raises(ConfigError, match=problem):
        load_settings(None, environ=environ)


def test_serve_flags_reach_the_settings_of_every_worker(tmp_path: Path, monkeypatch):
    """`serve` passes its TLS flags through EXCHANGE_* variables (each worker process reads
    its settings from the environment), as absolute paths."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr("exchange.server.serve",
                        lambda settings, **kwargs: seen.update(settings=settings))
    (tmp_path / "partners.yaml").write_text("partners: []\n")
    monkeypatch.chdir(tmp_path)
    # Set first, so that what `serve` sets is undone after the test.
    for name, value in (("CERTIFICATE", ""), ("KEY", ""), ("CLIENT_CA", ""),
                        ("CLIENT_CERTIFICATE", "optional")):
        monkeypatch.setenv(f"EXCHANGE_TLS_{name}", value)
    assert main(["serve", "--tls-certificate", "server.pem", "--tls-key", "server.key",
                 "--tls-client-ca", "ca.pem", "--tls-client-certificate", "required"]) == 0
    settings = seen["settings"]
    assert settings.tls_certificate == tmp_path / "server.pem"
    assert settings.tls_key == tmp_path / "server.key"
    assert settings.tls_client_ca == tmp_path / "ca.pem"
    assert settings.tls_client_certificate == "required"
