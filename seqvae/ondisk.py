"""Logs larger than memory: a streamed ingest into an on-disk sequence store, and training
batches read from the store block by block.

    store, report = build_store("events.csv", "events.store")   # a few passes, bounded memory
    sequences = store.sequences()                               # memory-mapped `Sequences`
    recommender, history, test = fit_store(store, SeqVAEConfig())

The store holds exactly what `seqvae.sequences.encode` gives for the same log and options (the
same users in the same order, the same vocabularies and arrays), written as ``.npy`` files that
are memory-mapped, not loaded. Building it:

1. **read** (`seqvae.storeread`): the file is parsed in chunks (pyarrow's streaming CSV reader, or Parquet row
   batches); each chunk's ids are mapped to codes of growing user/item/event tables, its
   timestamps and values parsed, and its rows appended to column files. The row-wise policies
   (missing ids, unparseable timestamps, missing-value drops) apply here.
2. **group**: every row is written to its user's slot (a counting sort by user, file order
   kept within a user).
3. **order**: blocks of whole users are sorted by time; the policies that need a user's other
   rows (a missing timestamp takes the previous event's, exact duplicates) and the rating
   filter apply here.
4. **k-core** (when asked): repeated counting passes until no user or item falls below k.
5. **write**: users in order of first appearance, items by frequency, time gaps bucketed.

Memory: one chunk, one block, and tables the size of the user and item vocabularies — never
the number of events. Every row read is accounted for in the `IngestReport`, as in `read_log`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqvae.errors import LogFormatError, SeqVAEError, TrainingDataError
from seqvae.export import atomic_directory
from seqvae.logrules import (
    duplicate_note,
    duplicates_in_order,
    factorise,
    fill_within_users,
    first_lines,
    handle_missing_timestamps,
    stable_argsort_ids,
    time_codes,
    time_order,
)
from seqvae.logtypes import IngestOptions, IngestReport
from seqvae.sequences import (
    SequenceOptions,
    Sequences,
    Vocabulary,
    fill_file_order_times,
    gap_buckets,
    index_ranges,
    rank_tokens,
)
from seqvae.storeread import ColumnFiles, ReadState, StoreOptions, open_source, read_columns

STORE_VERSION = 1
_ARRAYS = {"items": np.int32, "events": np.int32, "gaps": np.int32, "timestamps": np.int64,
           "event_index": np.int64}


class StoreError(SeqVAEError, ValueError):
    """A sequence store cannot be built or opened; the message says which and what to do."""


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------


class SequenceStore:
    """A built store: metadata in memory, event arrays memory-mapped."""

    def __init__(self, path: Path, meta: dict[str, Any], users: np.ndarray,
                 item_vocab: Vocabulary, event_vocab: Vocabulary) -> None:
        self.path = path
        self.meta = meta
        self.users = users
        self.item_vocab = item_vocab
        self.event_vocab = event_vocab

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SequenceStore:
        path = Path(path)
        if not (path / "store.json").exists():
            raise StoreError(f"{path} is not a sequence store (no store.json); build one with "
                             "`seqvae ingest LOG --out STORE`")
        meta = json.loads((path / "store.json").read_text(encoding="utf-8"))
        if meta.get("version") != STORE_VERSION:
            raise StoreError(f"{path} was written by another version of seqvae; rebuild it")
        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        users = pq.read_table(path / "users.parquet").column("user").to_numpy(
            zero_copy_only=False).astype(object)
        return cls(path, meta, users, Vocabulary.from_json(vocab["items"]),
                   Vocabulary.from_json(vocab["events"]))

    @property
    def report(self) -> IngestReport:
        return IngestReport(**self.meta["report"])

    @property
    def n_events(self) -> int:
        return int(self.meta["events"])

    def sequences(self) -> Sequences:
        """The store as `Sequences` whose event arrays are read from disk on demand."""
        arrays = {name: np.load(self.path / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        return Sequences(
            users=self.users,
            offsets=np.load(self.path / "offsets.npy"),
            item_vocab=self.item_vocab,
            event_vocab=self.event_vocab,
            has_timestamps=bool(self.meta["has_timestamps"]),
            options=SequenceOptions(**self.meta["sequence_options"]),
            **arrays,
        )


def is_store(path: str | os.PathLike[str]) -> bool:
    return Path(path).is_dir() and (Path(path) / "store.json").exists()


def user_blocks(lengths: np.ndarray, block_events: int) -> list[tuple[int, int]]:
    """Consecutive user ranges of at most `block_events` events (a longer user: alone)."""
    ends = np.cumsum(lengths)
    blocks = []
    start = 0
    while start < lengths.size:
        before = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, before + block_events, side="right"))
        stop = max(stop, start + 1)
        blocks.append((start, stop))
        start = stop
    return blocks


def build_store(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: IngestOptions | None = None,
    sequence_options: SequenceOptions | None = None,
    *,
    min_value: float | None = None,
    sizes: StoreOptions | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[SequenceStore, IngestReport]:
    """Read a log of any size into a sequence store at `out`.

    Args:
        source: a delimited text file (optionally gzip-compressed), a Parquet file, or a
            folder of Parquet files.
        out: the store folder to write (replaced if it is a store; refused if it is something
            else). Written beside its final place and renamed when complete.
        options, sequence_options: as for `read_log` and `encode`; the same options give the
            same encoding.
        min_value: keep only events whose value is at least this (as `keep_positive`).
        sizes: chunk and block sizes, which bound the memory used.
        progress: called with (stage, rows done).

    Raises:
        LogFormatError: the log cannot be read; the message says where and what to do.
    """
    options = options or IngestOptions()
    sequence_options = sequence_options or SequenceOptions()
    sizes = sizes or StoreOptions()
    target = Path(out)
    if target.exists() and not is_store(target) and any(target.iterdir()):
        raise StoreError(f"{target} exists and is not a sequence store; choose another --out "
                         "(nothing was written)")
    reports: list[IngestReport] = []
    try:
        atomic_directory(target, lambda staging: reports.append(_build(
            Path(source), staging, options, sequence_options, min_value, sizes,
            progress or (lambda stage, done: None))))
    except pa.ArrowException as exc:  # e.g. Parquet parts whose column types clash
        raise LogFormatError(Path(source).name, f"pyarrow cannot read it ({exc})",
                             fix="check that every part of the log has the same column types"
                             ) from None
    return SequenceStore.open(target), reports[0]


def _build(path: Path, out: Path, options: IngestOptions, sequence_options: SequenceOptions,
           min_value: float | None, sizes: StoreOptions,
           progress: Callable[[str, int], None]) -> IngestReport:
    started = time.perf_counter()
    source = open_source(path, options, sizes)
    work = out / "work"
    work.mkdir()
    # a column that looked numeric in the first chunk and is not: read every column as text;
    # text that is not UTF-8 after the part looked at first: read it as Latin-1 (as read_log)
    attempts = [(False, source.encoding), (True, source.encoding)]
    if options.encoding is None and source.encoding in ("utf-8", "utf-8-sig"):
        attempts.append((True, "latin-1"))
    for number, (all_text, encoding) in enumerate(attempts):
        try:
            raw, state, report = read_columns(source, work, options, progress, all_text, encoding)
            break
        except pa.ArrowInvalid as exc:
            if number == len(attempts) - 1:
                raise LogFormatError(source.name, f"pyarrow cannot read it ({exc})",
                                     fix="check the delimiter and encoding (--sep, --encoding), "
                                     "or read it in memory (without --out-of-core)") from None
            shutil.rmtree(work)
            work.mkdir()
    if encoding == "latin-1" and source.encoding != "latin-1":
        report.warnings.append("the file is not valid UTF-8; read as Latin-1")
    if min_value is not None and not state.roles["value"]:
        raise LogFormatError(source.name, "--min-rating needs a value (rating) column and none "
                             "was found", fix="name it with --value COLUMN")
    grouped = _group(raw, state.user_counts, work, sizes)
    ordered, kept_counts = _order(grouped, state, work, options, report, min_value, sizes,
                                  source.name)
    keep, final_counts = _k_core(ordered, kept_counts, len(state.items),
                                 sequence_options.k_core, work, report, sizes, source.name)
    _write(ordered, keep, kept_counts, final_counts, state, out, sequence_options, sizes,
           source.name)
    shutil.rmtree(work)
    if not report.balanced:  # an internal invariant: a bug here, never the user's input
        raise RuntimeError(f"ingest accounting is broken: {report.to_dict()}")
    offsets = np.load(out / "offsets.npy")
    meta = {
        "version": STORE_VERSION, "source": str(path), "events": int(offsets[-1]),
        "users": int(offsets.size - 1), "has_timestamps": bool(state.roles["timestamp"]),
        "sequence_options": dataclasses.asdict(sequence_options), "min_value": min_value,
        "seconds": time.perf_counter() - started, "report": report.to_dict(),
    }
    (out / "store.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    return report


@dataclass
class _Partitions:
    """Pass 2's output: the rows of each block of users (consecutive user codes, at most
    `block_events` events), one file per block and column, in file order."""

    blocks: list[tuple[int, int]]
    directory: Path
    dtypes: dict[str, Any]
    counts: np.ndarray  # rows per user

    def path(self, index: int, name: str) -> Path:
        return self.directory / f"{index}.{name}.bin"

    def block(self, index: int) -> dict[str, np.ndarray]:
        """The block's columns, grouped by user (file order within a user)."""
        columns = {name: np.fromfile(self.path(index, name), dtype=dtype)
                   if self.path(index, name).exists() else np.zeros(0, dtype=dtype)
                   for name, dtype in self.dtypes.items()}
        users = columns["user"]
        order = stable_argsort_ids(users - users.min(initial=0))
        return {name: values[order] for name, values in columns.items()}


