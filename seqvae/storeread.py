"""Pass 1 of building a sequence store: a log read in chunks (pyarrow's streaming CSV reader,
or Parquet row batches) into append-only column files, with the row rules of `seqvae.logrules`
applied to each chunk as `read_log` applies them to the whole file: ids mapped to codes of
growing user / item / event tables, timestamps and values parsed, missing ids and row-level
drops recorded, the findings noted. Memory: one chunk and the vocabularies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seqvae.errors import LogFormatError
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
    drop_missing_ids,
    first_lines,
    refuse_no_numbers,
    refuse_unreadable_timestamps,
)
from seqvae.logtypes import IngestOptions, IngestReport


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
class ChunkSource:
    name: str
    format: str
    details: dict[str, Any]
    warnings: list[str]
    # (read every column as text, encoding) -> chunks of the file with their line numbers
    chunks: Callable[[bool, str], Iterator[tuple[pa.Table, np.ndarray]]]
    malformed: _Malformed
    encoding: str = "utf-8"


def open_source(path: Path, options: IngestOptions, sizes: StoreOptions) -> ChunkSource:
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
                        column_types=types, null_values=list(options.null_texts),
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

    return ChunkSource(name, "delimited", layout.details, warnings, chunks, malformed, encoding)


def _parquet_source(path: Path, name: str, sizes: StoreOptions) -> ChunkSource:
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

    return ChunkSource(name, "parquet", {}, [], chunks, _Malformed())


class ColumnFiles:
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
class ReadState:
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


def read_columns(source: ChunkSource, work: Path, options: IngestOptions,
          progress: Callable[[str, int], None], all_text: bool, encoding: str
          ) -> tuple[ColumnFiles, ReadState, IngestReport]:
    """Pass 1: chunks -> column files of codes; row-wise policies applied and reported."""
    report = IngestReport(source=source.name, format=source.format,
                          warnings=list(source.warnings), details=dict(source.details))
    report.details["out_of_core"] = True
    state: ReadState | None = None
    raw: ColumnFiles | None = None
    decimal = "," if report.details.get("decimal") == "comma" else "."
    for table, lines in _prefetched(source.chunks(all_text, encoding)):
        if state is None:
            overrides = options.role_overrides()
            roles = detect_roles(table, overrides, source.name)
            report.columns = dict(roles)
            report.source_columns = list(table.column_names)
            state = ReadState(_Tokens(), _Tokens(), _Tokens(), np.zeros(0, np.int64), roles)
            columns = {"user": np.int32, "item": np.int32, "event": np.int32,
                       "micros": np.float64, "value": np.float64, "line": np.int64}
            absent = {name for name, role in (("micros", "timestamp"), ("value", "value"))
                      if not roles[role]}
            raw = ColumnFiles(work, {name: dtype for name, dtype in columns.items()
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


def _read_chunk(table: pa.Table, lines: np.ndarray, state: ReadState, raw: ColumnFiles,
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
    keep = drop_missing_ids(users, items, lines, report)

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


def _finish_read(state: ReadState, report: IngestReport, options: IngestOptions,
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
