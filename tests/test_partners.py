"""Partners: the management commands, the file they keep, authentication and access."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exchange.cli import main
from exchange.collections import CollectionDef
from exchange.errors import ConfigError, Unauthenticated
from exchange.model import AMBER, AMBER_STRICT, CLEAR, GREEN, RED
from exchange.policy import partners
from exchange.policy.access import Access, decide
from exchange.policy.auth import Authenticator
from exchange.policy.partners import Credentials, Partner, token_digest


@pytest.fixture(autouse=True)
def _no_exchange_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read EXCHANGE_* settings; the tests' environment must not leak in."""
    for name in list(os.environ):
        if name.startswith("EXCHANGE_") and name != "EXCHANGE_SCHEMAS_DIR":
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def printed_credentials(out: str) -> Credentials:
    fields = dict(re.findall(r"^(partner|password|token):\s+(\S+)$", out, re.MULTILINE))
    return Credentials(fields["partner"], fields["password"], fields["token"])


def basic(partner_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{partner_id}:{password}".encode()).decode()


def bearer(token: str) -> str:
    return f"Bearer {token}"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Credentials]]:
    """A partners file with two partners, hashed once for the module."""
    path = tmp_path_factory.mktemp("partners") / "partners.yaml"
    made = {"acme": partners.add(path, "acme", "ACME CERT", ("cert", "eu-le")),
            "beta": partners.add(path, "beta", "Beta Police", ())}
    return path, made


@pytest.fixture
def file(tmp_path: Path, template: tuple[Path, dict[str, Credentials]]) -> Path:
    path = tmp_path / "partners.yaml"
    shutil.copy(template[0], path)
    return path


@pytest.fixture
def creds(template: tuple[Path, dict[str, Credentials]]) -> dict[str, Credentials]:
    return template[1]


@pytest.fixture
def auth(file: Path) -> Iterator[Authenticator]:
    yield Authenticator(file, reload_seconds=0)


# -- the commands and the file ------------------------------------------------------------

