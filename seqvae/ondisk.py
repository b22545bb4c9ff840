"""Logs larger than memory: a streamed ingest into an on-disk sequence store, and training
batches read from the store block by block.

    store, report = build_store("events.csv", "events.store")   # a few passes, bounded memory
    sequences = store.sequences()                               # memory-mapped `Sequences`
    recommender, history, test = fit_store(store, SeqVAEConfig())

The store holds exactly what `seqvae.sequences.encode` gives for the same log and options (the
same users in the same order, the same vocabularies and arrays), written as ``.npy`` files that
are memory-mapped, not loaded. Building it:

1. **read**: the file is parsed in chunks (pyarrow's streaming CSV reader, or Parquet row
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

import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seqvae.errors import LogFormatError, SeqVAEError, TrainingDataError
from seqvae.export import atomic_directory
from seqvae.logcolumns import (
    detect_roles,
    id_codes,
    implausible_times,
    is_missing,
    parse_numbers,
    parse_timestamps,
)
from seqvae.logformats import decode_text, delimited_layout, detect_format, unique_names
from seqvae.logrules import (
    Findings,
    duplicate_note,
    duplicates_in_order,
    factorise,
    fill_within_users,
    first_lines,
    handle_missing_timestamps,
    refuse_no_numbers,
    refuse_unreadable_timestamps,
    stable_argsort_ids,
    time_codes,
    time_order,
)
from seqvae.logtypes import NULL_TEXTS, IngestOptions, IngestReport
from seqvae.sequences import (
    SequenceOptions,
    Sequences,
    Vocabulary,
    fill_file_order_times,
    gap_buckets,
    index_ranges,
    rank_tokens,
)

STORE_VERSION = 1
_ARRAYS = {"items": np.int32, "events": np.int32, "gaps": np.int32, "timestamps": np.int64,
           "event_index": np.int64}


class StoreError(SeqVAEError, ValueError):
    """A sequence store cannot be built or opened; the message says which and what to do."""


@dataclass(frozen=True)
class StoreOptions:
    """Sizes that bound the memory of `build_store` and of training from a store."""

    # bytes of text parsed at a time (delimited files)
    chunk_bytes: int = 64 << 20
    # rows read at a time (Parquet)
    chunk_rows: int = 1 << 21
    # events held at once while grouping, sorting and writing (whole users per block)
    block_events: int = 1 << 22

    def __post_init__(self) -> None:
        for name in ("chunk_bytes", "chunk_rows", "block_events"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` should be positive. Received: {getattr(self, name)}")
        if self.chunk_bytes > 1 << 30:
            raise ValueError(f"`chunk_bytes` should be at most 1 GiB. Received: {self.chunk_bytes}")


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


# --------------------------------------------------------------------------------------------
# reading: chunks of a file
# --------------------------------------------------------------------------------------------


class _Tokens:
    """Ids -> codes, new ids getting the next code. A dict, updated in place: a chunk costs
    a lookup per distinct id in it, not a rebuild of the table."""

    def __init__(self) -> None:
        self.table: dict[str, int] = {}

    def codes(self, ids: pd.Index) -> np.ndarray:
        table = self.table
        setdefault = table.setdefault
        return np.fromiter((setdefault(token, len(table)) for token in ids), dtype=np.int64,
                           count=len(ids))

    @property
    def index(self) -> pd.Index:
        """Every id, by code."""
        return pd.Index(list(self.table), dtype=object)

    def __len__(self) -> int:
        return len(self.table)


def _global_codes(column: pa.ChunkedArray, tokens: _Tokens) -> np.ndarray:
    local, ids = id_codes(column)
    table = np.append(tokens.codes(ids), -1)  # local -1 (missing) stays -1
    return table[local]


class _Malformed:
    """Rows the CSV reader skipped: how many, and the first lines."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.pending = 0
        self.lines: list[int] = []

    def add(self, line: int) -> None:
        self.count += 1
        self.pending += 1
        if line > 0 and len(self.lines) < 5:
            self.lines.append(line)

    def take_pending(self) -> int:
        pending, self.pending = self.pending, 0
        return pending


@dataclass
class _Source:
    name: str
    format: str
    details: dict[str, Any]
    warnings: list[str]
    # (read every column as text, encoding) -> chunks of the file with their line numbers
    chunks: Callable[[bool, str], Iterator[tuple[pa.Table, np.ndarray]]]
    malformed: _Malformed
    encoding: str = "utf-8"


