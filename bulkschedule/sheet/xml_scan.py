"""Streaming checks of a workbook's XML parts, fed inflated chunks before calamine sees them.

Why not just parse: the checks run on every workbook, so the common case must cost little more
than inflating the part. Each check has a fast path of C-level byte searches that proves a
normal file safe, and falls back to an exact parse (expat, no DTD allowed) only for files that
look unusual: a cell without its reference first, a namespace prefix, a reference beyond the
limits. What calamine would do is mirrored from its xlsx and ods readers: a ``<c>`` or ``<row>``
without an ``r`` takes the next position, only cells with a value count, the grid spans from the
first to the last such cell; an ods cell or row repeated N times is stored N times.

All counts come from the bytes themselves; nothing the file declares is trusted.
"""

from __future__ import annotations

import functools
import re
import xml.parsers.expat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from bulkschedule.core.errors import ReadError
from bulkschedule.sheet.limits import ReadLimits, exceeded

#: Most bytes carried from one chunk to the next while no tag starts in them: a text run longer
#: than this is cut inside (never within a UTF-8 sequence or an entity), a tag is refused.
_CARRY = 4 << 20


# -- cell references -----------------------------------------------------------------------------


def column_number(letters: str) -> int:
    """``A`` -> 1, ``Z`` -> 26, ``AA`` -> 27 (either case, as calamine reads them)."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


def column_letters(n: int) -> str:
    """1 -> ``A``, 27 -> ``AA``."""
    out = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _not_above(n: int) -> str:
    """A regex for the decimal numbers 1..n written without leading zeros."""
    s = str(n)
    alts = [rf"[1-9]\d{{0,{len(s) - 2}}}"] if len(s) > 1 else []
    for i, d in enumerate(s):  # same length: equal up to i, smaller digit at i, anything after
        low = "1" if i == 0 else "0"
        if int(d) > int(low):
            alts.append(f"{s[:i]}[{low}-{int(d) - 1}]" + (rf"\d{{{len(s) - i - 1}}}"
                                                        if i < len(s) - 1 else ""))
    alts.append(s)
    return "(?:" + "|".join(alts) + ")"


def _letters_not_above(n: int) -> str:
    """A regex for the column letters A..column_letters(n) (upper case only: lower case is
    legal for calamine but unusual, so it takes the exact path)."""
    s = column_letters(n)
    alts = [f"[A-Z]{{1,{len(s) - 1}}}"] if len(s) > 1 else []
    for i, ch in enumerate(s):
        if ch > "A":
            alts.append(f"{s[:i]}[A-{chr(ord(ch) - 1)}]" + (f"[A-Z]{{{len(s) - i - 1}}}"
                                                          if i < len(s) - 1 else ""))
    alts.append(s)
    return "(?:" + "|".join(alts) + ")"


@functools.lru_cache(maxsize=8)
def _unusual(max_rows: int, max_columns: int) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """Searches for what the fast path cannot vouch for: a cell tag without ``r="..."`` as its
    first attribute or with a reference beyond the limits; a prefixed ``c`` element (calamine
    matches local names). Rows need no look: a cell with its reference ignores the row's.

    Comments, CDATA and tags after sheetData can only add matches (calamine sees fewer cells
    than the bytes show), which sends a sheet to the exact pass, never past it."""
    row = _not_above(max_rows + 1).encode()
    col = _letters_not_above(max_columns).encode()
    return (re.compile(rb'<c(?:\s(?!r="' + col + row + rb'")|>)'),
            re.compile(rb":c[\s/>]"))


#: A cell that calamine counts for sure: its reference first, then a value (a number, a shared
#: string's index, an inline text), after an optional formula.
_VALUED_CELL = re.compile(
    rb'<c r="([A-Z]{1,3})([1-9]\d{0,6})"[^>/]*>(?:<f[^>]*>[^<]*</f>|<f[^>]*/>)?'
    rb"(?:<v>[^<]|<is><t(?:\s[^>]*)?>[^<])"
)
_DIMENSION = re.compile(rb"<(?:[^\s<>/:]+:)?dimension\b([^>]*)>")
_REF_ATTR = re.compile(rb"""\sref\s*=\s*["']([^"']*)["']""")
_CELL_REF = re.compile(r"\$?([A-Za-z]{1,10})\$?(\d{1,12})")
_SHEETDATA_START = re.compile(rb"<(?:[^\s<>/:]+:)?sheetData\b[^>]*>")


def parse_ref(ref: str) -> tuple[int, int] | None:
    """``"XFD1048576"`` -> (row 1048576, column 16384), 1-based; None if it is not a reference."""
    m = _CELL_REF.fullmatch(ref.strip())
    return (int(m.group(2)), column_number(m.group(1))) if m else None


def cell_name(row: int, col: int) -> str:
    return f"{column_letters(col)}{row}"


# -- splitting a stream at tag boundaries ---------------------------------------------------------


def portions(chunks: Iterable[bytes], bad: Callable[[str], ReadError]) -> Iterator[bytes]:
    """Re-cut inflated chunks so that each piece ends just before a ``<``: no tag, entity or
    UTF-8 sequence is split. A text run longer than `_CARRY` is cut inside; a tag that long is
    an error from ``bad`` (no well-formed workbook has one)."""
    carry = b""
    for chunk in chunks:
        buf = carry + chunk if carry else chunk
        cut = buf.rfind(b"<")
        if cut <= 0:
            if len(buf) <= _CARRY:
                carry = buf
                continue
            gt = buf.rfind(b">")
            if gt == -1 and buf.startswith(b"<"):
                raise bad("a tag over 4 MB long")
            cut = _text_cut(buf, gt + 1)
        yield buf[:cut]
        carry = buf[cut:]
    if carry:
        yield carry


def _text_cut(buf: bytes, start: int) -> int:
    """A cut point after ``start`` in a text run, not inside an entity or a UTF-8 sequence."""
    end = len(buf)
    amp = buf.rfind(b"&", max(start, end - 64))
    if amp != -1 and buf.find(b";", amp) == -1:
        end = amp
    while end > start and 0x80 <= buf[end - 1] < 0xC0:
        end -= 1
    if end > start and buf[end - 1] >= 0xC0:
        end -= 1
    return end if end > start else len(buf)


# -- text length ---------------------------------------------------------------------------------

_TAG = re.compile(rb"<[^>]*>")
_ENTITY = re.compile(rb"&[^;&<>\s]{1,40};")
_NOT_CONTINUATION = bytes(range(0x80)) + bytes(range(0xC0, 0x100))


def text_chars(xml: bytes) -> int:
    """Characters of text in an XML fragment: tags dropped, an entity reference counts one,
    UTF-8 decoded. Attribute values and markup never count, so this never overstates a cell's
    text by more than the odd whitespace between tags (phonetic runs count too)."""
    if b"<" in xml:
        xml = _TAG.sub(b"", xml)
    if b"&" in xml:
        xml = _ENTITY.sub(b"&", xml)
    return len(xml) - len(xml.translate(None, _NOT_CONTINUATION))


class TextMeter:
    """The longest element text in a stream of portions, where elements end at ``end``.

    Fast path: if every window of half the limit holds a literal end tag, no element in between
    can be longer than the limit (in bytes, so in characters): nothing is measured but the open
    element at the end. Otherwise the portion is split at every end tag (any prefix, optional
    whitespace) and the long pieces are counted exactly. Counts of an element spread over many
    portions add up, so a 1 GB string is refused after its first 32,767 characters.
    """

    def __init__(self, literal: bytes, end: re.Pattern[bytes], limit: int,
                 over: Callable[[int, bytes, bool], ReadError]) -> None:
        self.literal, self.end, self.limit, self.over = literal, end, limit, over
        self.window = max(limit // 2, 1)
        self.open_chars = 0
        self.open_head = b""  # the start of the open element, to name it in a message

    def feed(self, portion: bytes) -> None:
        if self._has_gap(portion):
            pieces = self.end.split(portion)
        else:
            first = portion.find(self.literal)
            if first == -1:
                self._grow(portion)
                return
            last = portion.rfind(self.literal) + len(self.literal)
            pieces = [portion[:first], portion[last:]]
        if len(pieces) == 1:
            self._grow(pieces[0])
            return
        self._close(pieces[0])
        for piece in pieces[1:-1]:
            if len(piece) > self.limit:
                self._check(text_chars(piece), piece)
        self.open_chars, self.open_head = 0, b""
        self._grow(pieces[-1])

    def _has_gap(self, portion: bytes) -> bool:
        w, lit = self.window, self.literal
        return any(portion.find(lit, i, i + w + len(lit) - 1) == -1
                   for i in range(0, len(portion) - w + 1, w))

    def _grow(self, piece: bytes) -> None:
        if not piece:
            return
        if not self.open_head:
            self.open_head = piece[:512]
        self.open_chars += text_chars(piece)
        if self.open_chars > self.limit:  # still open: the full length is not known
            raise self.over(self.open_chars, self.open_head, False)

    def _close(self, piece: bytes) -> None:
        if self.open_chars + len(piece) > self.limit:
            head = self.open_head or piece[:512]
            self._check(self.open_chars + text_chars(piece), head)

    def _check(self, chars: int, head: bytes) -> None:
        if chars > self.limit:
            raise self.over(chars, head, True)


_CELL_END = re.compile(rb"</(?:[^\s<>/:]+:)?c\s*>")
_SI_END = re.compile(rb"</(?:[^\s<>/:]+:)?si\s*>")
_R_ATTR = re.compile(rb"""<(?:[^\s<>/:]+:)?c\s[^>]*?\br\s*=\s*["']([A-Za-z]+\d+)["']""")


def _cell_in(head: bytes) -> str:
    m = _R_ATTR.search(head)
    return f"cell {m.group(1).decode('ascii').upper()}" if m else "a cell"


# -- worksheets ----------------------------------------------------------------------------------


@dataclass(slots=True)
class SheetFacts:
    """What the fast pass learnt of one worksheet part."""

    dimension: str | None = None  # the ``<dimension ref>`` as declared
    has_cells: bool = False  # a sheetData element was found
    unusual: str | None = None  # why the exact pass is needed, or None when the fast pass vouches
    first: tuple[int, int] | None = None  # (row, column) of the first cell with a value
    far: tuple[int, int] | None = None  # the unusual cell, when it has a value and its reference

    def at_least(self) -> Extent | None:
        """The grid spans at least from the first cell to the far one (both surely counted):
        enough to refuse a sheet at once, without the exact pass."""
        if self.first is None or self.far is None:
            return None
        extent = Extent()
        extent.add(*self.first)
        extent.add(*self.far)
        return extent


class SheetScan:
    """Fast pass over one worksheet part: measures every cell's text (exactly, so a long one is
    refused at once) and notes whether the cell positions need the exact pass (`exact_extent`).
    The part's sheet is not known yet (calamine chooses it after opening the workbook), so
    position limits are applied later, to the chosen sheet only."""

    def __init__(self, part: str, file: str, limits: ReadLimits) -> None:
        self.part, self.facts = part, SheetFacts()
        self.active = self.done = False
        self.searches = _unusual(limits.max_rows, limits.max_columns)

        def over(chars: int, head: bytes, closed: bool) -> ReadError:
            size = f"{chars:,} characters" if closed else "a longer text"
            return exceeded(file, f"{_cell_in(head)} in {part} has {size}", "max_cell_chars",
                            limits)

        self.meter = TextMeter(b"</c>", _CELL_END, limits.max_cell_chars, over)

    def feed(self, portion: bytes) -> None:
        """Note the dimension, find sheetData, then look at its cells. Nothing after the start
        of sheetData is searched for its end: that would cost a pass over every byte, and what
        follows it (merged cells, formatting) holds no cell tags and little text."""
        if self.done:
            return
        if not self.active:
            if self.facts.dimension is None and b"dimension" in portion and \
                    (d := _DIMENSION.search(portion)):
                ref = _REF_ATTR.search(d.group(1))
                self.facts.dimension = ref.group(1).decode("ascii", "replace") if ref else ""
            if b"sheetData" not in portion or not (start := _SHEETDATA_START.search(portion)):
                return
            self.active = self.facts.has_cells = True
            if portion[start.end() - 2:start.end()] == b"/>":
                self.done = True
                return
            portion = portion[start.end():]
        self.meter.feed(portion)
        facts = self.facts
        if facts.first is None and (v := _VALUED_CELL.search(portion)):
            facts.first = (int(v.group(2)), column_number(v.group(1).decode("ascii")))
        if facts.unusual is None:
            for search in self.searches:
                if m := search.search(portion):
                    facts.unusual = portion[m.start():m.start() + 40].decode("ascii", "replace")
                    if v := _VALUED_CELL.match(portion, m.start()):
                        facts.far = (int(v.group(2)), column_number(v.group(1).decode("ascii")))
                    break


@dataclass(slots=True)
class Extent:
    """The grid calamine would build: rows and columns from the first to the last cell."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def add(self, row: int, col: int) -> None:
        if not self.top:
            self.top = self.bottom = row
            self.left = self.right = col
            return
        self.top, self.bottom = min(self.top, row), max(self.bottom, row)
        self.left, self.right = min(self.left, col), max(self.right, col)

    @property
    def rows(self) -> int:
        return self.bottom - self.top + 1 if self.top else 0

    @property
    def columns(self) -> int:
        return self.right - self.left + 1 if self.top else 0

    def span(self) -> str:
        return f"from {cell_name(self.top, self.left)} to {cell_name(self.bottom, self.right)}"


def check_extent(extent: Extent, file: str, where: str, limits: ReadLimits, *,
                 at_least: bool = False) -> None:
    """Refuse a grid taller than a header and ``max_rows`` rows, or wider than ``max_columns``.
    ``where`` names the sheet in messages ("the sheet 'Sessions'"); ``at_least`` says the grid
    may be bigger than ``extent``."""
    more = "at least " if at_least else ""
    if extent.rows > limits.max_rows + 1:
        raise exceeded(file, f"{where} has cells in {more}{extent.rows:,} rows, "
                       f"{extent.span()}", "max_rows", limits)
    if extent.columns > limits.max_columns:
        raise exceeded(file, f"{where} has cells in {more}{extent.columns:,} columns, "
                       f"{extent.span()}", "max_columns", limits)


def check_dimension(facts: SheetFacts, file: str, where: str, limits: ReadLimits) -> None:
    """The declared used range must fit the limits too (it is checked, never relied on)."""
    if not facts.dimension:
        return
    corners = [parse_ref(p) for p in facts.dimension.split(":")]
    if not corners or None in corners or len(corners) > 2:
        return  # calamine refuses a malformed range itself
    (r1, c1), (r2, c2) = corners[0], corners[-1]  # type: ignore[misc]  # None excluded above
    declared = Extent(min(r1, r2), max(r1, r2), min(c1, c2), max(c1, c2))
    for value, limit, what in ((declared.rows, limits.max_rows + 1, "rows"),
                               (declared.columns, limits.max_columns, "columns")):
        if value > limit:
            raise exceeded(file, f"{where} declares its used range as "
                           f"{facts.dimension} ({value:,} {what})",
                           "max_rows" if what == "rows" else "max_columns", limits)


class _Replay:
    """calamine's cell positions, replayed from expat events (see `exact_extent`)."""

    def __init__(self, file: str, where: str, part: str, limits: ReadLimits) -> None:
        self.file, self.where, self.part, self.limits = file, where, part, limits
        self.extent = Extent()
        self.row, self.col = 1, 1  # the next implicit position (calamine's row/col index + 1)
        self.in_data = self.done = False
        self.cell: tuple[int, int] | None = None  # the open cell; it counts once it has content
        self.filled = False

    def start(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rpartition(":")[2]
        if self.done:
            return
        if local == "sheetData":
            self.in_data = True
        elif not self.in_data:
            return
        elif local == "row":
            r = attrs.get("r")
            if r is not None:
                self.row = _int(r, self.file, self.part)
        elif local == "c":
            r = attrs.get("r")
            pos = (self.row, self.col)
            if r is not None:
                found = parse_ref(r)
                if found is None:
                    raise _bad(self.file, self.part, f"a cell reference '{r[:20]}'")
                pos = found
                self.col = found[1]  # calamine takes the column from r, keeps the row index
            self.cell, self.filled = pos, False
        elif self.cell:
            self.filled = True

    def end(self, name: str) -> None:
        local = name.rpartition(":")[2]
        if not self.in_data or self.done:
            return
        if local == "sheetData":
            self.done = True
        elif local == "row":
            self.row, self.col = self.row + 1, 1
        elif local == "c" and self.cell:
            if self.filled:
                self.extent.add(*self.cell)
                check_extent(self.extent, self.file, self.where, self.limits)
            self.cell = None
            self.col += 1

    def text(self, data: str) -> None:
        if self.cell and not data.isspace():
            self.filled = True


def exact_extent(portions_: Iterable[bytes], file: str, where: str, part: str,
                 limits: ReadLimits) -> Extent:
    """Replay calamine's cell positions with expat and refuse as soon as the grid outgrows the
    limits (the grid only grows, so a 2 KB sheet claiming XFD1048576 stops at once)."""
    replay = _Replay(file, where, part, limits)
    parser = _parser(file, part)
    parser.StartElementHandler = replay.start
    parser.EndElementHandler = replay.end
    parser.CharacterDataHandler = replay.text
    _run(parser, portions_, file, part)
    return replay.extent


def _int(value: str, file: str, part: str) -> int:
    if not value.strip().isdigit():
        raise _bad(file, part, f"a row number '{value[:20]}'")
    return int(value)


def _bad(file: str, part: str, what: str) -> ReadError:
    return ReadError(f"{file}: not a valid Excel workbook (is it corrupt, or another format "
                     f"renamed?) ({what} in {part})")


def _parser(file: str, part: str) -> xml.parsers.expat.XMLParserType:
    """An expat parser that refuses any DTD: no workbook part has one, and a DTD is how entity
    expansion (billion laughs) and external entities get in."""
    parser = xml.parsers.expat.ParserCreate()
    parser.buffer_text = True

    def no_dtd(*_: object) -> None:
        raise _bad(file, part, "a DTD")

    parser.StartDoctypeDeclHandler = no_dtd
    parser.EntityDeclHandler = no_dtd
    parser.ExternalEntityRefHandler = no_dtd  # type: ignore[assignment]  # raises, never returns
    return parser


def _run(parser: xml.parsers.expat.XMLParserType, portions_: Iterable[bytes], file: str,
         part: str) -> None:
    try:
        for piece in portions_:
            parser.Parse(piece, False)
        parser.Parse(b"", True)
    except xml.parsers.expat.ExpatError as e:
        raise _bad(file, part, f"malformed XML: {xml.parsers.expat.ErrorString(e.code)}") \
            from None


# -- shared strings ------------------------------------------------------------------------------


def shared_strings_meter(part: str, file: str, limits: ReadLimits) -> TextMeter:
    """Every shared string's length: one long string shown in 2,000 cells is 2,000 copies."""

    def over(chars: int, _head: bytes, closed: bool) -> ReadError:
        size = f"{chars:,} characters" if closed else "a longer text"
        return exceeded(file, f"a shared string (text shown in cells) in {part} has {size}",
                        "max_cell_chars", limits)

    return TextMeter(b"</si>", _SI_END, limits.max_cell_chars, over)


# -- OpenDocument --------------------------------------------------------------------------------


class OdsScan:
    """Every table of an ods ``content.xml``, exactly as calamine expands it: a cell or row with
    ``number-*-repeated`` is stored that many times (a 1 KB file can ask for 17 billion cells),
    empty cells only where a non-empty one follows, ``<text:s text:c="N"/>`` is N spaces.

    calamine parses all tables when it opens the file, so all are checked, whichever is chosen.
    """

    _CELLS = ("table:table-cell", "table:covered-table-cell")
    _VALUES = ("office:value", "office:string-value", "office:date-value", "office:time-value",
               "office:boolean-value", "table:formula")

    def __init__(self, part: str, file: str, limits: ReadLimits) -> None:
        self.part, self.file, self.limits = part, file, limits
        self.parser = _parser(file, part)
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._text
        self.table = ""
        self.rows = 0  # rows of this table so far, repeats expanded, up to the last non-empty
        self.pending_rows = 0  # empty rows since the last non-empty one (kept only if one follows)
        self.row_repeat = 1
        self.width = 0  # cells of this row up to the last non-empty one, repeats expanded
        self.pending_cells = 0
        self.row_filled = False
        self.cell_repeat = 0  # 0: not in a cell
        self.cell_filled = False
        self.cell_chars = 0
        self.paragraphs = 0

    def feed(self, portion: bytes) -> None:
        try:
            self.parser.Parse(portion, False)
        except xml.parsers.expat.ExpatError as e:
            raise _bad(self.file, self.part,
                       f"malformed XML: {xml.parsers.expat.ErrorString(e.code)}") from None

    def finish(self) -> None:
        self.feed(b"")
        try:
            self.parser.Parse(b"", True)
        except xml.parsers.expat.ExpatError as e:
            raise _bad(self.file, self.part,
                       f"malformed XML: {xml.parsers.expat.ErrorString(e.code)}") from None

    def _repeat(self, attrs: dict[str, str], name: str) -> int:
        value = attrs.get(name)
        if value is None:
            return 1
        return _int(value, self.file, self.part)

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if name == "table:table":
            self.table = attrs.get("table:name", "")
            self.rows = self.pending_rows = 0
        elif name == "table:table-row":
            self.row_repeat = self._repeat(attrs, "table:number-rows-repeated")
            self.width = self.pending_cells = 0
            self.row_filled = False
        elif name in self._CELLS:
            self.cell_repeat = self._repeat(attrs, "table:number-columns-repeated")
            self.cell_filled = any(k in attrs for k in self._VALUES) or \
                attrs.get("office:value-type") == "string"
            self.cell_chars = len(attrs.get("office:string-value", ""))
            self.paragraphs = 0
            self._check_chars()
        elif self.cell_repeat:
            if name == "text:p":
                self.paragraphs += 1
                if self.paragraphs > 1:  # calamine joins paragraphs with a line break
                    self.cell_chars += 1
            elif name == "text:s":
                self.cell_chars += self._repeat(attrs, "text:c")
            self._check_chars()

    def _text(self, data: str) -> None:
        if self.cell_repeat:
            self.cell_chars += len(data)
            self._check_chars()

    def _check_chars(self) -> None:
        if self.cell_chars > self.limits.max_cell_chars:
            raise exceeded(self.file, f"a cell of the sheet '{self.table}' has "
                           f"{self.cell_chars:,} characters or more", "max_cell_chars",
                           self.limits)

    def _end(self, name: str) -> None:
        if name in self._CELLS and self.cell_repeat:
            if self.cell_filled:
                self.width += self.pending_cells + self.cell_repeat
                self.pending_cells = 0
                self.row_filled = True
                if self.width > self.limits.max_columns:
                    raise exceeded(self.file, f"a row of the sheet '{self.table}' has "
                                   f"{self.width:,} cells or more", "max_columns", self.limits)
            else:
                self.pending_cells += self.cell_repeat
            self.cell_repeat = 0
        elif name == "table:table-row":
            if self.row_filled:
                self.rows += self.pending_rows + self.row_repeat
                self.pending_rows = 0
                if self.rows > self.limits.max_rows + 1:
                    raise exceeded(self.file, f"the sheet '{self.table}' has {self.rows:,} "
                                   "rows or more", "max_rows", self.limits)
            elif self.rows:
                self.pending_rows += self.row_repeat
