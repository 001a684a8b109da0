"""Running one format over one sample, for the normalisation tests."""

from __future__ import annotations

from pathlib import Path

from exchange.normalize import PARSERS, Context, Produced, Reject, Tally, normalize

PREAMBLE_TYPES = ("identity", "extension-definition")
# Observables a pattern can be made of: what a victim's address, host or URL is.
HOSTS = ("ipv4-addr", "ipv6-addr", "domain-name", "url")


def preamble_only(produced: list[Produced]) -> bool:
    """Whether a run produced nothing but what every file starts with: the source identity,
    the project's identity and the definitions of the project's extensions."""
    return produced[0].obj["type"] == "identity" and all(
        p.record is None and p.obj["type"] in PREAMBLE_TYPES
        for p in produced)


def run(name: str, path: Path, tlp: str = "amber", settings: dict[str, str] | None = None,
        ) -> tuple[list[Produced], list[Reject], Tally]:
    """What format `name` makes of `path`: produced objects, rejects and the tally."""
    parser = PARSERS[name](settings)
    tally = Tally()
    items = list(normalize(parser, path, Context(parser.default_source, tlp), tally))
    return ([i for i in items if isinstance(i, Produced)],
            [i for i in items if isinstance(i, Reject)], tally)
