"""What reading a log takes and gives: the options (`IngestOptions`), the account of every
input row (`IngestReport`), the column roles and their names, the text read as missing.

Shared by the in-memory reader (`seqvae.logs.read_log`) and the streamed one
(`seqvae.ondisk.build_store`), so both take the same options and fill in the same report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal, TypeAlias

import pandas as pd

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
#: The same for side tables, where "none" is as likely a category as a gap (MovieLens' u.user
#: has the occupation "none").
SIDE_NULL_TEXTS = tuple(t for t in NULL_TEXTS if t.lower() != "none")


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
    # Cells of delimited text read as missing
    null_texts: tuple[str, ...] = NULL_TEXTS

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


def _normalise_sep(sep: str) -> str:
    aliases = {"\\t": "\t", "tab": "\t", "tsv": "\t", "space": " ", "comma": ",",
               "semicolon": ";", "pipe": "|"}
    return aliases.get(sep.lower(), sep) if len(sep) > 1 else sep


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
        # the five smallest lines seen, whatever order the rows come in (file order in memory,
        # blocks of users in the store): both readers report the same lines
        kept = self.dropped_lines.get(reason, [])
        self.dropped_lines[reason] = sorted({*kept, *(int(n) for n in lines)})[:5]

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


Source: TypeAlias = "str | os.PathLike[str] | bytes | IO[bytes] | pd.DataFrame"


def name_key(name: str) -> str:
    return re.sub(r"[\s_\-.:]+", "", name.strip().lower())
