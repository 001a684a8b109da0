"""What the endpoints share: built once per app by create_app."""

from __future__ import annotations

from dataclasses import dataclass

from ..audit import Trail
from ..config import Settings
from ..ingest import Ingest, Worker
from ..ops.metrics import Metrics
from ..policy.auth import Authenticator
from ..policy.gate import Gate
from .ratelimit import RateLimiter


@dataclass(frozen=True)
class Services:
    settings: Settings
    gate: Gate  # every read and every access decision
    auth: Authenticator
    ingest: Ingest  # every write
    worker: Worker
    trail: Trail  # read records, batched (writes record theirs in their transaction)
    limiter: RateLimiter  # requests per partner
    metrics: Metrics
