"""A peer reached over mutual TLS: the node pulls with a client certificate (no password),
trusting the peer's CA from `ca_file`; without the certificate the peer's handshake refuses it
and the run ends with an error, the bookmark where it was. Certificates are made by the test
(trustme); the peer is a second node of this project served as `serve --tls-*` serves."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import ssl
from pathlib import Path

import certifi
import pytest
import trustme

from exchange.config import load_settings
from exchange.policy import partners
from tests.conftest import Env
from tests.serving import start
from tests.test_federation_peers import LOCAL, ROOT, by_key, identity, indicator, make_node


def fingerprint(leaf: trustme.LeafCert) -> str:
    pem = leaf.cert_chain_pems[0].bytes().decode()
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def test_a_pull_over_mutual_tls_with_a_client_certificate(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    # Set on many hosts, and by requests' rules it would replace the peer's own CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    ca = trustme.CA(organization_name="Partners CA")
    server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("node.partners.example")
    files = tmp_path / "pki"
    files.mkdir()
    for name, blob in (("ca.pem", ca.cert_pem), ("server.pem",
                       server.private_key_and_cert_chain_pem),
                       ("node.crt", client.cert_chain_pems[0]),
                       ("node.key", client.private_key_pem)):
        blob.write_to_path(files / name)

    source = make_node(tmp_path / "source", "puller", relays=())
    objects = [indicator(f"tls-{n}", identity("analyst")) for n in range(30)]
    source.load(objects)
    partners.update(source.directory / "partners.yaml", "puller",
                    cert_fingerprints=(fingerprint(client),))
    settings = dataclasses.replace(
        load_settings(source.config, environ={}), tls_certificate=files / "server.pem",
        tls_client_ca=files / "ca.pem", tls_client_certificate="required")
    live = start(Env(settings, {}))
    try:
        node = make_node(tmp_path / "node", "source", relays=(identity("analyst"),))
        peer = {"name": "source", "local_collection": "shared", "direction": "pull",
                "url": f"{live.url}{ROOT}/collections/{LOCAL}/", "page_size": 10,
                "ca_file": str(files / "ca.pem")}
        node.peers({**peer, "auth": {"cert_file": str(files / "node.crt"),
                                      "key_file": str(files / "node.key")}})
        run = node.run("source", "pull")
        assert (run.error, run.objects) == ("", 30)
        assert node.stored() == by_key(objects)

        # Without its certificate the node is refused at the handshake: an error, nothing lost.
        source.load([indicator("tls-later", identity("analyst"))])
        bookmark = node.state("source", "pull")["bookmark"]
        node.peers({**peer, "auth": {"token_env": "NO_SUCH_TOKEN"}})
        refused = node.run("source", "pull")
        assert refused.error and refused.objects == 0
        assert node.state("source", "pull")["bookmark"] == bookmark
    finally:
        live.stop()


@pytest.fixture(autouse=True)
def _no_exchange_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("EXCHANGE_") and name != "EXCHANGE_SCHEMAS_DIR":
            monkeypatch.delenv(name)