def _group(raw: ColumnFiles, user_counts: np.ndarray, work: Path,
           sizes: StoreOptions) -> _Partitions:
    """Pass 2: route every row to the files of its block of users. The blocks come from the
    per-user counts of pass 1, so each holds at most `block_events` rows (a longer user: a block
    of its own) and every write is an append: memory holds one chunk."""
    columns = raw.close()
    blocks = user_blocks(user_counts, sizes.block_events)
    block_of_user = np.repeat(np.arange(len(blocks)), [hi - lo for lo, hi in blocks])
    partitions = _Partitions(blocks, work / "blocks", dict(raw.dtypes), user_counts)
    partitions.directory.mkdir()
    for lo in range(0, raw.rows, sizes.block_events):
        block = block_of_user[columns["user"][lo:lo + sizes.block_events]]
        order = stable_argsort_ids(block)
        block = block[order]
        bounds = np.r_[0, np.cumsum(np.bincount(block, minlength=len(blocks)))]
        present = np.flatnonzero(np.diff(bounds))
        for name in raw.dtypes:
            values = columns[name][lo:lo + sizes.block_events][order]
            for index in present:
                with partitions.path(int(index), name).open("ab") as handle:
                    values[bounds[index]:bounds[index + 1]].tofile(handle)
    return partitions


