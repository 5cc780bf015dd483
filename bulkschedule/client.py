"""The Zoho People LMS HTTP client: one small exception hierarchy that maps to retry policy.

Every response is classified exactly once, here; the runner decides what to do by exception type.
"""

from __future__ import annotations

#: data centre -> (People API base, accounts base). CA is zohocloud.ca, not zoho.ca.
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "us": ("https://people.zoho.com", "https://accounts.zoho.com"),
    "eu": ("https://people.zoho.eu", "https://accounts.zoho.eu"),
    "in": ("https://people.zoho.in", "https://accounts.zoho.in"),
    "au": ("https://people.zoho.com.au", "https://accounts.zoho.com.au"),
    "jp": ("https://people.zoho.jp", "https://accounts.zoho.jp"),
    "cn": ("https://people.zoho.com.cn", "https://accounts.zoho.com.cn"),
    "ca": ("https://people.zohocloud.ca", "https://accounts.zohocloud.ca"),
    "sa": ("https://people.zoho.sa", "https://accounts.zoho.sa"),
    "uk": ("https://people.zoho.uk", "https://accounts.zoho.uk"),
}


class ApiError(Exception):
    """Base of every classified failure. ``message`` is safe to show (never contains a token)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


class Locked(ApiError):
    """Threshold exceeded (429, 422 "Maximum limit exceeded", 7209, threshold text): pause all."""


class AuthExpired(ApiError):
    """401 / INVALID_OAUTHTOKEN / 7202 / 7213 after one refresh-and-retry: credentials rejected."""


class Fatal(ApiError):
    """403 or invalid scope (7218): every row would fail the same way; stop the run."""


class Rejected(ApiError):
    """Other 4xx, or an error inside a 200: this row is wrong; fail it with the server's message."""


class ServerError(ApiError):
    """5xx: nothing was created (as far as the server says); retry with backoff."""


class NotSent(ApiError):
    """The request never left (connection refused, DNS): safe to retry."""


class OutcomeUnknown(ApiError):
    """Timeout or connection lost after the request was written: reconcile before any resend."""
