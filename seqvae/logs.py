"""Reading behaviour logs: any reasonable file in, a validated `EventLog` and an `IngestReport` out.

A behaviour log says who (``user``) did what (``event``) to which ``item``, when (``timestamp``),
and optionally how much (``value``: a rating, a quantity, a dwell time). This module reads such a
log from delimited text (the delimiter and the header are sniffed), Parquet, JSON lines, the
``user item1 item2 ...`` one-sequence-per-line format of sequential-recommendation benchmarks, or a
pandas DataFrame; finds the column roles from names and contents (always overridable); parses
timestamps; applies explicit, reported policies to missing values and duplicates; and accounts for
every input row in an `IngestReport`:

    rows_read == rows_kept + sum(report.dropped.values())

Anything it cannot read raises `LogFormatError`, whose message names the file, the column, up to
five offending lines and the fix. Parsing is columnar (pyarrow's multi-threaded CSV reader,
dictionary encoding of ids); only ragged files fall back to Python's ``csv`` module.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seqvae.errors import LogFormatError

ROLES = ("user", "item", "timestamp", "event", "value")

#: Column names (lower-cased, with ``_``, ``-``, ``.`` and spaces removed) that reveal a role.
ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user", "userid", "users", "uid", "customer", "customerid", "visitor", "visitorid",
             "member", "memberid", "account", "accountid", "client", "clientid", "reviewerid",
             "personid", "person", "viewer", "viewerid", "buyer", "buyerid"),
    "item": ("item", "itemid", "items", "iid", "product", "productid", "movie", "movieid",
             "sku", "asin", "article", "articleid", "content", "contentid", "track", "trackid",
             "song", "songid", "book", "bookid", "isbn", "video", "videoid", "post", "postid",
             "doc", "docid", "news", "newsid", "offer", "offerid", "sid", "pid"),
    "timestamp": ("timestamp", "ts", "time", "date", "datetime", "eventtime", "createdat",
                  "created", "unixtime", "unixtimestamp", "eventtimestamp", "occurredat",
                  "eventdate", "when", "tstamp", "epoch"),
    "event": ("event", "eventtype", "action", "actiontype", "behavior", "behaviour",
              "behaviortype", "behaviourtype", "type", "interaction", "interactiontype",
              "activity", "eventname", "verb"),
    "value": ("value", "rating", "ratings", "score", "quantity", "qty", "amount", "price",
              "dwell", "dwelltime", "duration", "weight", "count", "stars", "revenue"),
}

#: Texts read as a missing value in delimited files.
NULL_TEXTS = ("", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "none", "#N/A")

_SNIFF_BYTES = 256 * 1024
_SNIFF_LINES = 400
_DELIMITERS = ("\t", ",", ";", "|", " ")
_DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}


# --------------------------------------------------------------------------------------------
# options and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestOptions:
    """How to read a behaviour log. Every field has a default that suits most logs."""

    # File format: "auto" (from the name, then the content), "delimited", "parquet", "jsonl",
    # or "sequence-lines" (one user per line: `user item1 item2 ...`, items in time order).
    format: Literal["auto", "delimited", "parquet", "jsonl", "sequence-lines"] = "auto"
    # Field delimiter of delimited text; None sniffs it. "\\t", "tab", "space" are understood.
    sep: str | None = None
    # Whether the first line is a header; None detects it.
    header: bool | None = None
    # Column names to use for a file without a header (or to replace a header).
    names: tuple[str, ...] | None = None
    # Source column for each role; None detects it. `timestamp`, `event` and `value` may also be
    # "" to say that the log has no such column.
    user_col: str | None = None
    item_col: str | None = None
    timestamp_col: str | None = None
    event_col: str | None = None
    value_col: str | None = None
    # Unit of numeric timestamps: "auto" tells seconds, milliseconds and microseconds apart by
    # magnitude.
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"
    # A row with a missing (or unparseable) timestamp: "previous" takes the timestamp of the
    # user's previous event (or next, for a first event), "drop" drops it, "file-order" keeps it
    # without a timestamp, placed by its position in the file.
    missing_timestamp: Literal["previous", "drop", "file-order"] = "previous"
    # A missing event type becomes this label.
    missing_event: str = "unknown"
    # A missing value: "median" or "mean" fills it from the column, "drop" drops the row.
    missing_value: Literal["median", "mean", "drop"] = "median"
    # Remove rows identical in every mapped column (user, item, timestamp, event, value).
    drop_duplicates: bool = True
    # More than this share of unparseable timestamps is an error, not a warning.
    max_bad_timestamp_share: float = 0.5
    # Files larger than this many bytes are refused (the out-of-core path reads bigger logs).
    max_bytes: int = 2 * 1024**3
    # Text encoding; None reads UTF-8 (with or without BOM) and falls back to Latin-1.
    encoding: str | None = None

    def __post_init__(self) -> None:
        if self.sep is not None and self.sep not in ("", None):
            object.__setattr__(self, "sep", _normalise_sep(self.sep))
        if self.sep == "":
            raise ValueError("`sep` should be a delimiter such as ',' or 'tab'. Received: `sep`=''")
        if self.names is not None:
            names = tuple(str(n) for n in self.names)
            if len(set(names)) != len(names):
                raise ValueError(f"`names` should be distinct. Received: `names`={names}")
            object.__setattr__(self, "names", names)
        if self.missing_timestamp not in ("previous", "drop", "file-order"):
            raise ValueError(
                "`missing_timestamp` should be 'previous', 'drop' or 'file-order'. "
                f"Received: `missing_timestamp`={self.missing_timestamp!r}"
            )
        if self.missing_value not in ("median", "mean", "drop"):
            raise ValueError(
                "`missing_value` should be 'median', 'mean' or 'drop'. "
                f"Received: `missing_value`={self.missing_value!r}"
            )
        if self.timestamp_unit not in ("auto", "s", "ms", "us", "ns"):
            raise ValueError(
                "`timestamp_unit` should be 'auto', 's', 'ms', 'us' or 'ns'. "
                f"Received: `timestamp_unit`={self.timestamp_unit!r}"
            )
        if self.format not in ("auto", "delimited", "parquet", "jsonl", "sequence-lines"):
            raise ValueError(
                "`format` should be 'auto', 'delimited', 'parquet', 'jsonl' or 'sequence-lines'. "
                f"Received: `format`={self.format!r}"
            )
        if not 0.0 <= self.max_bad_timestamp_share <= 1.0:
            raise ValueError(
                "`max_bad_timestamp_share` should be between 0 and 1. "
                f"Received: `max_bad_timestamp_share`={self.max_bad_timestamp_share}"
            )
        if self.max_bytes <= 0:
            raise ValueError(f"`max_bytes` should be positive. Received: `max_bytes`={self.max_bytes}")
        if not self.missing_event:
            raise ValueError("`missing_event` should be a non-empty label. Received: ''")

    def role_overrides(self) -> dict[str, str | None]:
        return {
            "user": self.user_col,
            "item": self.item_col,
            "timestamp": self.timestamp_col,
            "event": self.event_col,
            "value": self.value_col,
        }


@dataclass
class IngestReport:
    """What happened to every input row.

    Invariant: ``rows_read == rows_kept + sum(dropped.values())``.
    """

    source: str
    format: str
    rows_read: int = 0
    rows_kept: int = 0
    # reason -> number of rows dropped for it
    dropped: dict[str, int] = field(default_factory=dict)
    # what -> number of values filled in (rows kept)
    filled: dict[str, int] = field(default_factory=dict)
    # reason -> up to five source line numbers of dropped rows
    dropped_lines: dict[str, list[int]] = field(default_factory=dict)
    # role -> source column (None when the log has no such column)
    columns: dict[str, str | None] = field(default_factory=dict)
    # every column of the source, in order (for a column-mapping form)
    source_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # how the file was read: delimiter, header, encoding, timestamp unit, ...
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_kept + sum(self.dropped.values())

    def drop(self, reason: str, count: int, lines: Iterable[int] = ()) -> None:
        """Record `count` rows dropped for `reason` (the caller removes them)."""
        if count <= 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + int(count)
        self.rows_kept -= int(count)
        kept = self.dropped_lines.setdefault(reason, [])
        kept.extend(int(n) for n in list(lines)[: 5 - len(kept)])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DROP_REASONS = {
    "missing_user": "no user id",
    "missing_item": "no item id",
    "missing_timestamp": "no usable timestamp",
    "missing_value": "no value",
    "duplicate": "exact duplicate of an earlier row",
    "malformed": "not a well-formed record",
    "k_core": "removed by k-core filtering",
    "below_min_rating": "value below the minimum kept",
}


@dataclass
class EventLog:
    """A validated behaviour log with typed columns, in file order.

    ``frame`` has the columns ``user`` and ``item`` (categorical, ids as text), ``timestamp``
    (``datetime64[us, UTC]``; NaT where the log has none), ``event`` (categorical), ``value``
    (float64; NaN where the log has none) and ``line`` (the 1-based source line of each row).
    """

    frame: pd.DataFrame
    source: str
    has_timestamp: bool
    has_event: bool
    has_value: bool
    # Row positions sorted by user, then time, then file order (what `encode` needs); computed
    # once while reading, since duplicate removal needs the same order.
    time_order: np.ndarray | None = None

    @property
    def n_events(self) -> int:
        return len(self.frame)

    @property
    def n_users(self) -> int:
        return int(self.frame["user"].cat.categories.size)

    @property
    def n_items(self) -> int:
        return int(self.frame["item"].cat.categories.size)

    def summary(self) -> dict[str, Any]:
        """Users, items, events, time span and event-type mix, as plain Python values."""
        frame = self.frame
        per_user = np.bincount(frame["user"].cat.codes.to_numpy(), minlength=self.n_users)
        out: dict[str, Any] = {
            "users": self.n_users,
            "items": self.n_items,
            "events": self.n_events,
            "events_per_user": {
                "min": int(per_user.min()) if per_user.size else 0,
                "median": float(np.median(per_user)) if per_user.size else 0.0,
                "mean": float(per_user.mean()) if per_user.size else 0.0,
                "max": int(per_user.max()) if per_user.size else 0,
            },
            "density": float(self.n_events / max(1, self.n_users * self.n_items)),
        }
        if self.has_timestamp:
            ts = frame["timestamp"]
            out["time_span"] = {
                "start": None if ts.isna().all() else ts.min().isoformat(),
                "end": None if ts.isna().all() else ts.max().isoformat(),
            }
        else:
            out["time_span"] = None
        out["event_types"] = (
            {str(k): int(v) for k, v in frame["event"].value_counts().items()}
            if self.has_event
            else {}
        )
        return out


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------


Source: TypeAlias = "str | os.PathLike[str] | bytes | IO[bytes] | pd.DataFrame"


def read_log(
    source: Source,
    options: IngestOptions | None = None,
    *,
    name: str | None = None,
) -> tuple[EventLog, IngestReport]:
    """Read a behaviour log into an `EventLog` and an `IngestReport`.

    Args:
        source: a path, the file's bytes, a binary file object (an upload), or a DataFrame.
        options: how to read it; the defaults detect everything.
        name: the name used in messages (defaults to the file name).

    Returns:
        ``(log, report)``; ``report.rows_read == report.rows_kept + sum(report.dropped.values())``.

    Raises:
        LogFormatError: the log cannot be read; the message says where and what to do.
    """
    options = options or IngestOptions()
    raw = _load_raw(source, options, name)
    return _build_event_log(raw, options)


def read_metadata(
    source: Source,
    *,
    key: Literal["item", "user"] = "item",
    key_col: str | None = None,
    title_col: str | None = None,
    header: bool | None = None,
    name: str | None = None,
    sep: str | None = None,
) -> pd.DataFrame:
    """Read a side table keyed by item (titles, categories) or by user (attributes, segments).

    Read as logs are: format, encoding and delimiter sniffed, and the header detected from the
    first rows unless `header` says (MovieLens' ``u.item`` and ``u.user`` have none: their
    columns become ``column_1``, ``column_2``, …). The key column is found from its name (as for
    logs), else it is the first column, or it is given as `key_col`; it becomes the index, as
    text, first row kept for a repeated key. For items, the ``title`` column is `title_col`, or
    a column named like a title, or the text column whose values are nearly all distinct names
    (not numbers, dates or links); it is renamed ``title``.

    Raises:
        LogFormatError: the table cannot be read, has no key column, or a named column is missing.
    """
    opts = IngestOptions(sep=sep, header=header)
    raw = _load_raw(source, opts, name)
    table = raw.table
    names = list(table.column_names)
    col = key_col or (key_column(names, key) if len(names) > 1 else None)
    if col is None or col not in names:
        raise LogFormatError(
            raw.name, f"no {key} column found in the {key} table", column=key_col,
            fix=f"name the {key} column (one of {', '.join(names)})",
        )
    if title_col is not None and title_col not in names:
        raise LogFormatError(raw.name, f"no column {title_col!r} in the {key} table",
                             column=title_col, fix=f"choose one of {', '.join(names)}")
    frame = table.to_pandas()
    frame[col] = _arrow_to_text(table.column(col)).to_pandas()
    frame = frame.dropna(subset=[col]).drop_duplicates(subset=[col], keep="first").set_index(col)
    frame.index.name = key
    if key == "item":
        title = title_col or _title_column(frame)
        if title is not None and title != "title":
            frame = frame.drop(columns=["title"], errors="ignore").rename(columns={title: "title"})
    return frame


def key_column(names: list[str], key: Literal["item", "user"]) -> str:
    """The column of a side table that holds the item (or user) ids: by its name, else the
    first."""
    return _find_by_name(names, key) or names[0]


def preview_table(source: Source, *, header: bool | None = None, name: str | None = None,
                  sep: str | None = None, rows: int = 5) -> pd.DataFrame:
    """The first `rows` rows of a side table as it would be read (every column, as text), to
    choose its header, key and title columns from."""
    raw = _load_raw(source, IngestOptions(sep=sep, header=header), name)
    return raw.table.slice(0, rows).to_pandas().astype("string")


_TITLE_NAMES = ("title", "name", "itemname", "productname", "movietitle", "itemtitle", "label")


def _title_column(frame: pd.DataFrame) -> str | None:
    """The column of an item table that holds the items' names, if one does."""
    by_name = {_name_key(str(c)): c for c in frame.columns}
    for candidate in _TITLE_NAMES:
        if candidate in by_name:
            return str(by_name[candidate])
    best, best_share = None, 0.8
    for column in frame.columns:
        values = frame[column].dropna().astype(str).head(2000)
        textual = (pd.api.types.is_object_dtype(frame[column])
                   or pd.api.types.is_string_dtype(frame[column]))
        if values.empty or not textual:
            continue
        texts = values[~values.map(_looks_numeric) & ~values.str.match(r"(?i)https?://|www\.")
                       & ~values.str.fullmatch(r"[\d\s/.:-]+[A-Za-z]{0,3}[\d\s/.:-]*")]
        share = len(texts) / len(values)
        distinct = texts.nunique() / max(len(values), 1)
        if share >= 0.9 and distinct > best_share and texts.str.len().median() >= 4:
            best, best_share = str(column), distinct
    return best


