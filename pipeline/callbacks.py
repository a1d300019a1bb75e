"""Completion callbacks' rules: which URLs we call, and how a body is signed (Standard Webhooks).

Shared: the web service checks a callback URL at submission; the workers check it again, connect to the
address that check vetted (never resolving the name a second time), and sign what they send. Delivery
itself is in `workers.callbacks`.

Signatures follow the Standard Webhooks specification (https://www.standardwebhooks.com): headers
`webhook-id` (the event's id: the same on every retry of one event, so receivers can drop duplicates),
`webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`).
Receivers verify with any of its libraries, e.g. `standardwebhooks.Webhook(secret).verify(body, headers)`.
"""
from __future__ import annotations

import ipaddress
import socket
from datetime import datetime, timezone
from urllib.parse import urlsplit

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CallbackURLError(ValueError):
    """A callback URL we refuse to call."""


def _embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), if any."""
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if any(addr in net for net in _NAT64):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def is_public(addr: IPAddress) -> bool:
    """True for a global unicast address, looking through IPv6 forms that carry an IPv4 address."""
    if not addr.is_global or addr.is_multicast:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and (inner := _embedded_v4(addr)) is not None:
        return inner.is_global and not inner.is_multicast
    return True


def check_url(url: str, *, allow_private: bool) -> list[str]:
    """Refuse URLs that are not http(s) or that resolve to a non-public address; return the vetted addresses.

    The caller connects to one of the returned addresses: resolving the name again could give another.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackURLError("callback_url must be an absolute http:// or https:// URL")
    if len(url) > 2000:
        raise CallbackURLError("callback_url is too long")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, ValueError):
        raise CallbackURLError(f"callback_url host {parts.hostname!r} does not resolve") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private and not all(is_public(ipaddress.ip_address(a.split("%")[0])) for a in addresses):
        # The message names no address: a resolved internal address is nothing to tell a client.
        raise CallbackURLError("callback_url resolves to a non-public address (loopback, private, link-local, "
                               "or one of those inside an IPv6 form); such addresses are refused")
    return addresses


def _webhook(secret: str):
    from standardwebhooks import Webhook

    # Keys made since Standard Webhooks have "whsec_<base64>" secrets; older ones are used as raw bytes.
    return Webhook(secret if secret.startswith("whsec_") else secret.encode())


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for `body`, sent as event `event_id` at unix time `timestamp`."""
    when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    signature = _webhook(secret).sign(event_id, when, body.decode())
    return {"webhook-id": event_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Check a delivery as a receiver would (timestamps older than five minutes are refused as replays)."""
    from standardwebhooks import WebhookVerificationError

    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        _webhook(secret).verify(body, lowered)
    except WebhookVerificationError:
        return False
    return True


def backoff_s(attempt: int) -> float:
    """Seconds to wait after the `attempt`-th failure: 10 s doubling, at most an hour."""
    return min(10.0 * 2 ** (attempt - 1), 3600.0)
