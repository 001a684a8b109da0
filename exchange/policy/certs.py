"""What identifies a TLS client certificate: its subject (RFC 4514) and SHA-256 fingerprint."""

from __future__ import annotations

import functools
import hashlib

from ..errors import Unauthenticated


@functools.lru_cache(maxsize=1024)  # a connector sends the same certificate on every request
def identify(pem: str) -> tuple[str, str]:
    """(subject, fingerprint) of a PEM certificate; the fingerprint is over its DER."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeError):
        raise Unauthenticated("the client certificate cannot be read") from None
    from cryptography.hazmat.primitives.serialization import Encoding

    der = cert.public_bytes(Encoding.DER)
    return cert.subject.rfc4514_string(), hashlib.sha256(der).hexdigest()
