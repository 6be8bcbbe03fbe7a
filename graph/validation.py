"""The bounds every value written to a store must satisfy, defined once.

The event parser (:mod:`graph.events`) checks each parsed value against them, row by row;
:func:`validate_columns` checks whole column arrays against the same :class:`Bound` objects
before :func:`graph.ingest.ingest` or :func:`graph.neo4j_bulk.bulk_import` writes anything,
so no input can fail half-way through a write. The bounds:

* ids: integers ``0 .. 2^63-1`` (:data:`ID`); a tweet's author may also be ``-1`` (unknown);
* timestamps: integer seconds since the epoch, ``0 .. 32503680000`` (:data:`TS`, up to
  3000-01-01T00:00:00Z; 0 = unknown); a millisecond timestamp is out of range, on purpose;
* weights: finite numbers ``0 .. 1e6`` (:data:`WEIGHT`), so float32 holds them;
* tweet texts: strings of valid Unicode (no lone surrogates), without NUL characters, at most
  :data:`MAX_TEXT_BYTES` bytes of UTF-8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graph.errors import InputError
from graph.schema import KIND_NAMES, MAX_ID

#: Latest timestamp accepted: 3000-01-01T00:00:00Z in seconds since the epoch.
MAX_TS = 32_503_680_000
#: Largest engagement weight accepted.
MAX_WEIGHT = 1e6
#: Longest tweet text accepted, in bytes of UTF-8.
MAX_TEXT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Bound:
    """A closed range ``lo..hi`` of one kind of value; :meth:`ok` works on scalars and arrays."""

    what: str
    lo: int | float
    hi: int | float
    shown: str  # the range as messages show it

    def ok(self, value):
        """True where ``value`` is inside the range (elementwise for arrays; NaN is never inside)."""
        return (value >= self.lo) & (value <= self.hi)

    def message(self, value, name: str | None = None) -> str:
        """What is wrong with an out-of-range ``value`` (of the field ``name``)."""
        return f"{name or self.what} {value!r} is outside {self.shown}"


ID = Bound("id", 0, MAX_ID, "0..2^63-1")
TS = Bound("ts", 0, MAX_TS, f"0..{MAX_TS} (seconds since the epoch, up to the year 3000)")
WEIGHT = Bound("weight", 0.0, MAX_WEIGHT, "0..1e6 (a finite number)")


def check_text(text: object) -> None:
    """Raise :class:`InputError` unless ``text`` is a storable tweet text (see the module doc)."""
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    if "\x00" in text:
        raise InputError("text contains a NUL character")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InputError(
            f"text is not valid Unicode: lone surrogate {text[exc.start]!r} at character {exc.start}"
        ) from None
    if size > MAX_TEXT_BYTES:
        raise InputError(f"text is {size} bytes of UTF-8, more than {MAX_TEXT_BYTES}")


def validate_columns(cols) -> None:
    """Check :class:`graph.ingest.GraphColumns` against the bounds before anything is written.

    Raises :class:`InputError` naming the column, the row and the value. Columns that belong
    together (a tweet's id, author, time and text; a follow's ends and time; an engagement's
    user, tweet, kind, time and weight) must have the same length.
    """
    groups = {
        "tweet": ("tweet_ids", "tweet_authors", "tweet_created"),
        "follow": ("follow_src", "follow_dst", "follow_ts"),
        "engagement": ("eng_user", "eng_tweet", "eng_kind", "eng_ts", "eng_weight"),
    }
    arrays = {name: np.asarray(getattr(cols, name)) for names in groups.values() for name in names}
    arrays["users"] = np.asarray(cols.users)
    texts = cols.tweet_texts
    for group, names in groups.items():
        lengths = {name: len(arrays[name]) for name in names}
        if group == "tweet" and texts is not None:
            lengths["tweet_texts"] = len(texts)
        if len(set(lengths.values())) > 1:
            raise InputError(f"graph columns: the {group} columns differ in length: {lengths}")
    for name, bound in (
        ("users", ID),
        ("tweet_ids", ID),
        ("follow_src", ID),
        ("follow_dst", ID),
        ("eng_user", ID),
        ("eng_tweet", ID),
        ("tweet_created", TS),
        ("follow_ts", TS),
        ("eng_ts", TS),
        ("eng_weight", WEIGHT),
    ):
        _check_array(name, arrays[name], bound.ok, lambda v, b=bound: b.message(v))
    authors = arrays["tweet_authors"]
    _check_array("tweet_authors", authors, lambda a: (a == -1) | ID.ok(a), lambda v: ID.message(v, "author"))
    _check_array(
        "eng_kind",
        arrays["eng_kind"],
        lambda k: np.isin(k, list(KIND_NAMES)),
        lambda v: f"engagement kind {v!r} is not one of the codes {sorted(KIND_NAMES)}",
    )
    for i, text in enumerate(texts or ()):
        if text is not None:
            try:
                check_text(text)
            except InputError as exc:
                raise InputError(f"graph columns: tweet_texts[{i}]: {exc}") from None


def _check_array(name: str, values: np.ndarray, ok, message) -> None:
    if values.dtype.kind not in "iuf":
        if len(values) == 0:
            return
        raise InputError(f"graph columns: {name} must hold numbers, got dtype {values.dtype}")
    bad = np.flatnonzero(~np.asarray(ok(values), bool))
    if len(bad):
        i = int(bad[0])
        raise InputError(f"graph columns: {name}[{i}]: {message(values[i].item())} ({len(bad)} such rows)")
