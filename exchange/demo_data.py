"""A realistic synthetic day of feed files for `taxii-exchange demo`.

The demo loads these files the way real data arrives: each is written in its feed's own shape
(Shadowserver CSV reports, abuse.ch exports, a partner's MISP event, an analyst's list) and
then normalised by that format's parser, exactly as `taxii-exchange ingest` would. The facts
hang together as on a real day: the C2 servers Feodo Tracker lists turn up on ThreatFox, in the
partner's event and on the analyst's list, and the honeypot attackers fetch URLhaus payloads.

Synthetic only, and the same on every run (one seeded RNG, times from the data, never the
clock), so loading the day again stores nothing new: the day is 2026-11-20; victims are in
192.0.2.0/24, 198.51.100.0/25 and 2001:db8:1::/48, sinkholes and honeypots in
198.51.100.240/28, suspect servers in 203.0.113.0/24 and 2001:db8:c2::/48; names end in
`.example`; hashes start with `deadbeef` (obviously fake); the credentials the honeypot saw
are `demo-user-N` / `demo-password-N`, which the parser must never store.
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

DAY = datetime(2026, 11, 20, tzinfo=UTC)
SEED = 20261120
FAMILIES = ("Emotet", "QakBot", "IcedID", "Pikabot")
PASSWORD = "demo-password-{}"  # what the honeypot's attackers tried
USERNAME = "demo-user-{}"
PARTNER = "US agency (demo)"  # the MISP event's creator: a demo partner (exchange/demo.py)
HANDLING = ("H2",)  # the law-enforcement handling code on the analyst's case list


@dataclass(frozen=True)
class DemoFile:
    """One file of the day and how `ingest` loads it (None: the format's default)."""

    path: Path
    format: str
    collection: str  # collection id or alias
    options: dict[str, str] = field(default_factory=dict)
    tlp: str | None = None
    handling: tuple[str, ...] = ()
    source: str | None = None


@dataclass(frozen=True)
class Server:
    """A suspect C2 server: several feeds report the same ones."""

    address: str
    port: int
    family: str
    first_seen: datetime


@dataclass
class _Day:
    rng: random.Random
    servers: list[Server]
    payload_urls: list[str] = field(default_factory=list)  # URLhaus URLs, for the honeypot


def write_day(directory: Path, seed: int = SEED) -> list[DemoFile]:
    """Write the day's files into `directory`; each with how to load it, in loading order."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    day = _Day(rng, _servers(rng, 24))
    sinkhole = _sinkhole(directory / "2026-11-20-event4_sinkhole.csv", day, rows=300, bots=120)
    urlhaus = _urlhaus(directory / "2026-11-20-urlhaus-csv-recent.csv", day, count=40)
    return [  # the honeypot's attackers fetch URLhaus's payloads: written after, loaded before
        sinkhole,
        _honeypot(directory / "2026-11-20-event4_honeypot_brute_force.csv", day, rows=40),
        urlhaus,
        _feodo(directory / "2026-11-20-feodotracker-ipblocklist.json", day),
        _threatfox(directory / "2026-11-20-threatfox-recent.json", day, count=40),
        _misp_event(directory / "2026-11-20-misp-event-us-agency.json", day),
        _analyst_list(directory / "2026-11-20-analyst-case-list.csv", day),
    ]


# -- values -------------------------------------------------------------------------------------

def _servers(rng: random.Random, count: int) -> list[Server]:
    hosts = rng.sample(range(10, 200), count)
    return [Server(f"2001:db8:c2::{host:x}" if n % 8 == 7 else f"203.0.113.{host}",
                   rng.choice((443, 447, 995, 2222, 8080)), rng.choice(FAMILIES),
                   DAY - timedelta(days=rng.randrange(2, 19), seconds=rng.randrange(86_400)))
            for n, host in enumerate(hosts)]


def _times(rng: random.Random, count: int) -> list[datetime]:
    """`count` distinct moments of the day, in order."""
    return [DAY + timedelta(seconds=s) for s in sorted(rng.sample(range(86_400), count))]


def _victims(rng: random.Random, count: int) -> list[str]:
    hosts = rng.sample([f"192.0.2.{n}" for n in range(1, 255)] +
                       [f"198.51.100.{n}" for n in range(1, 128)], count)
    return [f"2001:db8:1::{n + 1:x}" if n % 10 == 9 else host for n, host in enumerate(hosts)]


def _fake_hash(rng: random.Random, length: int) -> str:
    return ("deadbeef" + f"{rng.getrandbits(length * 4):0{length}x}")[:length]


def _text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv(path: Path, header: list[str], rows: list[list[Any]], preamble: str = "") -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(preamble + out.getvalue(), encoding="utf-8")


def _json(path: Path, document: Any) -> None:
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


# -- Shadowserver -------------------------------------------------------------------------------

_EVENT4 = ["timestamp", "protocol", "src_ip", "src_port", "src_asn", "src_geo", "src_region",
           "src_city", "src_hostname", "src_naics", "src_sector", "device_vendor",
           "device_type", "device_model", "dst_ip", "dst_port", "dst_asn", "dst_geo",
           "dst_region", "dst_city", "dst_hostname", "dst_naics", "dst_sector",
           "public_source", "infection", "family", "tag", "application", "version", "event_id"]
_HONEYPOT = _EVENT4 + ["service", "start_time", "end_time", "client_version", "username",
                       "password", "payload_url", "payload_md5"]


def _event4(rng: random.Random, moment: datetime, victim: str, sensor: str, port: int, *,
            infection: str, family: str, application: str, asn: int = 64497,
            host: str = "", sensor_name: str = "DemoSinkhole") -> list[Any]:
    """One event4 row: a connection from a victim (src) to a sensor (dst)."""
    return [_text(moment), "tcp", victim, rng.randrange(1024, 65_536), asn, "XX",
            "Demo Region", "Demo City", host, 517311, "Communications", "", "", "", sensor,
            port, 64500, "XX", "", "", "sensor.shadowserver.example", "", "", sensor_name,
            infection, family, "", application, "", ""]


def _sinkhole(path: Path, day: _Day, *, rows: int, bots: int) -> DemoFile:
    """Infected machines calling a sinkhole, each several times a day."""
    rng = day.rng
    machines = [(ip, rng.choice(FAMILIES).lower(), rng.choice((64496, 64497, 64511)),
                 f"dsl-{n}.isp.example") for n, ip in enumerate(_victims(rng, bots))]
    lines = []
    for moment in _times(rng, rows):
        ip, family, asn, host = rng.choice(machines)
        port, application = rng.choice(((80, "http"), (443, "tls")))
        lines.append(_event4(rng, moment, ip, f"198.51.100.{rng.randrange(241, 244)}", port,
                             infection=family, family=family, application=application,
                             asn=asn, host=host))
    _csv(path, _EVENT4, lines)
    return DemoFile(path, "shadowserver-event4-sinkhole", "victim-notifications")


def _honeypot(path: Path, day: _Day, *, rows: int) -> DemoFile:
    """Machines trying passwords on a honeypot; some then fetch a URLhaus payload."""
    rng = day.rng
    attackers = _victims(rng, rows * 3 // 4)
    lines = []
    for n, moment in enumerate(_times(rng, rows)):
        service, port, client = rng.choice((("ssh", 22, "SSH-2.0-Go"),
                                            ("ssh", 22, "SSH-2.0-libssh2_1.9.0"),
                                            ("telnet", 23, "")))
        end = moment + timedelta(seconds=rng.randrange(2, 40))
        fetched = n % 5 == 0 and day.payload_urls
        row = _event4(rng, moment, rng.choice(attackers), f"198.51.100.{250 + n % 3}", port,
                      infection=f"{service}-brute-force", family="", application=service,
                      sensor_name="DemoHoneypot")
        lines.append(row + [service, _iso(moment), _iso(end), client, USERNAME.format(n),
                            PASSWORD.format(n), rng.choice(day.payload_urls) if fetched else "",
                            _fake_hash(rng, 32) if fetched else ""])
    _csv(path, _HONEYPOT, lines)
    return DemoFile(path, "shadowserver-event4-honeypot-brute-force", "victim-notifications")


# -- abuse.ch -----------------------------------------------------------------------------------

def _banner(title: str) -> str:
    return (f"{'#' * 64}\n# {title}\n# Last updated: {_text(DAY + timedelta(days=1))} UTC\n"
            "#\n# Synthetic demo data: documentation addresses and .example names only\n"
            f"{'#' * 64}\n#\n")


_PAYLOADS = ((["32-bit", "elf", "mips", "Mozi"], "Mozi.m"), (["elf", "arm7", "Mirai"], "arm7"),
             (["exe", "{family}"], "setup.exe"), (["zip", "js", "{family}"], "invoice.zip"),
             (["doc", "dropped-by-{family}", "{family}"], "report.doc"))


def _urlhaus(path: Path, day: _Day, *, count: int) -> DemoFile:
    """URLhaus's recent malware URLs (CSV, header in a comment); a third went offline."""
    rng = day.rng
    columns = ["id", "dateadded", "url", "url_status", "last_online", "threat", "tags",
               "urlhaus_link", "reporter"]
    rows = []
    for n, added in enumerate(_times(rng, count)):
        tags, file = rng.choice(_PAYLOADS)
        family = rng.choice(FAMILIES)
        host = (f"203.0.113.{rng.randrange(200, 255)}:{rng.randrange(30_000, 60_000)}"
                if file in ("Mozi.m", "arm7") else f"{rng.choice(('cdn', 'dl', 'files'))}-{n}."
                f"{rng.choice(('bad', 'shady-hosting'))}.example")
        url = f"http://{host}/{file}"
        day.payload_urls.append(url)
        last = added + timedelta(minutes=rng.randrange(5, 600))
        offline = n % 3 == 1
        entry_id = 3_400_000 + n * 7
        rows.append([entry_id, _text(added), url, "offline" if offline else "online",
                     _text(min(last, DAY + timedelta(hours=23, minutes=59))), "malware_download",
                     ",".join(t.format(family=family) for t in tags),
                     f"https://urlhaus.abuse.example/url/{entry_id}/",
                     rng.choice(("demo_reporter_a", "demo_reporter_b"))])
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    path.write_text(_banner("abuse.ch URLhaus Database Dump (CSV - recent URLs)") +
                    f"# {','.join(columns)}\n" + out.getvalue(), encoding="utf-8")
    return DemoFile(path, "abusech-urlhaus-csv", "indicators")


def _feodo(path: Path, day: _Day) -> DemoFile:
    """Feodo Tracker's C2 blocklist (JSON): every suspect server of the day."""
    entries = []
    for n, server in enumerate(day.servers):
        offline = n % 4 == 3
        entries.append({
            "ip_address": server.address, "port": server.port,
            "status": "offline" if offline else "online",
            "hostname": f"vps-{n}.hosting.example" if n % 3 == 0 else None,
            "as_number": 64500 + n % 3, "as_name": "DEMO-HOSTING-AS", "country": "XX",
            "first_seen": _text(server.first_seen),
            "last_online": (DAY - timedelta(days=1 if offline else 0)).strftime("%Y-%m-%d"),
            "malware": server.family,
        })
    _json(path, entries)
    return DemoFile(path, "abusech-feodo-json", "indicators")


_THREATFOX_KINDS = (("ip:port", "botnet_cc"), ("domain", "botnet_cc"),
                    ("url", "payload_delivery"), ("sha256_hash", "payload"))


def _threatfox(path: Path, day: _Day, *, count: int) -> DemoFile:
    """ThreatFox's recent IOCs (JSON export, keyed by IOC id): C2s, domains, URLs, files."""
    rng = day.rng
    document: dict[str, list[dict[str, Any]]] = {}
    for n, seen in enumerate(_times(rng, count)):
        ioc_type, threat_type = _THREATFOX_KINDS[n % len(_THREATFOX_KINDS)]
        server = day.servers[n % len(day.servers)]
        family = server.family if ioc_type == "ip:port" else rng.choice(FAMILIES)
        value = _ioc(day, n, ioc_type, server, family)
        document[str(1_700_000 + n * 3)] = [{
            "ioc_value": value, "ioc_type": ioc_type, "threat_type": threat_type,
            "malware": f"win.{family.lower()}", "malware_alias": None,
            "malware_printable": family, "first_seen_utc": _text(seen),
            "last_seen_utc": _text(seen + timedelta(hours=2)) if n % 3 == 0 else None,
            "confidence_level": (50, 75, 100)[n % 3], "is_compromised": False,
            "reference": f"https://research.example/{family.lower()}/{n}" if n % 4 == 1 else None,
            "tags": f"{family.lower()}, {threat_type}", "anonymous": 0,
            "reporter": rng.choice(("demo_reporter_a", "demo_reporter_c")),
        }]
    _json(path, document)
    return DemoFile(path, "abusech-threatfox-json", "indicators")


def _ioc(day: _Day, n: int, ioc_type: str, server: Server, family: str) -> str:
    if ioc_type == "ip:port":
        host = f"[{server.address}]" if ":" in server.address else server.address
        return f"{host}:{server.port}"
    if ioc_type == "domain":
        return f"cc-{n}.{family.lower()}-panel.example"
    if ioc_type == "url":  # now and then one URLhaus knows too
        return day.rng.choice(day.payload_urls) if n % 8 == 2 else \
            f"https://update-{n}.bad.example/gate.php"
    return _fake_hash(day.rng, 64)


# -- a partner's MISP event ---------------------------------------------------------------------

def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _epoch(moment: datetime) -> str:
    return str(int(moment.timestamp()))


def _attribute(rng: random.Random, kind: str, value: str, category: str, at: datetime, *,
               to_ids: bool = True, tags: tuple[str, ...] = (), comment: str = "",
               ) -> dict[str, Any]:
    return {"uuid": _uuid(rng), "type": kind, "category": category, "to_ids": to_ids,
            "value": value, "timestamp": _epoch(at), "distribution": "5", "comment": comment,
            "deleted": False, "Tag": [{"name": t} for t in tags]}


def _misp_event(path: Path, day: _Day) -> DemoFile:
    """A partner agency's MISP event about one family's campaign, pushed as a file."""
    rng = day.rng
    family = "Pikabot"
    servers = [s for s in day.servers if s.family == family][:3] or day.servers[:3]
    at = DAY + timedelta(hours=15)
    c2 = "kill-chain:Command and Control"
    attributes = [
        *(_attribute(rng, "ip-dst|port", f"{s.address}|{s.port}", "Network activity", at,
                     tags=(c2,)) for s in servers),
        _attribute(rng, "domain", "pika-panel.bad.example", "Network activity", at, tags=(c2,)),
        _attribute(rng, "url", "https://docs-share.bad.example/download/invoice-2611.zip",
                   "Payload delivery", at),
        _attribute(rng, "sha256", _fake_hash(rng, 64), "Payload delivery", at),
        _attribute(rng, "filename|md5", f"invoice-2611.js|{_fake_hash(rng, 32)}",
                   "Payload installation", at),
        _attribute(rng, "email-src", "billing@invoices.bad.example", "Payload delivery", at,
                   to_ids=False, comment="sender of the lure"),
        _attribute(rng, "ip-src", _victims(rng, 1)[0], "Network activity", at, to_ids=False,
                   tags=('x-exchange:data-subject="victim"',), comment="infected workstation"),
    ]
    _json(path, {"Event": {
        "uuid": _uuid(rng), "info": f"{family} loader campaign: C2 servers and delivery",
        "date": DAY.strftime("%Y-%m-%d"), "timestamp": _epoch(at),
        "publish_timestamp": _epoch(at + timedelta(minutes=10)), "published": True,
        "threat_level_id": "2", "analysis": "2", "distribution": "1",
        "Orgc": {"name": PARTNER, "uuid": _uuid(rng)},
        "Tag": [{"name": "tlp:amber"}, {"name": f'misp-galaxy:malpedia="{family}"'}],
        "Attribute": attributes, "Object": [],
    }})
    return DemoFile(path, "misp-event", "submissions", source=PARTNER)


# -- an analyst's case list ---------------------------------------------------------------------

ANALYST_MAPPING = {"value": "Indicator", "type": "Type", "first_seen": "First seen",
                   "last_seen": "Last seen", "malware": "Family", "kind_column": "Role",
                   "description": "Comment"}


def _analyst_list(path: Path, day: _Day) -> DemoFile:
    """Indicators an analyst collected for a case: law-enforcement eyes only."""
    rng = day.rng
    rows: list[list[Any]] = []
    for n, server in enumerate(day.servers[:6]):
        rows.append([server.address, "ipv6" if ":" in server.address else "ipv4",
                     _text(server.first_seen), _text(DAY + timedelta(hours=9 + n)),
                     server.family, "c2", "CASE-2026-0815", "seen in the seized laptop's logs"])
    for n in range(4):
        rows.append([f"panel-{n}.case-0815.example", "domain", _text(DAY + timedelta(hours=n)),
                     "", rng.choice(FAMILIES), "c2", "CASE-2026-0815", "admin panel"])
    rows.append(["https://drop.case-0815.example/upload.php", "url",
                 _text(DAY + timedelta(hours=6)), "", "", "distribution", "CASE-2026-0815",
                 "exfiltration drop"])
    for n in range(3):
        rows.append([_fake_hash(rng, 64), "sha256", _text(DAY + timedelta(hours=7, minutes=n)),
                     "", rng.choice(FAMILIES), "payload", "CASE-2026-0815",
                     "sample from the seized server"])
    _csv(path, ["Indicator", "Type", "First seen", "Last seen", "Family", "Role", "Case",
                "Comment"], rows)
    return DemoFile(path, "ioc-csv", "le-only", options=dict(ANALYST_MAPPING), tlp="red",
                    handling=HANDLING, source="Exchange analyst (demo)")
