"""Domain errors. They carry no HTTP codes: the protocol layer maps them (see taxii/errors.py)."""


class ExchangeError(Exception):
    """Base class: `title` is short, `description` tells the client what to do."""

    title = "Error"

    def __init__(self, description: str = "") -> None:
        super().__init__(description or self.title)
        self.description = description


class NotFound(ExchangeError):
    title = "Not found"


class Unauthenticated(ExchangeError):
    title = "Authentication required"


class Forbidden(ExchangeError):
    title = "Forbidden"


class Invalid(ExchangeError):
    """The request is malformed (bad parameter, unparseable body)."""

    title = "Bad request"


class Unprocessable(ExchangeError):
    """The request is well-formed but is not what this endpoint takes."""

    title = "Unprocessable content"


class TooLarge(ExchangeError):
    title = "Content too large"


class NotAcceptable(ExchangeError):
    title = "Not acceptable"


class UnsupportedMediaType(ExchangeError):
    title = "Unsupported media type"


class RateLimited(ExchangeError):
    """Too many requests from one partner; it may try again after `retry_after` seconds."""

    title = "Too many requests"

    def __init__(self, description: str, retry_after: int) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class Unavailable(ExchangeError):
    """The store cannot answer now (busy, locked, unreachable): the client may retry."""

    title = "Service unavailable"

    def __init__(self, description: str, retry_after: int = 1) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class ConfigError(ExchangeError):
    """Settings, collection or partner files are wrong: the server refuses to start."""

    title = "Configuration error"


class InvalidObject(ExchangeError):
    """One STIX object failed validation; it is reported in the status, never stored."""

    title = "Invalid STIX object"


class Throttled(ExchangeError):
    """Too many failed logins from this source: refused before any credential is checked."""

    title = "Too many failed logins"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins from this address; retry after "
                         f"{retry_after} seconds")
        self.retry_after = retry_after
