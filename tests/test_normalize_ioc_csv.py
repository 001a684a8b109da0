"""Analysts' indicator lists (`ioc-csv`): the column mapping, type detection, times, kinds,
what each row becomes, and one clear error for a mapping that does not fit."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from exchange import stix_extensions as ext
from exchange.cli import main
from exchange.normalize import Context, Produced, Reject, build, normalize
from exchange.normalize import values as v
from exchange.normalize.cli import _settings
from exchange.normalize.ioc_csv import IocCsv
from tests.conftest import Env
from tests.fixtures import ioc_csv as gen
from tests.fixtures.common import Sample
from tests.normalizing import run

NAME = gen.NAME
EXAMPLE = Path(__file__).parent.parent / "deploy" / "ioc-csv-mapping.example.yaml"
BASE = {"value": "value", "first_seen": "first_seen"}
HEADER = "value,type,first_seen"


def _convert(tmp_path: Path, lines: list[str], settings: dict[str, str] | None = None,
             context: Context | None = None) -> tuple[list[dict[str, Any]], list[Reject]]:
    """The objects the rows produce (not the file's identity and report) and the rejects."""
    path = tmp_path / "list.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parser = IocCsv({**BASE, **(settings or {})})
    items = list(normalize(parser, path, context or Context(parser.default_source, "amber")))
    return ([i.obj for i in items if isinstance(i, Produced) and i.record is not None],
            [i for i in items if isinstance(i, Reject)])


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["type"] == kind]
    assert len(found) == 1, [o["type"] for o in objects]
    return found[0]


# -- the analyst list: what the rows become -----------------------------------------------------

def test_analyst_list_rows_become_suspect_infrastructure(samples: dict[str, list[Sample]]):
    sample = samples[NAME][0]
    produced, rejects, _ = run(NAME, sample.path, settings=gen.ANALYST_SETTINGS)
    objects = [p.obj for p in produced]
    by_id = {o["id"]: o for o in objects}
    indicators = {o["pattern"]: o for o in objects if o["type"] == "indicator"}
    assert len(indicators) == sample.good - 1  # the last row is a new version of the first
    assert {ext.data_subject(o) for o in objects if ext.data_subject(o)} \
        == {build.SUSPECT}  # never a victim
    infrastructure = {r["target_ref"]: by_id[r["source_ref"]]
                      for r in objects if r["type"] == "relationship"
                      and r["relationship_type"] == "consists-of"}
    files = [o for o in objects if o["type"] == "file"]
    assert len(files) == 3 and not any(f["id"] in infrastructure for f in files)
    for indicator in indicators.values():
        assert indicator["created_by_ref"] == objects[0]["id"]
    # Row 1 and its later row: one indicator and one infrastructure, in two versions.
    ip = indicators["[ipv4-addr:value = '203.0.113.10']"]
    versions = [o for o in objects if o["id"] in (ip["id"], infrastructure[
        v.sco("ipv4-addr", value="203.0.113.10")["id"]]["id"])]
    assert [(o["type"], o["modified"]) for o in versions] == [
        ("indicator", "2026-11-05T12:00:00.000Z"), ("infrastructure", "2026-11-05T12:00:00.000Z"),
        ("indicator", "2026-11-07T12:00:00.000Z"), ("infrastructure", "2026-11-07T12:00:00.000Z")]
    assert "valid_until" not in versions[0] and versions[2]["valid_until"] == \
        "2026-11-07T12:00:00.000Z"
    assert versions[3]["last_seen"] == "2026-11-07T12:00:00.000Z"
    assert ext.fields_of(versions[2], "ioc-csv") == {"analyst": "analyst-c"}
    assert [r.row for r in rejects] == [4, 6, 8, 10, 12, 14, 16]
    for (fragment, _), reject in zip(gen.HOSTILE_ANALYST, rejects, strict=True):
        assert fragment in reject.reason


def test_example_mapping_file_reads_the_analyst_list(samples: dict[str, list[Sample]]):
    """deploy/ioc-csv-mapping.example.yaml, loaded as `--options` loads it, is a working
    mapping for the analyst list (its columns are the sample's)."""
    settings = _settings(argparse.Namespace(options=str(EXAMPLE), option=[]))
    assert set(settings) <= {o.name for o in IocCsv.options}
    path = samples[NAME][0].path
    ours = [p.obj for p in run(NAME, path, settings=settings)[0]]
    assert ours == [p.obj for p in run(NAME, path, settings=gen.ANALYST_SETTINGS)[0]]