# --------------------------------------------------------------------------------------------
# step 1: bytes -> raw arrow table (with a line number per row)
# --------------------------------------------------------------------------------------------


@dataclass
class _Raw:
    name: str
    format: str
    table: pa.Table
    lines: np.ndarray  # 1-based source line of each row
    warnings: list[str]
    details: dict[str, Any]
    malformed: int = 0  # records that could not be read at all (JSON lines)
    malformed_lines: list[int] = field(default_factory=list)
    # for sequence-lines: the positions already define the order
    ordered_by_position: bool = False


def _normalise_sep(sep: str) -> str:
    aliases = {"\\t": "\t", "tab": "\t", "tsv": "\t", "space": " ", "comma": ",",
               "semicolon": ";", "pipe": "|"}
    return aliases.get(sep.lower(), sep) if len(sep) > 1 else sep


def _load_raw(source: Source, options: IngestOptions, name: str | None) -> _Raw:
    if isinstance(source, pd.DataFrame):
        return _raw_from_frame(source, name or "<DataFrame>")
    data, display_name, suffix = _read_bytes(source, options, name)
    fmt: str = options.format
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise LogFormatError(display_name, f"the gzip file is damaged ({exc})",
                                 fix="re-create or re-download the file") from None
        if len(data) > options.max_bytes:
            _raise_too_large(display_name, len(data), options.max_bytes)
        suffix = Path(suffix).stem if suffix.endswith(".gz") else ""  # log.csv.gz -> log.csv
    if fmt == "auto":
        fmt = _detect_format(data, suffix, display_name)
    if fmt == "parquet":
        return _raw_from_parquet(data, display_name)
    text, encoding, warnings = _decode(data, display_name, options)
    if fmt == "jsonl":
        return _raw_from_jsonl(text, display_name, warnings, encoding)
    if fmt == "sequence-lines":
        return _raw_from_sequence_lines(text, display_name, warnings, encoding)
    # the UTF-8 bytes pyarrow parses: the file itself unless it had to be transcoded
    utf8 = data[3:] if encoding == "utf-8-sig" else data if encoding == "utf-8" else None
    return _raw_from_delimited(text, display_name, options, warnings, encoding, utf8)


