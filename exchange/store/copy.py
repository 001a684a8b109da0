"""Copying a whole store to another, through `Store.dump` and `Store.restore` only, so any
backend copies to any other.

Each part is copied in pages, in key order. After each page is restored, the target keeps a
bookmark (named state `copy:<part>`, keyed by the source) saying how far it got, so a copy
that was interrupted goes on from there when it is run again; a page restored twice is
simply replaced. The end is a comparison of both stores: per collection the number of
object versions and a digest over them, and the number of statuses, audit records and
named state documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import ConfigError
from . import Store

PARTS = ("objects", "statuses", "audit", "state")
BOOKMARK = "copy:"  # named state of the copy itself: never copied, never compared


def key(part: str, record: dict[str, Any]) -> Any:
    """The key of a dumped record: what `dump` takes as `after` to go on past it."""
    if part == "objects":
        return [record["collection"], record["added"]]
    return record[{"statuses": "id", "audit": "seq", "state": "name"}[part]]


def records(store: Store, part: str, page: int, after: Any = None
            ) -> Iterator[tuple[list[dict[str, Any]], Any]]:
    """The pages of a part after `after`, each with the key to go on from."""
    while batch := store.dump(part, after, page):
        after = key(part, batch[-1])
        yield batch, after


@dataclass
class Summary:
    """What a copy is checked by."""

    collections: dict[str, tuple[int, str]] = field(default_factory=dict)  # count, sha256
    counts: dict[str, int] = field(default_factory=dict)  # statuses, audit, state

    def differences(self, other: Summary) -> list[str]:
        found = []
        for coll in sorted(self.collections.keys() | other.collections.keys()):
            mine, theirs = self.collections.get(coll), other.collections.get(coll)
            if mine != theirs:
                found.append(f"collection {coll}: {_versions(mine)} in the source, "
                             f"{_versions(theirs)} in the target")
        for part in PARTS[1:]:
            if self.counts.get(part) != other.counts.get(part):
                found.append(f"{part}: {self.counts.get(part)} in the source, "
                             f"{other.counts.get(part)} in the target")
        return found


def summarize(store: Store, page: int = 5000) -> Summary:
    """Per collection: the number of versions and a sha256 over each version's (id, version,
    spec_version, date_added) and stored bytes, in (collection, date_added) order."""
    summary = Summary()
    digests: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for batch, _ in records(store, "objects", page):
        for r in batch:
            digest = digests.get(r["collection"])
            if digest is None:
                digest = digests[r["collection"]] = hashlib.sha256()
            head = orjson.dumps([r["id"], r["version"], r["spec"], r["added"], len(r["body"])])
            digest.update(head + b"\n" + r["body"])
            counts[r["collection"]] = counts.get(r["collection"], 0) + 1
    summary.collections = {c: (counts[c], d.hexdigest()) for c, d in digests.items()}
    for part in PARTS[1:]:
        summary.counts[part] = sum(len(_copied(part, batch))
                                   for batch, _ in records(store, part, page))
    return summary


def _versions(found: tuple[int, str] | None) -> str:
    return "none" if found is None else f"{found[0]} versions (sha256 {found[1][:16]}...)"


def _copied(part: str, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What of a page is copied: all but a copy's own bookmarks (the source's, from a copy
    into it, would overwrite the target's)."""
    if part != "state":
        return batch
    return [r for r in batch if not r["name"].startswith(BOOKMARK)]


def holds_data(store: Store) -> bool:
    """Whether a store holds anything a copy would mix with."""
    return any(store.dump(part, None, 1) for part in PARTS[:3]) or any(
        _copied("state", batch) for batch, _ in records(store, "state", 1000))


Progress = Callable[[str, int, bool], None]  # part, records copied so far, part done


def copy(source: Store, target: Store, source_name: str, *, page: int = 5000,
         progress: Progress = lambda part, copied, done: None) -> dict[str, int]:
    """Copy every part of `source` into `target`, going on from the target's bookmarks for
    `source_name` (the source's URL, as factory.describe gives it); return how many records
    of each part this run copied."""
    marks = {part: target.get_state(BOOKMARK + part) or {} for part in PARTS}
    if not any(source_name in doc for doc in marks.values()) and holds_data(target):
        raise ConfigError("the target store already holds data that is not a copy of "
                          f"{source_name}: copy into a new, empty store")
    now: dict[str, int] = {}
    for part in PARTS:
        now[part] = 0
        mark = marks[part].get(source_name) or {"after": None, "copied": 0, "done": False}
        if mark["done"]:
            progress(part, mark["copied"], True)
            continue
        for batch, after in records(source, part, page, mark["after"]):
            chosen = _copied(part, batch)
            target.restore(part, chosen)
            now[part] += len(chosen)
            # After the page is in: a crash before this line only means the page is
            # restored again (replaced) on the next run.
            mark = {"after": after, "copied": mark["copied"] + len(chosen), "done": False}
            target.put_state(BOOKMARK + part, {**marks[part], source_name: mark})
            progress(part, mark["copied"], False)
        mark = {**mark, "done": True}
        target.put_state(BOOKMARK + part, {**marks[part], source_name: mark})
        progress(part, mark["copied"], True)
    return now
