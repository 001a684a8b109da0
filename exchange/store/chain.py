"""The audit trail's hash chain, the same for every backend.

Each record's hash covers the previous record's hash and its own body, so a record edited,
inserted or deleted anywhere breaks the chain at that point. Records are numbered without
gaps from 1, so a deletion is also a missing number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ..model import AuditEntry, AuditRecord

GENESIS = bytes(32)  # the "previous hash" of record 1


def link(previous: bytes, body: bytes) -> bytes:
    return hashlib.sha256(previous + body).digest()


def extend(last_seq: int, last_hash: bytes, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
    """The records that follow (last_seq, last_hash) with these entries, in order."""
    records = []
    seq, previous = last_seq, last_hash
    for entry in entries:
        seq, previous = seq + 1, link(previous, entry.body)
        records.append(AuditRecord(seq, entry.at, entry.partner, entry.body, previous))
    return records