def _raise_too_large(name: str, size: int, limit: int) -> None:
    raise LogFormatError(
        name,
        f"the file is {size / 1024**2:,.1f} MB, over the limit of {limit / 1024**2:,.0f} MB",
        fix="raise the limit (max_bytes / --max-mb) or train on it with the out-of-core path",
    )


def _read_bytes(source: Any, options: IngestOptions, name: str | None) -> tuple[bytes, str, str]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        display = name or path.name
        if not path.exists():
            raise LogFormatError(display, "the file does not exist",
                                 fix=f"check the path {str(path)!r}")
        if path.is_dir():
            raise LogFormatError(display, "this is a folder, not a file",
                                 fix="give the path of the log file inside it")
        size = path.stat().st_size
        if size > options.max_bytes:
            _raise_too_large(display, size, options.max_bytes)
        return path.read_bytes(), display, path.name.lower()
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        display = name or "<bytes>"
    elif hasattr(source, "read"):
        display = name or str(getattr(source, "name", "<upload>"))
        declared = getattr(source, "size", None)
        if isinstance(declared, int) and declared > options.max_bytes:
            _raise_too_large(display, declared, options.max_bytes)
        data = source.read(options.max_bytes + 1)
        if isinstance(data, str):
            data = data.encode("utf-8")
    else:
        raise TypeError(
            "`source` should be a path, bytes, a binary file object or a DataFrame. "
            f"Received: {type(source).__name__}"
        )
    if len(data) > options.max_bytes:
        _raise_too_large(display, len(data), options.max_bytes)
    return data, display, display.lower()


_PARQUET_MAGIC = b"PAR1"


def _detect_format(data: bytes, suffix: str, name: str) -> str:
    if not data.strip():
        raise LogFormatError(name, "the file is empty", fix="upload a log with one event per row")
    if data[:4] == _PARQUET_MAGIC:
        return "parquet"
    if suffix.endswith((".parquet", ".pq")):
        raise LogFormatError(name, "the file is named .parquet but is not a Parquet file",
                             fix="re-export it as Parquet, or rename it to .csv if it is text")
    if data[:4] == b"PK\x03\x04":
        raise LogFormatError(
            name, "this is a zip archive (or a spreadsheet such as .xlsx), not a log",
            fix="extract the log from the archive, or export the sheet as CSV",
        )
    if suffix.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    head = data.lstrip()[:1]
    if head == b"{":
        return "jsonl"
    return "delimited"


def _decode(data: bytes, name: str, options: IngestOptions) -> tuple[str, str, list[str]]:
    """Bytes -> text, with the encoding used and any warning about it."""
    warnings: list[str] = []
    if options.encoding:
        try:
            return data.decode(options.encoding), options.encoding, warnings
        except (UnicodeDecodeError, LookupError) as exc:
            raise LogFormatError(name, f"the file cannot be decoded as {options.encoding} ({exc})",
                                 fix="pass the right --encoding, or leave it out to detect it") from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16"), "utf-16", warnings
        except UnicodeDecodeError:
            pass
    head = data[:_SNIFF_BYTES]
    if b"\x00" in head or _control_share(head) > 0.05:
        raise LogFormatError(
            name, "the file holds binary data, not text",
            fix="upload the log as CSV, TSV, JSON lines or Parquet",
        )
    if data[:3] == b"\xef\xbb\xbf":
        data = data[3:]
        encoding = "utf-8-sig"
    else:
        encoding = "utf-8"
    try:
        return data.decode("utf-8"), encoding, warnings
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        warnings.append(
            f"the file is not valid UTF-8 (first bad byte on line {line}); read as Latin-1 — "
            "check accented names, or save the file as UTF-8"
        )
        return data.decode("latin-1"), "latin-1", warnings


def _control_share(head: bytes) -> float:
    if not head:
        return 0.0
    arr = np.frombuffer(head, dtype=np.uint8)
    control = (arr < 32) & (arr != 9) & (arr != 10) & (arr != 13) & (arr != 12)
    return float(control.mean())


def _raw_from_frame(frame: pd.DataFrame, name: str) -> _Raw:
    if frame.shape[1] == 0 or len(frame) == 0:
        raise LogFormatError(name, "the DataFrame is empty", fix="pass a log with one event per row")
    frame = frame.reset_index(drop=True)
    frame.columns = _unique_names([str(c) for c in frame.columns])
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = pa.Table.from_pandas(frame.astype(object).where(frame.notna(), None).astype(str)
                                     .where(frame.notna(), None), preserve_index=False)
    return _Raw(name, "dataframe", table, np.arange(1, len(frame) + 1), [], {})


def _raw_from_parquet(data: bytes, name: str) -> _Raw:
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise LogFormatError(name, f"the Parquet file cannot be read ({exc})",
                             fix="re-export the file; it may be truncated") from None
    if table.num_rows == 0:
        raise LogFormatError(name, "the Parquet file has no rows", fix="export a non-empty log")
    table = table.rename_columns(_unique_names(table.column_names))
    return _Raw(name, "parquet", table, np.arange(1, table.num_rows + 1), [], {})


def _raw_from_jsonl(text: str, name: str, warnings: list[str], encoding: str) -> _Raw:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            records.append(obj)
            lines.append(number)
        elif number == 1 and stripped.startswith("[") and len(text.splitlines()) == 1:
            raise LogFormatError(name, "this is one JSON array, not JSON lines",
                                 fix="write one JSON object per line (JSON lines)")
        else:
            bad.append(number)
    if not records:
        raise LogFormatError(name, "no line holds a JSON object", lines=bad,
                             fix="write one JSON object per line, e.g. {\"user\": 1, \"item\": 2}")
    if len(bad) > len(records):
        raise LogFormatError(name, f"{len(bad)} of {len(bad) + len(records)} lines are not JSON "
                             "objects", lines=bad, fix="write one JSON object per line")
    if bad:
        warnings.append(f"{len(bad)} lines are not JSON objects and were dropped (lines "
                        f"{', '.join(map(str, bad[:5]))})")
    frame = pd.DataFrame.from_records(records)
    for col in frame.columns:
        if frame[col].map(lambda v: isinstance(v, dict | list)).any():
            frame[col] = frame[col].map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)
    raw = _raw_from_frame(frame, name)
    raw.format = "jsonl"
    raw.lines = np.asarray(lines, dtype=np.int64)
    raw.warnings = warnings
    raw.details = {"encoding": encoding}
    raw.malformed = len(bad)
    raw.malformed_lines = bad[:5]
    return raw


def _raw_from_sequence_lines(text: str, name: str, warnings: list[str], encoding: str) -> _Raw:
    """`user item1 item2 ...` per line (items in time order) -> one row per event."""
    refuse_prose(_sample_lines(text), name)
    users: list[str] = []
    counts: list[int] = []
    items: list[str] = []
    line_numbers: list[int] = []
    empty: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.replace(",", " ").replace("\t", " ").split()
        if not tokens:
            continue
        if len(tokens) == 1:
            empty.append(number)
            continue
        users.append(tokens[0])
        counts.append(len(tokens) - 1)
        items.extend(tokens[1:])
        line_numbers.append(number)
    if not users:
        raise LogFormatError(name, "no line holds a user followed by items", lines=empty,
                             fix="write one user per line: `user item1 item2 ...`")
    if empty:
        warnings.append(f"{len(empty)} lines hold a user and no items (lines "
                        f"{', '.join(map(str, empty[:5]))}); they add no events")
    count_arr = np.asarray(counts, dtype=np.int64)
    user_col = np.repeat(np.asarray(users, dtype=object), count_arr)
    table = pa.table({
        "user": pa.array(user_col, type=pa.string()),
        "item": pa.array(items, type=pa.string()),
    })
    lines = np.repeat(np.asarray(line_numbers, dtype=np.int64), count_arr)
    details = {"encoding": encoding, "layout": "one user per line, items in time order"}
    return _Raw(name, "sequence-lines", table, lines, warnings, details, ordered_by_position=True)