def _order(grouped: _Partitions, state: ReadState, work: Path,
           options: IngestOptions, report: IngestReport, min_value: float | None,
           sizes: StoreOptions, name: str) -> tuple[dict[str, Any], np.ndarray]:
    """Pass 3: per block of users, the policies that need a user's other rows, then time order,
    duplicates and the rating filter."""
    counts = grouped.counts
    has_time = bool(state.roles["timestamp"])
    has_value = bool(state.roles["value"])
    findings = state.findings
    fill_value = (findings.value_fill(options.missing_value)
                  if has_value and state.missing_values else None)
    ordered = ColumnFiles(work / "ordered", {"item": np.int32, "event": np.int32,
                                          "micros": np.float64, "line": np.int64})
    kept_counts = np.zeros_like(counts)
    for index, (u0, u1) in enumerate(grouped.blocks):
        records = grouped.block(index)
        users = records["user"].astype(np.int64) - u0
        items = records["item"].astype(np.int64)
        events = records["event"].astype(np.int64)
        micros = records["micros"] if has_time else np.full(users.size, np.nan)
        values = records["value"] if has_value else np.full(users.size, np.nan)
        lines = records["line"]
        del records
        keep = np.ones(users.size, dtype=bool)
        sort_key: np.ndarray | None = None
        if has_time:
            missing = np.isnan(micros)
            if missing.any():  # a block holds whole users: the policy sees each user's rows
                micros, no_time = handle_missing_timestamps(micros, missing, keep, users, lines,
                                                            options, report, findings)
                keep &= ~no_time
            sort_key = micros
            if np.isnan(sort_key).any():
                sort_key = np.nan_to_num(fill_within_users(sort_key, users), nan=0.0)
        if fill_value is not None:
            values = np.where(np.isnan(values), fill_value, values)
        if not keep.all():
            users, items, events, micros, values, lines = (
                column[keep] for column in (users, items, events, micros, values, lines))
            sort_key = sort_key[keep] if sort_key is not None else None
        order = time_order(users, sort_key)
        if options.drop_duplicates:
            dup = duplicates_in_order(order, users, sort_key, functools.partial(
                _row_codes, [users, items, events], micros if has_time else None,
                values if has_value else None))
            if dup.any():
                report.drop("duplicate", findings.note("duplicate", dup, lines,
                                                       note=duplicate_note(has_time)),
                            first_lines(dup, lines))
                order = order[~dup[order]]
        if min_value is not None:
            low = values[order] < min_value
            if low.any():
                report.drop("below_min_rating", int(low.sum()), first_lines(low, lines[order]))
                order = order[~low]
        # a row kept without a time gets one once the final sequence is known (in `_write`)
        stamps = micros[order] if has_time else np.zeros(order.size)
        ordered.append(item=items[order], event=events[order], micros=stamps, line=lines[order])
        kept_counts[u0:u1] = np.bincount(users[order], minlength=u1 - u0)
    if fill_value is not None:
        report.filled["value"] = state.missing_values
        findings.fields["value_filled"]["fill"] = fill_value
    findings.write(report)
    if min_value is not None and ordered.rows == 0:
        raise LogFormatError(name, f"no event has a value of at least {min_value:g}",
                             fix="lower --min-rating")
    return ordered.close(), kept_counts