def test_add_prints_secrets_once_and_stores_only_hashes(tmp_path: Path, capsys):
    path = tmp_path / "etc" / "partners.yaml"
    code, out, _ = run(capsys, "partners", "--file", str(path), "add", "europol-ec3",
                       "--name", "Europol EC3", "--group", "eu-le", "--group", "analysts")
    assert code == 0
    secrets = printed_credentials(out)
    assert secrets.partner == "europol-ec3"
    assert secrets.token.startswith("txe_") and len(secrets.token) > 40
    assert len(secrets.password) >= 20
    assert "shown once" in out

    text = path.read_text()
    assert secrets.password not in text
    assert secrets.token not in text
    assert secrets.token.removeprefix("txe_") not in text
    document = yaml.safe_load(text)
    [item] = document["partners"]
    assert item["id"] == "europol-ec3" and item["name"] == "Europol EC3"
    assert item["groups"] == ["eu-le", "analysts"]
    assert item["password_hash"].startswith("$argon2id$")
    assert partners.hasher.verify(item["password_hash"], secrets.password)
    assert [t["sha256"] for t in item["tokens"]] == [token_digest(secrets.token)]
    assert re.fullmatch(r"identity--[0-9a-f-]{36}", item["identity"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # hashes are still secrets

    auth = Authenticator(path)
    assert auth.authenticate(basic(secrets.partner, secrets.password)).id == "europol-ec3"
    assert auth.authenticate(bearer(secrets.token)).groups == ("eu-le", "analysts")


def test_list_shows_partners_but_no_secrets(file: Path, capsys):
    code, out, _ = run(capsys, "partners", "--file", str(file), "list")
    assert code == 0
    header, *rows = [line.split("\t") for line in out.splitlines()]
    assert header[:4] == ["id", "name", "groups", "clearance"]
    assert [row[:4] for row in rows] == [["acme", "ACME CERT", "cert,eu-le", "clear"],
                                         ["beta", "Beta Police", "", "clear"]]
    assert "argon2" not in out and not re.search(r"[0-9a-f]{64}", out)


@pytest.mark.parametrize("steps, expected", [
    pytest.param([], "no", id="a new partner is no administrator"),
    pytest.param([["set", "gamma", "--admin"]], "yes", id="set --admin makes one"),
    pytest.param([["set", "gamma", "--admin"], ["set", "gamma", "--no-admin"]], "no",
                 id="set --no-admin unmakes one"),
    pytest.param([["set", "gamma", "--name", "Gamma CERT"]], "no",
                 id="another change leaves it as it was"),
])
def test_administrators_are_made_on_the_command_line_and_listed(
        file: Path, capsys, steps: list[list[str]], expected: str):
    code, _, _ = run(capsys, "partners", "--file", str(file), "add", "gamma", "--name", "G")
    assert code == 0
    for step in steps:
        assert run(capsys, "partners", "--file", str(file), *step)[0] == 0
    _, out, _ = run(capsys, "partners", "--file", str(file), "list")
    header, *rows = [line.split("\t") for line in out.splitlines()]
    assert header[-1] == "admin"
    assert [row[-1] for row in rows if row[0] == "gamma"] == [expected]
    assert partners.load(file)["gamma"].admin is (expected == "yes")


def test_add_admin_writes_the_attribute_to_the_file(file: Path, capsys):
    code, out, _ = run(capsys, "partners", "--file", str(file), "add", "root", "--name", "Root",
                       "--admin")
    assert code == 0 and "administrator: yes" in out
    [item] = [p for p in yaml.safe_load(file.read_text())["partners"] if p["id"] == "root"]
    assert item["admin"] is True
    assert "admin" not in next(p for p in yaml.safe_load(file.read_text())["partners"]
                               if p["id"] == "acme")


def test_add_refuses_an_existing_or_malformed_partner(file: Path, capsys):
    before = file.read_bytes()
    code, _, err = run(capsys, "partners", "--file", str(file), "add", "acme", "--name", "Again")
    assert code == 2 and "exists" in err and "partners rotate" in err
    code, _, err = run(capsys, "partners", "--file", str(file), "add", "Not Valid", "--name", "X")
    assert code == 2 and "partner id" in err
    code, _, err = run(capsys, "partners", "--file", str(file), "add", "gamma", "--name", "G",
                       "--identity", "not-an-identity")
    assert code == 2 and str(file) in err and "identity" in err
    assert file.read_bytes() == before  # nothing half-written


def test_rotate_and_remove_commands(file: Path, capsys, creds):
    code, out, _ = run(capsys, "partners", "--file", str(file), "rotate", "acme")
    assert code == 0
    fresh = printed_credentials(out)
    assert fresh.partner == "acme"
    assert fresh.password != creds["acme"].password and fresh.token != creds["acme"].token
    text = file.read_text()
    assert fresh.password not in text and fresh.token not in text
    assert token_digest(fresh.token) in text
    assert token_digest(creds["acme"].token) not in text
    acme = partners.load(file)["acme"]
    assert acme.groups == ("cert", "eu-le") and acme.name == "ACME CERT"  # only secrets change

    code, out, _ = run(capsys, "partners", "--file", str(file), "remove", "beta")
    assert code == 0 and "removed beta" in out
    assert list(partners.load(file)) == ["acme"]
    code, _, err = run(capsys, "partners", "--file", str(file), "remove", "beta")
    assert code == 2 and "no partner 'beta'" in err
    code, _, err = run(capsys, "partners", "--file", str(file), "rotate", "nobody")
    assert code == 2 and "no partner 'nobody'" in err


def test_commands_use_the_partners_file_from_the_config(tmp_path: Path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("partners_file: secrets/partners.yaml\n")
    code, _, _ = run(capsys, "--config", str(config), "partners", "add", "delta", "--name", "D")
    assert code == 0
    assert list(partners.load(tmp_path / "secrets" / "partners.yaml")) == ["delta"]


# -- authentication ------------------------------------------------------------------------

def test_basic_and_bearer_authenticate(auth: Authenticator, creds):
    acme = auth.authenticate(basic("acme", creds["acme"].password))
    assert isinstance(acme, Partner) and acme.id == "acme" and acme.groups == ("cert", "eu-le")
    assert auth.authenticate(basic("acme", creds["acme"].password)) == acme  # remembered
    assert auth.authenticate(bearer(creds["beta"].token)).id == "beta"
    assert auth.authenticate("bearer  " + creds["beta"].token).id == "beta"  # scheme any case


@pytest.mark.parametrize(("header", "message"), [
    pytest.param(None, "send HTTP Basic", id="none"),
    pytest.param("", "send HTTP Basic", id="empty"),
    pytest.param("Digest abc", "unsupported", id="other-scheme"),
    pytest.param("Basic %%%", "malformed", id="not-base64"),
    pytest.param("Basic " + base64.b64encode(b"acme").decode(), "malformed", id="no-colon"),
    pytest.param("Bearer txe_not-a-real-token", "unknown or revoked", id="unknown-token"),
    pytest.param("Bearer ", "unknown or revoked", id="empty-token"),
])
def test_malformed_or_unknown_credentials_are_refused(auth: Authenticator, header, message):
    with pytest.raises(Unauthenticated, match=message):
        auth.authenticate(header)


def test_wrong_password_or_unknown_partner_is_refused(auth: Authenticator, creds):
    with pytest.raises(Unauthenticated, match="wrong partner id or password"):
        auth.authenticate(basic("acme", creds["beta"].password))
    with pytest.raises(Unauthenticated, match="wrong partner id or password"):
        auth.authenticate(basic("nobody", creds["acme"].password))
    with pytest.raises(Unauthenticated, match="wrong partner id or password"):
        auth.authenticate(basic("beta", creds["acme"].token))  # not another partner's password
    assert auth.authenticate(basic("acme", creds["acme"].token)).id == "acme"  # its own: yes


def test_the_remembered_password_cache_never_holds_the_plaintext(auth: Authenticator, creds):
    password = creds["acme"].password
    header = basic("acme", password)
    auth.authenticate(header)
    assert len(auth._remembered) == 1
    [(key, value)] = auth._remembered.items()
    assert isinstance(key, bytes) and len(key) == 32  # an HMAC digest
    for secret in (password, header, header.removeprefix("Basic "), f"acme:{password}"):
        assert secret.encode() not in key
        assert secret not in repr(value)
    assert value[0] == "acme"
    assert value[1] == partners.load(auth.path)["acme"].password_hash
    # Keyed per process: another Authenticator derives another key for the same credential.
    other = Authenticator(auth.path)
    other.authenticate(header)
    assert set(other._remembered) != set(auth._remembered)


def test_rotation_stops_old_credentials_at_once(auth: Authenticator, file: Path, creds):
    old = creds["acme"]
    assert auth.authenticate(basic("acme", old.password)).id == "acme"  # now remembered
    assert auth.authenticate(bearer(old.token)).id == "acme"
    fresh = partners.rotate(file, "acme")
    with pytest.raises(Unauthenticated):
        auth.authenticate(basic("acme", old.password))
    with pytest.raises(Unauthenticated, match="revoked"):
        auth.authenticate(bearer(old.token))
    assert auth.authenticate(basic("acme", fresh.password)).id == "acme"
    assert auth.authenticate(bearer(fresh.token)).id == "acme"
    assert auth.authenticate(bearer(creds["beta"].token)).id == "beta"  # others unaffected


def test_rotation_is_noticed_even_when_the_file_keeps_its_mtime(auth: Authenticator,
                                                                  file: Path, creds):
    """Coarse timestamps (1 s on some filesystems) or a copy that keeps the old mtime."""
    old = creds["acme"]
    before = file.stat()
    auth.authenticate(basic("acme", old.password))
    partners.rotate(file, "acme")
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(Unauthenticated):
        auth.authenticate(basic("acme", old.password))
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(old.token))


def test_removal_stops_credentials_at_once(auth: Authenticator, file: Path, creds):
    old = creds["beta"]
    assert auth.authenticate(basic("beta", old.password)).id == "beta"
    partners.remove(file, "beta")
    with pytest.raises(Unauthenticated):
        auth.authenticate(basic("beta", old.password))
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(old.token))
    assert auth.partner("beta") is None
    assert auth.authenticate(bearer(creds["acme"].token)).id == "acme"


def test_changes_are_noticed_within_the_reload_interval(file: Path, creds):
    auth = Authenticator(file, reload_seconds=3600)
    assert auth.authenticate(bearer(creds["beta"].token)).id == "beta"
    partners.remove(file, "beta")
    # Checked at most once per interval: until then the last loaded file is used ...
    assert auth.authenticate(bearer(creds["beta"].token)).id == "beta"
    auth.reload_seconds = 0  # ... and as soon as it is due, the change applies.
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(creds["beta"].token))