# ---- delimited text ------------------------------------------------------------------------


def _sample_lines(text: str) -> list[str]:
    head = text[:_SNIFF_BYTES]
    lines = head.splitlines()
    if len(head) < len(text) and lines:
        lines = lines[:-1]  # the last line of the sample may be cut
    return [ln for ln in lines if ln.strip()][:_SNIFF_LINES]


def _split(lines: list[str], sep: str) -> list[list[str]]:
    if sep == " ":
        return [ln.split() for ln in lines]
    return list(csv.reader(lines, delimiter=sep, skipinitialspace=False))


def _sniff_delimiter(lines: list[str]) -> tuple[str, float, int]:
    """The delimiter that splits the sample into the most consistent number (>= 2) of fields.

    Returns ``(delimiter, consistency, modal field count)``.
    """
    best: tuple[float, int, str] | None = None
    decimal_only = _commas_are_decimal(lines)
    for rank, sep in enumerate(_DELIMITERS):
        if sep == "," and decimal_only:
            continue
        counts = [len(row) for row in _split(lines, sep)]
        if not counts:
            continue
        modal, n_modal = Counter(counts).most_common(1)[0]
        if modal < 2:
            continue
        consistency = n_modal / len(counts)
        # Prefer consistency, then the earlier (more specific) delimiter.
        key = (round(consistency, 2), -rank)
        if best is None or key > (best[0], -_DELIMITERS.index(best[2])):
            best = (round(consistency, 2), modal, sep)
    if best is None:
        return "", 0.0, 1
    return best[2], best[0], best[1]


def _commas_are_decimal(lines: list[str]) -> bool:
    """Every comma of the sample sits between two digits ("4,5") and another delimiter splits
    every line alike into 2 or more fields: the commas are decimal marks, not the delimiter
    (on a long `;` log with decimal commas, splitting at the commas is as consistent)."""
    commas = sum(ln.count(",") for ln in lines)
    if not commas or commas != sum(len(re.findall(r"(?<=\d),(?=\d)", ln)) for ln in lines):
        return False
    for sep in (s for s in _DELIMITERS if s != ","):
        counts = {len(row) for row in _split(lines, sep)}
        if len(counts) == 1 and counts.pop() >= 2:
            return True
    return False


def _looks_numeric(value: str) -> bool:
    try:
        float(value.replace(",", ".") if value.count(",") == 1 else value)
    except ValueError:
        return False
    return True


def _detect_header(rows: list[list[str]]) -> bool:
    if not rows:
        return False
    first = [c.strip() for c in rows[0]]
    known = {n for names in ROLE_NAMES.values() for n in names}
    if any(_name_key(c) in known for c in first if c):
        return True
    rest = rows[1:]
    if not rest:
        return False
    for j, value in enumerate(first):
        column = [r[j].strip() for r in rest if len(r) > j and r[j].strip()]
        if not column or _looks_numeric(value):
            continue
        numeric_share = sum(_looks_numeric(v) for v in column) / len(column)
        if numeric_share >= 0.9:
            return True
    return False


