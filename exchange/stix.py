"""STIX 2.1 helpers: fast validation, timestamps and version keys.

Validation here is hand-written on purpose: it runs on every pushed object, and the schema
validator (stix2-validator) manages about 200 objects/s per core. It checks the structure
here and the values by type in constraints.py (patterns in patterns.py), so that what it
accepts also passes `stix2.parse` and stix2-validator: tests/test_check_differential.py runs
all three over one corpus and lists every disagreement with its reason.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .constraints import TYPED_TIMESTAMPS, Rule, rules_for
from .errors import Invalid, InvalidObject
from .markings import handling_codes, handling_problem, marking_rank, reserved_conflict
from .stix_extensions import problem as extension_problem

SUPPORTED_SPEC_VERSIONS = ("2.1",)

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
_TYPE_RE = re.compile(r"^(?!-)(?!.*--)[a-z0-9-]{3,250}(?<!-)$")
IDENTIFIER_RE = re.compile(rf"^([a-z0-9-]{{3,250}})--{_UUID}$")
_PROPERTY_RE = re.compile(r"^[a-z0-9_]{2,250}$")
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d+))?Z$")

SDO_TYPES = frozenset(
    "attack-pattern campaign course-of-action grouping identity incident indicator "
    "infrastructure intrusion-set location malware malware-analysis note observed-data "
    "opinion report threat-actor tool vulnerability".split()
)
SRO_TYPES = frozenset({"relationship", "sighting"})
META_TYPES = frozenset({"language-content", "marking-definition", "extension-definition"})
SCO_TYPES = frozenset(
    "artifact autonomous-system directory domain-name email-addr email-message file "
    "ipv4-addr ipv6-addr mac-addr mutex network-traffic process software url user-account "
    "windows-registry-key x509-certificate".split()
)

# Properties each standard type must carry beyond the common ones (STIX 2.1 section 4-6).
REQUIRED: dict[str, tuple[str, ...]] = {
    "attack-pattern": ("name",),
    "campaign": ("name",),
    "course-of-action": ("name",),
    "grouping": ("context", "object_refs"),
    "identity": ("name",),
    "incident": ("name",),
    "indicator": ("pattern", "pattern_type", "valid_from"),
    "infrastructure": ("name",),
    "intrusion-set": ("name",),
    "malware": ("is_family",),
    "malware-analysis": ("product",),
    "note": ("content", "object_refs"),
    "observed-data": ("first_observed", "last_observed", "number_observed"),
    "opinion": ("opinion", "object_refs"),
    "report": ("name", "published", "object_refs"),
    "threat-actor": ("name",),
    "tool": ("name",),
    "vulnerability": ("name",),
    "relationship": ("relationship_type", "source_ref", "target_ref"),
    "sighting": ("sighting_of_ref",),
    "language-content": ("object_ref", "contents"),
    "extension-definition": ("name", "schema", "version", "extension_types", "created_by_ref"),
    "domain-name": ("value",),
    "ipv4-addr": ("value",),
    "ipv6-addr": ("value",),
    "url": ("value",),
    "email-addr": ("value",),
    "mac-addr": ("value",),
    "mutex": ("name",),
    "autonomous-system": ("number",),
    "network-traffic": ("protocols",),
    "directory": ("path",),
    "software": ("name",),
    "email-message": ("is_multipart",),
}

TIMESTAMP_PROPERTIES = frozenset(
    "created modified valid_from valid_until first_seen last_seen first_observed "
    "last_observed published object_modified".split()
)


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What the store and the policy need to know about one object version, decided once at
    write time."""

    id: str
    type: str
    spec_version: str
    version: str | None  # `modified`, else `created`; None for unversioned objects (SCOs)
    rank: int | None = None  # highest TLP rank of its markings; None: no TLP marking
    h2: bool = False  # handling code H2
    refs: tuple[str, ...] = ()  # referenced ids, but not its author or its markings
    author: str | None = None  # created_by_ref
    custom: bool = False  # a custom object type (x-...) or a custom property (x_...)

    @property
    def authored(self) -> bool:
        """SDOs, SROs and definitions state their creator; observables do not."""
        return self.type not in SCO_TYPES and self.version is not None


def parse_timestamp(value: Any, name: str = "timestamp") -> tuple[datetime, str]:
    """Parse a STIX timestamp; return (UTC datetime truncated to microseconds, raw fraction)."""
    if not isinstance(value, str) or _checked_fraction(value) is None:
        if isinstance(value, str) and _TIMESTAMP_RE.match(value):
            raise Invalid(f"{name} {value!r} is not a real date and time")
        raise Invalid(f"{name} must be an RFC 3339 UTC timestamp like 2024-01-31T12:00:00.000Z")
    fraction = _checked_fraction(value) or ""
    moment = datetime.fromisoformat(value[:19]).replace(tzinfo=UTC)
    return moment + timedelta(microseconds=int((fraction + "000000")[:6])), fraction


