"""One peer's TAXII 2.1 collection, seen from here: the only module that uses taxii2-client.

taxii2-client finds the collection (from a discovery or API root URL) and the API root's
`max_content_length`, and its connection carries the peer's credentials, client certificate
and CA. Pages are read through that connection's session directly, because a pull needs the
`X-TAXII-Date-Added-Last` header that the client does not return, and pushes are polled here
so that every request gets the same retries.

Peers differ (medallion 3.0.0 among them): a peer may expire `next` tokens, give every object
of one push the same date_added, answer a duplicate push with a failure, be down, slow, answer
5xx or 429, or send garbage. Each request is retried with backoff (honouring Retry-After) on
connection errors, timeouts, 429 and 5xx; what still fails raises PeerError, and the caller
keeps its bookmark where the last stored page left it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin

import orjson
import requests
from taxii2client.common import _HTTPConnection
from taxii2client.v21 import ApiRoot, Server

from ..stix import SCO_TYPES, format_micros, parse_timestamp, to_micros
from .peers import Peer

TAXII_21 = "application/taxii+json;version=2.1"
_HARD_LIMIT = 100_000  # the largest page asked for when a date_added group will not split


class PeerError(Exception):
    """The peer could not be used for this run (the reason is for the run record)."""


@dataclass(slots=True)
class Page:
    objects: list[dict[str, Any]]
    resume: str | None  # the bookmark once this page is stored: added_after for the rest


@dataclass(slots=True)
class Pushed:
    """What the peer did with one pushed envelope."""

    successes: int = 0
    already: int = 0  # refused as duplicates, but the peer holds them
    failures: list[dict[str, Any]] = field(default_factory=list)


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class Remote:
    def __init__(self, peer: Peer, *, retries: int = 5, backoff_seconds: float = 0.5) -> None:
        self.peer = peer
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        auth = peer.auth
        token = auth.token()
        cert = (auth.cert_file, auth.key_file) if auth.cert_file and auth.key_file else None
        self.conn = _HTTPConnection(
            version="2.1", user=auth.user, password=auth.password(),
            verify=peer.ca_file or True, auth=_Bearer(token) if token else None, cert=cert)
        if peer.ca_file:
            # requests lets REQUESTS_CA_BUNDLE (set system-wide on many hosts) override a
            # session's `verify` on every request: the peer's own CA must win.
            session = self.conn.session
            session.request = functools.partial(session.request,
                                                verify=peer.ca_file)
        self._collection_url: str | None = None

    def close(self) -> None:
        self.conn.close()

    # -- where -----------------------------------------------------------------------------
    @property
    def collection_url(self) -> str:
        if self._collection_url is None:
            self._collection_url = self._find_collection()
        return self._collection_url

    def _find_collection(self) -> str:
        """The collection's URL: given, or found through the peer's discovery (its default
        API root, or the one named) or API root resource."""
        url = self.peer.url if self.peer.url.endswith("/") else self.peer.url + "/"
        if self.peer.collection is None:
            return url
        try:
            if url.endswith("/taxii2/"):
                # Every request on this one connection: the API roots taxii2-client makes from
                # discovery would open their own, without the peer's CA (see __init__).
                server = Server(url, conn=self.conn)
                wanted = self.peer.api_root
                named = server.default if wanted is None else next(
                    (r for r in server.api_roots
                     if wanted in (r.url, r.url.rstrip("/").rsplit("/", 1)[-1])), None)
                if named is None:
                    raise PeerError(f"the peer has no API root {wanted!r}")
                root = ApiRoot(named.url, conn=self.conn)
                found = [c.url for c in root.collections if c.id == self.peer.collection]
            else:
                root = ApiRoot(url, conn=self.conn)
                found = [c.url for c in root.collections if c.id == self.peer.collection]
        except requests.HTTPError as exc:
            raise PeerError(f"the peer's discovery answered {exc}") from None
        except requests.RequestException as exc:
            raise PeerError(f"cannot reach the peer: {exc.__class__.__name__}") from None
        except PeerError:
            raise
        except Exception as exc:  # taxii2-client's own errors: an answer it could not use
            raise PeerError(f"the peer's discovery answered unexpectedly: {exc!r}") from None
        if not found:
            raise PeerError(f"the peer shows us no collection {self.peer.collection}")
        return str(found[0])

    def max_content_length(self) -> int:
        root_url = self.collection_url.split("/collections/", 1)[0] + "/"
        info = self._json("GET", root_url)
        size = info.get("max_content_length")
        if not isinstance(size, int) or size < 1024:
            raise PeerError(f"the peer's API root gives no usable max_content_length: {size!r}")
        return size

    # -- pull ------------------------------------------------------------------------------
    def pages(self, added_after: str | None) -> Iterator[Page]:
        """Every object version added after the bookmark, a page at a time, each with the
        bookmark to keep once it is stored.

        The bookmark after a page with more to come sits just before the page's last
        date_added, so objects that share it and spill onto the next page are fetched
        again rather than skipped (storing them again changes nothing). `next` is followed
        while the peer honours it; when it does not (an expired token, or none given), the
        query starts again after the bookmark, and a page that cannot move past one
        date_added is asked for again with a larger limit.
        """
        bookmark = added_after
        query = _query(self.peer.page_size, bookmark)
        token: str | None = None
        while True:
            try:
                envelope, last = self._page({**query, "next": token} if token else query)
            except PeerError:
                if token is None:
                    raise
                # An expired or refused `next` (medallion's last 30 s): the bookmark covers
                # everything stored so far, so start again from there, not from the run's start.
                query, token = _query(query["limit"], bookmark), None
                continue
            objects = envelope.get("objects", [])
            more = envelope.get("more") is True
            if not isinstance(objects, list):
                raise PeerError("the peer's envelope holds no list of objects")
            if objects and last is None:
                raise PeerError("the peer's page has no X-TAXII-Date-Added-Last header: "
                                "it cannot be pulled incrementally")
            resume = (_just_before(last) if more else last) if last else bookmark
            token = envelope.get("next") if more and isinstance(envelope.get("next"), str) \
                else None
            if more and resume == bookmark and token is None:
                # One date_added fills the whole page: only a larger page gets past it.
                if query["limit"] >= _HARD_LIMIT:
                    raise PeerError(f"more than {_HARD_LIMIT} objects share one date_added "
                                    "and the peer gives no `next`")
                query = _query(min(query["limit"] * 4, _HARD_LIMIT), bookmark)
                continue
            yield Page(objects, resume)
            bookmark = resume
            if not more:
                return
            if token is None:
                query = _query(query["limit"], bookmark)

    def _page(self, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        response = self._request("GET", self.collection_url + "objects/", params=params)
        return self._decode(response), response.headers.get("X-TAXII-Date-Added-Last")

    # -- push ------------------------------------------------------------------------------
    def push(self, body: bytes) -> Pushed:
        """Post one envelope and wait for its status; failures the peer reports for objects
        it already holds (medallion refuses duplicates) are counted as `already`."""
        status = self._json("POST", self.collection_url + "objects/", data=body,
                            headers={"Content-Type": TAXII_21})
        deadline = time.monotonic() + self.peer.timeout_seconds
        status_url = urljoin(self.collection_url, f"../../status/{status.get('id')}/")
        delay = 0.05
        while status.get("status") != "complete":
            if time.monotonic() > deadline:
                raise PeerError(f"the peer's status {status.get('id')} is still pending after "
                                f"{self.peer.timeout_seconds:.0f} s")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            status = self._json("GET", status_url)
        result = Pushed(successes=_count(status, "success"))
        for failure in status.get("failures") or []:
            if isinstance(failure, dict) and self.has(str(failure.get("id", "")),
                                                      failure.get("version")):
                result.already += 1
            else:
                result.failures.append(failure if isinstance(failure, dict) else
                                       {"message": repr(failure)})
        return result

    def has(self, object_id: str, version: Any) -> bool:
        """Whether the peer holds this object version (any version when none is given, and
        for an observable: its version is the time the peer first stored it, so the one a
        failure names is the time of the refused push)."""
        if not object_id:
            return False
        observable = object_id.split("--", 1)[0] in SCO_TYPES
        params = {"match[version]": version} \
            if isinstance(version, str) and version and not observable else {}
        try:
            found = self._json("GET", f"{self.collection_url}objects/{object_id}/",
                               params=params)
        except PeerError:
            return False
        return any(isinstance(o, dict) and o.get("id") == object_id
                   for o in found.get("objects") or [])

    # -- requests --------------------------------------------------------------------------
    def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        return self._decode(self._request(method, url, **kwargs))

    def _decode(self, response: requests.Response) -> dict[str, Any]:
        kind = response.headers.get("Content-Type", "").replace(" ", "").lower()
        if not kind.startswith("application/taxii+json"):
            raise PeerError(f"the peer answered {kind or 'no content type'!r}, not TAXII JSON")
        try:
            document = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise PeerError(f"the peer's answer is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise PeerError("the peer's answer is not a JSON object")
        return document

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = {"Accept": TAXII_21, **kwargs.pop("headers", {})}
        problem, wait = "", 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(wait)
            wait = self.backoff_seconds * 2 ** attempt
            try:
                response = self.conn.session.request(method, url, headers=headers,
                                                     timeout=self.peer.timeout_seconds,
                                                     **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"cannot reach the peer: {exc.__class__.__name__}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                problem = f"the peer answered {response.status_code}"
                wait = max(wait, _retry_after(response))
                continue
            if response.status_code >= 400:
                raise PeerError(f"the peer answered {response.status_code} to {method} {url}: "
                                f"{response.text[:300]}")
            return response
        raise PeerError(f"{problem} ({self.retries + 1} attempts)")


def _query(limit: int, added_after: str | None) -> dict[str, Any]:
    """Every version (a pull replicates history), `limit` always (medallion answers 500 to a
    `next` without it)."""
    query: dict[str, Any] = {"limit": limit, "match[version]": "all"}
    if added_after:
        query["added_after"] = added_after
    return query


def _just_before(timestamp: str) -> str:
    """A microsecond before a TAXII timestamp, as added_after: it takes that timestamp again."""
    moment, _ = parse_timestamp(timestamp, "X-TAXII-Date-Added-Last")
    return format_micros(to_micros(moment - timedelta(microseconds=1)))


def _retry_after(response: requests.Response) -> float:
    value = response.headers.get("Retry-After", "")
    return min(float(value), 60.0) if value.isascii() and value.isdigit() else 0.0


def _count(status: dict[str, Any], kind: str) -> int:
    value = status.get(f"{kind}_count")
    return value if isinstance(value, int) else 0