def _unique_names(names: list[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for i, raw_name in enumerate(names):
        name = raw_name.strip() or f"column_{i + 1}"
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _decimal_comma(rows: list[list[str]], sep: str) -> bool:
    if sep == ",":
        return False
    pattern = re.compile(r"^-?\d+,\d+$")
    cells = [c.strip() for r in rows for c in r if c.strip()]
    return any(pattern.match(c) for c in cells) and not any(
        re.match(r"^-?\d+\.\d+$", c) for c in cells
    )


@dataclass
class _DelimitedLayout:
    """What the first lines of a delimited file say about all of it."""

    sep: str
    header: bool
    names: list[str]
    infer: set[str]  # columns whose types pyarrow may infer; the others are read as text
    details: dict[str, Any]
    preamble: int = 0  # lines before the header or the first row (Excel's "sep=;" line)

    @property
    def skip(self) -> int:
        """Lines to skip before the first data row."""
        return self.preamble + int(self.header)


# Excel writes "sep=;" as the first line of a CSV to name its delimiter
_EXCEL_SEP = re.compile(r'\s*"?sep=(.)"?\s*', re.IGNORECASE)
_MARKUP = re.compile(r"\s*<(?:!doctype|html|\?xml|head|body|!--|div|table|title)\b", re.IGNORECASE)


_WORD_WITH_PUNCTUATION = re.compile(r"^[(\"'“]?[A-Za-zÀ-ÿ]+[.,;:!?)\"'”]$")


def refuse_prose(lines: list[str], name: str) -> None:
    """Running text (a README, a letter) read as one sequence per line is refused: its words
    end in punctuation far more often than ids do."""
    tokens = [t for ln in lines for t in ln.split()]
    if len(tokens) >= 20 and sum(bool(_WORD_WITH_PUNCTUATION.match(t)) for t in tokens) \
            > 0.1 * len(tokens):
        raise LogFormatError(
            name, "the file reads as running text, not a log (words and punctuation, no "
            "columns of ids)", lines=[1],
            fix="upload the log itself: one event per row (user, item, …) or one user per "
            "line (`user item1 item2 …`)")


def refuse_markup(lines: list[str], name: str) -> None:
    """A web page or XML saved as the log (an error page instead of the export) is refused."""
    tagged = sum(ln.lstrip().startswith("<") for ln in lines)
    if lines and (_MARKUP.match(lines[0]) or tagged > 0.5 * len(lines)):
        raise LogFormatError(
            name, "the file is markup (HTML or XML), not a log — often an error page or a "
            "login page saved instead of the export", lines=[1],
            fix="download the log again and check that it opens as a table (CSV, TSV), JSON "
            "lines or Parquet")


def _raw_from_delimited(
    text: str, name: str, options: IngestOptions, warnings: list[str], encoding: str,
    utf8: bytes | None = None,
) -> _Raw:
    layout = _delimited_layout(text, name, options, warnings, encoding)
    if layout is None:
        return _raw_from_sequence_lines(text, name, warnings, encoding)
    table, lines_arr, ragged = _parse_delimited(text, layout.sep, layout.names, layout.skip,
                                                layout.infer, name, utf8)
    if ragged:
        warnings.append(ragged)
    if table.num_rows == 0:
        raise LogFormatError(name, "the file has a header line and no data rows", lines=[1],
                             fix="export the rows of the log too")
    return _Raw(name, "delimited", table, lines_arr, warnings, layout.details)


def _delimited_layout(text: str, name: str, options: IngestOptions, warnings: list[str],
                      encoding: str) -> _DelimitedLayout | None:
    """Delimiter, header, column names and types from the start of `text` (None: the file is
    one sequence per line, not a table)."""
    lines = _sample_lines(text)
    if not lines:
        raise LogFormatError(name, "the file is empty", fix="upload a log with one event per row")
    refuse_markup(lines, name)
    preamble = 0
    excel = _EXCEL_SEP.fullmatch(lines[0])
    if excel:
        preamble = 1
        lines = lines[1:]
        if not lines:
            raise LogFormatError(name, "the file has only Excel's delimiter line (sep=…)",
                                 lines=[1], fix="export the rows of the log too")
        if not options.sep:
            options = dataclasses.replace(options, sep=excel.group(1))
    if options.sep:
        sep = options.sep
        rows = _split(lines, sep)
        counts = Counter(len(r) for r in rows)
        n_fields = counts.most_common(1)[0][0]
        consistency = counts.most_common(1)[0][1] / len(rows)
    else:
        sep, consistency, n_fields = _sniff_delimiter(lines)
        if not sep:
            raise LogFormatError(
                name, "only one column was found (no delimiter splits the lines)",
                lines=[1],
                fix="a log needs at least a user and an item column; pass --sep if the "
                "delimiter is unusual",
            )
        rows = _split(lines, sep)
        if consistency < 0.9:  # rows of unequal length: is it a table at all?
            refuse_prose(lines, name)
        if sep == " " and consistency < 0.6 and options.format == "auto":
            distinct = len({len(r) for r in rows})
            header_like = _detect_header(rows)
            if distinct >= 3 and not header_like:
                warnings.append(
                    "the lines have many different lengths: read as one user per line "
                    "(`user item1 item2 ...`, items in time order); pass --format delimited "
                    "to read it as a table"
                )
                return None
    if n_fields < 2:
        raise LogFormatError(
            name, f"only one column was found with the delimiter {sep!r}", lines=[1],
            fix="a log needs at least a user and an item column; check --sep",
        )
    header = options.header if options.header is not None else _detect_header(rows)
    header_names = [c.strip() for c in rows[0]] if header else None
    if options.names is not None:
        names = list(options.names)
    elif header_names is not None:
        names = _unique_names(header_names)
    else:
        names = [f"column_{i + 1}" for i in range(n_fields)]
    if header and len(rows) == 1 and len(lines) == 1 and len(text.strip().splitlines()) <= 1 + preamble:
        raise LogFormatError(name, "the file has a header line and no data rows", lines=[1],
                             fix="export the rows of the log too")
    decimal = "," if _decimal_comma(rows[1:] if header else rows, sep) else "."
    details: dict[str, Any] = {
        "encoding": encoding,
        "delimiter": _DELIMITER_NAMES.get(sep, sep),
        "header": bool(header),
    }
    if preamble:
        details["excel_sep_line"] = True
    if decimal == ",":
        details["decimal"] = "comma"
        warnings.append("numbers use a decimal comma (e.g. 4,5); read as decimals")
    # Columns whose sample holds numbers with a leading zero (ids such as "007") or decimal
    # commas stay text; pyarrow infers the type of the others (fast numeric timestamps).
    data_rows = rows[1:] if header else rows
    leading_zero = re.compile(r"^[+-]?0\d")
    infer = {
        column for j, column in enumerate(names)
        if decimal == "." and not any(
            len(r) > j and leading_zero.match(r[j].strip()) for r in data_rows)
    }
    return _DelimitedLayout(sep, bool(header), names, infer, details, preamble)


def _parse_delimited(
    text: str, sep: str, names: list[str], skip: int, infer: set[str], name: str,
    utf8: bytes | None = None,
) -> tuple[pa.Table, np.ndarray, str]:
    """Parse the whole text after its first `skip` lines (a header, Excel's "sep=" line). Fast
    path: pyarrow; ragged or blank-line files: Python's csv.

    Columns in `infer` get pyarrow's type inference (numbers, timestamps); the others are read as
    text, which keeps ids such as "007" intact.
    """
    data = utf8 if utf8 is not None else text.encode("utf-8")
    end = len(data)
    while end and data[end - 1] in (10, 13):  # blank lines at the end of the file are harmless
        end -= 1
    body_has_blank = data.find(b"\n\n", 0, end) >= 0 or data.find(b"\n\r\n", 0, end) >= 0
    invalid: list[int] = []

    def on_invalid(row: Any) -> str:
        invalid.append(row.actual_columns)
        return "skip"

    def read(column_types: dict[str, pa.DataType]) -> pa.Table:
        return pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=skip, block_size=1 << 24
            ),
            parse_options=pacsv.ParseOptions(delimiter=sep, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types=column_types,
                null_values=list(NULL_TEXTS),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )

    if sep != " " and not body_has_blank:
        table = None
        try:
            table = read({n: pa.string() for n in names if n not in infer})
        except pa.ArrowInvalid:
            # a column looked numeric in its first block and is not: read everything as text
            invalid.clear()
            try:
                table = read(dict.fromkeys(names, pa.string()))
            except pa.ArrowInvalid:
                invalid.append(-1)
        if table is not None and not invalid:
            start = 1 + skip
            return table, np.arange(start, start + table.num_rows, dtype=np.int64), ""
    return _parse_delimited_slow(text, sep, names, skip, name)


def _parse_delimited_slow(
    text: str, sep: str, names: list[str], skip: int, name: str
) -> tuple[pa.Table, np.ndarray, str]:
    n = len(names)
    columns: list[list[str | None]] = [[] for _ in range(n)]
    line_numbers: list[int] = []
    short: list[int] = []
    long: list[int] = []
    null_texts = set(NULL_TEXTS)
    def numbered_rows() -> Iterable[tuple[int, list[str]]]:
        if sep == " ":
            yield from enumerate((ln.split() for ln in text.splitlines()), start=1)
            return
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
        for row in reader:
            yield reader.line_num, row  # the line the record ends on

    to_skip = skip
    for line_no, row in numbered_rows():
        if not row or all(not c.strip() for c in row):
            continue
        if to_skip:
            to_skip -= 1
            continue
        if len(row) < n:
            short.append(line_no)
            row = row + [""] * (n - len(row))
        elif len(row) > n:
            extra = row[n:]
            if any(c.strip() for c in extra):
                long.append(line_no)
            row = row[:n]
        for j in range(n):
            cell = row[j].strip()
            columns[j].append(None if cell in null_texts else cell)
        line_numbers.append(line_no)
    table = pa.table({names[j]: pa.array(columns[j], type=pa.string()) for j in range(n)})
    notes = []
    if short:
        notes.append(f"{len(short)} rows have fewer than {n} fields (lines "
                     f"{', '.join(map(str, short[:5]))}); the missing fields were read as empty")
    if long:
        notes.append(f"{len(long)} rows have more than {n} fields (lines "
                     f"{', '.join(map(str, long[:5]))}); the extra fields were ignored")
    return table, np.asarray(line_numbers, dtype=np.int64), "; ".join(notes)


# --------------------------------------------------------------------------------------------
# step 2: roles
# --------------------------------------------------------------------------------------------


def _name_key(name: str) -> str:
    return re.sub(r"[\s_\-.:]+", "", name.strip().lower())


def _find_by_name(names: list[str], role: str) -> str | None:
    keys = {_name_key(n): n for n in reversed(names)}
    for candidate in ROLE_NAMES[role]:
        if candidate in keys:
            return keys[candidate]
    # "user_name" / "product_code" style names: a role word at the start or the end
    for n in names:
        key = _name_key(n)
        for candidate in ROLE_NAMES[role][:2]:
            if key.startswith(candidate) or key.endswith(candidate):
                return n
    return None


def _text_sample(column: pa.ChunkedArray, size: int = 2000) -> pd.Series:
    sample = column.slice(0, size)
    return _arrow_to_text(sample).to_pandas().dropna()


def _timestamp_like(sample: pd.Series, arrow_type: pa.DataType) -> bool:
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return True
    if sample.empty:
        return False
    numeric = pd.to_numeric(sample, errors="coerce")
    if numeric.notna().mean() >= 0.9:
        values = numeric.dropna().abs()
        # plausible epochs: seconds after 1990, milliseconds, microseconds
        return bool(((values >= 6.3e8) & (values < 1e17)).mean() >= 0.9 and values.nunique() > 1)
    text = sample.astype(str)
    if text.str.match(r"^\d{4}-\d{2}-\d{2}").mean() >= 0.9:
        return True
    parsed = pd.to_datetime(text.head(200), errors="coerce", format="mixed", utc=True)
    return bool(parsed.notna().mean() >= 0.9 and text.str.contains(r"\d").all())


def detect_roles(table: pa.Table, overrides: dict[str, str | None], name: str) -> dict[str, str | None]:
    """Map each role to a source column: explicit overrides, then names, then contents."""
    names = list(table.column_names)
    roles: dict[str, str | None] = dict.fromkeys(ROLES)
    used: set[str] = set()
    for role, column in overrides.items():
        if column is None:
            continue
        if column == "":
            if role in ("user", "item"):
                raise LogFormatError(name, f"the {role} column cannot be switched off",
                                     fix=f"name the {role} column with --{role}-col")
            used.add(f"<none:{role}>")
            roles[role] = ""
            continue
        if column not in names and column.isdigit() and 1 <= int(column) <= len(names):
            column = names[int(column) - 1]
        if column not in names:
            raise LogFormatError(
                name, f"there is no column named {column!r} for the {role}s", column=column,
                fix=f"choose one of: {', '.join(names)}",
            )
        roles[role] = column
        used.add(column)
    for role in ROLES:
        if roles[role] is None:
            found = _find_by_name([n for n in names if n not in used], role)
            if found is not None:
                roles[role] = found
                used.add(found)
    free = [n for n in names if n not in used]
    samples = {n: _text_sample(table.column(n)) for n in free}
    if roles["timestamp"] is None:
        for n in free:
            if _timestamp_like(samples[n], table.column(n).type):
                roles["timestamp"] = n
                used.add(n)
                break
    free = [n for n in names if n not in used]
    for role in ("user", "item"):
        if roles[role] is None:
            for n in free:
                if samples[n].nunique() > 1 or (role == "user" and len(samples[n]) > 0):
                    roles[role] = n
                    used.add(n)
                    free.remove(n)
                    break
    for n in list(free):
        sample = samples[n]
        if sample.empty:
            continue
        numeric = pd.to_numeric(sample.str.replace(",", ".", regex=False), errors="coerce")
        if roles["value"] is None and numeric.notna().mean() >= 0.95:
            roles["value"] = n
            free.remove(n)
        elif roles["event"] is None and numeric.notna().mean() < 0.5 and sample.nunique() <= 50:
            roles["event"] = n
            free.remove(n)
    for role in ("user", "item"):
        if not roles[role]:
            raise LogFormatError(
                name, f"no plausible {role} column was found among: {', '.join(names)}",
                fix=f"name it with --{role}-col (or {role}_col=...), or add a header line",
            )
    return {role: (col or None) for role, col in roles.items()}


# --------------------------------------------------------------------------------------------
# step 3: typed columns, missing values, duplicates
# --------------------------------------------------------------------------------------------


def _arrow_to_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Any arrow column -> trimmed strings, empty text as null; integral floats lose their '.0'."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_floating(kind):
        values = column.to_numpy()
        finite = values[~np.isnan(values)]
        if finite.size and np.all(finite == np.round(finite)) and np.abs(finite).max() < 2**53:
            column = pc.cast(column, pa.int64(), safe=False)
    if pa.types.is_large_string(kind):
        column = column.cast(pa.string())
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    column = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def _is_missing(column: pa.ChunkedArray) -> np.ndarray:
    """Null, or text that is empty once trimmed."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _arrow_to_text(column).is_null().to_numpy(zero_copy_only=False)
    return column.is_null().to_numpy(zero_copy_only=False)


def _id_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pd.Index]:
    """An id column -> (codes with -1 where missing, the ids as text).

    Integer ids are dictionary-encoded as integers and only the distinct values become text,
    which is much faster than turning every row into a string.
    """
    kind = column.type
    if pa.types.is_floating(kind):
        values = column.to_numpy()
        finite = values[~np.isnan(values)]
        if finite.size and np.all(finite == np.round(finite)) and np.abs(finite).max() < 2**53:
            column = pc.cast(column, pa.int64(), safe=False)
            kind = column.type
    if pa.types.is_integer(kind):
        dense = _dense_int_codes(column)
        if dense is not None:
            return dense
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        column = _arrow_to_text(column)
    encoded = pc.dictionary_encode(column).combine_chunks()
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    codes = indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    # Trim the distinct values only (not every row); values equal once trimmed merge, and
    # empty ones become missing.
    dictionary = _arrow_to_text(encoded.dictionary).to_numpy(zero_copy_only=False)
    merged, uniques = pd.factorize(dictionary, use_na_sentinel=True)
    if len(uniques) != len(dictionary) or (merged < 0).any():
        remap = np.append(merged, -1)  # codes of -1 (missing) stay -1
        codes = remap[codes]
    return codes, pd.Index(uniques, dtype=object)


def _dense_int_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pd.Index] | None:
    """Integer ids in a compact range: codes by offset from the smallest, no hashing.

    Returns None (use dictionary encoding) when ids are missing or spread much wider than the
    number of rows.
    """
    if column.null_count or len(column) == 0:
        return None
    values = column.to_numpy()
    low, high = int(values.min()), int(values.max())
    if high - low > 4 * values.size + 1024:
        return None
    codes = values.astype(np.int64) - low
    present = np.bincount(codes, minlength=high - low + 1) > 0
    remap = np.cumsum(present) - 1
    ids = np.flatnonzero(present) + low
    return remap[codes], pd.Index(ids.astype(str), dtype=object)


def _compact_categorical(codes: np.ndarray, categories: pd.Index) -> pd.Categorical:
    """A Categorical of `codes` keeping only the categories used (in their order)."""
    used = np.bincount(codes, minlength=len(categories)) > 0
    if not used.all():
        remap = np.cumsum(used) - 1
        codes = remap[codes]
        categories = categories[used]
    return pd.Categorical.from_codes(codes, categories=categories, validate=False)


def _numbers(column: pa.ChunkedArray, decimal: str = ".") -> np.ndarray:
    """A column -> float64 with NaN where missing or not a number."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    text = _arrow_to_text(column)
    if decimal == ",":
        text = pc.replace_substring(pc.replace_substring(text, ".", ""), ",", ".")
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(text.to_pandas(), errors="coerce").to_numpy(dtype=np.float64)


def _first_lines(mask: np.ndarray, lines: np.ndarray) -> list[int]:
    return [int(n) for n in lines[np.flatnonzero(mask)[:5]]]


_UNIT_SCALE = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}