def test_ingest_with_an_options_file_and_an_option(env: Env, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]):
    """`--options FILE` and `--option` reach the parser; a bad option is a clean error."""
    sample = gen.write_analyst(tmp_path / "list.csv")
    command = ["--config", str(tmp_path / "env" / "config.yaml"), "ingest", "--format", NAME,
               "--collection", "open", "--options", str(EXAMPLE), "--option", "kind_column=Role",
               "--rejects", str(tmp_path / "rejects.jsonl"), str(sample.path)]
    assert main(command) == 1  # the hostile rows
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"read {sample.good + sample.bad}," in first and f"rejected {sample.bad}" in first
    assert main(command) == 1
    assert "stored 0," in capsys.readouterr().out  # the same list again changes nothing
    assert main([*command[:-1], "--option", "kind=c2", str(sample.path)]) == 2
    assert "give kind or kind_column" in capsys.readouterr().err


def test_blocklist_rows_take_the_fixed_kind_and_the_default_time(
        samples: dict[str, list[Sample]]):
    sample = samples[NAME][1]
    produced, _, tally = run(NAME, sample.path, settings=gen.BLOCKLIST_SETTINGS)
    assert tally.read == sample.good + sample.bad  # the '#' lines are skipped, not read
    objects = [p.obj for p in produced]
    assert {o["infrastructure_types"][0] for o in objects if o["type"] == "infrastructure"} \
        == {"command-and-control"}
    indicators = [o for o in objects if o["type"] == "indicator"]
    assert {o["valid_from"] for o in indicators} == {"2026-11-15T00:00:00.000Z"}
    assert all(set(ext.fields_of(o, "ioc-csv")) == {"note", "source_ref"} for o in indicators)


# -- types: declared or detected ----------------------------------------------------------------

HEX32, HEX40, HEX64, HEX128 = "D" * 32, "a" * 40, "b" * 64, "c" * 128


@pytest.mark.parametrize("declared, value, observable", [
    pytest.param("ipv4", "203.0.113.5", ("ipv4-addr", "203.0.113.5"), id="ipv4"),
    pytest.param("IPv6", "2001:DB8::1", ("ipv6-addr", "2001:db8::1"), id="ipv6 compressed"),
    pytest.param("ip", "::ffff:203.0.113.5", ("ipv4-addr", "203.0.113.5"), id="ip mapped v4"),
    pytest.param("domain", "Bad.Example.", ("domain-name", "bad.example"), id="domain"),
    pytest.param("hostname", "bücher.example", ("domain-name", "xn--bcher-kva.example"),
                 id="hostname idna"),
    pytest.param("URL", "HTTP://Bad.Example:80/x", ("url", "http://bad.example/x"), id="url"),
    pytest.param("email", "Bad.Actor@Phish.Example", ("email-addr", "bad.actor@phish.example"),
                 id="email"),
    pytest.param("md5", HEX32, ("file", {"MD5": HEX32.lower()}), id="md5"),
    pytest.param("SHA-1", HEX40, ("file", {"SHA-1": HEX40}), id="sha1"),
    pytest.param("sha256", HEX64, ("file", {"SHA-256": HEX64}), id="sha256"),
    pytest.param("sha512", HEX128, ("file", {"SHA-512": HEX128}), id="sha512"),
    pytest.param("", "203.0.113.5", ("ipv4-addr", "203.0.113.5"), id="auto ipv4"),
    pytest.param("auto", "2001:db8::5", ("ipv6-addr", "2001:db8::5"), id="auto ipv6"),
    pytest.param("", "https://x.bad.example/a", ("url", "https://x.bad.example/a"),
                 id="auto url"),
    pytest.param("", HEX32, ("file", {"MD5": HEX32.lower()}), id="auto md5"),
    pytest.param("", HEX40, ("file", {"SHA-1": HEX40}), id="auto sha1"),
    pytest.param("", HEX64, ("file", {"SHA-256": HEX64}), id="auto sha256"),
    pytest.param("", HEX128, ("file", {"SHA-512": HEX128}), id="auto sha512"),
    pytest.param("", "x@bad.example", ("email-addr", "x@bad.example"), id="auto email"),
    pytest.param("", "C2.Bad.Example", ("domain-name", "c2.bad.example"), id="auto domain"),
])
def test_types_are_declared_or_detected(tmp_path: Path, declared: str, value: str,
                                        observable: tuple[str, Any]):
    objects, rejects = _convert(tmp_path, [HEADER, f"{value},{declared},2026-11-20"],
                                {"type": "type"})
    assert not rejects
    kind, expected = observable
    found = objects[0]
    assert found["type"] == kind
    assert found.get("hashes" if kind == "file" else "value") == expected
    has_infrastructure = any(o["type"] == "infrastructure" for o in objects)
    assert has_infrastructure == (kind != "file")  # a hash is a malware file


