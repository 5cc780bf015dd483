"""Text shown to people: one masking rule for secrets, one way to excerpt a server's reply."""

from __future__ import annotations

import html
import re


def mask(value: str) -> str:
    """Mask a secret for display: at most the first 6 and last 2 characters are shown, and only
    when the secret is long enough (24+) that this leaves most of it hidden; else fully masked."""
    value = value or ""
    if len(value) < 24:
        return "********"
    return f"{value[:6]}…{value[-2:]}"


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")


def snippet(text: str, limit: int = 200) -> str:
    """A short readable excerpt of a non-JSON reply; HTML pages reduced to their title or text."""
    title = _TITLE.search(text)
    if title and title.group(1).strip():
        text = title.group(1)
    else:
        text = _TAG.sub(" ", _SCRIPT.sub(" ", text))
    text = " ".join(html.unescape(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