def test_no_partners_file_means_nobody_gets_in(tmp_path: Path, creds):
    auth = Authenticator(tmp_path / "missing.yaml", reload_seconds=0)
    with pytest.raises(Unauthenticated):
        auth.authenticate(bearer(creds["acme"].token))


# -- access decisions ----------------------------------------------------------------------

def collection(read: set[str], write: set[str], **policy: Any) -> CollectionDef:
    return CollectionDef(id="6b2f4c1e-5a43-4d6f-9a0c-2f1e8d7b3c41", api_root="cybercrime",
                         title="T", description="", alias=None, media_types=(),
                         readers=frozenset(read), writers=frozenset(write), default_rank=AMBER,
                         **policy)


IDENTITY = "identity--1b9c3e4a-4a5f-4a6b-8c7d-9e0f1a2b3c4d"
ACME = Partner(id="acme", name="ACME", identity=IDENTITY, groups=("cert", "eu-le"))


@pytest.mark.parametrize(("read", "write", "expected"), [
    pytest.param({"group:cert"}, {"group:analysts"}, Access(True, False, CLEAR),
                 id="reads-by-group"),
    pytest.param({"group:analysts"}, {"group:eu-le"}, Access(False, True, CLEAR),
                 id="writes-by-group"),
    pytest.param({"partner:acme"}, {"partner:acme"}, Access(True, True, CLEAR),
                 id="by-partner"),
    pytest.param({"partner:beta", "group:us-le"}, {"group:analysts"},
                 Access(False, False, CLEAR), id="neither"),
    pytest.param(set(), set(), Access(False, False, CLEAR), id="nobody"),
    pytest.param({"group:acme"}, {"partner:cert"}, Access(False, False, CLEAR),
                 id="groups-and-partners-do-not-mix"),
])
def test_access_is_decided_by_group_and_by_partner(read, write, expected):
    access = decide(ACME, collection(read, write))
    assert access == expected
    assert access.visible == (expected.read or expected.write)


