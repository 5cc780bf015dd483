"""Base URLs the tool may send a token to: normalised, and never plain http beyond loopback."""

from __future__ import annotations

import ipaddress
import urllib.parse


def check_base_url(url: str) -> str:
    """Normalise a People (or accounts) base URL and refuse to send tokens in clear text.

    Plain ``http://`` is allowed only for loopback hosts (the local sandbox); anywhere else the
    access token would cross the network readable by anyone on the path.
    """
    text = (url or "").strip().rstrip("/")
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{url!r} is not a usable base URL; expected something like https://people.zoho.com"
        )
    if parts.username or parts.password:
        raise ValueError("the base URL must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ValueError(f"the base URL must not contain '?' or '#': {url!r}")
    host = parts.hostname.lower()
    if scheme == "http" and not _is_loopback(host):
        raise ValueError(
            f"refusing to send the access token over plain http:// to {host}; use https:// "
            "(plain http is allowed only for a local sandbox on 127.0.0.1, ::1 or localhost)"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"the base URL has an invalid port: {url!r}") from exc
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urllib.parse.urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback
