"""Look inside a zipped workbook (xlsx, xlsm, xlsb, ods) before calamine opens it.

calamine trusts the file: a cell at XFD1048576 makes it allocate the whole grid (512 GB, and a
Rust abort that Python cannot catch), a deflated part can inflate a thousandfold, one shared
string is copied into every cell that shows it. So every part is inflated here first, by our own
zlib loop that counts the bytes it produces and stops past ``max_part_bytes`` (the sizes in the
zip headers are ignored), and while it inflates:

- shared strings (``sharedStrings.xml``/``.bin``) and worksheet cells are measured against
  ``max_cell_chars`` (a formula's text counts with its cell's: never more than Excel allows);
- each XML worksheet gets a fast pass that either vouches for its cell positions or marks it
  for an exact replay (`xml_scan.exact_extent`), done once calamine has named the sheet to read
  (`WorkbookGuard.check_sheet`): a workbook may keep a big sheet beside the one that is read;
- xlsb worksheets are walked record by record and all checked at once (naming their sheets
  would mean parsing workbook.bin);
- an ods ``content.xml`` is parsed for all its tables (calamine reads them all on opening).

What is not bounded here: the number of shared strings or styles (only their part's size), and
.xls files (OLE, read by `reader` with a file-size bound only).
"""

from __future__ import annotations

import html
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from bulkschedule.core.errors import ReadError
from bulkschedule.sheet.limits import MB, ReadLimits, exceeded
from bulkschedule.sheet.xml_scan import (
    Extent,
    OdsScan,
    SheetFacts,
    SheetScan,
    TextMeter,
    cell_name,
    check_dimension,
    check_extent,
    exact_extent,
    portions,
    shared_strings_meter,
)

_CHUNK = 1 << 20  # most bytes one inflate step may produce
_READ = 1 << 16  # compressed bytes read at a time
_KEEP = 4 << 20  # workbook.xml and its relationships are kept (to map sheet names) up to this
_NOT_A_WORKBOOK = "not a valid Excel workbook (is it corrupt, or another format renamed?)"


def _bad(file: str, detail: str) -> ReadError:
    return ReadError(f"{file}: {_NOT_A_WORKBOOK} ({detail})")


def _key(name: str) -> str:
    """A member name as calamine looks it up: any case, either slash."""
    return name.replace("\\", "/").lstrip("/").lower()


# -- inflating -----------------------------------------------------------------------------------


def inflate(fh: BinaryIO, info: zipfile.ZipInfo, file: str, limits: ReadLimits) -> Iterator[bytes]:
    """The member's bytes, inflated up to 1 MB at a time, counted as they come: past
    ``max_part_bytes`` it stops with the limit's error. A deflate stream is read to its own end,
    not to the sizes the headers declare."""
    fh.seek(info.header_offset)
    head = fh.read(30)
    if len(head) != 30 or head[:4] != b"PK\x03\x04":
        raise _bad(file, f"{info.filename} has no local header")
    (method,) = struct.unpack("<H", head[8:10])
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    if method != info.compress_type:
        raise _bad(file, f"the headers of {info.filename} disagree")
    if info.flag_bits & 1:
        raise _bad(file, f"{info.filename} is encrypted")
    fh.seek(info.header_offset + 30 + name_len + extra_len)
    total = 0

    def count(n: int) -> None:
        nonlocal total
        total += n
        if total > limits.max_part_bytes:
            raise exceeded(file, f"the part {info.filename} inflates to more than "
                           f"{limits.max_part_bytes / MB:g} MB", "max_part_bytes", limits)

    if method == zipfile.ZIP_STORED:
        left = info.compress_size
        while left > 0 and (data := fh.read(min(_CHUNK, left))):
            left -= len(data)
            count(len(data))
            yield data
        return
    if method != zipfile.ZIP_DEFLATED:
        raise _bad(file, f"{info.filename} uses compression method {method}")
    d = zlib.decompressobj(-15)
    raw, at_end = b"", False
    try:
        while not d.eof:
            if not raw and not at_end:
                raw = fh.read(_READ)
                at_end = not raw
            out = d.decompress(raw, _CHUNK)
            raw = d.unconsumed_tail
            if out:
                count(len(out))
                yield out
            elif at_end:
                return  # truncated: calamine will say so
    except zlib.error as e:
        raise _bad(file, f"{info.filename} is corrupt: {e}") from None


# -- xlsb (binary records) -----------------------------------------------------------------------

_BRT_ROW = 0
_BRT_BLANK = 1  # BrtCellBlank: a formatted empty cell, not in calamine's grid
_BRT_CELLS = range(2, 12)  # BrtCellRk .. BrtFmlaError: cells that hold a value
_BRT_SHORT_BLANK = 12
_BRT_SHORT = range(13, 19)  # BrtShortRk .. BrtShortIsst: the column follows the previous cell
_BRT_STRINGS = {6: 8, 8: 8, 17: 4}  # string cells: offset of the character count
_BRT_SST_ITEM = 19
_BRT_WS_DIM = 148


class _Records:
    """BIFF12 records from a stream of chunks: (type, up to 16 first bytes of the payload).
    Long payloads are skipped as they stream past, never kept."""

    def __init__(self, file: str, part: str) -> None:
        self.file, self.part = file, part
        self.buf = b""
        self.skip = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        if self.skip:
            dropped = min(self.skip, len(chunk))
            self.skip -= dropped
            chunk = chunk[dropped:]
        buf, pos = self.buf + chunk, 0
        while (header := self._header(buf, pos)) is not None:
            rtype, size, at = header
            if at + min(size, 16) > len(buf):
                break
            yield rtype, buf[at:at + min(size, 16)]
            if at + size > len(buf):
                self.skip, pos = at + size - len(buf), len(buf)
                break
            pos = at + size
        self.buf = buf[pos:]

    def _header(self, buf: bytes, pos: int) -> tuple[int, int, int] | None:
        """(type, size, payload offset) of the record at ``pos``; None if it is cut short."""
        n = len(buf)
        if pos >= n:
            return None
        rtype = buf[pos] & 0x7F
        if buf[pos] & 0x80:
            if pos + 1 >= n:
                return None
            rtype |= (buf[pos + 1] & 0x7F) << 7
            pos += 1
        pos += 1
        size = 0
        for i in range(4):
            if pos >= n:
                return None
            b = buf[pos]
            pos += 1
            size |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                return rtype, size, pos
        raise _bad(self.file, f"a record of {self.part} has no valid length")


@dataclass(slots=True)
class _BinSheet:
    """An xlsb worksheet walked exactly: its grid, declared range, longest string."""

    file: str
    part: str
    limits: ReadLimits
    extent: Extent = field(default_factory=Extent)
    row: int = 1
    col: int = 0
    dimension: str | None = None
    records: _Records | None = None

    def feed(self, chunk: bytes) -> None:
        if self.records is None:
            self.records = _Records(self.file, self.part)
        for rtype, head in self.records.feed(chunk):
            if rtype == _BRT_ROW and len(head) >= 4:
                self.row = struct.unpack_from("<I", head)[0] + 1
                self.col = 0
            elif rtype in (_BRT_BLANK, _BRT_SHORT_BLANK):
                self.col = self._column(rtype, head)
            elif rtype in _BRT_CELLS or rtype in _BRT_SHORT:
                self.col = self._column(rtype, head)
                self.extent.add(self.row, self.col)
                at = _BRT_STRINGS.get(rtype)
                if at is not None and len(head) >= at + 4:
                    (chars,) = struct.unpack_from("<I", head, at)
                    if chars > self.limits.max_cell_chars:
                        raise exceeded(self.file, f"cell {cell_name(self.row, self.col)} in "
                                       f"{self.part} has {chars:,} characters",
                                       "max_cell_chars", self.limits)
            elif rtype == _BRT_WS_DIM and len(head) >= 16:
                r1, r2, c1, c2 = struct.unpack_from("<4I", head)
                self.dimension = f"{cell_name(r1 + 1, c1 + 1)}:{cell_name(r2 + 1, c2 + 1)}"

    def _column(self, rtype: int, head: bytes) -> int:
        """A full cell record names its column; a short one follows the previous cell."""
        if rtype < _BRT_SHORT_BLANK and len(head) >= 4:
            return int(struct.unpack_from("<I", head)[0]) + 1
        return self.col + 1


def _bin_strings(file: str, part: str, limits: ReadLimits) -> Callable[[bytes], None]:
    records = _Records(file, part)

    def feed(chunk: bytes) -> None:
        for rtype, head in records.feed(chunk):
            if rtype == _BRT_SST_ITEM and len(head) >= 5:
                (chars,) = struct.unpack_from("<I", head, 1)
                if chars > limits.max_cell_chars:
                    raise exceeded(file, f"a shared string in {part} has {chars:,} characters",
                                   "max_cell_chars", limits)

    return feed


# -- the whole workbook --------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    info: zipfile.ZipInfo
    facts: SheetFacts | None = None  # an XML part holding sheetData
    binary: _BinSheet | None = None  # an xlsb worksheet


@dataclass(slots=True)
class WorkbookGuard:
    """What `inspect` found; `check_sheet` applies the position limits to the chosen sheet."""

    path: Path
    file: str
    limits: ReadLimits
    parts: dict[str, list[_Part]] = field(default_factory=dict)
    kept: dict[str, bytes] = field(default_factory=dict)

    def check_sheet(self, sheet: str) -> None:
        """Refuse the sheet calamine is about to read if its grid is over the limits.

        The sheet's part comes from ``xl/workbook.xml`` and its relationships, as calamine finds
        it; when that cannot be worked out, every worksheet part is checked, each named by its
        part."""
        keys = self._sheet_parts(sheet)
        if keys is not None:
            for part in (p for k in keys for p in self.parts.get(k, [])):
                self._check_part(part, f"the sheet '{sheet}'")
            return
        for part in (p for ps in self.parts.values() for p in ps):
            self._check_part(part, f"the worksheet {part.info.filename}")

    def _check_part(self, part: _Part, where: str) -> None:
        facts = part.facts  # (xlsb worksheets were all checked by `inspect`)
        if facts is None or not facts.has_cells:
            return
        check_dimension(facts, self.file, where, self.limits)
        if facts.unusual is None:
            return  # every cell had its reference first, within the limits
        if (bound := facts.at_least()) is not None:  # a million rows: no need to replay them
            check_extent(bound, self.file, where, self.limits, at_least=True)
        name = part.info.filename
        with open(self.path, "rb") as fh:
            exact_extent(portions(inflate(fh, part.info, self.file, self.limits),
                                  lambda d: _bad(self.file, f"{d} in {name}")),
                         self.file, where, name, self.limits)

    def _sheet_parts(self, sheet: str) -> list[str] | None:
        book, rels = self.kept.get("xl/workbook.xml"), self.kept.get("xl/_rels/workbook.xml.rels")
        if not book or not rels:
            return None
        rel_id = None
        for m in _SHEET_TAG.finditer(book):
            attrs = _attributes(m.group(1))
            if html.unescape(attrs.get("name", "")) == sheet:
                rel_id = attrs.get("r:id", attrs.get("relationships:id"))
                break
        if rel_id is None:
            return None
        for m in _REL_TAG.finditer(rels):
            attrs = _attributes(m.group(1))
            if attrs.get("Id") == rel_id and "Target" in attrs:
                target = html.unescape(attrs["Target"])
                if target.startswith("/xl/"):
                    target = target[1:]
                elif not target.startswith("xl/"):
                    target = f"xl/{target}"
                return [_key(target)]
        return None


_SHEET_TAG = re.compile(rb"<(?:[^\s<>/:]+:)?sheet\s([^>]*)>")
_REL_TAG = re.compile(rb"<(?:[^\s<>/:]+:)?Relationship\s([^>]*)>")
_ATTRIBUTE = re.compile(rb"""([^\s=]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def _attributes(text: bytes) -> dict[str, str]:
    return {m.group(1).decode("utf-8", "replace"):
            (m.group(2) if m.group(2) is not None else m.group(3)).decode("utf-8", "replace")
            for m in _ATTRIBUTE.finditer(text)}


def inspect(path: Path, file: str, limits: ReadLimits) -> WorkbookGuard:
    """Inflate and check every member of the zip at ``path`` (see the module docstring)."""
    guard = WorkbookGuard(path, file, limits)
    try:
        with open(path, "rb") as fh:
            try:
                infos = zipfile.ZipFile(fh).infolist()
            except Exception as e:  # BadZipFile, but also struct/Value/Overflow errors
                raise _bad(file, f"{type(e).__name__}: {e}") from None
            for info in infos:
                if not info.is_dir():
                    _inspect_part(fh, info, guard)
    except OSError as e:
        raise ReadError(f"{file}: cannot read: {e.strerror or e}") from None
    return guard


def _inspect_part(fh: BinaryIO, info: zipfile.ZipInfo, guard: WorkbookGuard) -> None:
    file, limits = guard.file, guard.limits
    key = _key(info.filename)
    part = _Part(info)
    guard.parts.setdefault(key, []).append(part)
    chunks = inflate(fh, info, file, limits)
    if key.endswith(".bin"):
        consume: Callable[[bytes], None] | None = None
        if "worksheets/" in key:
            part.binary = _BinSheet(file, info.filename, limits)
            consume = part.binary.feed
        elif key.rpartition("/")[2].startswith("sharedstrings"):
            consume = _bin_strings(file, info.filename, limits)
        for chunk in chunks:
            if consume:
                consume(chunk)
        if part.binary is not None:  # no sheet names without parsing workbook.bin: check all
            where = f"the worksheet {info.filename}"
            check_dimension(SheetFacts(dimension=part.binary.dimension), file, where, limits)
            check_extent(part.binary.extent, file, where, limits)
        return
    first = next(chunks, b"")
    if _utf16_xml(key, first):
        raise _bad(file, f"{info.filename} is not UTF-8 XML")
    if not _looks_like_xml(first):
        for _ in chunks:  # counted for the size limit, nothing else to look at
            pass
        return
    _inspect_xml(key, part, first, chunks, guard)


def _looks_like_xml(first: bytes) -> bool:
    return first[:64].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def _utf16_xml(key: str, first: bytes) -> bool:
    """An XML part in UTF-16 (which calamine's XML reader may decode): the byte-level checks
    cannot read it, so it is refused. Images and other binary parts are only counted."""
    return key.endswith((".xml", ".rels")) and first.startswith(
        (b"\xff\xfe", b"\xfe\xff", b"<\0", b"\0<"))


def _inspect_xml(key: str, part: _Part, first: bytes, chunks: Iterator[bytes],
                 guard: WorkbookGuard) -> None:
    file, limits, name = guard.file, guard.limits, part.info.filename
    facts = SheetScan(name, file, limits)
    part.facts = facts.facts
    strings: TextMeter | None = None
    if key.rpartition("/")[2].startswith("sharedstrings") or _root(first) == b"sst":
        strings = shared_strings_meter(name, file, limits)
    ods = OdsScan(name, file, limits) if key == "content.xml" else None
    keep = key in ("xl/workbook.xml", "xl/_rels/workbook.xml.rels")
    kept: list[bytes] = []

    def all_chunks() -> Iterator[bytes]:
        yield first
        yield from chunks

    for piece in portions(all_chunks(), lambda d: _bad(file, f"{d} in {name}")):
        facts.feed(piece)
        if strings is not None:
            strings.feed(piece)
        if ods is not None:
            ods.feed(piece)
        if keep:
            kept.append(piece)
            keep = sum(map(len, kept)) <= _KEEP
    if ods is not None:
        ods.finish()
    if keep:
        guard.kept[key] = b"".join(kept)


def _root(first: bytes) -> bytes:
    """The local name of the first element (after the XML declaration and comments)."""
    m = re.search(rb"<([^\s<>/?!]+)", first[:4096])
    return m.group(1).rpartition(b":")[2] if m else b""
