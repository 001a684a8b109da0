"""STIX 2.1 patterns: is an indicator's `pattern` valid STIX patterning?

The authority is the STIX 2.1 patterning grammar as the `stix2-patterns` package implements it
(the same check stix2's Indicator runs when a reader parses the object, so a pattern it refuses
would make every reader of the collection fail). That parser costs 250-500 µs per pattern, more
than the rest of an object's check many times over, so the simple comparisons nearly all feed
indicators are (`[ipv4-addr:value = '198.51.100.7']`, `[file:hashes.'SHA-256' = '…']`, joined
by AND/OR) are recognised by a small scanner first. The scanner only ever says "valid" for a
subset of what the grammar accepts (tests/test_check_differential.py holds it to that); anything
else goes to the grammar.

On top of the grammar, a pattern must name object types STIX 2.1 defines (or custom ones,
`x-…`) and, on those types, properties the specification gives them (or custom ones, `x_…`):
the grammar takes `[ip-addr:value = …]` or `[ipv4-addr:address = …]`, which match nothing.
"""

from __future__ import annotations

import functools
import re

# Properties of each STIX 2.1 cyber-observable type beyond the common ones (section 6).
SCO_PROPERTIES: dict[str, frozenset[str]] = {
    kind: frozenset(names.split()) | frozenset(
        "type id spec_version object_marking_refs granular_markings defanged extensions".split())
    for kind, names in {
        "artifact": "mime_type payload_bin url hashes encryption_algorithm decryption_key",
        "autonomous-system": "number name rir",
        "directory": "path path_enc ctime mtime atime contains_refs",
        "domain-name": "value resolves_to_refs",
        "email-addr": "value display_name belongs_to_ref",
        "email-message": "is_multipart date content_type from_ref sender_ref to_refs cc_refs "
                         "bcc_refs subject received_lines additional_header_fields message_id "
                         "body body_multipart raw_email_ref",
        "file": "hashes size name name_enc magic_number_hex mime_type ctime mtime atime "
                "parent_directory_ref contains_refs content_ref",
        "ipv4-addr": "value resolves_to_refs belongs_to_refs",
        "ipv6-addr": "value resolves_to_refs belongs_to_refs",
        "mac-addr": "value",
        "mutex": "name",
        "network-traffic": "start end is_active src_ref dst_ref src_port dst_port protocols "
                           "src_byte_count dst_byte_count src_packets dst_packets ipfix "
                           "src_payload_ref dst_payload_ref encapsulates_refs "
                           "encapsulated_by_ref",
        "process": "is_hidden pid created_time cwd command_line environment_variables "
                   "opened_connection_refs creator_user_ref image_ref parent_ref child_refs",
        "software": "name cpe swid languages vendor version",
        "url": "value",
        "user-account": "user_id credential account_login account_type display_name "
                        "is_service_account is_privileged can_escalate_privs is_disabled "
                        "account_created account_expires credential_last_changed "
                        "account_first_login account_last_login",
        "windows-registry-key": "key values modified_time creator_user_ref number_of_subkeys",
        "x509-certificate": "is_self_signed hashes version serial_number signature_algorithm "
                            "issuer validity_not_before validity_not_after subject "
                            "subject_public_key_algorithm subject_public_key_modulus "
                            "subject_public_key_exponent x509_v3_extensions",
    }.items()
}

# Hex digest lengths by algorithm, keyed the way stix2-patterns compares a hash selector
# (upper case, no hyphens, no quotes): the grammar refuses a pattern whose digest for one of
# these is not that many hex digits.
HASH_HEX_LENGTHS = {
    "MD5": 32, "SHA1": 40, "SHA224": 56, "SHA256": 64, "SHA384": 96, "SHA512": 128,
    "SHA3224": 56, "SHA3256": 64, "SHA3384": 96, "SHA3512": 128, "RIPEMD160": 40,
    "WHIRLPOOL": 128,
}

# Every property name a STIX 2.1 observable has: the step after a reference must be one.
_ANY_PROPERTY = frozenset().union(*SCO_PROPERTIES.values())