@pytest.mark.parametrize(("clearance", "overrides", "red", "expected"), [
    pytest.param(AMBER, {}, set(), AMBER, id="its own clearance"),
    pytest.param(CLEAR, {}, set(), CLEAR, id="none set: clear"),
    pytest.param(GREEN, {"group:cert": AMBER}, set(), AMBER, id="raised for its group"),
    pytest.param(RED, {"group:cert": GREEN}, {"partner:acme"}, GREEN,
                 id="lowered for its group"),
    pytest.param(GREEN, {"group:cert": AMBER, "group:eu-le": AMBER_STRICT}, set(),
                 AMBER_STRICT, id="the highest of its groups"),
    pytest.param(GREEN, {"group:cert": RED, "partner:acme": GREEN}, {"group:cert"}, GREEN,
                 id="a partner entry over its groups"),
    pytest.param(RED, {}, set(), AMBER_STRICT, id="red but not a RED recipient"),
    pytest.param(RED, {}, {"group:eu-le"}, RED, id="a RED recipient by group"),
    pytest.param(AMBER, {}, {"partner:acme"}, AMBER, id="a RED recipient needs clearance red"),
    pytest.param(AMBER, {"partner:acme": RED}, {"partner:acme"}, RED,
                 id="clearance red for this collection"),
])
def test_the_rank_a_partner_receives(clearance, overrides, red, expected):
    acme = dataclasses.replace(ACME, clearance=clearance)
    found = collection({"group:cert"}, set(), clearances=overrides,
                       red_recipients=frozenset(red))
    assert decide(acme, found).max_rank == expected


