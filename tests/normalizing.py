"""Running one format over one sample, for the normalisation tests."""

from __future__ import annotations

from pathlib import Path

from exchange.normalize import PARSERS, Context, Produced, Reject, Tally, normalize


def run(name: str, path: Path, tlp: str = "amber", settings: dict[str, str] | None = None,
        ) -> tuple[list[Produced], list[Reject], Tally]:
    """What format `name` makes of `path`: produced objects, rejects and the tally."""
    parser = PARSERS[name](settings)
    tally = Tally()
    items = list(normalize(parser, path, Context(parser.default_source, tlp), tally))
    return ([i for i in items if isinstance(i, Produced)],
            [i for i in items if isinstance(i, Reject)], tally)