def _open_source(path: Path, options: IngestOptions, sizes: StoreOptions) -> _Source:
    name = path.name
    if not path.exists():
        raise LogFormatError(name, "the file does not exist", fix=f"check the path {str(path)!r}")
    if path.is_dir():
        return _parquet_source(path, name, sizes)
    with path.open("rb") as handle:  # gzip by its magic bytes, whatever the name
        compression = "gzip" if handle.read(2) == b"\x1f\x8b" else None
    with pa.input_stream(str(path), compression=compression) as stream:
        head = stream.read(256 * 1024)
    fmt: str = options.format
    if fmt == "auto":
        fmt = detect_format(head, name.lower().removesuffix(".gz"), name)
    if fmt == "parquet":
        return _parquet_source(path, name, sizes)
    if fmt != "delimited":
        raise LogFormatError(name, f"the out-of-core path reads delimited text and Parquet, not "
                             f"{fmt}", fix="convert the log to CSV or Parquet, or read it in "
                             "memory (without --out-of-core)")
    if len(head) == 256 * 1024:
        head = head[: head.rfind(b"\n") + 1] or head  # whole lines only
    text, encoding, warnings = decode_text(head, name, options)
    layout = delimited_layout(text, name, options, warnings, encoding)
    if layout is None:
        raise LogFormatError(name, "one sequence per line is not read out of core",
                             fix="convert the log to one event per row (user, item, ...)")
    malformed = _Malformed()

    def on_invalid(row: Any) -> str:
        malformed.add(int(row.number) if row.number and row.number > 0 else -1)
        return "skip"

    def chunks(all_text: bool, encoding: str) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Pieces of about `chunk_bytes` cut at line ends, each parsed by pyarrow's
        multi-threaded reader (pyarrow's streaming reader parses one block at a time, ~2.5x
        slower); column types are fixed by the first piece."""
        malformed.reset()
        types: dict[str, pa.DataType] = {
            n: pa.string() for n in layout.names if all_text or n not in layout.infer}
        line = 1 + layout.skip
        first = True
        with pa.input_stream(str(path), compression=compression) as stream:
            rest = b""
            while True:
                data = stream.read(sizes.chunk_bytes)
                buffer = rest + data
                cut = buffer.rfind(b"\n") + 1 if data else len(buffer)
                if data and cut == 0:  # no line end yet: read on
                    rest = buffer
                    continue
                piece, rest = buffer[:cut], buffer[cut:]
                if not piece:
                    break
                if len(piece) < 4096 and not piece.strip():  # blank lines only
                    if not data:
                        break
                    continue
                table = pacsv.read_csv(
                    io.BytesIO(piece),
                    read_options=pacsv.ReadOptions(
                        column_names=layout.names, skip_rows=layout.skip if first else 0,
                        block_size=max(1 << 20, min(sizes.chunk_bytes // 4, 16 << 20)),
                        encoding="utf8" if encoding in ("utf-8", "utf-8-sig") else encoding),
                    parse_options=pacsv.ParseOptions(delimiter=layout.sep,
                                                     invalid_row_handler=on_invalid),
                    convert_options=pacsv.ConvertOptions(
                        column_types=types, null_values=list(NULL_TEXTS),
                        strings_can_be_null=True, quoted_strings_can_be_null=True))
                if first:
                    types = {field.name: field.type for field in table.schema
                             if not pa.types.is_null(field.type)}
                    first = False
                lines = np.arange(line, line + table.num_rows, dtype=np.int64)
                # rows skipped in this piece shift the next piece's lines (approximate within)
                line += table.num_rows + malformed.take_pending()
                yield table, lines
                if not data:
                    break

    return _Source(name, "delimited", layout.details, warnings, chunks, malformed, encoding)


def _parquet_source(path: Path, name: str, sizes: StoreOptions) -> _Source:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
                   ) if path.is_dir() else [path]
    if not files:
        raise LogFormatError(name, "the folder holds no Parquet files",
                             fix="give the folder of the log's Parquet parts")

    def chunks(all_text: bool, encoding: str) -> Iterator[tuple[pa.Table, np.ndarray]]:
        line = 1
        columns: list[str] | None = None
        for file in files:  # one part at a time, each checked against the first
            parquet = pq.ParquetFile(str(file))
            try:
                names = unique_names(parquet.schema_arrow.names)
                if columns is None:
                    columns = names
                elif names != columns:
                    raise LogFormatError(
                        f"{name}/{file.relative_to(path)}" if path.is_dir() else name,
                        f"this part's columns ({', '.join(names)}) differ from the first "
                        f"part's ({', '.join(columns)})",
                        fix="write every part of the log with the same columns")
                for batch in parquet.iter_batches(batch_size=sizes.chunk_rows):
                    table = pa.Table.from_batches([batch]).rename_columns(names)
                    yield table, np.arange(line, line + table.num_rows, dtype=np.int64)
                    line += table.num_rows
            finally:
                parquet.close()

    return _Source(name, "parquet", {}, [], chunks, _Malformed())


# --------------------------------------------------------------------------------------------
# building a store
# --------------------------------------------------------------------------------------------


class _Columns:
    """Append-only column files of fixed dtypes."""

    def __init__(self, directory: Path, dtypes: dict[str, Any]) -> None:
        self.directory = directory
        self.dtypes = dtypes
        self.rows = 0
        directory.mkdir(parents=True, exist_ok=True)
        self.handles = {name: (directory / f"{name}.bin").open("wb") for name in dtypes}

    def append(self, **arrays: np.ndarray) -> None:
        for name, values in arrays.items():
            np.ascontiguousarray(values, dtype=self.dtypes[name]).tofile(self.handles[name])
        self.rows += len(next(iter(arrays.values())))

    def close(self) -> dict[str, Any]:
        for handle in self.handles.values():
            handle.close()
        return self.readers()

    def readers(self) -> dict[str, Any]:
        return {name: _ColumnFile(self.directory / f"{name}.bin", self.dtypes[name], self.rows)
                for name in self.dtypes}


class _ColumnFile:
    """A column file read piecewise, so that its pages do not stay mapped (and counted in the
    process's memory) after use: a slice is one `fromfile`, an index array goes through a memory
    map opened for that call only."""

    def __init__(self, path: Path, dtype: Any, rows: int) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.shape = (rows,)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        rows = self.shape[0]
        if isinstance(key, slice):
            lo, hi, _ = key.indices(rows)
            if hi <= lo:
                return np.zeros(0, dtype=self.dtype)
            return np.fromfile(self.path, dtype=self.dtype, count=hi - lo,
                               offset=lo * self.dtype.itemsize)
        index = np.asarray(key)
        if index.size == 0:
            return np.zeros(0, dtype=self.dtype)
        mapped = np.memmap(self.path, dtype=self.dtype, mode="r", shape=(rows,))
        values = np.array(mapped[index])
        del mapped
        return values


@dataclass
class _ReadState:
    users: _Tokens
    items: _Tokens
    events: _Tokens
    user_counts: np.ndarray
    roles: dict[str, str | None]
    timestamp_unit: str | None = None
    timestamp_kind: str = ""
    considered_timestamps: int = 0
    median_micros: float | None = None  # of the first piece: positions, not dates, if small
    value_count: int = 0
    missing_values: int = 0
    # what the row rules found: the same counts, lines and warnings as `read_log`'s
    findings: Findings = dataclasses.field(default_factory=Findings)


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
    source = _open_source(path, options, sizes)
    work = out / "work"
    work.mkdir()
    # a column that looked numeric in the first chunk and is not: read every column as text;
    # text that is not UTF-8 after the part looked at first: read it as Latin-1 (as read_log)
    attempts = [(False, source.encoding), (True, source.encoding)]
    if options.encoding is None and source.encoding in ("utf-8", "utf-8-sig"):
        attempts.append((True, "latin-1"))
    for number, (all_text, encoding) in enumerate(attempts):
        try:
            raw, state, report = _read(source, work, options, progress, all_text, encoding)
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


def _prefetched(items: Iterator[Any]) -> Iterator[Any]:
    """`items`, the next one produced on a thread while the caller works on the current one
    (pyarrow parses without the GIL: parsing and encoding overlap). Errors reach the caller."""
    import queue
    import threading

    slot: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slot.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slot.put(("end", None))
        except BaseException as exc:  # handed to the consumer
            slot.put(("error", exc))

    thread = threading.Thread(target=produce, name="seqvae-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slot.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # let the producer see `stop` and leave
            with contextlib.suppress(queue.Empty):
                slot.get_nowait()
            thread.join(timeout=0.1)


def _read(source: _Source, work: Path, options: IngestOptions,
          progress: Callable[[str, int], None], all_text: bool, encoding: str
          ) -> tuple[_Columns, _ReadState, IngestReport]:
    """Pass 1: chunks -> column files of codes; row-wise policies applied and reported."""
    report = IngestReport(source=source.name, format=source.format,
                          warnings=list(source.warnings), details=dict(source.details))
    report.details["out_of_core"] = True
    state: _ReadState | None = None
    raw: _Columns | None = None
    decimal = "," if report.details.get("decimal") == "comma" else "."
    for table, lines in _prefetched(source.chunks(all_text, encoding)):
        if state is None:
            overrides = options.role_overrides()
            roles = detect_roles(table, overrides, source.name)
            report.columns = dict(roles)
            report.source_columns = list(table.column_names)
            state = _ReadState(_Tokens(), _Tokens(), _Tokens(), np.zeros(0, np.int64), roles)
            columns = {"user": np.int32, "item": np.int32, "event": np.int32,
                       "micros": np.float64, "value": np.float64, "line": np.int64}
            absent = {name for name, role in (("micros", "timestamp"), ("value", "value"))
                      if not roles[role]}
            raw = _Columns(work, {name: dtype for name, dtype in columns.items()
                                  if name not in absent})
        assert raw is not None
        _read_chunk(table, lines, state, raw, report, options, decimal, source.name)
        progress("read", report.rows_read)
    if state is None or raw is None:
        raise LogFormatError(source.name, "the file has no data rows",
                             fix="export the rows of the log too")
    skipped = source.malformed.count
    if skipped:
        report.rows_read += skipped
        report.rows_kept += skipped
        report.drop("malformed", skipped, source.malformed.lines)
        report.warnings.append(f"{skipped:,} rows do not have the header's number of fields; "
                               "skipped (read in memory, such rows are padded or cut instead)")
    _finish_read(state, report, options, source.name)
    return raw, state, report


def _read_chunk(table: pa.Table, lines: np.ndarray, state: _ReadState, raw: _Columns,
                report: IngestReport, options: IngestOptions, decimal: str, name: str) -> None:
    roles = state.roles
    missing_columns = [c for c in roles.values() if c and c not in table.column_names]
    if missing_columns:
        raise LogFormatError(name, f"a part of the log lacks the column {missing_columns[0]!r}",
                             lines=[int(n) for n in lines[:1]],
                             fix="give every part of the log the same columns")
    n = table.num_rows
    report.rows_read += n
    report.rows_kept += n
    users = _global_codes(table.column(roles["user"]), state.users)
    items = _global_codes(table.column(roles["item"]), state.items)
    keep = np.ones(n, dtype=bool)
    missing_user = users < 0
    missing_item = (items < 0) & ~missing_user
    for reason, mask in (("missing_user", missing_user), ("missing_item", missing_item)):
        if mask.any():
            report.drop(reason, int(mask.sum()), first_lines(mask, lines))
            keep &= ~mask

    micros = np.full(n, np.nan)
    if roles["timestamp"]:
        col = roles["timestamp"]
        unit_options = options if state.timestamp_unit is None else dataclasses.replace(
            options, timestamp_unit=cast(Any, state.timestamp_unit))
        micros, kind = parse_timestamps(table.column(col), unit_options, col, report.warnings)
        if state.timestamp_unit is None:
            state.timestamp_kind = kind
            report.details["timestamp"] = kind
            if kind.startswith("epoch "):
                state.timestamp_unit = kind.split()[1]
        if state.median_micros is None and np.isfinite(micros).any():
            state.median_micros = float(np.nanmedian(micros))
        findings = state.findings
        findings.note("implausible_timestamp",
                      implausible_times(micros, median=state.median_micros or 0.0) & keep, lines,
                      column=col)
        present = ~is_missing(table.column(col))
        state.considered_timestamps += int((present & keep).sum())
        findings.note("bad_timestamp", present & np.isnan(micros) & keep, lines, column=col)
        missing = np.isnan(micros) & keep
        if missing.any() and options.missing_timestamp == "drop":
            report.drop("missing_timestamp", int(missing.sum()), first_lines(missing, lines))
            keep &= ~missing

    events = np.zeros(n, dtype=np.int64)
    if roles["event"]:
        events = _global_codes(table.column(roles["event"]), state.events)
        missing_event = (events < 0) & keep
        if state.findings.note("missing_event", missing_event, lines, label=options.missing_event):
            report.filled["event"] = report.filled.get("event", 0) + int(missing_event.sum())
            events = np.where(events < 0, state.events.codes(pd.Index([options.missing_event]))[0],
                              events)
    else:
        events = np.full(n, state.events.codes(pd.Index([options.missing_event]))[0])

    values = np.full(n, np.nan)
    if roles["value"]:
        col = roles["value"]
        present = ~is_missing(table.column(col))
        values = parse_numbers(table.column(col), decimal)
        state.findings.note("bad_value", present & np.isnan(values) & keep, lines, column=col)
        missing = np.isnan(values) & keep
        if missing.any() and options.missing_value == "drop":
            report.drop("missing_value", int(missing.sum()), first_lines(missing, lines))
            keep &= ~missing
        elif missing.any():
            state.missing_values += int(missing.sum())
            # the fill's lines, noted now: the blocks of pass 3 no longer hold missing values
            state.findings.note("value_filled", missing, lines, policy=options.missing_value)
        known = values[keep & ~np.isnan(values)]
        state.value_count += int(known.size)
        if options.missing_value != "drop":
            state.findings.see_values(known)

    rows = np.flatnonzero(keep)
    by_name = {"user": users, "item": items, "event": events, "micros": micros,
               "value": values, "line": lines}
    raw.append(**{name: by_name[name][rows] for name in raw.dtypes})
    if len(state.users) > state.user_counts.size:
        state.user_counts = np.concatenate(
            [state.user_counts, np.zeros(len(state.users) - state.user_counts.size, np.int64)])
    state.user_counts += np.bincount(users[rows], minlength=state.user_counts.size)


def _finish_read(state: _ReadState, report: IngestReport, options: IngestOptions,
                 name: str) -> None:
    roles = state.roles
    if report.rows_kept == 0:
        raise LogFormatError(name, "no row has both a user and an item (or every row was "
                             "dropped: " + ", ".join(f"{k} {v:,}" for k, v in report.dropped.items())
                             + ")", column=f"{roles['user']} / {roles['item']}",
                             fix="check the column mapping and the missing-value options")
    findings = state.findings
    refuse_unreadable_timestamps(name, roles["timestamp"], findings.counts.get("bad_timestamp", 0),
                                 state.considered_timestamps,
                                 findings.lines.get("bad_timestamp", []), options)
    if roles["value"] and state.value_count == 0:
        refuse_no_numbers(name, roles["value"], findings.lines.get("bad_value", []))


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


def _group(raw: _Columns, user_counts: np.ndarray, work: Path,
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


def _order(grouped: _Partitions, state: _ReadState, work: Path,
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
    ordered = _Columns(work / "ordered", {"item": np.int32, "event": np.int32,
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
           segment_counts: np.ndarray, counts_after: np.ndarray, state: _ReadState, out: Path,
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
    within a block, shuffled batches of the users' leave-one-out training windows. Only one
    block is in memory."""

    sequences: Sequences
    config: Any  # SeqVAEConfig
    block_events: int = 1 << 22

    def __post_init__(self) -> None:
        self.blocks = user_blocks(self.sequences.lengths, self.block_events)
        self._batches = sum(self._block_batches(lo, hi) for lo, hi in self.blocks)

    def _block_batches(self, lo: int, hi: int) -> int:
        """Batches of a block, from lengths alone (windows whose every target is a rare item
        are counted too, so this can exceed the real count when `min_item_count` > 1)."""
        from seqvae.training import bucket_lengths

        config = self.config
        lengths = self.sequences.lengths[lo:hi]
        train = np.where(lengths >= 3, lengths - 2, lengths)
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

    def epoch(self, number: int) -> Iterator[dict[str, np.ndarray]]:
        from seqvae.splits import leave_one_out_train
        from seqvae.training import epoch_rng, make_batches

        rng = epoch_rng(self.config.seed, number)
        for index in rng.permutation(len(self.blocks)):
            lo, hi = self.blocks[index]
            train = leave_one_out_train(self.sequences.subset_users(np.arange(lo, hi)))
            yield from make_batches(train, self.config).epoch(rng)


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
    from seqvae.training import SeqVAEConfig, auto_batch_size, train_from

    config = config or SeqVAEConfig()
    sequences = store.sequences()
    if not config.batch_size:  # about one window per user with a next item to learn
        config = replace(config, batch_size=auto_batch_size(int((sequences.lengths >= 4).sum())))
    if sequences.item_vocab.size - 2 < 2:
        raise TrainingDataError("the store has fewer than two items; a recommender needs two")
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