@pytest.mark.parametrize("declared, value, fragment", [
    pytest.param("ipv4", "2001:db8::1", "not an IPv4 address", id="v6 declared v4"),
    pytest.param("ipv6", "203.0.113.1", "not an IPv6 address", id="v4 declared v6"),
    pytest.param("", "999.1.1.1", "not an IP address", id="auto bad ip, not a domain"),
    pytest.param("", "1.2.3", "not an IP address", id="auto short ip"),
    pytest.param("", "nothing", "not an IP address, URL, hash", id="auto unrecognisable"),
    pytest.param("", "a" * 33, "not an IP address, URL, hash", id="auto odd hex length"),
    pytest.param("sha256", "abc", "not a SHA-256 digest", id="short hash"),
    pytest.param("url", "bad.example/x", "not an absolute URL", id="url without scheme"),
    pytest.param("email", "no-at.example", "not an email address", id="email without @"),
    pytest.param("domain", "bad_label!.example", "not a valid domain name", id="bad domain"),
    pytest.param("asn", "64496", "type: unknown type 'asn'", id="unknown type"),
])
def test_bad_values_are_rejected_with_a_reason(tmp_path: Path, declared: str, value: str,
                                               fragment: str):
    objects, rejects = _convert(tmp_path, [HEADER, f"{value},{declared},2026-11-20"],
                                {"type": "type"})
    assert not objects and len(rejects) == 1
    assert fragment in rejects[0].reason and rejects[0].row == 2


def test_type_fixed_applies_to_every_row(tmp_path: Path):
    objects, rejects = _convert(tmp_path, [HEADER, "203.0.113.5,domain,2026-11-20",
                                           "bad.example,ipv4,2026-11-20"],
                                {"type_fixed": "Domain"})
    assert [r.reason for r in rejects] == [
        "not a domain name (only digits and dots): '203.0.113.5'"]
    assert [o["value"] for o in objects if o["type"] == "domain-name"] == ["bad.example"]
    assert ext.fields_of(_one(objects, "indicator"), "ioc-csv") == {"type": "ipv4"}  # unmapped


# -- times --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    pytest.param("2026-11-20T10:00:00Z", "2026-11-20T10:00:00.000Z", id="iso with Z"),
    pytest.param("2026-11-20 10:00:00.123", "2026-11-20T10:00:00.123Z", id="space and ms"),
    pytest.param("2026-11-20T10:00:00+00:00", "2026-11-20T10:00:00.000Z", id="utc offset"),
    pytest.param("2026-11-20", "2026-11-20T00:00:00.000Z", id="plain date"),
    pytest.param("2026-11-20 10:00:00 UTC", "2026-11-20T10:00:00.000Z", id="trailing UTC"),
    pytest.param("1793772000", "2026-11-04T06:00:00.000Z", id="epoch seconds"),
    pytest.param("1793772000.5", "2026-11-04T06:00:00.500Z", id="epoch with fraction"),
])
def test_first_seen_times(tmp_path: Path, text: str, expected: str):
    objects, rejects = _convert(tmp_path, [HEADER, f"203.0.113.5,,{text}"])
    assert not rejects
    indicator = _one(objects, "indicator")
    assert indicator["valid_from"] == indicator["created"] == expected