def _parse_timestamps(
    column: pa.ChunkedArray, options: IngestOptions, col_name: str, warnings: list[str]
) -> tuple[np.ndarray, str]:
    """-> (epoch microseconds as float64 with NaN where missing/unparseable, description)."""
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        values = pc.cast(column, pa.timestamp("us", tz="UTC") if getattr(kind, "tz", None)
                         else pa.timestamp("us"))
        micros = pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
        micros[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
        zone = "" if getattr(kind, "tz", None) else " (times without a zone read as UTC)"
        return micros, "date-time" + zone
    present = ~_is_missing(column)
    numeric = _numbers(column)
    numeric_share = np.isfinite(numeric[present]).mean() if present.any() else 0.0
    if numeric_share >= 0.5:
        unit = options.timestamp_unit
        finite = np.abs(numeric[np.isfinite(numeric)])
        if unit == "auto":
            median = float(np.median(finite)) if finite.size else 0.0
            unit = "s" if median < 1e11 else "ms" if median < 1e14 else "us" if median < 1e17 else "ns"
            if median < 6.3e8:
                warnings.append(
                    f"timestamps in {col_name!r} are small numbers (median {median:,.0f}); read "
                    "as seconds since 1970 — their order is used, not their dates"
                )
        return numeric * _UNIT_SCALE[unit], f"epoch {unit}"
    series = _arrow_to_text(column).to_pandas()
    try:
        parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):
        parsed = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
    description = "ISO-8601"
    if parsed.notna().sum() < 0.5 * present.sum():
        parsed = pd.to_datetime(series, utc=True, format="mixed", errors="coerce")
        description = "date text"
    zoned = series[present].head(1000).str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
    if not zoned.all():
        description += " (times without a zone read as UTC)"
    micros = parsed.dt.tz_convert("UTC").to_numpy(dtype="datetime64[us]").astype(np.int64)
    micros = micros.astype(np.float64)
    micros[parsed.isna().to_numpy()] = np.nan
    return micros, description


# timestamps outside [1990-01-01, a year from now] are almost always a wrong unit or a
# placeholder (0, 9999-12-31): loaded, but said, with their lines
PLAUSIBLE_FROM_MICROS = 631_152_000 * 1_000_000  # 1990-01-01T00:00:00Z
PLAUSIBLE_AHEAD_MICROS = 366 * 86_400 * 1_000_000


def implausible_times(micros: np.ndarray, median: float | None = None,
                      now_micros: float | None = None) -> np.ndarray:
    """Mask of the parsed timestamps (epoch µs, NaN missing) before 1990 or more than a year
    ahead of `now_micros` (default: the clock). A log whose times are mostly small numbers
    (positions, not dates; warned as such when parsed) has none: `median` is the log's median
    time (default: that of `micros`; the store passes its first piece's)."""
    finite = np.isfinite(micros)
    if median is None:
        median = float(np.median(micros[finite])) if finite.any() else 0.0
    if not finite.any() or median < PLAUSIBLE_FROM_MICROS:
        return np.zeros(micros.shape, dtype=bool)
    now = now_micros if now_micros is not None else pd.Timestamp.now("UTC").value / 1000
    with np.errstate(invalid="ignore"):
        return finite & ((micros < PLAUSIBLE_FROM_MICROS) | (micros > now + PLAUSIBLE_AHEAD_MICROS))


def implausible_warning(column: str, count: int, lines: Iterable[int]) -> str:
    return (f"{count:,} timestamps in {column!r} are before 1990 or more than a year ahead (lines "
            f"{', '.join(map(str, lines))}): kept, but check the time column and its unit")