# The fast path's language: `[` comparison (AND|OR comparison)* `]`, observations joined by
# AND/OR. A comparison is `type:property = 'string'` (or !=) on a STIX 2.1 type and one of its
# properties, a reference's property (`dst_ref.value`), or `hashes.<algorithm>`. Keywords are
# upper case between white space, and strings hold only the escapes the grammar allows.
_SPACE = r"[ \t\r\n]*"
_COMPARISON = re.compile(
    _SPACE + r"([a-z0-9]+(?:-[a-z0-9]+)*):([a-z_][a-z0-9_]*)"
    r"(?:\.([a-zA-Z_][a-zA-Z0-9_]*|'[A-Za-z0-9-]+'))?" + _SPACE + r"(?:=|!=)" + _SPACE
    + r"'((?:[^'\\]|\\['\\])*)'")
_JOIN = re.compile(r"[ \t\r\n]+(?:AND|OR)[ \t\r\n]+")
_OPEN = re.compile(_SPACE + r"\[")
_CLOSE = re.compile(_SPACE + r"\]")
_END = re.compile(_SPACE + r"\Z")
_HEX = re.compile(r"[0-9a-fA-F]+")


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid STIX 2.1 pattern; None when it is."""
    if _simple(pattern):
        return None
    return _grammar_problem(pattern)


def _simple(pattern: str) -> bool:
    """True when the pattern is in the fast path's language (so valid); False when the
    grammar must decide (False is never a refusal)."""
    pos = 0
    while True:
        step = _OPEN.match(pattern, pos)
        if step is None:
            return False
        while True:
            comparison = _COMPARISON.match(pattern, step.end())
            if comparison is None or not _plain_comparison(*comparison.groups()):
                return False
            step = _JOIN.match(pattern, comparison.end()) or comparison
            if step is comparison:
                break
        step = _CLOSE.match(pattern, step.end())
        if step is None:
            return False
        if _END.match(pattern, step.end()):
            return True
        joined = _JOIN.match(pattern, step.end())
        if joined is None:
            return False
        pos = joined.end()


def _plain_comparison(kind: str, prop: str, step: str | None, value: str) -> bool:
    properties = SCO_PROPERTIES.get(kind)
    if properties is None or prop not in properties or prop == "extensions":
        return False
    if prop == "hashes":
        if step is None:
            return False
        length = HASH_HEX_LENGTHS.get(step.upper().replace("-", "").replace("'", ""))
        return length is not None and len(value) == length and bool(_HEX.fullmatch(value))
    # Only a reference's own property may follow it (a quoted or hashes step is the grammar's).
    return step is None or (prop.endswith("_ref") and step in _ANY_PROPERTY
                            and step != "hashes")


@functools.lru_cache(maxsize=4096)
def _grammar_problem(pattern: str) -> str | None:
    """The full grammar's verdict, then the object types and properties it names.

    Cached: a push that repeats one complex pattern pays the parser once."""
    from stix2patterns.v21.pattern import Pattern  # slow to import; rare path
    from stix2patterns.validator import run_validator

    if not pattern.replace("(", "").strip():
        return "pattern is empty"  # stix2-patterns 2.1.2 raises on it instead of refusing
    try:
        errors = run_validator(pattern, "2.1")
    except Exception as exc:  # the parser's own bug must refuse the object, not fail a push
        return f"pattern could not be parsed ({type(exc).__name__})"
    if errors:
        return "pattern is not valid STIX patterning: " + _plain(str(errors[0]))
    for kind, comparisons in Pattern(pattern).inspect().comparisons.items():
        properties = SCO_PROPERTIES.get(kind)
        if properties is None:
            if not kind.startswith("x-"):
                return f"pattern names object type {kind!r}, which STIX 2.1 does not define " \
                       f"(custom types start with 'x-')"
            continue
        for path, _op, _value in comparisons:
            first = path[0]
            if isinstance(first, str) and first not in properties \
                    and not first.startswith("x_"):
                return f"pattern names property {first!r}, which a STIX 2.1 {kind} does not " \
                       f"have (custom properties start with 'x_')"
    return None


def _plain(error: str) -> str:
    return error.removeprefix("FAIL: ")