@pytest.mark.parametrize("text", [
    pytest.param("2026", id="a year"),
    pytest.param("20261120", id="compact date"),
    pytest.param("1793772000000", id="epoch milliseconds"),
    pytest.param("2026-02-30", id="no such day"),
    pytest.param("2026-11-20T10:00:00+02:00", id="not UTC"),
])
def test_bad_times_are_rejected(tmp_path: Path, text: str):
    objects, rejects = _convert(tmp_path, [HEADER, f"203.0.113.5,,{text}"])
    assert not objects
    assert rejects[0].reason.startswith("first_seen: not a UTC date and time")


def test_a_row_without_first_seen_takes_the_default_or_is_rejected(tmp_path: Path):
    lines = [HEADER, "203.0.113.5,,", "203.0.113.6,,2026-11-20"]
    objects, rejects = _convert(tmp_path, lines)
    assert [(r.row, r.reason) for r in rejects] == [
        (2, "no first_seen in this row and no default_first_seen option (a fixed time for "
            "rows without one)")]
    assert _one(objects, "indicator")["valid_from"] == "2026-11-20T00:00:00.000Z"
    objects, rejects = _convert(tmp_path, lines, {"default_first_seen": "1793772000"})
    assert not rejects
    assert [o["valid_from"] for o in objects if o["type"] == "indicator"] == [
        "2026-11-04T06:00:00.000Z", "2026-11-20T00:00:00.000Z"]


def test_without_a_first_seen_column_every_row_takes_the_default(tmp_path: Path):
    path = tmp_path / "list.csv"
    path.write_text("value\n203.0.113.5\n")
    parser = IocCsv({"value": "value", "default_first_seen": "2026-11-01"})
    items = list(normalize(parser, path, Context("Analysts", "amber")))
    indicator = next(i.obj for i in items if isinstance(i, Produced)
                     and i.obj["type"] == "indicator")
    assert indicator["created"] == indicator["modified"] == "2026-11-01T00:00:00.000Z"


def test_valid_until_and_last_seen_make_a_newer_version(tmp_path: Path):
    objects, _ = _convert(tmp_path, ["value,first_seen,last_seen,offline",
                                     "203.0.113.5,2026-11-01,2026-11-03,2026-11-05"],
                          {"last_seen": "last_seen", "valid_until": "offline"})
    indicator, infra = _one(objects, "indicator"), _one(objects, "infrastructure")
    assert indicator["valid_until"] == indicator["modified"] == "2026-11-05T00:00:00.000Z"
    assert infra["last_seen"] == "2026-11-03T00:00:00.000Z"
    assert infra["modified"] == "2026-11-05T00:00:00.000Z"


# -- kinds and families -------------------------------------------------------------------------

@pytest.mark.parametrize("kind, value, infrastructure, link", [
    pytest.param("c2", "203.0.113.5", "command-and-control", "controls", id="c2"),
    pytest.param("Command-and-Control", "203.0.113.5", "command-and-control", "controls",
                 id="stix spelling"),
    pytest.param("distribution", "http://dl.bad.example/x.exe", "hosting-malware", "delivers",
                 id="distribution"),
    pytest.param("botnet", "bot.bad.example", "botnet", "controls", id="botnet"),
    pytest.param("unknown", "203.0.113.5", "unknown", None, id="unknown"),
    pytest.param("", "203.0.113.5", "unknown", None, id="empty is unknown"),
    pytest.param("payload", HEX64, None, None, id="payload hash: no infrastructure"),
    pytest.param("c2", HEX64, None, None, id="a hash is always a payload"),
])
def test_kinds_from_a_column(tmp_path: Path, kind: str, value: str, infrastructure: str | None,
                             link: str | None):
    objects, rejects = _convert(tmp_path, ["value,first_seen,kind,family",
                                           f"{value},2026-11-20,{kind},Emotet"],
                                {"kind_column": "kind", "malware": "family"})
    assert not rejects
    by_id = {o["id"]: o for o in objects}
    links = {(by_id[r["source_ref"]]["type"], r["relationship_type"],
              by_id[r["target_ref"]]["type"]) for r in objects if r["type"] == "relationship"}
    assert ("indicator", "indicates", "malware") in links
    assert _one(objects, "malware")["name"] == "emotet"
    if infrastructure is None:
        assert not any(o["type"] == "infrastructure" for o in objects)
        extra = (ext.fields_of(_one(objects, "indicator"), "ioc-csv") or None)
        assert extra == ({"kind": kind} if kind != "payload" else None)  # nothing lost
        return
    assert _one(objects, "infrastructure")["infrastructure_types"] == [infrastructure]
    assert (("infrastructure", link, "malware") in links) == (link is not None)