def _micros_to_datetime(micros: np.ndarray) -> pd.DatetimeIndex:
    """Epoch microseconds (float64, NaN = missing) -> tz-aware UTC datetimes, without parsing."""
    missing = np.isnan(micros)
    if missing.any():
        as_int = np.where(missing, np.iinfo(np.int64).min, micros).astype(np.int64)  # NaT
    else:
        as_int = micros.astype(np.int64)
    return pd.DatetimeIndex(as_int.view("datetime64[us]")).tz_localize("UTC")


def _duplicate_rows(columns: list[np.ndarray]) -> np.ndarray:
    """Rows equal in every column to an earlier row (the first occurrence is not marked).

    Columns are non-negative integer codes; they are packed into one int64 key while it fits and
    factorized otherwise, so a single hash pass finds the duplicates.
    """
    key = np.zeros(columns[0].shape[0], dtype=np.int64)
    key_max = 0
    for column in columns:
        column = column.astype(np.int64, copy=False)
        width = int(column.max()) + 1 if column.size else 1
        if (key_max + 1) * width >= 2**62:
            key, uniques = pd.factorize(key)
            key_max = max(len(uniques) - 1, 0)
        key = key * width + column
        key_max = (key_max + 1) * width - 1
    return pd.Series(key).duplicated(keep="first").to_numpy()


def _time_codes(micros: np.ndarray) -> np.ndarray:
    """Epoch microseconds -> small non-negative integers with the same equalities (NaN: its own).

    Times are shifted to start at 0 and divided by their coarsest common unit (a second, a
    millisecond), which keeps the codes small enough to pack with the ids; other times are
    factorized.
    """
    missing = np.isnan(micros)
    present = micros[~missing]
    if present.size == 0:
        return missing.astype(np.int64)
    start = present.min()
    shifted = np.where(missing, 0, micros - start).astype(np.int64)
    for unit in (1_000_000, 1_000, 1):
        if not (shifted % unit).any():
            codes = shifted // unit
            if codes.max() < 2**40:
                return np.where(missing, codes.max() + 1, codes)
            break
    return _factor(micros)


def stable_argsort_ids(values: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative integer codes: LSD radix passes over 16-bit digits.

    NumPy's stable sort is a radix sort for 16-bit integers, much faster than its merge sort on
    int64; two passes cover four billion codes.
    """
    values = np.asarray(values)
    high = int(values.max()) if values.size else 0
    if values.size and int(values.min()) >= 0 and high < 2**32:
        order = np.argsort((values & 0xFFFF).astype(np.uint16), kind="stable")
        if high >= 2**16:
            upper = (values >> 16).astype(np.uint16)
            order = order[np.argsort(upper[order], kind="stable")]
        return order
    return np.argsort(values, kind="stable")


def time_order(users: np.ndarray, times: np.ndarray | None) -> np.ndarray:
    """Rows sorted by user, then time, then file order (a stable sort)."""
    if users.size < 2 or bool((users[1:] >= users[:-1]).all()):
        step_in_time = True if times is None else (times[1:] >= times[:-1]) | (
            users[1:] != users[:-1])
        if bool(np.all(step_in_time)):
            return np.arange(users.size)  # grouped by user and in time order already
    if times is None or times.size < 2 or bool((times[1:] >= times[:-1]).all()):
        # no times, or rows already in time order (most exports): sorting by user is enough
        return stable_argsort_ids(users)
    by_time = np.argsort(times, kind="stable")
    return by_time[stable_argsort_ids(users[by_time])]


def _duplicates_in_order(order: np.ndarray, users: np.ndarray, times: np.ndarray | None,
                         columns_of: Any) -> np.ndarray:
    """Rows equal in every column to an earlier row of the file.

    Duplicates share a user and a time, so only rows in runs of equal (user, time) in `order`
    are compared; `columns_of(rows)` gives their columns as non-negative integer codes.
    """
    n = order.size
    dup = np.zeros(n, dtype=bool)
    if n < 2:
        return dup
    same = users[order[1:]] == users[order[:-1]]
    if times is not None:
        same &= times[order[1:]] == times[order[:-1]]
    if not same.any():
        return dup
    in_run = np.zeros(n, dtype=bool)
    in_run[1:] |= same
    in_run[:-1] |= same
    rows = np.sort(order[in_run])  # file order, so the first occurrence is kept
    dup[rows[_duplicate_rows(columns_of(rows))]] = True
    return dup


def _drop_from_order(order: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`order` over the rows where `keep` is true, renumbered to those rows."""
    new_position = np.cumsum(keep) - 1
    return new_position[order[keep[order]]]


def _factor(values: np.ndarray) -> np.ndarray:
    """Codes of any 1-D array (NaN gets a code of its own)."""
    codes, _ = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64, copy=False)