def _row_codes(ids: list[np.ndarray], micros: np.ndarray | None, values: np.ndarray | None,
               rows: np.ndarray) -> list[np.ndarray]:
    """The columns that make two rows duplicates, as integer codes (as `read_log` compares)."""
    return [*(column[rows] for column in ids),
            *([time_codes(micros[rows])] if micros is not None else []),
            *([factorise(values[rows])] if values is not None else [])]


def _segment_users(offsets: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """User (row) of each event lo..hi-1, from CSR offsets."""
    if hi <= lo:
        return np.zeros(0, dtype=np.int64)
    first = int(np.searchsorted(offsets, lo, side="right")) - 1
    last = int(np.searchsorted(offsets, hi - 1, side="right")) - 1
    counts = np.diff(np.clip(offsets[first:last + 2], lo, hi))
    return np.repeat(np.arange(first, last + 1), counts)


def _k_core(ordered: dict[str, Any], counts: np.ndarray, n_items: int, k: int,
            work: Path, report: IngestReport, sizes: StoreOptions, name: str
            ) -> tuple[np.ndarray | None, np.ndarray]:
    """Pass 4 (k > 1): drop users and items with fewer than k events until none is left.
    Returns the kept events (a memory-mapped mask; None when nothing is filtered) and the
    events left per user."""
    if k <= 1:
        return None, counts
    n = int(counts.sum())
    offsets = np.concatenate([[0], np.cumsum(counts)])
    keep = np.memmap(work / "keep.bin", dtype=bool, mode="w+", shape=(max(n, 1),))[:n]
    keep[:] = True
    user_count = counts.copy()
    item_count = np.zeros(n_items, dtype=np.int64)
    for lo in range(0, n, sizes.block_events):
        item_count += np.bincount(ordered["item"][lo:lo + sizes.block_events], minlength=n_items)
    while True:
        next_users = np.zeros_like(user_count)
        next_items = np.zeros_like(item_count)
        changed = False
        for lo in range(0, n, sizes.block_events):
            hi = min(n, lo + sizes.block_events)
            users = _segment_users(offsets, lo, hi)
            items = ordered["item"][lo:hi]
            block = np.array(keep[lo:hi])
            new = block & (user_count[users] >= k) & (item_count[items] >= k)
            if (new != block).any():
                changed = True
                keep[lo:hi] = new
            next_users += np.bincount(users[new], minlength=user_count.size)
            next_items += np.bincount(items[new], minlength=n_items)
        user_count, item_count = next_users, next_items
        if not changed:
            break
    dropped = n - int(user_count.sum())
    if dropped:
        first: list[int] = []
        for lo in range(0, n, sizes.block_events):
            gone = ~np.asarray(keep[lo:lo + sizes.block_events])
            first = sorted([*first, *first_lines(gone, ordered["line"][lo:lo + sizes.block_events])])[:5]
        report.drop("k_core", dropped, first)
    if dropped == n:
        raise LogFormatError(name, f"{k}-core filtering removed every event",
                             fix="lower k_core (--k-core)")
    return keep, user_count


def _write(ordered: dict[str, Any], keep: np.ndarray | None,
           segment_counts: np.ndarray, counts_after: np.ndarray, state: ReadState, out: Path,
           sequence_options: SequenceOptions, sizes: StoreOptions, name: str) -> None:
    """Pass 5: vocabularies, users in order of first appearance, final arrays.

    `ordered` holds `segment_counts` events per user, the k-core's dropped ones included
    (`keep` says which stay); `counts_after` are the events left per user."""
    n_all = int(ordered["item"].shape[0])
    n_users, n_items, n_events = len(state.users), len(state.items), len(state.events)
    big = np.iinfo(np.int64).max
    user_first = np.full(n_users, big)
    item_first = np.full(n_items, big)
    event_first = np.full(n_events, big)
    item_count = np.zeros(n_items, dtype=np.int64)
    event_count = np.zeros(n_events, dtype=np.int64)
    offsets_all = np.concatenate([[0], np.cumsum(segment_counts)])
    for lo in range(0, n_all, sizes.block_events):
        hi = min(n_all, lo + sizes.block_events)
        users = _segment_users(offsets_all, lo, hi)
        mask = slice(None) if keep is None else np.asarray(keep[lo:hi])
        users = users[mask]
        items = np.asarray(ordered["item"][lo:hi])[mask]
        events = np.asarray(ordered["event"][lo:hi])[mask]
        lines = np.asarray(ordered["line"][lo:hi])[mask]
        np.minimum.at(user_first, users, lines)
        np.minimum.at(item_first, items, lines)
        np.minimum.at(event_first, events, lines)
        item_count += np.bincount(items, minlength=n_items)
        event_count += np.bincount(events, minlength=n_events)
    present = np.flatnonzero(counts_after > 0)
    user_order = present[np.argsort(user_first[present], kind="stable")]
    item_rank = rank_tokens(item_count, item_first, sequence_options.min_item_count)
    event_rank = rank_tokens(event_count, event_first, 1)
    item_vocab = Vocabulary(tuple(str(t) for t in state.items.index[item_rank]))
    event_vocab = Vocabulary(tuple(str(t) for t in state.events.index[event_rank]))
    item_map = np.ones(n_items, dtype=np.int32)  # OOV unless in the vocabulary
    item_map[item_rank] = np.arange(2, 2 + item_rank.size, dtype=np.int32)
    event_map = np.ones(n_events, dtype=np.int32)
    event_map[event_rank] = np.arange(2, 2 + event_rank.size, dtype=np.int32)

    lengths = counts_after[user_order]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    data_offset = {}
    for key, dtype in _ARRAYS.items():
        created = np.lib.format.open_memmap(out / f"{key}.npy", mode="w+", dtype=dtype,
                                            shape=(total,))
        data_offset[key] = created.offset
        del created

    def put(key: str, start: int, values: np.ndarray | int, count: int) -> None:
        """Write events start..start+count of an output through a map of that range only."""
        if count == 0:
            return
        dtype = np.dtype(_ARRAYS[key])
        target = np.memmap(out / f"{key}.npy", dtype=dtype, mode="r+", shape=(count,),
                           offset=data_offset[key] + start * dtype.itemsize)
        target[:] = values
        target.flush()
        del target

    has_time = bool(state.roles["timestamp"])
    for u0, u1 in user_blocks(segment_counts[user_order], sizes.block_events):
        rows = user_order[u0:u1]
        take = index_ranges(offsets_all[rows], segment_counts[rows])
        if keep is not None:
            take = take[np.asarray(keep[take])]
        e0, e1 = int(offsets[u0]), int(offsets[u1])
        micros = fill_file_order_times(np.asarray(ordered["micros"][take]),
                                       np.repeat(np.arange(u1 - u0), lengths[u0:u1]))
        put("items", e0, item_map[np.asarray(ordered["item"][take])], e1 - e0)
        put("events", e0, event_map[np.asarray(ordered["event"][take])], e1 - e0)
        put("timestamps", e0, micros if has_time else 0, e1 - e0)
        put("event_index", e0, np.arange(e0, e1), e1 - e0)
        first = np.zeros(e1 - e0, dtype=bool)
        first[(offsets[u0:u1] - e0)[lengths[u0:u1] > 0]] = True
        gap = np.full(e1 - e0, np.nan)
        if has_time:
            gap[1:] = np.diff(micros) / 1e6
            gap[first] = np.nan
        put("gaps", e0, gap_buckets(gap, sequence_options.time_buckets), e1 - e0)
    np.save(out / "offsets.npy", offsets)
    pq.write_table(pa.table({"user": pa.array(state.users.index[user_order].astype(str),
                                              pa.string())}), out / "users.parquet")
    (out / "vocab.json").write_text(json.dumps({"items": item_vocab.to_json(),
                                                "events": event_vocab.to_json()},
                                               ensure_ascii=False), encoding="utf-8")
    if item_vocab.size - 2 < 2:
        raise LogFormatError(name, "the log has fewer than two items after filtering; there is "
                             "nothing to recommend", fix="check the item column (--item-col)")


# --------------------------------------------------------------------------------------------
# training from a store
# --------------------------------------------------------------------------------------------


@dataclass
class StoreBatches:
    """A `BatchSource` over a store: each epoch visits blocks of users in a shuffled order and,
    within a block, shuffled batches of the users' leave-one-out training windows (with
    `holdout`; without it, windows of every event: the refit). Only one block is in memory."""

    sequences: Sequences
    config: Any  # SeqVAEConfig
    block_events: int = 1 << 22
    # leave each user's last two events out (they validate and test); False: train on all
    holdout: bool = True

    def __post_init__(self) -> None:
        self.blocks = user_blocks(self.sequences.lengths, self.block_events)
        self._batches = sum(self._block_batches(lo, hi) for lo, hi in self.blocks)

    def _block_batches(self, lo: int, hi: int) -> int:
        """Batches of a block, from lengths alone (windows whose every target is a rare item
        are counted too, so this can exceed the real count when `min_item_count` > 1)."""
        from seqvae.batches import bucket_lengths

        config = self.config
        lengths = self.sequences.lengths[lo:hi]
        train = np.where(lengths >= 3, lengths - 2, lengths) if self.holdout else lengths
        train = train[train >= 2]
        per_user = 1 + -(-np.maximum(train - config.max_len, 0) // config.stride)
        window = np.minimum(train, config.max_len)
        bounds = np.asarray(bucket_lengths(config.max_len) if config.batching == "length"
                            else [config.max_len])
        bucket = np.searchsorted(bounds, window, side="left")
        windows = np.bincount(bucket, weights=per_user, minlength=bounds.size)
        return int(sum(math.ceil(w / config.batch_size) for w in windows))

    @property
    def batches_per_epoch(self) -> int:
        return self._batches

    def with_seed(self, seed: int) -> StoreBatches:
        """The same blocks and windows, visited in another order (another network's)."""
        return replace(self, config=replace(self.config, seed=seed))

    def epoch(self, number: int) -> Iterator[dict[str, np.ndarray]]:
        from seqvae.batches import make_batches
        from seqvae.splits import leave_one_out_train
        from seqvae.training import epoch_rng

        rng = epoch_rng(self.config.seed, number)
        for index in rng.permutation(len(self.blocks)):
            lo, hi = self.blocks[index]
            train = self.sequences.subset_users(np.arange(lo, hi))
            if self.holdout:
                train = leave_one_out_train(train)
            yield from make_batches(train, self.config).epoch(rng)


def _store_config(sequences: Sequences, config: Any) -> Any:
    """`config` with its batch size resolved from the store ("auto": about one window per user
    with a next item to learn, the same for the fit and its refit); refuses a store with fewer
    than two items."""
    from seqvae.batches import auto_batch_size

    if sequences.item_vocab.size - 2 < 2:
        raise TrainingDataError("the store has fewer than two items; a recommender needs two")
    if not config.batch_size:
        config = replace(config, batch_size=auto_batch_size(int((sequences.lengths >= 4).sum())))
    return config


def fit_store(store: SequenceStore, config: Any = None, *, eval_users: int = 10_000,
              block_events: int = 1 << 22, **kwargs: Any) -> tuple[Any, Any, Any]:
    """Train a SeqVAE on a store: leave-one-out, every user's events but the last two train;
    the last two of a random `eval_users` users are the validation and test targets.

    Keyword arguments go to `seqvae.training.train_from` (strategy, checkpoint_dir, hooks).

    Returns:
        ``(recommender, history, test holdout)``; the recommender recommends from every user's
        full (memory-mapped) sequence.
    """
    from seqvae.splits import leave_one_out
    from seqvae.training import SeqVAEConfig, train_from

    config = config or SeqVAEConfig()
    sequences = store.sequences()
    config = _store_config(sequences, config)
    eligible = np.flatnonzero(sequences.lengths >= 3)
    if eligible.size == 0:
        raise TrainingDataError("no user has three events, so leave-one-out has nothing to "
                                "validate on; use a log with longer histories")
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(eligible, size=min(eval_users, eligible.size), replace=False))
    held_out = leave_one_out(sequences.subset_users(chosen))
    source = StoreBatches(sequences, config, block_events)
    if source.batches_per_epoch == 0:
        raise TrainingDataError("no training window has a next item to predict")
    recommender, history = train_from(source, sequences, held_out.validation, config,
                                      history_sequences=sequences, **kwargs)
    return recommender, history, held_out.test


def refit_store(store: SequenceStore, config: Any, epochs: Any, *,
                block_events: int = 1 << 22, **kwargs: Any) -> tuple[Any, Any]:
    """`seqvae.training.refit` from a store: a fresh model trained for `epochs` (one count, or
    one per network of an ensemble) on every event of every user, the last two included (which
    `fit_store` leaves out), block by block. Keyword arguments go to
    `seqvae.training.train_from` (`on_batch`, `on_epoch`, `cancel`, `strategy`); a refit keeps
    no checkpoint (the fit's would match its fingerprint and be resumed as if it were the
    refit's).

    Returns ``(recommender, history)``; the history's epochs carry losses and no validation.
    """
    from seqvae.training import refit_config, train_from

    config, member_epochs = refit_config(config, epochs)
    if "checkpoint_dir" in kwargs:
        raise ValueError("refit_store keeps no checkpoint; leave out `checkpoint_dir`")
    sequences = store.sequences()
    config = _store_config(sequences, config)
    source = StoreBatches(sequences, config, block_events, holdout=False)
    if source.batches_per_epoch == 0:
        raise TrainingDataError("no training window has a next item to predict")
    return train_from(source, sequences, None, config, history_sequences=sequences,
                      member_epochs=member_epochs, **kwargs)
