"""What an object can be found by, decided once from its body at write time.

`index(obj)` gives the search terms of one object version (normalised values and names), the
text of its domains and URLs for prefix and substring search, and the compact facts the browse
filters need (who made it, when an indicator is valid). `search(text)` turns what an analyst
typed into the same normalised form. Both are backend-neutral: SQLite keeps the terms in an
index table and the text in a trigram index; another backend keeps them in an indexed field.

Terms are normalised strings, so one lookup finds a value whatever form it was written in:
- names, hashes, CVE ids, URLs, e-mail addresses: lower case (`cve-2021-44228`);
- domains: lower case, internationalised labels in IDNA 2008 (UTS 46) form;
- IP addresses: `4:` or `6:` and the address as fixed-width hex, so that a CIDR range is one
  range of terms (`4:c6336400` to `4:c63364ff` for 198.51.100.0/24).
An address and a name can never collide: names are never written as `4:` plus hex.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import idna

from ..errors import ExchangeError
from ..model import Indexed, Search
from ..stix import timestamp_micros

# STIX types found by name and aliases.
NAMED = frozenset({"malware", "attack-pattern", "threat-actor", "tool", "campaign",
                   "intrusion-set", "infrastructure", "vulnerability"})
_VALUE_TYPES = {"ipv4-addr": "ip", "ipv6-addr": "ip", "domain-name": "domain", "url": "url",
                "email-addr": "plain", "mac-addr": "plain"}
_HASHED = frozenset({"file", "artifact", "x509-certificate"})
# One comparison of a STIX pattern: `object-type:path OPERATOR 'value'`.
_COMPARISON = re.compile(
    r"([a-z0-9-]+):([a-z0-9_.'\-\[\]*]+)\s*(?:=|!=|LIKE|MATCHES|ISSUBSET|ISSUPERSET)\s*"
    r"'((?:[^'\\]|\\.)*)'", re.I)
MARK = "\x02"  # starts every value in the text index: a prefix search is a phrase after it
# valid_until when an indicator has none: later than every real time.
FOREVER = 2**62
MAX_TERM = 300  # longer values are indexed by their first characters (URLs can be long)

__all__ = ["FOREVER", "MARK", "MAX_TERM", "NAMED", "Indexed", "index", "search", "terms"]


def index(obj: dict[str, Any]) -> Indexed:
    """The terms and facts of one object version."""
    found: set[str] = set()
    texts: list[str] = []
    kind = obj.get("type")
    if kind in _VALUE_TYPES and isinstance(obj.get("value"), str):
        _add(found, texts, _VALUE_TYPES[kind], obj["value"])
    if kind in _HASHED and isinstance(obj.get("hashes"), dict):
        for digest in obj["hashes"].values():
            _add(found, texts, "plain", digest)
    if kind == "file" and isinstance(obj.get("name"), str):
        _add(found, texts, "plain", obj["name"])
    if kind in NAMED:
        names = [obj.get("name")]
        for key in ("aliases", "x_mitre_aliases"):
            if isinstance(obj.get(key), list):
                names += obj[key]
        for name in names:
            if isinstance(name, str):
                _add(found, texts, "plain", name)
        for ref in obj.get("external_references") or ():
            if isinstance(ref, dict) and isinstance(ref.get("external_id"), str) and (
                    ref.get("source_name") in ("cve", "mitre-attack", "capec")):
                _add(found, texts, "plain", ref["external_id"])
    if kind == "indicator" and isinstance(obj.get("pattern"), str) and \
            obj.get("pattern_type", "stix") == "stix":
        for sco, path, value in _COMPARISON.findall(obj["pattern"]):
            value = value.replace("\\'", "'").replace("\\\\", "\\")
            sco = sco.lower()
            if sco in _VALUE_TYPES and path == "value":
                _add(found, texts, _VALUE_TYPES[sco], value)
            elif path.startswith("hashes") or (sco == "file" and path == "name"):
                _add(found, texts, "plain", value)
    source = obj.get("created_by_ref")
    valid_from = valid_until = None
    if kind == "indicator":
        valid_from = _micros(obj.get("valid_from"))
        until = _micros(obj.get("valid_until"))
        valid_until = FOREVER if until is None else until
        if valid_from is None:
            valid_from = 0
    return Indexed(frozenset(found), tuple(dict.fromkeys(texts)),
                   source if isinstance(source, str) else "", valid_from, valid_until)


def terms(obj: dict[str, Any]) -> set[str]:
    """The search terms of one object (see the module's note for their form)."""
    return set(index(obj).terms)


def search(text: str) -> Search:
    """What to look up for what an analyst typed: an address, a CIDR range, or a value or
    name (exact); `*` at the end asks for a prefix of a domain or URL, `*` at both ends for a
    substring. Raises ValueError with a reason an analyst can act on."""
    asked = text.strip()
    if not asked:
        raise ValueError("type something to search for")
    if len(asked) > MAX_TERM:
        raise ValueError(f"at most {MAX_TERM} characters")
    if asked.endswith("*"):
        inner = asked.strip("*")
        if len(inner) < 3:
            raise ValueError("a prefix or substring search needs at least 3 characters")
        return Search(text=inner.lower(), prefix=not asked.startswith("*"), shown=asked)
    if "/" in asked and _ip(asked.split("/", 1)[0]) is not None:
        try:
            network = ipaddress.ip_network(asked, strict=False)
        except ValueError:
            network = None
        if network is not None:
            tag = "4" if network.version == 4 else "6"
            width = 8 if network.version == 4 else 32
            return Search(low=f"{tag}:{int(network.network_address):0{width}x}",
                          high=f"{tag}:{int(network.broadcast_address):0{width}x}",
                          shown=asked)
    found: set[str] = set()
    address = _ip(asked)
    if address is not None:
        found.add(address)
    else:
        found.add(_plain(asked))
        name = _domain(asked)
        if name:
            found.add(name)
        if "://" in asked:
            found.add(_url(asked))
    return Search(terms=tuple(sorted(found)), shown=asked)


def grams(*texts: str) -> set[str]:
    """The trigrams of texts (each text on its own: none spans two), for a substring index
    kept as an array of them (the MongoDB store's)."""
    return {text[i:i + 3] for text in texts for i in range(len(text) - 2)}


def _add(found: set[str], texts: list[str], kind: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        return
    if kind == "ip":
        term = _ip(value)
        if term is None:  # a CIDR in an address object: its network address
            try:
                network = ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                return
            term = _ip(str(network.network_address))
        if term is not None:
            found.add(term)
        return
    if kind == "domain":
        name = _domain(value)
        if name:
            found.add(name[:MAX_TERM])
            texts.append(name)
        return
    if kind == "url":
        link = _url(value)
        found.add(link[:MAX_TERM])
        texts.append(link)
        return
    found.add(_plain(value))


def _plain(value: str) -> str:
    return value.strip().lower()[:MAX_TERM]


def _ip(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 4:
        return f"4:{int(address):08x}"
    return f"6:{int(address):032x}"


def _domain(value: str) -> str:
    """A domain in IDNA 2008 form, lower case; '' when the text is not a domain name."""
    name = value.strip().rstrip(".")
    if not name or "." not in name or any(c in name for c in " /:@"):
        return ""
    if name.isascii():
        return name.lower()
    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return name.lower()


def _url(value: str) -> str:
    """A URL in lower case with its host in IDNA form (paths are compared case-blind too: an
    analyst pasting a URL rarely has its exact case)."""
    link = value.strip()
    scheme, sep, rest = link.partition("://")
    if not sep:
        return link.lower()
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{_domain(host) or host.lower()}{slash}{path.lower()}"


def _micros(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return timestamp_micros(value)
    except ExchangeError:  # checked on the way in; an old stored version may not have been
        return None