def _build_event_log(raw: _Raw, options: IngestOptions) -> tuple[EventLog, IngestReport]:
    name = raw.name
    table = raw.table
    report = IngestReport(source=name, format=raw.format, warnings=list(raw.warnings),
                          details=dict(raw.details))
    report.rows_read = table.num_rows + raw.malformed
    report.rows_kept = report.rows_read
    if raw.malformed:
        report.drop("malformed", raw.malformed, raw.malformed_lines)
    overrides = options.role_overrides()
    if raw.ordered_by_position and overrides["timestamp"] is None:
        overrides["timestamp"] = ""
    roles = detect_roles(table, overrides, name)
    report.columns = dict(roles)
    report.source_columns = list(table.column_names)
    lines = raw.lines
    n = table.num_rows

    user_codes, user_ids = _id_codes(table.column(roles["user"]))  # type: ignore[arg-type]
    item_codes, item_ids = _id_codes(table.column(roles["item"]))  # type: ignore[arg-type]
    keep = np.ones(n, dtype=bool)
    missing_user = user_codes < 0
    missing_item = (item_codes < 0) & ~missing_user
    for reason, mask in (("missing_user", missing_user), ("missing_item", missing_item)):
        if mask.any():
            report.drop(reason, int(mask.sum()), _first_lines(mask, lines))
            keep &= ~mask
    if report.rows_kept == 0:
        raise LogFormatError(
            name, "no row has both a user and an item",
            column=f"{roles['user']} / {roles['item']}",
            lines=_first_lines(missing_user | missing_item, lines),
            fix="check that the right columns are mapped to user and item",
        )

    # timestamps
    micros: np.ndarray | None = None
    if roles["timestamp"]:
        col = roles["timestamp"]
        micros, unit = _parse_timestamps(table.column(col), options, col, raw.warnings)
        report.details["timestamp"] = unit
        odd = implausible_times(micros) & keep
        if odd.any():
            report.warnings.append(implausible_warning(col, int(odd.sum()), _first_lines(odd, lines)))
        source_present = ~_is_missing(table.column(col))
        bad = source_present & np.isnan(micros) & keep
        considered = int((source_present & keep).sum())
        if considered and bad.sum() > options.max_bad_timestamp_share * considered:
            raise LogFormatError(
                name,
                f"{int(bad.sum()):,} of {considered:,} timestamps cannot be read as dates or epoch "
                "numbers",
                column=col, lines=_first_lines(bad, lines),
                fix="use ISO-8601 text (2024-05-01T12:00:00Z) or epoch seconds/milliseconds, "
                "or map the timestamp to no column (--timestamp-col '') to use file order",
            )
        if bad.any():
            report.warnings.append(
                f"{int(bad.sum()):,} timestamps in {col!r} could not be read (lines "
                f"{', '.join(map(str, _first_lines(bad, lines)))}); treated as missing"
            )
        missing_ts = np.isnan(micros) & keep
        if missing_ts.any():
            micros, dropped_ts = _handle_missing_timestamps(
                micros, missing_ts, keep, user_codes, lines, options, report
            )
            keep &= ~dropped_ts

    # event types
    event_codes: np.ndarray | None = None
    event_ids = pd.Index([options.missing_event], dtype=object)
    if roles["event"]:
        event_codes, event_ids = _id_codes(table.column(roles["event"]))
        missing_event = (event_codes < 0) & keep
        if missing_event.any():
            report.filled["event"] = int(missing_event.sum())
            report.warnings.append(
                f"{int(missing_event.sum()):,} rows have no event type (lines "
                f"{', '.join(map(str, _first_lines(missing_event, lines)))}); labelled "
                f"{options.missing_event!r}"
            )
            position = event_ids.get_indexer([options.missing_event])[0]
            if position < 0:
                event_ids = event_ids.append(pd.Index([options.missing_event], dtype=object))
                position = len(event_ids) - 1
            event_codes = np.where(event_codes < 0, position, event_codes)

    # values
    values: np.ndarray | None = None
    if roles["value"]:
        col = roles["value"]
        source_present = ~_is_missing(table.column(col))
        decimal = "," if raw.details.get("decimal") == "comma" else "."
        values = _numbers(table.column(col), decimal)
        bad = source_present & np.isnan(values) & keep
        if bad.any():
            report.warnings.append(
                f"{int(bad.sum()):,} values in {col!r} are not numbers (lines "
                f"{', '.join(map(str, _first_lines(bad, lines)))}); treated as missing"
            )
        missing_value = np.isnan(values) & keep
        if not (keep & ~np.isnan(values)).any():
            raise LogFormatError(name, "no value in the value column is a number", column=col,
                                 lines=_first_lines(bad, lines),
                                 fix="map the value to no column (--value-col '') or fix the column")
        if missing_value.any():
            if options.missing_value == "drop":
                report.drop("missing_value", int(missing_value.sum()),
                            _first_lines(missing_value, lines))
                keep &= ~missing_value
            else:
                kept_values = values[keep & ~np.isnan(values)]
                fill = float(np.median(kept_values) if options.missing_value == "median"
                             else kept_values.mean())
                values = np.where(missing_value, fill, values)
                report.filled["value"] = int(missing_value.sum())
                report.warnings.append(
                    f"{int(missing_value.sum()):,} rows have no value; filled with the "
                    f"{options.missing_value} ({fill:g})"
                )

    if report.rows_kept == 0:
        raise LogFormatError(name, "every row was dropped: " + ", ".join(
            f"{k} {v:,}" for k, v in report.dropped.items()),
            fix="check the column mapping and the missing-value options")

    index: np.ndarray | slice = slice(None) if keep.all() else np.flatnonzero(keep)
    kept_users, kept_items = user_codes[index], item_codes[index]  # views when nothing dropped
    kept_lines = lines[index]
    n_kept = kept_users.shape[0]
    kept_events = event_codes[index] if event_codes is not None else np.zeros(n_kept, np.int64)
    kept_micros = micros[index] if micros is not None else None
    kept_values = values[index] if values is not None else None

    sort_key = None
    if kept_micros is not None:
        sort_key = kept_micros
        if np.isnan(sort_key).any():  # file-order rows sort right after the previous event
            sort_key = np.nan_to_num(fill_within_users(sort_key, kept_users), nan=0.0)
    order = time_order(kept_users, sort_key)

    if options.drop_duplicates and not raw.ordered_by_position:
        dup = _duplicates_in_order(order, kept_users, sort_key, lambda rows: [
            kept_users[rows], kept_items[rows], kept_events[rows],
            *([_time_codes(kept_micros[rows])] if kept_micros is not None else []),
            *([_factor(kept_values[rows])] if kept_values is not None else []),
        ])
        if dup.any():
            order = _drop_from_order(order, ~dup)
            report.drop("duplicate", int(dup.sum()), kept_lines[dup][:5])
            unique = ~dup
            kept_lines = kept_lines[unique]
            kept_users, kept_items, kept_events = (kept_users[unique], kept_items[unique],
                                                   kept_events[unique])
            kept_micros = kept_micros[unique] if kept_micros is not None else None
            kept_values = kept_values[unique] if kept_values is not None else None
            note = "" if micros is not None else (
                " (the log has no timestamps, so repeated events by the same user on the same "
                "item count as duplicates; pass --keep-duplicates to keep them)")
            report.warnings.append(f"{int(dup.sum()):,} exact duplicate rows were removed{note}")

    n_kept = kept_users.shape[0]
    frame = pd.DataFrame({
        "user": _compact_categorical(kept_users, user_ids),
        "item": _compact_categorical(kept_items, item_ids),
        "timestamp": (_micros_to_datetime(kept_micros) if kept_micros is not None
                      else _micros_to_datetime(np.full(n_kept, np.nan))),
        "event": _compact_categorical(kept_events, event_ids),
        "value": kept_values if kept_values is not None else np.full(n_kept, np.nan),
        "line": kept_lines,
    }, copy=False)

    n_items = int(frame["item"].cat.categories.size)
    if n_items < 2:
        only = str(frame["item"].cat.categories[0]) if n_items else "?"
        raise LogFormatError(
            name, f"the log has only one item ({only!r}); there is nothing to recommend",
            column=roles["item"], lines=frame["line"].to_numpy()[:5],
            fix="check that the item column is mapped right (--item-col), or use a fuller log",
        )
    if not report.balanced:  # an internal invariant: a bug here, never the user's input
        raise RuntimeError(f"ingest accounting is broken: {report.to_dict()}")
    log = EventLog(
        frame=frame,
        source=name,
        has_timestamp=micros is not None,
        has_event=event_codes is not None,
        has_value=values is not None,
        time_order=order,
    )
    return log, report


def _handle_missing_timestamps(
    micros: np.ndarray,
    missing: np.ndarray,
    keep: np.ndarray,
    user_codes: np.ndarray,
    lines: np.ndarray,
    options: IngestOptions,
    report: IngestReport,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the missing-timestamp policy -> (timestamps, rows to drop)."""
    count = int(missing.sum())
    policy = options.missing_timestamp
    if policy == "drop":
        report.drop("missing_timestamp", count, _first_lines(missing, lines))
        return micros, missing
    if policy == "file-order":
        # The row keeps no timestamp; sequences place it after the user's previous event.
        report.filled["timestamp_file_order"] = count
        report.warnings.append(
            f"{count:,} rows have no timestamp (lines "
            f"{', '.join(map(str, _first_lines(missing, lines)))}); kept in file order, right "
            "after the user's previous event"
        )
        return micros, np.zeros_like(missing)
    filled = fill_within_users(np.where(keep, micros, np.nan), user_codes)
    still = missing & np.isnan(filled)
    n_filled = count - int(still.sum())
    if n_filled:
        report.filled["timestamp"] = n_filled
        report.warnings.append(
            f"{n_filled:,} rows have no timestamp (lines "
            f"{', '.join(map(str, _first_lines(missing & ~still, lines)))}); given the timestamp "
            "of the user's previous event (or the next one for a first event)"
        )
    if still.any():
        report.drop("missing_timestamp", int(still.sum()), _first_lines(still, lines))
        report.warnings.append(
            f"{int(still.sum()):,} rows belong to users without any timestamp; dropped"
        )
    return np.where(missing, filled, micros), still


def fill_within_users(values: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Fill NaN from the same user's previous value in file order, else the next one."""
    series = pd.Series(values)
    groups = series.groupby(users)
    filled = groups.ffill()
    return filled.fillna(filled.groupby(users).bfill()).to_numpy()


def keep_positive(log: EventLog, min_value: float, report: IngestReport | None = None) -> EventLog:
    """Only the events whose value (rating) is at least `min_value`: explicit ratings turned into
    positives (e.g. MovieLens ratings >= 4). Rows dropped are recorded in `report` as
    ``below_min_rating``.

    Raises:
        LogFormatError: the log has no value column, or no event reaches `min_value`.
    """
    from seqvae.errors import LogFormatError

    if not log.has_value:
        raise LogFormatError(log.source, "--min-rating needs a value (rating) column and none "
                             "was found", fix="name it with --value COLUMN")
    values = log.frame["value"].to_numpy()
    keep = values >= min_value
    if not keep.any():
        raise LogFormatError(log.source, f"no event has a value of at least {min_value:g} "
                             f"(values range from {np.nanmin(values):g} to {np.nanmax(values):g})",
                             fix="lower --min-rating")
    if keep.all():
        return log
    if report is not None:
        report.drop("below_min_rating", int((~keep).sum()),
                    log.frame["line"].to_numpy()[~keep][:5])
    frame = log.frame.loc[keep].reset_index(drop=True)
    for column in ("user", "item", "event"):
        frame[column] = frame[column].cat.remove_unused_categories()
    order = None if log.time_order is None else _drop_from_order(log.time_order, keep)
    return EventLog(frame=frame, source=log.source, has_timestamp=log.has_timestamp,
                    has_event=log.has_event, has_value=log.has_value, time_order=order)
