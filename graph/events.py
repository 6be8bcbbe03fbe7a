"""Event files: the documented input format of ``graphrec ingest --events``.

One event per row, in CSV (comma), TSV (tab) or JSON Lines. CSV/TSV files start
with a header row. Columns / keys:

========  ========  ==========================================================
column    required  meaning
========  ========  ==========================================================
event     yes       ``user``, ``follow``, ``tweet``, ``like``, ``retweet``,
                    ``reply``, ``quote`` or ``engage``
user      yes       the acting user's id (non-negative integer)
target    not for   ``follow``: the followed user's id; ``tweet``: the new
          ``user``  tweet's id (``user`` is its author); engagements: the tweet
ts        no        integer seconds since the epoch (default 0 = unknown)
weight    no        engagement weight (default: the kind's weight)
text      no        tweet text (``tweet`` events only)
========  ========  ==========================================================

Any other column is an error. A bad row raises :class:`InputError` naming the
file and line, or with ``skip_bad=True`` is counted and skipped.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graph.errors import InputError
from graph.schema import DEFAULT_KIND_WEIGHTS, KINDS, MAX_ID

log = logging.getLogger(__name__)

COLUMNS = ("event", "user", "target", "ts", "weight", "text")
EVENT_TYPES = ("user", "follow", "tweet", *KINDS)


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
    rows: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)

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


def read_events(paths: list[str | Path] | str | Path, *, skip_bad: bool = False) -> EventColumns:
    """Parse one or more event files (format chosen by extension: .csv, .tsv, .jsonl/.ndjson)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = EventColumns()
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError("no such event file", path=str(path))
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson", ".json"):
            rows = _jsonl_rows(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            rows = _delimited_rows(path, "\t" if suffix in (".tsv", ".txt") else ",")
        else:
            raise InputError(f"unknown event file type {suffix!r}; use .csv, .tsv or .jsonl", path=str(path))
        for lineno, row in rows:
            out.rows += 1
            try:
                if isinstance(row, InputError):
                    raise row
                _add_row(out, row)
            except InputError as exc:
                if not skip_bad:
                    raise InputError(str(exc), path=str(path), line=lineno) from None
                out.skipped += 1
                if len(out.skipped_examples) < 5:
                    out.skipped_examples.append(f"{path}:{lineno}: {exc}")
    if out.skipped:
        log.warning(
            "skipped %d bad event rows of %d, e.g. %s", out.skipped, out.rows, out.skipped_examples[0]
        )
    return out


def add_event(out: EventColumns, row: object) -> None:
    """Validate one decoded JSON event (an object with the columns above) and append it to ``out``.

    Raises :class:`InputError` (no file or line: the caller knows where the event came from) and
    then leaves ``out`` as it was. Used by the stream consumer (``graphrec stream``).
    """
    if not isinstance(row, dict):
        raise InputError(f"an event must be a JSON object, got {type(row).__name__}")
    unknown = [k for k in row if k not in COLUMNS]
    if unknown:
        raise InputError(f"unknown key(s) {unknown}; allowed keys: {', '.join(COLUMNS)}")
    sizes = [len(v) for v in vars(out).values() if isinstance(v, list)]
    try:
        _add_row(out, row)
    except InputError:
        # _add_row may have appended to some columns before it found the error.
        for column, size in zip((v for v in vars(out).values() if isinstance(v, list)), sizes):
            del column[size:]
        raise


def _delimited_rows(path: Path, delimiter: str):
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            raise InputError(
                f"unknown column(s) {unknown}; allowed columns: {', '.join(COLUMNS)}", path=str(path), line=1
            )
        if "event" not in header or "user" not in header:
            raise InputError(
                "header must name at least the columns 'event' and 'user'", path=str(path), line=1
            )
        for values in reader:
            lineno = reader.line_num
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            if len(values) != len(header):
                yield (
                    lineno,
                    InputError(f"expected {len(header)} fields ({', '.join(header)}), found {len(values)}"),
                )
                continue
            yield lineno, dict(zip(header, values))


def _jsonl_rows(path: Path):
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, InputError(f"invalid JSON: {exc.msg}")
                continue
            if not isinstance(row, dict):
                yield lineno, InputError("each line must be a JSON object")
                continue
            unknown = [k for k in row if k not in COLUMNS]
            if unknown:
                yield lineno, InputError(f"unknown key(s) {unknown}; allowed keys: {', '.join(COLUMNS)}")
                continue
            yield lineno, row


def _id(row: dict, key: str) -> int:
    value = row.get(key)
    if value is None or value == "":
        raise InputError(f"missing {key!r}")
    if isinstance(value, (bool, float)):
        raise InputError(f"{key} id must be an integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise InputError(f"{key} id must be a non-negative integer, got {value!r}")
        value = int(text)
    if not isinstance(value, int):
        raise InputError(f"{key} id must be an integer, got {type(value).__name__} {value!r}")
    if not 0 <= value <= MAX_ID:
        raise InputError(f"{key} id {value} is outside 0..2^63-1")
    return value


def _int(row: dict, key: str, default: int) -> int:
    value = row.get(key)
    if value is None or value == "":
        return default
    try:
        if isinstance(value, (bool, float)):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be an integer, got {value!r}") from None


def _float(row: dict, key: str, default: float) -> float:
    value = row.get(key)
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be a number, got {value!r}") from None
    if not np.isfinite(out) or out < 0:
        raise InputError(f"{key} must be a finite non-negative number, got {value!r}")
    return out


def _add_row(out: EventColumns, row: dict) -> None:
    event = row.get("event")
    if event not in EVENT_TYPES:
        raise InputError(f"unknown event {event!r}; expected one of {', '.join(EVENT_TYPES)}")
    user = _id(row, "user")
    ts = _int(row, "ts", 0)
    if event == "user":
        out.users.append(user)
        return
    target = _id(row, "target")
    if event == "follow":
        if target == user:
            raise InputError(f"user {user} cannot follow themselves")
        out.follow_src.append(user)
        out.follow_dst.append(target)
        out.follow_ts.append(ts)
    elif event == "tweet":
        text = row.get("text")
        if text is not None and not isinstance(text, str):
            raise InputError(f"text must be a string, got {type(text).__name__}")
        out.tweet_ids.append(target)
        out.tweet_authors.append(user)
        out.tweet_created.append(ts)
        out.tweet_texts.append(text or None)
    else:
        out.eng_user.append(user)
        out.eng_tweet.append(target)
        out.eng_kind.append(KINDS[event])
        out.eng_ts.append(ts)
        out.eng_weight.append(_float(row, "weight", DEFAULT_KIND_WEIGHTS[event]))