@functools.lru_cache(maxsize=8192)
def _checked_fraction(value: str) -> str | None:
    """The fraction digits of a valid timestamp ('' when none); None when invalid.

    Cached: a push repeats the same few timestamps across thousands of objects.
    """
    match = _TIMESTAMP_RE.match(value)
    if match is None:
        return None
    try:
        datetime.fromisoformat(value[:19])
    except ValueError:
        return None
    return match.group(1) or ""


def version_key(value: str) -> str:
    """A string that sorts like the timestamp it encodes, equal for equal instants.

    Keeps sub-microsecond precision (STIX allows any), so two versions never collapse.
    """
    fraction = _checked_fraction(value)
    if fraction is None:
        parse_timestamp(value)  # raises, saying what is wrong
    return value[:19] + "." + (fraction or "").rstrip("0")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def timestamp_micros(value: str, name: str = "timestamp") -> int:
    """A STIX timestamp as integer microseconds since the epoch (sub-microseconds dropped)."""
    moment, _ = parse_timestamp(value, name)
    return to_micros(moment)


def format_micros(micros: int) -> str:
    """Integer microseconds as a TAXII timestamp with microsecond precision."""
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_format_second(seconds)}.{fraction:06d}Z"


@functools.lru_cache(maxsize=1024)
def _format_second(seconds: int) -> str:
    """Cached: the date_added of a batch of objects falls within the same second or two."""
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def now_micros() -> int:
    return to_micros(datetime.now(UTC))


def check_object(obj: Any, body: bytes | None = None) -> ObjectFacts:
    """Validate one STIX 2.1 object's structure; raise InvalidObject saying what is wrong.

    `body` is the object as JSON (orjson's compact form), when the caller has it: it lets
    the references be found without walking every nested value."""
    if not isinstance(obj, dict):
        raise InvalidObject("a STIX object must be a JSON object")
    obj_type = obj.get("type")
    if not isinstance(obj_type, str) or not _TYPE_RE.match(obj_type):
        raise InvalidObject("'type' is missing or not a valid STIX type name")
    obj_id = obj.get("id")
    match = IDENTIFIER_RE.match(obj_id) if isinstance(obj_id, str) else None
    if match is None:
        raise InvalidObject("'id' is missing or not of the form <type>--<RFC 4122 UUID>")
    if match.group(1) != obj_type:
        raise InvalidObject(f"'id' {obj_id} does not start with its type {obj_type!r}")
    _remember_identifier(match.group(0))
    spec_version = obj.get("spec_version")
    if spec_version is None:
        raise InvalidObject(f"{obj_id}: 'spec_version' is required")
    if spec_version not in SUPPORTED_SPEC_VERSIONS:
        raise InvalidObject(f"{obj_id}: spec_version {spec_version!r} is not supported (2.1)")
    try:
        shape = _shape(obj_type, tuple(obj))
        version = _check_properties(obj, obj_type, shape)
        if obj_type == "marking-definition" and (found := reserved_conflict(obj)):
            raise InvalidObject(found)
        if "extensions" in obj and (found := handling_problem(obj) or extension_problem(obj)):
            raise InvalidObject(found)
    except InvalidObject as exc:
        raise InvalidObject(f"{obj_id}: {exc.description}") from None
    author = obj.get("created_by_ref")
    return ObjectFacts(match.group(0), obj_type, str(spec_version), version,
                       rank=marking_rank(obj), h2="H2" in handling_codes(obj),
                       refs=_references(obj, body, shape), author=author if author else None,
                       custom=shape.custom)


# References that do not reveal another object's content: who made it, how it is marked.
_NOT_CONTENT_REFS = frozenset({"created_by_ref", "object_marking_refs", "granular_markings"})


def references(obj: dict[str, Any]) -> tuple[str, ...]:
    """Every id an object references, at any depth (in extensions, custom properties, an
    email's parts), except its author and its markings: an object that references a withheld
    one would reveal it, so the policy withholds it too. Used when an object is stored and
    when a stored one is read back, so both always agree."""
    found: list[str] = []
    _scan(((k, v) for k, v in obj.items() if k not in _NOT_CONTENT_REFS), found)
    return tuple(dict.fromkeys(found))


_REF_NAMES = ("_ref", "_refs")


def _references(obj: dict[str, Any], body: bytes | None, shape: _Shape) -> tuple[str, ...]:
    """`references(obj)`, found from the top-level properties alone when the JSON body shows
    that no nested object has a property named like a reference: every name ending in `_ref`
    or `_refs` appears in the body as `_ref":` or `_refs":`, so when the body holds no more
    of those than the object's own top-level names, nothing below them can hold one (a
    string value that happens to contain the text only makes the count larger: then every
    value is walked, as `references` does)."""
    if body is None or body.count(b'_ref":') + body.count(b'_refs":') != shape.ref_names:
        return references(obj)
    found: list[str] = []
    _scan(((k, obj[k]) for k in shape.content_refs), found)
    return tuple(dict.fromkeys(found))


