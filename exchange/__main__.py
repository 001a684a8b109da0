"""`python -m exchange` and the `taxii-exchange` command."""

import sys


def run() -> int:
    # No schema here checks the "iri" format, but jsonschema imports rfc3987-syntax whenever it
    # is installed (stix2-validator, in the test extra, brings it), and that import builds a
    # grammar for most of a second: every command and server start would pay it.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    from .cli import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
