"""Event files: the documented input format of ``graphrec ingest --events``.

One event per row, in CSV (comma, ``.csv``), TSV (tab, ``.tsv``/``.txt``) or JSON Lines
(``.jsonl``/``.ndjson``/``.json``). Files are UTF-8 (a leading byte-order mark is allowed);
CSV/TSV files start with a header row naming their columns. Columns / keys:

========  ========  ==========================================================
column    required  meaning
========  ========  ==========================================================
event     yes       ``user``, ``follow``, ``tweet``, ``like``, ``retweet``,
                    ``reply``, ``quote`` or ``engage``
user      yes       the acting user's id
target    not for   ``follow``: the followed user's id (not ``user`` itself);
          ``user``  ``tweet``: the new tweet's id (``user`` is its author);
                    engagements: the tweet; must be empty for ``user`` events
ts        no        seconds since the epoch (default 0 = unknown; not stored
                    for ``user`` events)
weight    no        engagements only: the weight (default: the kind's weight)
text      no        ``tweet`` events only: the tweet's text
========  ========  ==========================================================

Every field of a row is checked before the row is accepted, and a row is kept whole or not
at all. The bounds (:mod:`graph.validation` holds the numbers, one definition shared with the
batched ingest and the bulk import):

* ids: ASCII digits ``0-9`` only (no sign, no other Unicode digits), value ``0 .. 2^63-1``;
  in JSON an integer or a string of such digits;
* ``ts``: ASCII digits (in JSON as for ids), ``0 .. 32503680000`` (up to the year 3000;
  milliseconds are refused);
* ``weight``: a plain decimal number (``2``, ``0.5``, ``1e-3``), ``0 .. 1e6``; no NaN or infinity;
* ``text``: at most :data:`~graph.validation.MAX_TEXT_BYTES` (64 KiB) of UTF-8, no NUL;
* any other field: at most :data:`MAX_FIELD_CHARS` characters; spaces around it are ignored;
* a line (with its line break; for CSV a row whose quoted text spans lines, all of them):
  at most :data:`MAX_LINE_BYTES` (1 MiB), valid UTF-8, no NUL byte;
* CSV/TSV quoting: a field may be quoted (``"a, ""b"" c"``), a quote inside it doubled; a quoted
  field may span lines. A quote that is never closed is reported as ``unterminated quote`` on
  the line that opened it, and reading goes on with the next line: if the lines a quoted field
  spans do not make one valid row (the quote never closes, the row gets too long, has the wrong
  number of fields or a bad value), only the first line is the bad row. (A stray quote that a
  later line closes into a row that is valid in every field is valid CSV: it is read as such.)
* JSON Lines: one object per line, no duplicate keys, no ``NaN``/``Infinity``, no nesting,
  integers of at most :data:`MAX_FIELD_CHARS` digits.

Any other column or key is an error. Blank lines are ignored. A bad row raises
:class:`InputError` ``file:line: what`` (nothing is returned, so nothing gets written), or
with ``skip_bad=True`` it is skipped, counted in :attr:`EventColumns.skipped` and logged (the
first :data:`SKIP_REPORT_LIMIT` individually, then a summary). A bad header, an unreadable or
missing file is an error either way.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from graph.errors import InputError
from graph.schema import DEFAULT_KIND_WEIGHTS, KINDS
from graph.validation import ID, TS, WEIGHT, check_text

log = logging.getLogger(__name__)

COLUMNS = ("event", "user", "target", "ts", "weight", "text")
EVENT_TYPES = ("user", "follow", "tweet", *KINDS)

#: Longest field other than ``text``, in characters (ids, timestamps and weights need far fewer).
MAX_FIELD_CHARS = 64
#: Longest line (or CSV row spanning lines), in bytes including line breaks.
MAX_LINE_BYTES = 1 << 20
#: Skipped rows logged one by one; beyond this only the summary count.
SKIP_REPORT_LIMIT = 100

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Event:
    """One parsed, validated row: every value within bounds, fields it does not use None."""

    event: str
    user: int
    target: int | None = None
    ts: int = 0
    weight: float | None = None  # engagements: the given or the default weight
    text: str | None = None  # tweets: the text, None for none


@dataclass
class EventColumns:
    """Parsed events as columns, grouped by what they create."""

    users: list[int] = field(default_factory=list)
    tweet_ids: list[int] = field(default_factory=list)
    tweet_authors: list[int] = field(default_factory=list)
    tweet_created: list[int] = field(default_factory=list)
    tweet_texts: list[str | None] = field(default_factory=list)
    follow_src: list[int] = field(default_factory=list)
    follow_dst: list[int] = field(default_factory=list)
    follow_ts: list[int] = field(default_factory=list)
    eng_user: list[int] = field(default_factory=list)
    eng_tweet: list[int] = field(default_factory=list)
    eng_kind: list[int] = field(default_factory=list)
    eng_ts: list[int] = field(default_factory=list)
    eng_weight: list[float] = field(default_factory=list)
    rows: int = 0  # rows read, the skipped ones included (blank lines are not rows)
    skipped: int = 0
    #: ``file:line: what`` of the first :data:`SKIP_REPORT_LIMIT` skipped rows
    skipped_examples: list[str] = field(default_factory=list)

    def add(self, ev: Event) -> None:
        """Append a validated event to its columns (all of them at once: cannot fail half-way)."""
        if ev.event == "user":
            self.users.append(ev.user)
        elif ev.event == "follow":
            self.follow_src.append(ev.user)
            self.follow_dst.append(ev.target)
            self.follow_ts.append(ev.ts)
        elif ev.event == "tweet":
            self.tweet_ids.append(ev.target)
            self.tweet_authors.append(ev.user)
            self.tweet_created.append(ev.ts)
            self.tweet_texts.append(ev.text)
        else:
            self.eng_user.append(ev.user)
            self.eng_tweet.append(ev.target)
            self.eng_kind.append(KINDS[ev.event])
            self.eng_ts.append(ev.ts)
            self.eng_weight.append(ev.weight)

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as typed NumPy arrays."""
        i64 = np.int64
        return {
            "users": np.asarray(self.users, i64),
            "tweet_ids": np.asarray(self.tweet_ids, i64),
            "tweet_authors": np.asarray(self.tweet_authors, i64),
            "tweet_created": np.asarray(self.tweet_created, i64),
            "follow_src": np.asarray(self.follow_src, i64),
            "follow_dst": np.asarray(self.follow_dst, i64),
            "follow_ts": np.asarray(self.follow_ts, i64),
            "eng_user": np.asarray(self.eng_user, i64),
            "eng_tweet": np.asarray(self.eng_tweet, i64),
            "eng_kind": np.asarray(self.eng_kind, np.int8),
            "eng_ts": np.asarray(self.eng_ts, i64),
            "eng_weight": np.asarray(self.eng_weight, np.float32),
        }

    def _skip(self, message: str) -> None:
        self.skipped += 1
        if len(self.skipped_examples) < SKIP_REPORT_LIMIT:
            self.skipped_examples.append(message)
            log.warning("skipped bad event row: %s", message)


