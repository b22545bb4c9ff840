"""From an `EventLog` to encoded, time-ordered user sequences.

Each user becomes a sequence of events in time order (a stable sort: file order breaks ties), and
each event three integers: the item's index, the event type's index and the bucket of the time gap
since the user's previous event. Index 0 is padding in every vocabulary; items seen fewer than
``min_item_count`` times share the explicit out-of-vocabulary index 1. Sequences are stored flat
(CSR: ``offsets`` into event arrays), so every operation here is vectorised NumPy — no per-event
Python loop — and training windows are gathered with one fancy-indexing call.

Time-gap buckets (log scale, as in time-aware sequential recommenders such as TiSASRec):
``0`` padding, ``1`` first event of a user or unknown gap, ``2 + floor(log2(1 + gap_seconds))``
otherwise, capped at ``time_buckets - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from seqvae.logrules import drop_from_order, fill_within_users, first_lines, time_order
from seqvae.logs import EventLog, IngestReport

PAD = 0
OOV = 1
RESERVED = ("<pad>", "<oov>")
GAP_FIRST = 1


@dataclass(frozen=True)
class SequenceOptions:
    """How to turn a log into sequences."""

    # Items seen fewer times than this map to the out-of-vocabulary index 1.
    min_item_count: int = 1
    # Keep only users and items with at least this many events, applied until stable (0 = off).
    k_core: int = 0
    # Number of time-gap buckets, padding and "first event" included.
    time_buckets: int = 34

    def __post_init__(self) -> None:
        if self.min_item_count < 1:
            raise ValueError(f"`min_item_count` should be >= 1. Received: {self.min_item_count}")
        if self.k_core < 0:
            raise ValueError(f"`k_core` should be >= 0. Received: `k_core`={self.k_core}")
        if self.time_buckets < 3:
            raise ValueError(f"`time_buckets` should be >= 3. Received: {self.time_buckets}")


@dataclass(frozen=True)
class Vocabulary:
    """Tokens <-> integer ids, ids 0 (padding) and 1 (out of vocabulary) reserved."""

    tokens: tuple[str, ...]  # tokens[i] has id i + 2

    @property
    def size(self) -> int:
        """Number of ids, the reserved ones included (an embedding table's input size)."""
        return len(self.tokens) + len(RESERVED)

    def __len__(self) -> int:
        return self.size

    @property
    def _index(self) -> pd.Index:
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = pd.Index(self.tokens, dtype=object)
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def lookup(self, tokens: SequenceABC[Any] | np.ndarray) -> np.ndarray:
        """Tokens -> ids (int32); unknown tokens get `OOV`."""
        keys = pd.Index([str(t) for t in tokens], dtype=object)
        ids = self._index.get_indexer(keys)
        return np.where(ids < 0, OOV, ids + len(RESERVED)).astype(np.int32)

    def token(self, ids: SequenceABC[int] | np.ndarray) -> np.ndarray:
        """Ids -> tokens (the reserved ids give '<pad>' and '<oov>')."""
        table = np.asarray(RESERVED + self.tokens, dtype=object)
        return table[np.asarray(ids, dtype=np.int64)]

    def __contains__(self, token: object) -> bool:
        return str(token) in self._index

    def to_json(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def from_json(cls, tokens: list[str]) -> Vocabulary:
        return cls(tuple(str(t) for t in tokens))


@dataclass
class Windows:
    """Fixed-length training windows, right-padded with 0. Arrays have shape (n_windows, length)."""

    items: np.ndarray
    events: np.ndarray
    gaps: np.ndarray
    user_index: np.ndarray  # (n_windows,) row of each window's user in the Sequences
    positions: np.ndarray  # (n_windows, length) flat event index of each cell, -1 for padding
    ends: np.ndarray  # (n_windows,) flat index one past the window user's last event

    @property
    def mask(self) -> np.ndarray:
        return self.items != PAD

    def __len__(self) -> int:
        return int(self.items.shape[0])


@dataclass
class Sequences:
    """Users' encoded event sequences, stored flat.

    Events of user ``u`` are ``items[offsets[u]:offsets[u + 1]]`` (and likewise ``events``,
    ``gaps``, ``timestamps``, ``event_index``), in time order.
    """

    users: np.ndarray  # (n_users,) user ids as text
    offsets: np.ndarray  # (n_users + 1,) int64
    items: np.ndarray  # (n_events,) int32 item ids
    events: np.ndarray  # (n_events,) int32 event-type ids
    gaps: np.ndarray  # (n_events,) int32 time-gap buckets
    timestamps: np.ndarray  # (n_events,) int64 epoch microseconds (0 when the log has none)
    event_index: np.ndarray  # (n_events,) int64 position of the event in the full encoding
    item_vocab: Vocabulary
    event_vocab: Vocabulary
    has_timestamps: bool
    options: SequenceOptions = field(default_factory=SequenceOptions)

    @property
    def n_users(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_events(self) -> int:
        return int(self.items.shape[0])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def user_of_event(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_users), self.lengths)

    def user_position(self, user_ids: SequenceABC[Any] | np.ndarray) -> np.ndarray:
        """Rows of the given user ids (-1 for ids not present)."""
        index = pd.Index(self.users, dtype=object)
        return index.get_indexer(pd.Index([str(u) for u in user_ids], dtype=object))

    def of_user(self, row: int) -> dict[str, np.ndarray]:
        """One user's arrays, by row."""
        lo, hi = int(self.offsets[row]), int(self.offsets[row + 1])
        return {
            "items": self.items[lo:hi],
            "events": self.events[lo:hi],
            "gaps": self.gaps[lo:hi],
            "timestamps": self.timestamps[lo:hi],
        }

    def select(self, event_mask: np.ndarray, *, drop_empty_users: bool = True) -> Sequences:
        """Keep the events where `event_mask` is true (order kept)."""
        event_mask = np.asarray(event_mask, dtype=bool)
        counts = segment_count(event_mask, self.offsets)
        users = self.users
        if drop_empty_users:
            keep_users = counts > 0
            users = users[keep_users]
            counts = counts[keep_users]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Sequences(
            users=users,
            offsets=offsets,
            items=self.items[event_mask],
            events=self.events[event_mask],
            gaps=self.gaps[event_mask],
            timestamps=self.timestamps[event_mask],
            event_index=self.event_index[event_mask],
            item_vocab=self.item_vocab,
            event_vocab=self.event_vocab,
            has_timestamps=self.has_timestamps,
            options=self.options,
        )

    def subset_users(self, rows: np.ndarray) -> Sequences:
        """The sequences of the users at `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        take = index_ranges(self.offsets[rows], lengths)
        return Sequences(
            users=self.users[rows],
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            items=self.items[take],
            events=self.events[take],
            gaps=self.gaps[take],
            timestamps=self.timestamps[take],
            event_index=self.event_index[take],
            item_vocab=self.item_vocab,
            event_vocab=self.event_vocab,
            has_timestamps=self.has_timestamps,
            options=self.options,
        )

    def windows(self, length: int, stride: int | None = None) -> Windows:
        """Cut every sequence into windows of `length` events, `stride` apart.

        The last window of each user always ends at the user's last event, so no event is left
        out; a sequence shorter than `length` gives one right-padded window.
        """
        if length < 1:
            raise ValueError(f"`length` should be a positive integer. Received: `length`={length}")
        stride = length if stride is None else stride
        if stride < 1:
            raise ValueError(f"`stride` should be a positive integer. Received: `stride`={stride}")
        lengths = self.lengths
        extra = np.maximum(lengths - length, 0)
        per_user = np.where(lengths > 0, 1 + -(-extra // stride), 0)
        user_index = np.repeat(np.arange(self.n_users), per_user)
        k = np.arange(user_index.size) - np.repeat(np.cumsum(per_user) - per_user, per_user)
        start = self.offsets[user_index] + np.minimum(k * stride, extra[user_index])
        end = self.offsets[user_index] + lengths[user_index]
        return self._gather(start, end, length, user_index)

    def next_items(self, windows: Windows, k: int) -> np.ndarray:
        """The next `k` items after each cell of `windows` in the user's full sequence.

        Returns (n_windows, length, k) int32, 0 where the sequence ends (or the cell is padding).
        The last cells of a window look past its end, so no next item is lost to the cut.
        """
        positions = windows.positions[:, :, None] + np.arange(1, k + 1)[None, None, :]
        valid = (windows.positions[:, :, None] >= 0) & (positions < windows.ends[:, None, None])
        safe = np.where(valid, positions, 0)
        if self.n_events == 0:
            return np.zeros(safe.shape, dtype=np.int32)
        return np.where(valid, self.items[safe], PAD).astype(np.int32)

    def last_window(self, length: int) -> Windows:
        """The most recent `length` events of every user (right-padded), one row per user."""
        if length < 1:
            raise ValueError(f"`length` should be a positive integer. Received: `length`={length}")
        end = self.offsets[1:]
        start = np.maximum(self.offsets[:-1], end - length)
        return self._gather(start, end, length, np.arange(self.n_users))

    def _gather(self, start: np.ndarray, end: np.ndarray, length: int,
                user_index: np.ndarray) -> Windows:
        take = start[:, None] + np.arange(length)[None, :]
        valid = take < end[:, None]
        take = np.where(valid, take, 0)

        def gather(values: np.ndarray) -> np.ndarray:
            if values.size == 0:
                return np.zeros(take.shape, dtype=np.int32)
            return np.where(valid, values[take], PAD).astype(np.int32)

        return Windows(gather(self.items), gather(self.events), gather(self.gaps), user_index,
                       np.where(valid, take, -1), self.offsets[user_index + 1])


def segment_count(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Number of true values of `mask` in each segment ``offsets[i]:offsets[i + 1]``."""
    n_segments = offsets.shape[0] - 1
    segment = np.repeat(np.arange(n_segments), np.diff(offsets))
    return np.bincount(segment[mask], minlength=n_segments).astype(np.int64)


def index_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + n)`` for every (s, n), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift


def gap_buckets(gap_seconds: np.ndarray, n_buckets: int) -> np.ndarray:
    """Log-scale time-gap buckets: ``2 + floor(log2(1 + gap))``, capped at ``n_buckets - 1``.

    NaN (unknown gap) maps to `GAP_FIRST`. Negative gaps cannot occur after sorting; they are
    clipped to 0 for safety.
    """
    gap = np.asarray(gap_seconds, dtype=np.float64)
    unknown = np.isnan(gap)
    bucket = 2 + np.floor(np.log2(1.0 + np.clip(np.nan_to_num(gap), 0, None)))
    bucket = np.minimum(bucket, n_buckets - 1)
    return np.where(unknown, GAP_FIRST, bucket).astype(np.int32)


def time_gaps(timestamps: np.ndarray | None, offsets: np.ndarray, n_buckets: int) -> np.ndarray:
    """Each event's time-gap bucket: `GAP_FIRST` for a user's first event (and for every event
    when `timestamps` is None), else `gap_buckets` of the seconds since the user's previous event.

    The one rule `encode` and `encode_user` share, so that a user's events encoded on their own
    get the buckets they got in the training data.

    Args:
        timestamps: (n_events,) int64 epoch microseconds in each user's time order, or None.
        offsets: (n_users + 1,) int64, as `Sequences.offsets`.
        n_buckets: `SequenceOptions.time_buckets`.

    Returns:
        (n_events,) int32.
    """
    n_events = int(offsets[-1]) if len(offsets) else 0
    if timestamps is None:
        return np.full(n_events, GAP_FIRST, dtype=np.int32)
    micros = np.asarray(timestamps, dtype=np.int64)
    gap = np.empty(n_events, dtype=np.float64)
    gap[0:1] = np.nan
    gap[1:] = np.diff(micros) / 1e6
    starts = np.asarray(offsets[:-1], dtype=np.int64)
    gap[starts[starts < n_events]] = np.nan
    return gap_buckets(gap, n_buckets)


def rank_tokens(count: np.ndarray, first_seen: np.ndarray, min_count: int) -> np.ndarray:
    """Codes counted at least `min_count` (and at least once) times, most frequent first; ties
    in order of first appearance (`first_seen`: any key that orders codes by it). The rule of
    every vocabulary, so it does not depend on how ids were typed or read."""
    ranked = np.lexsort((first_seen, -count))
    return ranked[count[ranked] >= max(min_count, 1)]


def by_frequency(codes: np.ndarray, n_codes: int, min_count: int) -> np.ndarray:
    """`rank_tokens` of the codes of a sequence of events."""
    first_seen = np.full(n_codes, codes.size, dtype=np.int64)
    unique = pd.unique(codes)
    first_seen[unique] = np.arange(unique.size)
    return rank_tokens(np.bincount(codes, minlength=n_codes), first_seen, min_count)


def k_core_mask(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Events kept by iterative k-core filtering (users and items with >= k events)."""
    keep = np.ones(users.shape[0], dtype=bool)
    if k <= 1:
        return keep
    n_users = int(users.max()) + 1 if users.size else 0
    n_items = int(items.max()) + 1 if items.size else 0
    while True:
        user_count = np.bincount(users[keep], minlength=n_users)
        item_count = np.bincount(items[keep], minlength=n_items)
        new_keep = keep & (user_count[users] >= k) & (item_count[items] >= k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep


def _event_micros(log: EventLog) -> np.ndarray:
    """Each row's time in epoch microseconds as float64: NaN for a row kept without one
    (file order), 0 when the log has no timestamps."""
    frame = log.frame
    if not log.has_timestamp:
        return np.zeros(len(frame))
    micros = frame["timestamp"].to_numpy(dtype="datetime64[us]").astype(np.int64)
    return np.where(frame["timestamp"].isna().to_numpy(), np.nan, micros.astype(np.float64))


def fill_file_order_times(micros: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Times in a user's time order, NaN (a row without a time, kept in file order) replaced by
    the time of the event before it (the one after, for a first event) -> int64."""
    if np.isnan(micros).any():
        micros = np.nan_to_num(fill_within_users(micros, users), nan=0.0)
    return micros.astype(np.int64)


def encode(
    log: EventLog,
    options: SequenceOptions | None = None,
    report: IngestReport | None = None,
    *,
    item_vocab: Vocabulary | None = None,
    event_vocab: Vocabulary | None = None,
) -> Sequences:
    """Encode a log into sequences.

    Args:
        log: the validated log.
        options: vocabulary and filtering options.
        report: the log's ingest report; rows removed by k-core filtering are recorded in it.
        item_vocab, event_vocab: existing vocabularies (a trained model's); when given, tokens they
            do not know map to `OOV` and no vocabulary is built.

    Returns:
        `Sequences`, users in order of first appearance in the log (after k-core filtering);
        vocabularies most frequent first, ties in order of first appearance.
    """
    options = options or SequenceOptions()
    frame = log.frame
    user_codes = frame["user"].cat.codes.to_numpy().astype(np.int64)
    item_codes = frame["item"].cat.codes.to_numpy().astype(np.int64)
    keep = k_core_mask(user_codes, item_codes, options.k_core)
    order = log.time_order
    if order is None or order.size != len(frame):
        order = None
    micros = _event_micros(log)
    if not keep.all():
        if report is not None:
            report.drop("k_core", int((~keep).sum()), first_lines(~keep, frame["line"].to_numpy()))
        frame = frame.loc[keep]
        user_codes = user_codes[keep]
        item_codes = item_codes[keep]
        micros = micros[keep]
        if order is not None:
            order = drop_from_order(order, keep)
        if frame.empty:
            from seqvae.errors import LogFormatError

            raise LogFormatError(log.source, f"{options.k_core}-core filtering removed every event",
                                 fix="lower k_core (--k-core)")

    item_categories = frame["item"].cat.categories
    if item_vocab is None:
        item_vocab = Vocabulary(tuple(str(t) for t in item_categories[
            by_frequency(item_codes, item_categories.size, options.min_item_count)]))
    item_map = item_vocab.lookup(item_categories)
    items = item_map[item_codes]

    event_col = frame["event"]
    event_categories = event_col.cat.categories
    event_codes = event_col.cat.codes.to_numpy().astype(np.int64)
    if event_vocab is None:
        event_vocab = Vocabulary(tuple(str(t) for t in event_categories[
            by_frequency(event_codes, event_categories.size, 1)]))
    events = event_vocab.lookup(event_categories)[event_codes]

    n_all_users = frame["user"].cat.categories.size
    if order is None:
        key = micros
        if np.isnan(key).any():  # a row without a time sorts after the user's previous row
            key = np.nan_to_num(fill_within_users(key, user_codes), nan=0.0)
        order = time_order(user_codes, key if log.has_timestamp else None)
    # users in order of first appearance in the log: regroup the (user, time) order
    counts = np.bincount(user_codes, minlength=n_all_users)
    first_seen = pd.unique(user_codes)
    group_start = np.cumsum(counts) - counts
    order = order[index_ranges(group_start[first_seen], counts[first_seen])]
    offsets = np.concatenate([[0], np.cumsum(counts[first_seen])]).astype(np.int64)
    micros = fill_file_order_times(micros[order], user_codes[order])

    return Sequences(
        users=np.asarray(frame["user"].cat.categories[first_seen].astype(str), dtype=object),
        offsets=offsets,
        items=items[order].astype(np.int32),
        events=events[order].astype(np.int32),
        gaps=time_gaps(micros if log.has_timestamp else None, offsets, options.time_buckets),
        timestamps=micros,
        event_index=np.arange(len(order), dtype=np.int64),
        item_vocab=item_vocab,
        event_vocab=event_vocab,
        has_timestamps=log.has_timestamp,
        options=options,
    )


def encode_user(
    items: SequenceABC[Any] | np.ndarray,
    events: SequenceABC[Any] | np.ndarray | None,
    timestamps: SequenceABC[int] | np.ndarray | None,
    *,
    item_vocab: Vocabulary,
    event_vocab: Vocabulary,
    options: SequenceOptions | None = None,
    user: str = "<new user>",
) -> Sequences:
    """One user's events -> `Sequences`, by the rules of `encode` with given vocabularies.

    The events are put in time order by a stable sort (so the given order breaks ties), item
    and event-type tokens map to the vocabularies' ids (unknown tokens to `OOV`), and the gaps
    are `time_gaps` of the timestamps. A user's own events, taken from the `Sequences` that
    `encode` made, come back as exactly the same arrays.

    Args:
        items: (n,) item tokens.
        events: (n,) event-type tokens; None gives every event the vocabulary's most common
            type (id 2; `OOV` for an empty vocabulary).
        timestamps: (n,) int64 epoch microseconds (what `Sequences.timestamps` holds); None for
            no times: every gap is `GAP_FIRST`, as `encode` does for a log without timestamps.
        item_vocab, event_vocab: the vocabularies to encode with (a trained model's).
        options: the encoding options; only `time_buckets` matters here.
        user: the user id the result carries.

    Returns:
        `Sequences` of one user.

    Raises:
        ValueError: `events` or `timestamps` is not as long as `items`.
    """
    options = options or SequenceOptions()
    tokens = [str(t) for t in items]
    n_events = len(tokens)
    for name, values in (("events", events), ("timestamps", timestamps)):
        if values is not None and len(values) != n_events:
            raise ValueError(f"`{name}` should have one entry per item ({n_events}). "
                             f"Received: {len(values)}")
    item_ids = item_vocab.lookup(tokens) if n_events else np.zeros(0, np.int32)
    if events is None:
        event_ids = np.full(n_events, 2 if event_vocab.size > 2 else OOV, np.int32)
    else:
        event_ids = event_vocab.lookup(list(events)) if n_events else np.zeros(0, np.int32)
    if timestamps is None:
        micros = np.zeros(n_events, np.int64)
        order = np.arange(n_events)
    else:
        micros = np.asarray(timestamps, dtype=np.int64).reshape(n_events)
        order = np.argsort(micros, kind="stable")
    micros = micros[order]
    offsets = np.array([0, n_events], dtype=np.int64)
    return Sequences(
        users=np.array([str(user)], dtype=object),
        offsets=offsets,
        items=item_ids[order].astype(np.int32),
        events=np.asarray(event_ids)[order].astype(np.int32),
        gaps=time_gaps(None if timestamps is None else micros, offsets, options.time_buckets),
        timestamps=micros,
        event_index=np.arange(n_events, dtype=np.int64),
        item_vocab=item_vocab,
        event_vocab=event_vocab,
        has_timestamps=timestamps is not None,
        options=options,
    )