def _scan(items: Iterable[tuple[str, Any]], found: list[str]) -> None:
    """References among (name, value) pairs: a `*_ref` identifier, a `*_refs` list of them,
    and the same inside any dictionary or list below. It runs over every property of every
    object stored, so scalars are tested in the loop, not in a call each."""
    for name, value in items:
        if isinstance(value, str):
            if name.endswith(_REF_NAMES) and (value in _VALID_IDENTIFIERS
                                              or IDENTIFIER_RE.match(value)):
                found.append(value)
        elif isinstance(value, dict):
            _scan(value.items(), found)
        elif isinstance(value, list):
            _scan(((name, item) for item in value), found)


def _check_properties(obj: dict[str, Any], obj_type: str, shape: _Shape) -> str | None:
    if shape.error:
        raise InvalidObject(shape.error)
    for name in shape.timestamps:
        value = obj[name]
        if not isinstance(value, str) or _checked_fraction(value) is None:
            _timestamp(value, name)
    for name in shape.refs:
        _identifier(obj[name], name)
    for name in shape.ref_lists:
        value = obj[name]
        if not isinstance(value, list) or not value:
            raise InvalidObject(f"{name!r} must be a non-empty list of identifiers")
        for item in value:
            _identifier(item, name)
    for rule in shape.rules:
        if problem := rule(obj):
            raise InvalidObject(problem)
    if not shape.versioned:
        return None
    created = obj.get("created")
    if created is None:
        raise InvalidObject("'created' is required")
    if obj_type == "marking-definition" and "modified" not in obj:
        return str(created)
    modified = obj.get("modified")
    if modified is None:
        raise InvalidObject("'modified' is required")
    if version_key(modified) < version_key(created):
        raise InvalidObject("'modified' is earlier than 'created'")
    return str(modified)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What to check on objects of one type with one set of property names."""

    error: str  # '' when the names are fine
    timestamps: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    ref_lists: tuple[str, ...] = ()
    versioned: bool = False
    rules: tuple[Rule, ...] = ()  # value rules for this type and these names (constraints.py)
    custom: bool = False  # a custom object type (x-...) or a custom property (x_...)
    ref_names: int = 0  # how many of the names end in _ref or _refs
    content_refs: tuple[str, ...] = ()  # those of them `references` looks into, in order


# Cached: the objects of a push come in a few shapes (the same type with the same property
# names), so each object's check is only the values that need one.
@functools.lru_cache(maxsize=2048)
def _shape(obj_type: str, names: tuple[str, ...]) -> _Shape:
    timestamps, refs, ref_lists = [], [], []
    typed = TYPED_TIMESTAMPS.get(obj_type, ())
    for name in names:
        kind = _property_kind(name)
        if kind is _TIMESTAMP or name in typed:
            timestamps.append(name)
        elif kind is _REF:
            refs.append(name)
        elif kind is _REFS:
            ref_lists.append(name)
        elif kind is _BAD and name != "id":
            return _Shape(f"property name {name!r} must be lower-case letters, digits, '_'")
    for name in REQUIRED.get(obj_type, ()):
        if name not in names:
            return _Shape(f"{obj_type} requires {name!r}")
    versioned = (obj_type in SDO_TYPES or obj_type in SRO_TYPES or obj_type in META_TYPES
                 or "created" in names or "modified" in names)
    ref_names = [name for name in names if name.endswith(_REF_NAMES)]
    return _Shape("", tuple(timestamps), tuple(refs), tuple(ref_lists), versioned,
                  rules_for(obj_type, names),
                  custom=obj_type.startswith("x-") or any(k.startswith("x_") for k in names),
                  ref_names=len(ref_names),
                  content_refs=tuple(n for n in ref_names if n not in _NOT_CONTENT_REFS))


def _timestamp(value: Any, name: str) -> None:
    if not isinstance(value, str) or _checked_fraction(value) is None:
        try:
            parse_timestamp(value, repr(name))
        except Invalid as exc:
            raise InvalidObject(exc.description) from None


def _identifier(value: Any, name: str) -> None:
    if not isinstance(value, str):
        raise InvalidObject(f"{name!r} holds {value!r}, not a STIX identifier")
    if value in _VALID_IDENTIFIERS:
        return
    if not IDENTIFIER_RE.match(value):
        raise InvalidObject(f"{name!r} holds {value!r}, not a STIX identifier")
    _remember_identifier(value)


# Identifiers already found valid: objects mostly refer to objects just checked (their author,
# markings, the observables an observation holds), so most references need no regex.
_VALID_IDENTIFIERS: set[str] = set()


def _remember_identifier(value: str) -> None:
    if len(_VALID_IDENTIFIERS) >= 100_000:
        _VALID_IDENTIFIERS.clear()  # bounded; the next checks simply fill it again
    _VALID_IDENTIFIERS.add(value)


_PLAIN, _TIMESTAMP, _REF, _REFS, _BAD = "plain", "timestamp", "ref", "refs", "bad"


@functools.lru_cache(maxsize=4096)
def _property_kind(name: str) -> str:
    """What a property name asks to be checked: a timestamp, a reference, references."""
    if not _PROPERTY_RE.match(name):
        return _BAD
    if name in TIMESTAMP_PROPERTIES:
        return _TIMESTAMP
    if name.endswith("_ref"):
        return _REF
    return _REFS if name.endswith("_refs") else _PLAIN


