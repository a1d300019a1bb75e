"""Completion callbacks' rules: which URLs we call, how a body is signed, how a receiver verifies it.

Pure and shared: the web service checks a callback URL at submission, the workers check it again and sign
what they send (delivery itself is in `workers.callbacks`).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Fashion-Batch-Signature"


class CallbackURLError(ValueError):
    """A callback URL we refuse to call."""


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s), or that resolve to loopback, link-local or private addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackURLError("callback_url must be an absolute http:// or https:// URL")
    if len(url) > 2000:
        raise CallbackURLError("callback_url is too long")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise CallbackURLError(f"callback_url host {parts.hostname!r} does not resolve") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global or addr.is_multicast:
            raise CallbackURLError(
                f"callback_url resolves to a non-public address ({addr}); loopback, link-local and private "
                "addresses are refused"
            )


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """Check a signature header as a receiver would (also used by the tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        ts = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), header)


def backoff_s(attempt: int) -> float:
    """Seconds to wait after the `attempt`-th failure: 10 s doubling, at most an hour."""
    return min(10.0 * 2 ** (attempt - 1), 3600.0)
