"""One way to replace a file: write a temporary file beside it, then rename it over the target.

A crash leaves the old file or the new one, never half of one. Used for results workbooks, the CSV
template, the secrets file and the token cache.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[str], object], *, private: bool = False
) -> Path:
    """``write(tmp)`` next to ``path``, then ``os.replace`` it over ``path``.

    ``private`` files (secrets, tokens) are 0600 from the moment they exist (mkstemp creates them
    so), and their folder is created 0700. Other files get the permissions the target already has,
    or what the umask gives a new file: mkstemp's 0600 would surprise whoever shares the folder.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if private:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        if private:
            os.chmod(tmp, 0o600)  # mkstemp already did; explicit because the mode is the point
        else:
            _match_permissions(tmp, target)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, *, private: bool = False) -> Path:
    """`atomic_write` of UTF-8 text, flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write, private=private)


def _match_permissions(tmp: str, target: Path) -> None:
    try:
        mode = target.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)
