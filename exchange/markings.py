"""Markings the sharing policy reads: TLP (1.0 and 2.0) and law-enforcement handling.

A version's TLP rank is the highest over its `object_marking_refs` and `granular_markings`.
TLP 1.0 WHITE/GREEN/AMBER/RED count as CLEAR/GREEN/AMBER/RED. The reserved TLP marking
definitions are fixed: a pushed object that reuses one of their ids with other content would
let a sender relabel every object that references it, so it is refused.

Handling codes travel in a STIX property extension defined by this server (served at
`/extensions/`, schema in `schemas/handling-extension.schema.json`):
H0 use only for preventing and combating crime; H1 not for judicial proceedings without the
provider's permission; H2 not to be passed on to third parties without the provider's
permission; H3 other restrictions (stated in `handling_conditions`). Source reliability
(A/B/C/X) and information accuracy (1-4) grade the information.
"""

from __future__ import annotations

from typing import Any

from .model import AMBER, AMBER_STRICT, CLEAR, GREEN, RED, TLP_RANKS
from .schemas import problem

TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
TLP2_CREATED = "2022-10-01T00:00:00.000Z"
TLP1_CREATED = "2017-01-20T00:00:00.000Z"

# TLP 2.0 marking definitions (STIX common objects), by level name.
TLP = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
# TLP 1.0 marking definitions (STIX 2.1 section 7.2.1.4), by level name.
TLP1 = {
    "white": "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    "green": "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    "amber": "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    "red": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
}
TLP1_RANKS = {"white": CLEAR, "green": GREEN, "amber": AMBER, "red": RED}

RANK_OF_MARKING: dict[str, int] = {
    **{ident: TLP_RANKS[name] for name, ident in TLP.items()},
    **{ident: TLP1_RANKS[name] for name, ident in TLP1.items()},
}
assert max(RANK_OF_MARKING.values()) == RED and AMBER_STRICT in RANK_OF_MARKING.values()


def _tlp2(name: str) -> dict[str, Any]:
    return {"type": "marking-definition", "spec_version": "2.1", "id": TLP[name],
            "created": TLP2_CREATED, "name": f"TLP:{name.upper()}",
            "extensions": {TLP2_EXTENSION: {"extension_type": "property-extension",
                                            "tlp_2_0": name}}}


def _tlp1(name: str) -> dict[str, Any]:
    return {"type": "marking-definition", "spec_version": "2.1", "id": TLP1[name],
            "created": TLP1_CREATED, "definition_type": "tlp", "name": f"TLP:{name.upper()}",
            "definition": {"tlp": name}}


RESERVED: dict[str, dict[str, Any]] = {
    **{TLP[name]: _tlp2(name) for name in TLP},
    **{TLP1[name]: _tlp1(name) for name in TLP1},
}


def marking_rank(obj: dict[str, Any]) -> int | None:
    """The highest TLP rank an object is marked with; None when it carries no TLP marking.

    A reserved TLP definition is itself public (CLEAR): readers need it to read the markings.
    """
    if obj.get("id") in RESERVED:
        return CLEAR
    rank = None
    refs = obj.get("object_marking_refs")
    for ref in refs if isinstance(refs, list) else ():
        found = RANK_OF_MARKING.get(ref) if isinstance(ref, str) else None
        if found is not None and (rank is None or found > rank):
            rank = found
    granular = obj.get("granular_markings")
    for item in granular if isinstance(granular, list) else ():
        ref = item.get("marking_ref") if isinstance(item, dict) else None
        found = RANK_OF_MARKING.get(ref) if isinstance(ref, str) else None
        if found is not None and (rank is None or found > rank):
            rank = found
    return rank


def reserved_conflict(obj: dict[str, Any]) -> str | None:
    """Why a pushed object may not take a reserved TLP id; None when it may."""
    canonical = RESERVED.get(obj.get("id", ""))
    if canonical is None or obj == canonical:
        return None
    return (f"{obj['id']} is the reserved {canonical['name']} marking definition; "
            "only its standard content is accepted")


# -- the law-enforcement handling extension --------------------------------------------------
HANDLING_EXTENSION = "extension-definition--c80796b6-b55e-4e2b-be8c-4ec092ab6f5f"
SERVER_IDENTITY = "identity--02b854f7-f250-4d69-9ebd-d7d036d54f79"
HANDLING_CODES = ("H0", "H1", "H2", "H3")
_DEFINED = "2026-12-01T00:00:00.000Z"


def server_identity() -> dict[str, Any]:
    """The identity that authors this server's own definitions."""
    return {"type": "identity", "spec_version": "2.1", "id": SERVER_IDENTITY,
            "created": _DEFINED, "modified": _DEFINED, "name": "taxii-exchange",
            "identity_class": "system", "object_marking_refs": [TLP["clear"]]}


def handling_extension_definition() -> dict[str, Any]:
    return {
        "type": "extension-definition", "spec_version": "2.1", "id": HANDLING_EXTENSION,
        "created_by_ref": SERVER_IDENTITY, "created": _DEFINED, "modified": _DEFINED,
        "name": "Law-enforcement handling",
        "description": (
            "Handling codes and evaluation of law-enforcement information. handling_codes: "
            "H0 use only for preventing and combating crime; H1 not to be used in judicial "
            "proceedings without the provider's permission; H2 not to be passed on to third "
            "parties without the provider's permission; H3 other restrictions, stated in "
            "handling_conditions. source_reliability: A (no doubt), B (mostly reliable), "
            "C (not reliable), X (cannot be judged). information_accuracy: 1 (known without "
            "reservation), 2 (known personally to the source), 3 (not known personally, "
            "corroborated), 4 (cannot be judged)."),
        "schema": "https://taxii-exchange.example/schemas/handling-extension.schema.json",
        "version": "1.0.0",
        "extension_types": ["property-extension"],
        "object_marking_refs": [TLP["clear"]],
    }


def handling(codes: tuple[str, ...] = (), conditions: str | None = None,
             reliability: str | None = None, accuracy: str | None = None) -> dict[str, Any]:
    """The extension property for an object: {HANDLING_EXTENSION: {...}}."""
    value: dict[str, Any] = {"extension_type": "property-extension"}
    if codes:
        value["handling_codes"] = list(codes)
    if conditions:
        value["handling_conditions"] = conditions
    if reliability:
        value["source_reliability"] = reliability
    if accuracy:
        value["information_accuracy"] = accuracy
    return {HANDLING_EXTENSION: value}


def handling_problem(obj: dict[str, Any]) -> str | None:
    """Why an object's handling extension is invalid; None when it is valid or absent."""
    extensions = obj.get("extensions")
    if not isinstance(extensions, dict) or HANDLING_EXTENSION not in extensions:
        return None
    found = problem("handling-extension", extensions[HANDLING_EXTENSION])
    return None if found is None else f"handling extension: {found}"


def handling_codes(obj: dict[str, Any]) -> tuple[str, ...]:
    extensions = obj.get("extensions")
    value = extensions.get(HANDLING_EXTENSION) if isinstance(extensions, dict) else None
    codes = value.get("handling_codes") if isinstance(value, dict) else None
    return tuple(codes) if isinstance(codes, list) else ()