def test_clearance_and_relays_are_set_from_the_command_line(tmp_path: Path, capsys):
    path = tmp_path / "partners.yaml"
    relay = "identity--0c4f7a2e-8f1b-4c3d-9e5a-6b7c8d9e0f1a"
    assert main(["partners", "--file", str(path), "add", "acme", "--name", "ACME",
                 "--clearance", "amber"]) == 0
    assert partners.load(path)["acme"].clearance == AMBER
    assert main(["partners", "--file", str(path), "set", "acme", "--clearance",
                 "amber+strict", "--relay-for", relay]) == 0
    acme = partners.load(path)["acme"]
    assert (acme.clearance, acme.relay_for) == (AMBER_STRICT, frozenset({relay}))
    assert main(["partners", "--file", str(path), "set", "acme", "--no-relay"]) == 0
    assert partners.load(path)["acme"].relay_for == frozenset()
    assert partners.load(path)["acme"].clearance == AMBER_STRICT  # unchanged
    assert main(["partners", "--file", str(path), "list"]) == 0
    assert "acme\tACME\t\tamber+strict" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["partners", "--file", str(path), "set", "acme", "--clearance", "top"])
    assert main(["partners", "--file", str(path), "set", "acme", "--relay-for", "bob"]) == 2


def test_access_follows_the_partners_file(file: Path, auth: Authenticator, creds):
    analysts_only = collection({"group:analysts"}, {"group:analysts"})
    acme = auth.authenticate(bearer(creds["acme"].token))
    assert not decide(acme, analysts_only).visible
    document = yaml.safe_load(file.read_text())
    document["partners"][0]["groups"].append("analysts")
    file.write_text(yaml.safe_dump(document))
    acme = auth.authenticate(bearer(creds["acme"].token))
    assert decide(acme, analysts_only) == Access(True, True, CLEAR)


# -- a malformed partners file -------------------------------------------------------------

@pytest.mark.parametrize(("content", "problem"), [
    pytest.param("partners: [\n", "not valid YAML", id="yaml-syntax"),
    pytest.param("- acme\n", "is not of type 'object'", id="a-list"),
    pytest.param("partners:\n  - id: acme\n", "'name' is a required property", id="no-name"),
    pytest.param("partners:\n  - {id: acme, name: A, identity: identity--1b9c3e4a-4a5f-4a6b-"
                 "8c7d-9e0f1a2b3c4d, password: hunter2}\n", "partners[0].password: unknown key",
                 id="plaintext-password"),
    pytest.param("partners:\n  - {id: acme, name: A, identity: identity--1b9c3e4a-4a5f-4a6b-"
                 "8c7d-9e0f1a2b3c4d, password_hash: hunter2}\n", "password_hash",
                 id="hash-not-argon2"),
    pytest.param("partners:\n  - {id: acme, name: A, identity: identity--1b9c3e4a-4a5f-4a6b-"
                 "8c7d-9e0f1a2b3c4d, tokens: [{sha256: txe_abc}]}\n", "sha256",
                 id="token-not-a-digest"),
    pytest.param(f"partners:\n- {{id: acme, name: A, identity: {IDENTITY}}}\n"
                 f"- {{id: acme, name: B, identity: {IDENTITY}}}\n",
                 "'acme' is listed twice", id="duplicate-id"),
])
def test_a_malformed_partners_file_is_a_config_error_naming_the_file(tmp_path: Path, capsys,
                                                                     content, problem):
    path = tmp_path / "partners.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as raised:
        partners.load(path)
    assert str(path) in raised.value.description
    assert problem in raised.value.description
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        Authenticator(path)
    code, _, err = run(capsys, "partners", "--file", str(path), "list")
    assert code == 2 and str(path) in err


def test_a_broken_partners_file_while_serving_keeps_the_last_good_partners(
        auth: Authenticator, file: Path, creds, caplog):
    file.write_text("partners: [this is not a partner]\n")
    os.utime(file, ns=(1, 1))
    partner = auth.authenticate(bearer(creds["acme"].token))
    assert partner.id == "acme"
    assert "keeping the partners loaded before" in caplog.text
