"""Names instead of IDs: what an admin typed in an ID column, matched to one entry of the org.

Pure: it works on entries already read (from the cache or Zoho). Names match ignoring case and
extra spaces; a trainer may also be named by email. An ambiguous name is refused with every
candidate and what tells them apart; an unknown one with up to three close names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: How many close names an "unknown name" message offers.
CLOSE_NAMES = 3


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing of the org that a cell may name."""

    id: str
    label: str  #: the name as Zoho shows it
    detail: str = ""  #: what tells it apart from a namesake: a batch's dates, an email, a place
    aliases: tuple[str, ...] = ()  #: other accepted spellings (a trainer's email)

    def shown(self) -> str:
        extra = f", {self.detail}" if self.detail else ""
        return f'"{self.label}" ({self.id}{extra})'


@dataclass(frozen=True, slots=True)
class Resolution:
    """An ID, or why there is none: ``code`` is ``name.ambiguous`` or ``name.unknown``."""

    id: str | None
    code: str | None = None
    message: str = ""


def normalise_name(text: str) -> str:
    """The matching form of a name: case-folded, inner runs of white space made one space."""
    return " ".join(str(text).split()).casefold()


def is_id(text: str) -> bool:
    """IDs are digits (18 of them in Zoho); anything else in an ID column is taken as a name."""
    return text.isascii() and text.isdigit()


class Index:
    """The entries of one list (a course's batches, the org's trainers), indexed by name."""

    def __init__(self, kind: str, entries: Iterable[Entry], *, where: str = "") -> None:
        self.kind = kind  #: singular noun for messages: "course", "batch", ...
        self.where = where  #: " in course X" when the list belongs to a parent
        self.entries = list(entries)
        self._by_name: dict[str, list[Entry]] = {}
        self._ids = {e.id for e in self.entries}
        for entry in self.entries:
            for spelling in {normalise_name(entry.label), *map(normalise_name, entry.aliases)}:
                if spelling:
                    self._by_name.setdefault(spelling, []).append(entry)

    def __repr__(self) -> str:
        return f"Index({self.kind!r}, {len(self.entries)} entries{self.where})"

    def has_id(self, entry_id: str) -> bool:
        return entry_id in self._ids

    def resolve(self, text: str) -> Resolution:
        """The ID ``text`` names: itself when it is an ID, else the one entry of that name."""
        text = str(text).strip()
        if is_id(text):
            return Resolution(text)
        found = _unique(self._by_name.get(normalise_name(text), []))
        if len(found) == 1:
            return Resolution(found[0].id)
        if found:
            listed = "; ".join(e.shown() for e in found)
            return Resolution(
                None,
                "name.ambiguous",
                f'"{text}" names {len(found)} {self.kind}{"es" if self.kind == "batch" else "s"}'
                f"{self.where}: {listed}; type the ID instead",
            )
        return Resolution(None, "name.unknown", self._unknown(text))

    def _unknown(self, text: str) -> str:
        spellings = {normalise_name(e.label): e.label for e in self.entries}
        close = difflib.get_close_matches(normalise_name(text), list(spellings), n=CLOSE_NAMES,
                                          cutoff=0.5)
        hint = ("; did you mean " + ", ".join(f'"{spellings[c]}"' for c in close) + "?"
                if close else "")
        return (f'no {self.kind} named "{text}"{self.where}{hint} '
                f"(bulkschedule org find {text!r} lists the org's {self.kind} names)")


def _unique(entries: Sequence[Entry]) -> list[Entry]:
    seen: dict[str, Entry] = {}
    for entry in entries:
        seen.setdefault(entry.id, entry)
    return list(seen.values())