def read_events(paths: list[str | Path] | str | Path, *, skip_bad: bool = False) -> EventColumns:
    """Parse and validate event files (format by extension: .csv, .tsv/.txt, .jsonl/.ndjson/.json).

    Raises :class:`InputError` ``file:line: what`` at the first bad row; with ``skip_bad``
    skips (and counts, and logs) each bad row instead. See the module doc for the format.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = EventColumns()
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError("no such event file", path=str(path))
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson", ".json"):
            parse = _jsonl_rows
        elif suffix in (".csv", ".tsv", ".txt"):
            delimiter = "," if suffix == ".csv" else "\t"

            def parse(lines, path=path, delimiter=delimiter):
                return _delimited_rows(lines, delimiter, path)
        else:
            raise InputError(f"unknown event file type {suffix!r}; use .csv, .tsv or .jsonl", path=str(path))
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
        with fh:
            for lineno, ev in parse(_Lines(_physical_lines(fh))):
                out.rows += 1
                if isinstance(ev, InputError):
                    if not skip_bad:
                        raise InputError(str(ev), path=str(path), line=lineno) from None
                    out._skip(f"{path}:{lineno}: {ev}")
                    continue
                out.add(ev)
    if out.skipped:
        more = f"; only the first {SKIP_REPORT_LIMIT} are listed" if out.skipped > SKIP_REPORT_LIMIT else ""
        log.warning("skipped %d bad event rows of %d%s", out.skipped, out.rows, more)
    return out


# ---------------------------------------------------------------------------
# one row -> Event


def parse_event(row: dict) -> Event:
    """Validate one row (CSV fields as strings, or a JSON object's values) into an :class:`Event`.

    Raises :class:`InputError` (without a location) naming the field that is wrong.
    """
    unknown = [k for k in row if k not in COLUMNS]
    if unknown:
        raise InputError(f"unknown key(s) {_show(unknown)}; allowed keys: {', '.join(COLUMNS)}")
    event = _present(row, "event")
    if event is None:
        raise InputError("missing 'event'")
    if not isinstance(event, str) or event not in EVENT_TYPES:
        raise InputError(f"unknown event {_show(event)}; expected one of {', '.join(EVENT_TYPES)}")
    user = _id(row, "user")
    ts = _ts(row)
    engagement = event in KINDS
    for key, used in (("target", event != "user"), ("weight", engagement), ("text", event == "tweet")):
        if not used and _present(row, key) is not None:
            raise InputError(f"{key} must be empty for {event!r} events, got {_show(row[key])}")
    if event == "user":
        return Event(event, user, ts=ts)
    target = _id(row, "target")
    if event == "follow":
        if target == user:
            raise InputError(f"user {user} cannot follow themselves")
        return Event(event, user, target, ts)
    if event == "tweet":
        text = row.get("text")
        if text is not None:
            check_text(text)
        return Event(event, user, target, ts, text=text or None)
    return Event(event, user, target, ts, weight=_weight(row, DEFAULT_KIND_WEIGHTS[event]))


def add_event(out: EventColumns, row: object) -> None:
    """Validate one decoded JSON event (an object with the columns above) and append it to ``out``
    whole, or raise :class:`InputError` (without a location: the caller knows where the event came
    from, e.g. a topic, partition and offset) and leave ``out`` as it was. Used by the stream
    consumer (``graphrec stream``) and the serving workers' live feed."""
    if not isinstance(row, dict):
        raise InputError(f"an event must be a JSON object, got {type(row).__name__}")
    out.add(parse_event(row))


def _present(row: dict, key: str):
    """The field's value, stripped of spaces when a string; None when absent, null or blank."""
    value = row.get(key)
    if isinstance(value, str):
        if len(value) > MAX_FIELD_CHARS and key != "text":
            raise InputError(f"{key} is {len(value)} characters long, more than {MAX_FIELD_CHARS}")
        if key != "text":
            value = value.strip(" ")
        if value == "":
            return None
    return value


def _integer(row: dict, key: str, what: str) -> int | None:
    """An integer field: ASCII digits (CSV, or a JSON string) or a JSON integer; None when absent."""
    value = _present(row, key)
    if value is None:
        return None
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise InputError(f"{what} must be a non-negative integer of ASCII digits, got {_show(value)}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what} must be an integer, got {type(value).__name__} {_show(value)}")
    return value


def _id(row: dict, key: str) -> int:
    value = _integer(row, key, f"{key} id")
    if value is None:
        raise InputError(f"missing {key!r}")
    if not ID.ok(value):
        raise InputError(ID.message(value, f"{key} id"))
    return value


def _ts(row: dict) -> int:
    value = _integer(row, "ts", "ts")
    if value is None:
        return 0
    if not TS.ok(value):
        hint = " (milliseconds? ts is in seconds)" if value > TS.hi and value // 1000 <= TS.hi else ""
        raise InputError(TS.message(value) + hint)
    return value


def _weight(row: dict, default: float) -> float:
    value = _present(row, "weight")
    if value is None:
        return default
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise InputError(f"weight must be a number (plain decimal, e.g. 2 or 0.5), got {_show(value)}")
        value = float(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"weight must be a number, got {type(value).__name__} {_show(value)}")
    if not WEIGHT.ok(value):
        raise InputError(WEIGHT.message(value))
    return float(value)


def _show(value, limit: int = 60) -> str:
    """``repr`` of a value for a message, cut short (a bad field may be 64 KiB long)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[:limit] + "..."


def _parsed(row: dict) -> Event | InputError:
    try:
        return parse_event(row)
    except InputError as exc:
        return exc


# ---------------------------------------------------------------------------
# bytes -> lines


def _physical_lines(fh: BinaryIO) -> Iterator[tuple[int, int, str | InputError]]:
    """(line number, size in bytes, decoded text with its line break or what is wrong with it).

    Lines are split on ``\\n`` in bytes and decoded one at a time, so a bad byte spoils only its
    line; a line longer than :data:`MAX_LINE_BYTES` is read past without being held in memory.
    """
    lineno = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > MAX_LINE_BYTES:
            size = len(raw)
            while not raw.endswith(b"\n"):
                raw = fh.readline(MAX_LINE_BYTES)
                if not raw:
                    break
                size += len(raw)
            yield lineno, size, InputError(f"line is {size} bytes long, more than {MAX_LINE_BYTES}")
            continue
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if b"\x00" in raw:
            yield (
                lineno,
                len(raw),
                InputError(
                    f"NUL byte at byte {raw.index(0) + 1} of the line (is the file UTF-16 or binary?)"
                ),
            )
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.end].hex(" ")
            yield (
                lineno,
                len(raw),
                InputError(f"invalid UTF-8: byte(s) {bad} at byte {exc.start + 1} of the line"),
            )
            continue
        yield lineno, len(raw), text


class _Lines:
    """An iterator of physical lines that lines can be pushed back onto."""

    def __init__(self, lines: Iterator[tuple[int, int, str | InputError]]):
        self._lines = lines
        self._back: list[tuple[int, int, str | InputError]] = []

    def next(self) -> tuple[int, int, str | InputError] | None:
        return self._back.pop() if self._back else next(self._lines, None)

    def push_back(self, lines: list[tuple[int, int, str | InputError]]) -> None:
        self._back.extend(reversed(lines))


def _is_blank(text: str) -> bool:
    return not text.strip()


# ---------------------------------------------------------------------------
# JSON Lines


class _JsonRefusedError(ValueError):
    """A JSON value the format refuses (raised from a json.loads hook)."""


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_FIELD_CHARS:
        raise _JsonRefusedError(f"integer with {len(text.lstrip('-'))} digits, more than {MAX_FIELD_CHARS}")
    return int(text)


def _json_constant(name: str):
    raise _JsonRefusedError(f"{name} is not a JSON number")


def _json_object(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):  # json.loads would keep the last value silently
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _JsonRefusedError(f"duplicate key {_show(key)}")
            seen.add(key)
    return out


def _jsonl_rows(lines: _Lines) -> Iterator[tuple[int, Event | InputError]]:
    while (item := lines.next()) is not None:
        lineno, _, text = item
        if isinstance(text, InputError):
            yield lineno, text
            continue
        if _is_blank(text):
            continue
        try:
            row = json.loads(
                text, parse_int=_json_int, parse_constant=_json_constant, object_pairs_hook=_json_object
            )
        except json.JSONDecodeError as exc:
            yield lineno, InputError(f"invalid JSON: {exc.msg} at column {exc.colno}")
            continue
        except _JsonRefusedError as exc:
            yield lineno, InputError(f"invalid JSON: {exc}")
            continue
        except RecursionError:
            yield lineno, InputError("invalid JSON: nested too deeply")
            continue
        if not isinstance(row, dict):
            yield lineno, InputError(f"each line must be a JSON object, got {type(row).__name__}")
            continue
        yield lineno, _parsed(row)


# ---------------------------------------------------------------------------
# CSV / TSV


class _RecordBrokenError(Exception):
    """A CSV record spanning lines cannot be completed (a line too long or undecodable)."""


def _read_record(lines: _Lines, delimiter: str):
    """The next CSV record, or None at the end: (its first line's number, the lines it spans,
    its fields or what is wrong with it).

    A record whose quoted field cannot be completed gives back every line after its first
    (:func:`_unterminated`), so that a quote left open cannot swallow the rows after it.
    """
    first = lines.next()
    if first is None:
        return None
    lineno, size, text = first
    if isinstance(text, InputError):
        return lineno, [first], text
    taken = [first]
    total = size

    def feed():
        nonlocal total
        yield text
        while True:
            item = lines.next()
            if item is None:
                return  # the csv module then reports "unexpected end of data"
            taken.append(item)
            if isinstance(item[2], InputError):
                raise _RecordBrokenError(f"line {item[0]}: {item[2]}")
            total += item[1]
            if total > MAX_LINE_BYTES:
                raise _RecordBrokenError(f"the row would be more than {MAX_LINE_BYTES} bytes long")
            yield item[2]

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    try:
        fields = next(reader)
    except csv.Error as exc:
        msg = str(exc)
        if "unexpected end of data" in msg:
            return lineno, taken, _unterminated(lines, taken, "the file ends inside it")
        if len(taken) > 1:
            return lineno, taken, _unterminated(lines, taken, f"quoting error on line {taken[-1][0]}: {msg}")
        if "field larger than field limit" in msg:
            return lineno, taken, InputError(f"a field is longer than {csv.field_size_limit()} characters")
        if "new-line character seen in unquoted field" in msg:
            return lineno, taken, InputError("a carriage return (CR) inside an unquoted field")
        return lineno, taken, InputError(f"malformed quoting: {msg}")
    except _RecordBrokenError as exc:
        return lineno, taken, _unterminated(lines, taken, str(exc))
    return lineno, taken, fields


def _unterminated(lines: _Lines, taken: list, detail: str) -> InputError:
    """The error of a record whose quoted field spans lines but does not make a valid row; the
    lines after its first go back to be read as rows of their own."""
    lines.push_back(taken[1:])
    return InputError(
        f"unterminated quote: the quoted field opened on this line does not close into a valid row ({detail})"
    )


def _delimited_rows(lines: _Lines, delimiter: str, path: Path) -> Iterator[tuple[int, Event | InputError]]:
    got = _read_record(lines, delimiter)
    if got is None:
        return
    lineno, _, header = got
    if isinstance(header, InputError):
        raise InputError(f"bad header row: {header}", path=str(path), line=lineno)
    header = [h.strip(" ") for h in header]
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise InputError(
            f"unknown column(s) {_show(unknown)}; allowed columns: {', '.join(COLUMNS)}",
            path=str(path),
            line=1,
        )
    if len(set(header)) != len(header):
        raise InputError(f"duplicate column(s) in the header {header}", path=str(path), line=lineno)
    if "event" not in header or "user" not in header:
        raise InputError(
            "header must name at least the columns 'event' and 'user'", path=str(path), line=lineno
        )
    while (got := _read_record(lines, delimiter)) is not None:
        lineno, taken, fields = got
        if isinstance(fields, InputError):
            yield lineno, fields
            continue
        if len(taken) == 1 and (not fields or (len(fields) == 1 and _is_blank(fields[0]))):
            continue  # a blank line
        if len(fields) != len(header):
            ev = InputError(f"expected {len(header)} fields ({', '.join(header)}), found {len(fields)}")
        else:
            ev = _parsed(dict(zip(header, fields)))
        if len(taken) > 1 and isinstance(ev, InputError):
            ev = _unterminated(lines, taken, f"it closes on line {taken[-1][0]} into a bad row: {ev}")
        yield lineno, ev
