"""Shadowserver reports: each report type's modelling and its hostile rows."""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import stix2
from _pytest.logging import LogCaptureFixture

from exchange import stix_extensions as ext
from exchange.normalize import PARSERS, Produced, Reject, build
from exchange.normalize import values as v
from tests.fixtures import shadowserver as gen
from tests.fixtures.common import Sample
from tests.normalizing import HOSTS, preamble_only, run

# -- Shadowserver event4_sinkhole ---------------------------------------------------------------

SINKHOLE = "shadowserver-event4-sinkhole"


def test_sinkhole_rows_become_observed_data_and_sightings(samples: dict[str, list[Sample]]):
    produced, rejects, _ = run(SINKHOLE, samples[SINKHOLE][0].path)
    objects = [p.obj for p in produced]
    by_id = {o["id"]: o for o in objects}
    source = objects[0]["id"]
    assert not [o for o in objects if o["type"] == "indicator"]  # never a victim indicator
    sightings = [o for o in objects if o["type"] == "sighting"]
    assert len(sightings) == samples[SINKHOLE][0].good
    for sighting in sightings:
        assert sighting["where_sighted_refs"] == [source]
        assert by_id[sighting["sighting_of_ref"]]["type"] == "malware"
        observed = by_id[sighting["observed_data_refs"][0]]
        assert ext.data_subject(observed) == "victim"
        assert ext.fields_of(observed, "shadowserver")["x_custom_note"].startswith("extra-")
        assert ext.fields_of(observed, "shadowserver")["src_hostname"].endswith(".victim.example")
        traffic = next(by_id[r] for r in observed["object_refs"]
                       if r.startswith("network-traffic--"))
        assert by_id[traffic["src_ref"]]["type"] in ("ipv4-addr", "ipv6-addr")
        assert observed["first_observed"] == sighting["created"]
        assert traffic["start"] == v.observable_timestamp(sighting["created"])
        assert traffic["protocols"][0] in ("ipv4", "ipv6")
    reasons = [r.reason for r in rejects]
    for (fragment, _), reason in zip(gen.HOSTILE_SINKHOLE, reasons, strict=True):
        assert fragment in reason