def test_payload_on_something_not_a_file_is_rejected(tmp_path: Path):
    _, rejects = _convert(tmp_path, [HEADER, "203.0.113.5,,2026-11-20"], {"kind": "payload"})
    assert rejects[0].reason == "kind payload is for file hashes, not a ipv4-addr"


@pytest.mark.parametrize("family", ["", "unknown", "N/A", "-", "none"])
def test_no_family_makes_no_malware(tmp_path: Path, family: str):
    objects, _ = _convert(tmp_path, ["value,first_seen,family",
                                     f"203.0.113.5,2026-11-20,{family}"], {"malware": "family"})
    assert not any(o["type"] == "malware" for o in objects)


# -- labels, description, references, confidence, extra columns --------------------------------

def test_labels_description_reference_confidence_and_extra_columns(tmp_path: Path):
    header = "Value , First_Seen,Tags,Note,Ref,Conf,Analyst,Ticket"
    rows = ['c2.bad.example,2026-11-20,"a;b,c|d","Seen in the lab",'
            'https://blog.example/post,85,analyst-a,T-1',
            "c3.bad.example,2026-11-20,,,CASE-7,,,"]
    context = Context("Analysts", "amber", confidence=40)
    objects, rejects = _convert(tmp_path, [header, *rows], {
        "labels": "tags", "description": "NOTE", "reference": "ref", "confidence": "conf"},
        context)
    assert not rejects
    described = [o for o in objects if o["type"] in ("indicator", "infrastructure")]
    first, second = described[:2], described[2:]
    for obj in first:
        assert obj["labels"] == ["a", "b", "c", "d"]
        assert obj["description"] == "Seen in the lab"
        assert obj["external_references"] == [{"source_name": "blog.example",
                                               "url": "https://blog.example/post"}]
        assert obj["confidence"] == 85  # the row's confidence over the run's
    assert ext.fields_of(first[0], "ioc-csv") == {"analyst": "analyst-a", "ticket": "T-1"}
    for obj in second:
        assert obj["confidence"] == 40 and "external_references" not in obj
    assert ext.fields_of(second[0], "ioc-csv") == {"reference": "CASE-7"}  # not a URL: kept


@pytest.mark.parametrize("text", ["101", "high", "-5", "8.5"])
def test_bad_confidence_is_rejected(tmp_path: Path, text: str):
    _, rejects = _convert(tmp_path, ["value,first_seen,conf", f"203.0.113.5,2026-11-20,{text}"],
                          {"confidence": "conf"})
    assert rejects[0].reason.startswith("confidence: not a confidence from 0 to 100")


def test_extra_keys_are_property_safe_and_never_collide(tmp_path: Path):
    objects, _ = _convert(tmp_path, ["value,first_seen,Source Ref,source-ref,",
                                     "203.0.113.5,2026-11-20,a,b,c"])
    assert ext.fields_of(_one(objects, "indicator"), "ioc-csv") == {
        "source_ref": "a", "source_ref_2": "b", "column": "c"}


# -- the file's shape: delimiters and comments --------------------------------------------------

@pytest.mark.parametrize("option, delimiter", [
    pytest.param(",", ",", id="comma"),
    pytest.param(";", ";", id="semicolon"),
    pytest.param("|", "|", id="pipe"),
    pytest.param("\\t", "\t", id="backslash t"),
    pytest.param("\t", "\t", id="a tab from YAML"),
    pytest.param("tab", "\t", id="tab"),
])
def test_delimiters(tmp_path: Path, option: str, delimiter: str):
    lines = [delimiter.join(("value", "first_seen", "tags")),
             delimiter.join(("203.0.113.5", "2026-11-20", "x")),
             delimiter.join(("bad.example", "2026-11-20", "y"))]
    objects, rejects = _convert(tmp_path, lines, {"delimiter": option, "labels": "tags"})
    assert not rejects
    assert [o["labels"] for o in objects if o["type"] == "indicator"] == [["x"], ["y"]]


