"""Every public exception of bulkschedule, with one base that carries the exit code.

Errors sit at the bottom of the dependency order (as in httpx's ``_exceptions.py``) so any layer can
raise or catch any of them without importing the layer that usually raises it::

    BulkscheduleError             exit 2 unless said otherwise; str() is one safe line
    ├── ReadError                 the sheet cannot be read (sheet.reader)
    ├── ConfigError               a setting or secret is unusable (app.config)
    ├── JobError                  nothing could start: bad settings, credentials (app)
    ├── AuthError                 no usable access token (zoho.auth); .transient: never sent
    ├── InboxBusy                 another inbox run holds the lock: exit 0, nothing to do
    ├── StateError                the state folder or its journal is unusable (send.journal)
    └── ApiError                  a classified reply (zoho.client); .status .code .retry_after
        ├── Locked                threshold exceeded: close the gate, wait, retry
        ├── AuthExpired           token rejected after one refresh
        ├── Fatal                 403 / missing scope: every row would fail alike
        ├── Rejected              this row is wrong (4xx, error inside a 200)
        ├── ServerError           5xx: nothing created; back off and retry
        ├── NotSent               the request never left: safe to retry
        ├── OutcomeUnknown        the request may have arrived: reconcile before any resend
        └── OrgUnavailable        a read of the org failed; .endpoint names it (org.catalogue)

No message carries a secret: callers show ``str(err)`` as it is.
"""

from __future__ import annotations

from pathlib import Path

from bulkschedule.core.constants import Exit


class BulkscheduleError(Exception):
    """Base of every error the tool raises on purpose. ``exit_code`` is what the CLI exits with."""

    exit_code: int = Exit.CANNOT_START


class ReadError(BulkscheduleError):
    """The file cannot be read. ``str(err)`` is one clear line naming the file (exit code 2)."""


class ConfigError(BulkscheduleError):
    """A setting or secret is unusable. ``str(err)`` is one line naming the file/variable and key;
    it never contains a secret value. The CLI exits 2 on it ("could not start")."""


class JobError(BulkscheduleError):
    """Nothing could start (unreadable sheet, bad settings, no or rejected credentials): exit 2."""


class AuthError(BulkscheduleError):
    """No usable access token can be obtained. The message is safe to show; the CLI exits 2.

    ``transient`` is true when the token endpoint could not be reached (network trouble): the API
    request that needed the token was never sent, so the caller may retry later.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class InboxBusy(BulkscheduleError):
    """Another inbox run holds the lock. Not an error for cron: the CLI prints one line, exits 0."""

    exit_code = Exit.OK

    def __init__(self, lock_path: Path, holder_pid: int | None) -> None:
        self.lock_path, self.holder_pid = lock_path, holder_pid
        who = f" (pid {holder_pid})" if holder_pid else ""
        super().__init__(f"another bulkschedule inbox run is in progress{who}; nothing to do")


class StateError(BulkscheduleError):
    """The state folder or its journal cannot be used: unreadable, damaged, held by another run
    past the wait, or no longer writable (disk full). ``str(err)`` is one line naming the file or
    folder, what is wrong and what to do; ``path`` is that file or folder. Nothing is sent once it
    is raised (exit 2)."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class ApiError(BulkscheduleError):
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


class OrgUnavailable(ApiError):
    """A read of the org (courses, batches, modules, trainers, rooms, a session listing) failed:
    a missing scope, 404, a shape the client cannot read. ``endpoint`` names the read; ``cause``
    is the classified failure. A run goes on with the offline checks; ``validate --online`` and
    the ``org`` commands stop (exit 2)."""

    def __init__(self, endpoint: str, cause: ApiError) -> None:
        super().__init__(f"{endpoint}: {cause.message}", status=cause.status, code=cause.code)
        self.endpoint = endpoint
        self.cause = cause