def test_sinkhole_header_without_required_columns_is_one_reject(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("time,ip\n2026-11-20 00:00:00,192.0.2.1\n")
    produced, rejects, _ = run(SINKHOLE, path)
    assert [r.reason for r in rejects] == ["header lacks required columns: timestamp, src_ip"]
    assert preamble_only(produced)


def test_sinkhole_wrong_encoding_and_empty_files_do_not_crash(tmp_path: Path):
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(gen.SINKHOLE_HEADER.encode("utf-16"))
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "header" in run(SINKHOLE, utf16)[1][0].reason
    assert run(SINKHOLE, empty)[1][0].reason == "empty file: no header"


# -- shared checks for the new report types -----------------------------------------------------

HTTP = "shadowserver-event4-sinkhole-http"
HONEYPOT = "shadowserver-event4-honeypot-brute-force"
WEBSITE = "shadowserver-compromised-website"
MALWARE_URL = "shadowserver-malware-url"
BLOCKLIST = "shadowserver-blocklist"
SCAN = "shadowserver-scan"
VICTIM_FORMATS = (HTTP, HONEYPOT, WEBSITE, BLOCKLIST, SCAN)


@dataclass
class Sighted:
    """One sighting with what it points at: the sighted SDO, the observed-data and the
    observables by type."""

    sighting: dict[str, Any]
    target: dict[str, Any]
    observed: dict[str, Any]
    observables: dict[str, list[dict[str, Any]]]

    @property
    def extra(self) -> dict[str, str]:
        return ext.fields_of(self.observed, "shadowserver")

    def one(self, kind: str) -> dict[str, Any]:
        [found] = self.observables[kind]
        return found


def _sighted(name: str, path: Path, settings: dict[str, str] | None = None,
             ) -> tuple[list[Sighted], list[Reject]]:
    produced, rejects, _ = run(name, path, settings=settings)
    by_id = {p.obj["id"]: p.obj for p in produced}
    found = []
    for sighting in (p.obj for p in produced if p.obj["type"] == "sighting"):
        observed = by_id[sighting["observed_data_refs"][0]]
        observables: dict[str, list[dict[str, Any]]] = {}
        for ref in observed["object_refs"]:
            observables.setdefault(by_id[ref]["type"], []).append(by_id[ref])
        found.append(Sighted(sighting, by_id[sighting["sighting_of_ref"]], observed, observables))
    return found, rejects


def _csv(path: Path, header: str, *rows: str) -> Path:
    path.write_text("\n".join((header, *rows)) + "\n")
    return path


@pytest.mark.parametrize("name", VICTIM_FORMATS)
def test_victims_are_observed_data_and_sightings_never_indicators(
        name: str, samples: dict[str, list[Sample]]):
    for sample in samples[name]:
        produced, _, _ = run(name, sample.path)
        victims = {ref for p in produced if ext.data_subject(p.obj) == "victim"
                   for ref in p.obj["object_refs"]}
        patterns = {build.pattern(p.obj) for p in produced
                    if p.obj["id"] in victims and p.obj["type"] in HOSTS}
        suspects = [p.obj for p in produced if p.obj["type"] in ("indicator", "infrastructure")]
        assert all(ext.data_subject(o) == "suspect-infrastructure" for o in suspects)
        assert not [o for o in suspects if o.get("pattern") in patterns]
        found, _ = _sighted(name, sample.path)
        assert len(found) == sample.good  # one finding per row in these samples
        source = produced[0].obj["id"]
        for item in found:
            assert item.sighting["where_sighted_refs"] == [source]
            assert ext.data_subject(item.observed) == "victim"
            assert item.target["type"] in ("malware", "attack-pattern", "vulnerability")
            assert item.sighting["first_seen"] == item.observed["first_observed"]


@pytest.mark.parametrize("name, missing", [
    pytest.param(HTTP, "timestamp, src_ip", id="sinkhole-http"),
    pytest.param(HONEYPOT, "timestamp, src_ip", id="honeypot-brute-force"),
    pytest.param(WEBSITE, "timestamp, ip", id="compromised-website"),
    pytest.param(MALWARE_URL, "timestamp, url", id="malware-url"),
    pytest.param(BLOCKLIST, "timestamp, ip", id="blocklist"),
    pytest.param(SCAN, "timestamp, ip", id="scan"),
])
def test_a_header_without_required_columns_is_one_row_1_reject(name: str, missing: str,
                                                                tmp_path: Path):
    path = _csv(tmp_path / "bad.csv", "time,address", "2026-11-20 00:00:00,192.0.2.1")
    produced, rejects, _ = run(name, path)
    assert [(r.row, r.reason) for r in rejects] == [(1, f"header lacks required columns: "
                                                        f"{missing}")]
    assert preamble_only(produced)


@pytest.mark.parametrize("name, hostile", [
    pytest.param(HTTP, gen.HOSTILE_SINKHOLE_HTTP, id="sinkhole-http"),
    pytest.param(HONEYPOT, gen.hostile_honeypot(7), id="honeypot-brute-force"),
    pytest.param(WEBSITE, gen.HOSTILE_WEBSITE, id="compromised-website"),
    pytest.param(MALWARE_URL, gen.HOSTILE_MALWARE_URL, id="malware-url"),
    pytest.param(BLOCKLIST, gen.HOSTILE_BLOCKLIST, id="blocklist"),
    pytest.param(SCAN, gen.HOSTILE_SCAN, id="scan"),
])
def test_hostile_rows_are_rejected_with_their_reason(name: str, hostile: list[tuple[str, bytes]],
                                                     samples: dict[str, list[Sample]]):
    _, rejects, _ = run(name, samples[name][0].path)
    for (fragment, _), reject in zip(hostile, rejects, strict=True):
        assert fragment in reject.reason and reject.row > 1


# -- event4_sinkhole_http -----------------------------------------------------------------------

def test_sinkhole_http_requests_become_the_http_request_extension(
        samples: dict[str, list[Sample]]):
    found, _ = _sighted(HTTP, samples[HTTP][0].path)
    with_request = [f for f in found if "extensions" in f.one("network-traffic")]
    assert 0 < len(with_request) < len(found)
    for item in with_request:
        traffic = item.one("network-traffic")
        request = traffic["extensions"]["http-request-ext"]
        assert request["request_method"] in ("get", "post")
        assert request["request_value"].startswith("/gate")
        assert request["request_version"] in ("http/1.1", "http/1.0")
        assert request["request_header"]["Host"][0].endswith(".sinkholed.example")
        assert all(isinstance(values, list) for values in request["request_header"].values())
        assert "http" in traffic["protocols"] and "http_url" not in item.extra
        assert item.target["type"] == "malware"
        # the deterministic id is the one stix2 computes for the same facts
        facts = {k: x for k, x in traffic.items()
                 if k not in ("id", "type", "spec_version", "object_marking_refs")}
        assert stix2.NetworkTraffic(**facts).id == traffic["id"]
    for item in found:
        if item not in with_request:  # a bare path, no method: STIX needs one, so kept as is
            assert item.extra["http_url"].startswith("/gate")
            assert item.extra["http_host"].endswith(".sinkholed.example")


def test_sinkhole_http_method_column_and_null_referer(tmp_path: Path):
    header = gen.SINKHOLE_HTTP_HEADER + ",http_method"
    base = "2026-11-20 01:00:00,tcp,192.0.2.5,1234,,,,,,,,,,,203.0.113.9,80,,,,,,,,,,emotet,,,,"
    path = _csv(tmp_path / "event4_sinkhole_http.csv", header,
                base + ",/a?b=1,c2.example,Agent/1.0,,,null,POST",
                base + ",GET /x HTTP/1.1,c2.example,,,,,",
                base + ",/y,c2.example,,,,,G E T")
    found, rejects = _sighted(HTTP, path)
    requests = [f.one("network-traffic")["extensions"]["http-request-ext"] for f in found]
    assert requests == [
        {"request_method": "post", "request_value": "/a?b=1",
         "request_header": {"Host": ["c2.example"], "User-Agent": ["Agent/1.0"]}},
        {"request_method": "get", "request_value": "/x", "request_version": "http/1.1",
         "request_header": {"Host": ["c2.example"]}},
    ]
    assert [r.reason for r in rejects] == ["not an HTTP method: 'G E T'"]


# -- event4_honeypot_brute_force ----------------------------------------------------------------

def test_honeypot_attackers_are_sighted_brute_forcing(samples: dict[str, list[Sample]]):
    found, _ = _sighted(HONEYPOT, samples[HONEYPOT][0].path)
    for item in found:
        assert item.target["type"] == "attack-pattern"
        assert item.target["name"] == "password brute forcing"
        assert {"source_name": "capec", "external_id": "CAPEC-49"} in \
            item.target["external_references"]
        traffic = item.one("network-traffic")
        assert traffic["protocols"][1:] in (["tcp", "ssh"], ["tcp", "telnet"])
        assert traffic["start"] <= traffic["end"]
        assert traffic["start"][:19] == item.observed["first_observed"][:19]
        attacker = next(o for o in item.observables.get("ipv4-addr", []) +
                        item.observables.get("ipv6-addr", []) if o["id"] == traffic["src_ref"])
        assert not attacker["value"].startswith("203.0.113.")  # the honeypots are dst
        assert item.extra["infection"].endswith("-brute-force")
        assert not {k for k in item.extra if "user" in k or "pass" in k}


def _everything(produced: list[Produced], rejects: list[Reject], caplog: LogCaptureFixture,
                ) -> str:
    """All text a run leaves behind: objects, rejects, raw lines kept on records, logs."""
    return "\n".join([
        *(orjson.dumps(p.obj).decode() for p in produced),
        *(p.record.raw for p in produced if p.record is not None),
        *(orjson.dumps(r.as_json()).decode() for r in rejects),
        caplog.text,
    ])


@pytest.mark.parametrize("settings", [
    pytest.param(None, id="usernames dropped (default)"),
    pytest.param({"usernames": "hash", "username_key": "k3y"}, id="usernames hashed"),
])
def test_honeypot_credentials_never_leave_the_parser(settings: dict[str, str] | None,
                                                     samples: dict[str, list[Sample]],
                                                     caplog: LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    for sample, seed in zip(samples[HONEYPOT], (7, 17), strict=True):
        produced, rejects, _ = run(HONEYPOT, sample.path, settings=settings)
        text = _everything(produced, rejects, caplog)
        secrets = gen.honeypot_secrets(seed, sample.good)
        assert not [s for s in secrets if s in text]
        assert "[redacted]" in produced[-2].record.raw  # type: ignore[union-attr]
        for reject in rejects:
            assert "[redacted" in reject.raw


def test_honeypot_usernames_hash_to_a_keyed_hmac(samples: dict[str, list[Sample]]):
    found, _ = _sighted(HONEYPOT, samples[HONEYPOT][0].path,
                        {"usernames": "hash", "username_key": "k3y"})
    digests = {hmac.new(b"k3y", gen.honeypot_username(7, n).encode(), hashlib.sha256)
               .hexdigest() for n in range(samples[HONEYPOT][0].good)}
    assert {f.extra["username_hmac_sha256"] for f in found} == digests
    dropped, _ = _sighted(HONEYPOT, samples[HONEYPOT][0].path)
    assert not [f for f in dropped if "username_hmac_sha256" in f.extra]


@pytest.mark.parametrize("settings, reason", [
    pytest.param({"usernames": "hash"}, "usernames=hash needs a username_key", id="no key"),
    pytest.param({"usernames": "hash", "username_key": "  "}, "usernames=hash needs a "
                 "username_key", id="blank key"),
    pytest.param({"usernames": "keep"}, "usernames must be drop or hash", id="keep refused"),
    pytest.param({"password": "x"}, "has no option password", id="unknown option"),
])
def test_honeypot_refuses_unsafe_or_unknown_options(settings: dict[str, str], reason: str):
    with pytest.raises(v.BadValue, match=reason):
        PARSERS[HONEYPOT](settings)


def test_honeypot_file_without_header_leaks_nothing(tmp_path: Path, caplog: LogCaptureFixture):
    rows = gen.honeypot_rows(random.Random(3), 3, 2)
    path = tmp_path / "headerless.csv"
    path.write_bytes(b"\n".join(rows) + b"\n")
    produced, rejects, _ = run(HONEYPOT, path)
    assert [(r.row, r.reason.split(":")[0]) for r in rejects] == \
        [(1, "header lacks required columns")]
    text = _everything(produced, rejects, caplog)
    assert not [s for s in gen.honeypot_secrets(3, 2) if s in text]


# -- compromised_website ------------------------------------------------------------------------

def test_compromised_websites_are_victims_with_their_url(tmp_path: Path):
    path = _csv(tmp_path / "compromised_website.csv", gen.WEBSITE_HEADER,
                "2026-11-20 01:00:00,192.0.2.5,8443,,t,https,64496,,,,/a.php,Shop.Victim.Example"
                ",phishing,,,,,,,,,",
                "2026-11-20 01:00:01,2001:db8::5,80,,t,http,,,,,b.php,,spam,,,,,,,,,",
                "2026-11-20 01:00:02,192.0.2.6,80,,t,http,,,,,http://blog.victim.example/c,,"
                "malware,,,,,,,,https://skim.bad.example/s.js,Magecart")
    found, rejects = _sighted(WEBSITE, path)
    assert not rejects
    values = [[o.get("value", o.get("number")) for kind in sorted(f.observables)
               for o in f.observables[kind]] for f in found]
    assert values == [
        [64496, "shop.victim.example", "192.0.2.5", "https://shop.victim.example:8443/a.php"],
        ["2001:db8::5", "http://[2001:db8::5]/b.php"],
        ["192.0.2.6", "http://blog.victim.example/c"],
    ]
    assert [(f.target["type"], f.target["name"]) for f in found] == [
        ("attack-pattern", "compromised website: phishing"),
        ("attack-pattern", "compromised website: spam"),
        ("malware", "magecart"),
    ]
    assert "cc_url" not in found[2].extra  # suspect infrastructure, not a kept column


# -- malware_url --------------------------------------------------------------------------------

def _links(objects: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    by_id = {o["id"]: o for o in objects}
    return {(by_id[o["source_ref"]]["type"], o["relationship_type"],
             by_id[o["target_ref"]]["type"]) for o in objects if o["type"] == "relationship"}


def test_malware_urls_are_distribution_infrastructure(tmp_path: Path):
    path = _csv(tmp_path / "malware_url.csv", gen.MALWARE_URL_HEADER + ",family,md5",
                f"2026-11-20 01:00:00,http://dl.bad.example/m.arm7,dl.bad.example,203.0.113.5,"
                f"64500,,,,,,,mozi;CVE-2018-10562,,{'a' * 64},http,Mozi,{'b' * 32}",
                "2026-11-20 01:00:01,http://203.0.113.6:8080/x.sh,,,,,,,,,,,,,http,,")
    produced, rejects, _ = run(MALWARE_URL, path)
    objects = [p.obj for p in produced if p.record is not None]
    assert not rejects and not [o for o in objects if o["type"] in ("observed-data", "sighting")]
    first = [p.obj for p in produced if p.record is not None and p.record.row == 2]
    url_indicator, file_indicator = (o for o in first if o["type"] == "indicator")
    assert url_indicator["pattern"] == "[url:value = 'http://dl.bad.example/m.arm7']"
    assert url_indicator["labels"] == ["mozi"]
    assert url_indicator["external_references"] == [{"source_name": "cve",
                                                     "external_id": "CVE-2018-10562"}]
    assert ext.fields_of(url_indicator, "shadowserver")["ip"] == "203.0.113.5"
    assert file_indicator["pattern"] == f"[file:hashes.MD5 = '{'b' * 32}' OR " \
                                        f"file:hashes.'SHA-256' = '{'a' * 64}']"
    [infra] = [o for o in first if o["type"] == "infrastructure"]
    assert infra["infrastructure_types"] == ["hosting-malware"]
    assert _links(first) == {("indicator", "indicates", "malware"),
                             ("indicator", "indicates", "infrastructure"),
                             ("infrastructure", "consists-of", "url"),
                             ("infrastructure", "delivers", "malware"),
                             ("infrastructure", "related-to", "indicator")}
    second = [p.obj for p in produced if p.record is not None and p.record.row == 3]
    assert [o["type"] for o in second] == ["url", "indicator", "infrastructure", "relationship",
                                           "relationship"]


# -- blocklist ----------------------------------------------------------------------------------

def test_blocklisted_addresses_and_networks_are_sighted_by_listing_reason(tmp_path: Path):
    path = _csv(tmp_path / "blocklist.csv", gen.BLOCKLIST_HEADER,
                "2026-11-20 01:00:00,198.51.100.7/24,,ExampleBL,Spam Source,AS64496,,,,,,,",
                "2026-11-20 01:00:00,192.0.2.9/32,h.victim.example,DemoList,,,,,,,,,scanner",
                "2026-11-20 01:00:00,2001:DB8::1,,DemoList,,,,,,,,,")
    found, rejects = _sighted(BLOCKLIST, path)
    assert not rejects
    assert [([o["value"] for k in ("ipv4-addr", "ipv6-addr") for o in f.observables.get(k, [])],
             f.target["name"]) for f in found] == [
        (["198.51.100.0/24"], "blocklisted: spam source"),
        (["192.0.2.9"], "blocklisted: scanner"),
        (["2001:db8::1"], "blocklisted: demolist"),
    ]
    assert found[0].one("autonomous-system")["number"] == 64496
    assert found[0].extra == {"source": "ExampleBL", "reason": "Spam Source"}
    assert found[1].extra["hostname"] == "h.victim.example"


# -- scan_* -------------------------------------------------------------------------------------

def test_scan_rows_are_sightings_of_cves_or_exposed_services(samples: dict[str, list[Sample]]):
    found, _ = _sighted(SCAN, samples[SCAN][0].path)
    names = {f.target["name"] for f in found}
    assert names == {"CVE-2019-0708", "exposed rdp"}
    for item in found:
        assert item.target["type"] == "vulnerability"
        if item.target["name"].startswith("CVE-"):
            assert item.target["external_references"] == [{"source_name": "cve",
                                                           "external_id": "CVE-2019-0708"}]
            assert item.extra["cve20190708_vulnerable"] == "Y"
        traffic = item.one("network-traffic")
        address = next(o for k in ("ipv4-addr", "ipv6-addr") for o in item.observables.get(k, []))
        assert traffic["dst_ref"] == address["id"] and traffic["dst_port"] == 3389
        assert item.extra["report"] == "scan_rdp" and item.extra["rdp_protocol"] == "RDP"


def test_scan_service_comes_from_the_tag_then_the_report_type(samples: dict[str, list[Sample]]):
    found, rejects = _sighted(SCAN, samples[SCAN][1].path)  # 2026-11-21-scan_http.csv
    assert not rejects
    by_tag = {f.extra.get("tag", ""): f.target["name"] for f in found}
    assert by_tag == {"http": "exposed http", "http;cve-2021-41773": "CVE-2021-41773",
                      "basic-auth,http": "exposed basic-auth", "": "exposed http"}
    assert {f.one("network-traffic")["protocols"][1] for f in found} == {"tcp"}


@pytest.mark.parametrize("settings, rejected", [
    pytest.param(None, 4, id="no report type: untagged rows rejected"),
    pytest.param({"report": "scan_http"}, 0, id="--option report=scan_http"),
])
def test_scan_report_type_option(settings: dict[str, str] | None, rejected: int,
                                 samples: dict[str, list[Sample]]):
    sample = samples[SCAN][2]  # export.csv: the file name names no report
    found, rejects = _sighted(SCAN, sample.path, settings)
    assert len(rejects) == rejected
    assert all("--option report=scan_<service>" in r.reason for r in rejects)
    assert len(found) == sample.good + sample.bad - rejected


def test_scan_row_naming_several_cves_is_sighted_once_per_cve(tmp_path: Path):
    path = _csv(tmp_path / "2026-11-20-scan_exchange.csv", "timestamp,ip,port,tag,version",
                "2026-11-20 01:00:00,192.0.2.5,443,exchange;cve-2021-26855;CVE-2021-27065,15.2")
    found, _ = _sighted(SCAN, path)
    assert sorted(f.target["name"] for f in found) == ["CVE-2021-26855", "CVE-2021-27065"]
    assert {f.extra["version"] for f in found} == {"15.2"}


# -- suspect infrastructure named in victim reports ------------------------------------------

_SITE = "timestamp,ip,http_host,url,family,category,cc_url,redirect_target"
_TRAP = "timestamp,src_ip,src_hostname,dst_ip,dst_port,payload_url,payload_md5,payload_sha256"
_MD5 = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("name, header, row, suspects, kept", [
    pytest.param(WEBSITE, _SITE, "2026-11-20 01:00:00,192.0.2.5,shop.victim.example,/a.php,"
                 "magecart,malware,https://Skim.Bad.Example/c.js,",
                 {("url", "command-and-control", "controls", "malware")}, set(),
                 id="cc_url -> C2 controlling the family"),
    pytest.param(WEBSITE, _SITE, "2026-11-20 01:00:00,192.0.2.5,shop.victim.example,/a.php,,"
                 "phishing,,http://landing.bad.example/r",
                 {("url", "hosting-malware", "related-to", "attack-pattern")}, set(),
                 id="redirect_target without a family -> related to the attack pattern"),
    pytest.param(WEBSITE, _SITE, "2026-11-20 01:00:00,192.0.2.5,shop.victim.example,/a.php,"
                 "magecart,,https://shop.victim.example/skim.js,http://192.0.2.5/r",
                 set(), {"cc_url", "redirect_target"},
                 id="the site's own host or address -> kept, never an indicator"),
    pytest.param(WEBSITE, _SITE, "2026-11-20 01:00:00,192.0.2.5,shop.victim.example,/a.php,"
                 "magecart,,not a url,", set(), {"cc_url"}, id="not a URL -> kept"),
    pytest.param(HONEYPOT, _TRAP, f"2026-11-20 01:00:00,192.0.2.7,,203.0.113.9,22,"
                 f"http://203.0.113.200/bins.sh,{_MD5.upper()},",
                 {("url", "hosting-malware", "related-to", "attack-pattern"),
                  ("file", None, None, "attack-pattern")}, set(),
                 id="payload_url and payload_md5 -> distribution and payload"),
    pytest.param(HONEYPOT, _TRAP, f"2026-11-20 01:00:00,2001:db8::7,bot.victim.example,"
                 f"203.0.113.9,22,http://[2001:DB8::7]:8080/x.sh,,{'a' * 64}",
                 {("file", None, None, "attack-pattern")}, {"payload_url"},
                 id="payload on the attacker's own address -> only the payload file"),
    pytest.param(HONEYPOT, _TRAP, "2026-11-20 01:00:00,192.0.2.7,bot.victim.example,"
                 "203.0.113.9,22,http://bot.victim.example/x.sh,,",
                 set(), {"payload_url"}, id="payload on the attacker's own host -> kept"),
])
def test_victim_reports_give_the_attackers_infrastructure_as_suspect(
        tmp_path: Path, name: str, header: str, row: str,
        suspects: set[tuple[str, str | None, str | None, str]], kept: set[str]):
    """(observable, infrastructure type, its link to the sighted SDO, that SDO's type) per
    indicator; the victim's own address, host and URLs are never indicated."""
    path = _csv(tmp_path / "report.csv", header, row)
    produced, rejects, _ = run(name, path)
    assert not rejects
    objects = [p.obj for p in produced]
    by_id = {o["id"]: o for o in objects}
    [sighting] = [o for o in objects if o["type"] == "sighting"]
    target = by_id[sighting["sighting_of_ref"]]
    observed = by_id[sighting["observed_data_refs"][0]]
    links = {(r["source_ref"], r["relationship_type"], r["target_ref"])
             for r in objects if r["type"] == "relationship"}
    found = set()
    for indicator in (o for o in objects if o["type"] == "indicator"):
        assert ext.data_subject(indicator) == "suspect-infrastructure"
        assert (indicator["id"], "indicates", target["id"]) in links
        infras = [by_id[s] for (i, kind, s) in links if i == indicator["id"]
                  and kind == "indicates" and by_id[s]["type"] == "infrastructure"]
        if not infras:  # a payload file: indicated, no infrastructure
            assert indicator["pattern"].startswith("[file:hashes.")
            found.add(("file", None, None, target["type"]))
            continue
        [infra] = infras
        [link] = [kind for (s, kind, t) in links if s == infra["id"] and t == target["id"]]
        [consists] = [by_id[t] for (s, kind, t) in links if s == infra["id"]
                      and kind == "consists-of"]
        assert indicator["pattern"] == build.pattern(consists)
        found.add((consists["type"], infra["infrastructure_types"][0], link, target["type"]))
    assert found == suspects
    victim_patterns = {build.pattern(by_id[r]) for r in observed["object_refs"]
                       if by_id[r]["type"] in HOSTS}
    assert not [o for o in objects if o.get("pattern") in victim_patterns]
    assert set(ext.fields_of(observed, "shadowserver")) & {
        "cc_url", "redirect_target", "payload_url", "payload_md5", "payload_sha256"} == kept
    for obj in objects:  # the strict reference library takes every object
        stix2.parse(obj)


def test_a_payload_url_is_related_to_the_payload_it_served(tmp_path: Path):
    path = _csv(tmp_path / "honeypot.csv", _TRAP, f"2026-11-20 01:00:00,192.0.2.7,,"
                f"203.0.113.9,22,http://203.0.113.200/bins.sh,{_MD5},")
    produced, _, _ = run(HONEYPOT, path)
    by_id = {p.obj["id"]: p.obj for p in produced}
    [payload] = [o for o in by_id.values() if o["type"] == "indicator"
                 and o["pattern"] == f"[file:hashes.MD5 = '{_MD5}']"]
    [infra] = [o for o in by_id.values() if o["type"] == "infrastructure"]
    assert [(r["source_ref"], r["target_ref"]) for r in by_id.values()
            if r["type"] == "relationship" and r["relationship_type"] == "related-to"
            and r["target_ref"] == payload["id"]] == [(infra["id"], payload["id"])]