def test_comment_lines_are_skipped_only_when_asked(tmp_path: Path):
    lines = ["# exported by hand", HEADER, "# a note", "203.0.113.5,,2026-11-20"]
    objects, rejects = _convert(tmp_path, lines, {"skip_comments": "true"})
    assert not rejects and _one(objects, "indicator")
    lines = [HEADER, "# a note", "203.0.113.5,,2026-11-20"]
    objects, rejects = _convert(tmp_path, lines, {"skip_comments": "no"})
    assert [(r.row, r.raw) for r in rejects] == [(2, "# a note")]  # seen, not silently dropped


# -- mistakes in the mapping: one clear error, never a crash ------------------------------------

@pytest.mark.parametrize("settings, fragment", [
    pytest.param({}, "needs --option value=COLUMN", id="no value column"),
    pytest.param({**BASE, "colour": "red"}, "has no option colour", id="unknown option"),
    pytest.param({"value": " "}, "option value names no column", id="empty column"),
    pytest.param({"value": "v"}, "needs --option first_seen=COLUMN or default_first_seen",
                 id="no time at all"),
    pytest.param({**BASE, "type": "t", "type_fixed": "ip"}, "give type or type_fixed",
                 id="type twice"),
    pytest.param({**BASE, "kind": "c2", "kind_column": "k"}, "give kind or kind_column",
                 id="kind twice"),
    pytest.param({**BASE, "labels": "l", "tags": "t"}, "give labels or tags", id="labels twice"),
    pytest.param({**BASE, "type_fixed": "asn"}, "option type_fixed: unknown type 'asn'",
                 id="unknown type"),
    pytest.param({**BASE, "kind": "evil"}, "option kind: unknown kind 'evil'",
                 id="unknown kind"),
    pytest.param({**BASE, "kind": "payload", "type_fixed": "url"},
                 "kind payload is for file hashes", id="payload url"),
    pytest.param({**BASE, "delimiter": ":"}, "option delimiter: ':' is not one of",
                 id="bad delimiter"),
    pytest.param({**BASE, "skip_comments": "maybe"}, "option skip_comments", id="bad boolean"),
    pytest.param({**BASE, "default_first_seen": "yesterday"},
                 "option default_first_seen: not a UTC date and time", id="bad default time"),
])
def test_bad_options_are_refused_before_reading(settings: dict[str, str], fragment: str):
    with pytest.raises(v.BadValue) as caught:
        IocCsv(settings)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("lines, settings, reason", [
    pytest.param(["ioc,seen", "203.0.113.5,2026-11-20"], {},
                 "header lacks mapped columns: value='value', first_seen='first_seen'",
                 id="mapped columns missing"),
    pytest.param(["# value,first_seen", "203.0.113.5,2026-11-20"], {"value": "value"},
                 "header lacks mapped columns: value='value'; the header starts with '#': "
                 "set skip_comments=true?", id="commented header"),
    pytest.param(["value,first_seen,Value", "203.0.113.5,2026-11-20,x"], {},
                 "header has mapped columns more than once: value", id="column twice"),
])
def test_a_header_that_does_not_fit_is_one_reject_at_row_1(
        tmp_path: Path, lines: list[str], settings: dict[str, str], reason: str):
    objects, rejects = _convert(tmp_path, lines * 3, settings)
    assert [(r.row, r.reason) for r in rejects] == [(1, reason)]
    assert not objects


def test_hostile_files_do_not_crash(tmp_path: Path):
    for body in (b"", b"\xff\xfe v\x00a\x00l\x00", "value,first_seen\n".encode("utf-16")):
        path = tmp_path / "hostile.csv"
        path.write_bytes(body)
        items = list(normalize(IocCsv(BASE), path, Context("Analysts", "amber")))
        rejects = [i for i in items if isinstance(i, Reject)]
        assert len(rejects) == 1 and rejects[0].row in (0, 1)
