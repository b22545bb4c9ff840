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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from seqvae.errors import LogFormatError
from seqvae.logcolumns import (
    arrow_to_text,
    compact_categorical,
    detect_roles,
    find_by_name,
    id_codes,
    implausible_times,
    is_missing,
    micros_to_datetime,
    parse_numbers,
    parse_timestamps,
)
from seqvae.logformats import RawTable, load_raw, looks_numeric
from seqvae.logrules import (
    Findings,
    drop_from_order,
    drop_missing_ids,
    duplicate_note,
    duplicates_in_order,
    factorise,
    fill_within_users,
    first_lines,
    handle_missing_timestamps,
    refuse_no_numbers,
    refuse_unreadable_timestamps,
    time_codes,
    time_order,
)
from seqvae.logtypes import (
    DROP_REASONS,
    NULL_TEXTS,
    ROLES,
    SIDE_NULL_TEXTS,
    IngestOptions,
    IngestReport,
    Source,
    name_key,
)

# the reader's public face; the rules behind it live in `logformats` (bytes to a raw table),
# `logcolumns` (roles and parsed columns), `logrules` (row policies) and `logtypes`
__all__ = ["DROP_REASONS", "NULL_TEXTS", "ROLES", "EventLog", "IngestOptions", "IngestReport",
           "Source", "detect_roles", "keep_positive", "key_column", "preview_table", "read_log",
           "read_metadata"]


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
    raw = load_raw(source, options, name)
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
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a side table keyed by item (titles, categories) or by user (attributes, segments).

    Read as logs are: format, encoding and delimiter sniffed, and the header detected from the
    first rows unless `header` says (MovieLens' ``u.item`` and ``u.user`` have none: their
    columns become ``column_1``, ``column_2``, …). The key column is found from its name (as for
    logs), else it is the first column, or it is given as `key_col`; it becomes the index, as
    text, first row kept for a repeated key. For items, the ``title`` column is `title_col`, or
    a column named like a title, or the text column whose values are nearly all distinct names
    (not numbers, dates or links); it is renamed ``title``. `names` names the columns (of a file
    without a header, or in place of its header), as for logs.

    Raises:
        LogFormatError: the table cannot be read, has no key column, or a named column is missing.
    """
    raw = load_raw(source, _side_options(sep, header, names), name)
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
    frame[col] = arrow_to_text(table.column(col)).to_pandas()
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
    return find_by_name(names, key) or names[0]


def preview_table(source: Source, *, header: bool | None = None, name: str | None = None,
                  sep: str | None = None, rows: int = 5,
                  names: Sequence[str] | None = None) -> pd.DataFrame:
    """The first `rows` rows of a side table as it would be read (every column, as text), to
    choose its header, key and title columns from."""
    raw = load_raw(source, _side_options(sep, header, names), name)
    return raw.table.slice(0, rows).to_pandas().astype("string")


def _side_options(sep: str | None, header: bool | None,
                  names: Sequence[str] | None) -> IngestOptions:
    cleaned = tuple(n.strip() for n in names) if names else None
    return IngestOptions(sep=sep, header=header, names=cleaned or None,
                         null_texts=SIDE_NULL_TEXTS)


_TITLE_NAMES = ("title", "name", "itemname", "productname", "movietitle", "itemtitle", "label")


def _title_column(frame: pd.DataFrame) -> str | None:
    """The column of an item table that holds the items' names, if one does."""
    by_name = {name_key(str(c)): c for c in frame.columns}
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
        texts = values[~values.map(looks_numeric) & ~values.str.match(r"(?i)https?://|www\.")
                       & ~values.str.fullmatch(r"[\d\s/.:-]+[A-Za-z]{0,3}[\d\s/.:-]*")]
        share = len(texts) / len(values)
        distinct = texts.nunique() / max(len(values), 1)
        if share >= 0.9 and distinct > best_share and texts.str.len().median() >= 4:
            best, best_share = str(column), distinct
    return best


def _build_event_log(raw: RawTable, options: IngestOptions) -> tuple[EventLog, IngestReport]:
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

    user_codes, user_ids = id_codes(table.column(roles["user"]))  # type: ignore[arg-type]
    item_codes, item_ids = id_codes(table.column(roles["item"]))  # type: ignore[arg-type]
    keep = drop_missing_ids(user_codes, item_codes, lines, report)
    if report.rows_kept == 0:
        raise LogFormatError(
            name, "no row has both a user and an item",
            column=f"{roles['user']} / {roles['item']}",
            lines=first_lines(~keep, lines),
            fix="check that the right columns are mapped to user and item",
        )

    # timestamps
    findings = Findings()
    micros: np.ndarray | None = None
    if roles["timestamp"]:
        col = roles["timestamp"]
        micros, unit = parse_timestamps(table.column(col), options, col, raw.warnings)
        report.details["timestamp"] = unit
        findings.note("implausible_timestamp", implausible_times(micros) & keep, lines, column=col)
        source_present = ~is_missing(table.column(col))
        bad = source_present & np.isnan(micros) & keep
        refuse_unreadable_timestamps(name, col, int(bad.sum()), int((source_present & keep).sum()),
                                     first_lines(bad, lines), options)
        findings.note("bad_timestamp", bad, lines, column=col)
        missing_ts = np.isnan(micros) & keep
        if missing_ts.any() and options.missing_timestamp == "drop":  # a row rule
            report.drop("missing_timestamp", int(missing_ts.sum()), first_lines(missing_ts, lines))
            keep &= ~missing_ts

    # event types
    event_codes: np.ndarray | None = None
    event_ids = pd.Index([options.missing_event], dtype=object)
    if roles["event"]:
        event_codes, event_ids = id_codes(table.column(roles["event"]))
        missing_event = (event_codes < 0) & keep
        if findings.note("missing_event", missing_event, lines, label=options.missing_event):
            report.filled["event"] = int(missing_event.sum())
            position = event_ids.get_indexer([options.missing_event])[0]
            if position < 0:
                event_ids = event_ids.append(pd.Index([options.missing_event], dtype=object))
                position = len(event_ids) - 1
            event_codes = np.where(event_codes < 0, position, event_codes)

    # values
    values: np.ndarray | None = None
    if roles["value"]:
        col = roles["value"]
        source_present = ~is_missing(table.column(col))
        decimal = "," if raw.details.get("decimal") == "comma" else "."
        values = parse_numbers(table.column(col), decimal)
        bad = source_present & np.isnan(values) & keep
        findings.note("bad_value", bad, lines, column=col)
        missing_value = np.isnan(values) & keep
        if not (keep & ~np.isnan(values)).any():
            refuse_no_numbers(name, col, first_lines(bad, lines))
        if missing_value.any():
            if options.missing_value == "drop":
                report.drop("missing_value", int(missing_value.sum()),
                            first_lines(missing_value, lines))
                keep &= ~missing_value
            else:
                findings.see_values(values[keep])
                fill = findings.value_fill(options.missing_value)
                values = np.where(missing_value, fill, values)
                report.filled["value"] = findings.note(
                    "value_filled", missing_value, lines, policy=options.missing_value, fill=fill)
    # the other policies look at each user's other rows: applied once the row rules have run
    # (as the store applies them to its blocks of whole users)
    if micros is not None and options.missing_timestamp != "drop":
        missing_ts = np.isnan(micros) & keep
        if missing_ts.any():
            micros, no_time = handle_missing_timestamps(
                micros, missing_ts, keep, user_codes, lines, options, report, findings)
            keep &= ~no_time

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
        dup = duplicates_in_order(order, kept_users, sort_key, lambda rows: [
            kept_users[rows], kept_items[rows], kept_events[rows],
            *([time_codes(kept_micros[rows])] if kept_micros is not None else []),
            *([factorise(kept_values[rows])] if kept_values is not None else []),
        ])
        if dup.any():
            order = drop_from_order(order, ~dup)
            report.drop("duplicate", findings.note("duplicate", dup, kept_lines,
                                                   note=duplicate_note(micros is not None)),
                        first_lines(dup, kept_lines))
            unique = ~dup
            kept_lines = kept_lines[unique]
            kept_users, kept_items, kept_events = (kept_users[unique], kept_items[unique],
                                                   kept_events[unique])
            kept_micros = kept_micros[unique] if kept_micros is not None else None
            kept_values = kept_values[unique] if kept_values is not None else None
    findings.write(report)

    n_kept = kept_users.shape[0]
    frame = pd.DataFrame({
        "user": compact_categorical(kept_users, user_ids),
        "item": compact_categorical(kept_items, item_ids),
        "timestamp": (micros_to_datetime(kept_micros) if kept_micros is not None
                      else micros_to_datetime(np.full(n_kept, np.nan))),
        "event": compact_categorical(kept_events, event_ids),
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
                    first_lines(~keep, log.frame["line"].to_numpy()))
    frame = log.frame.loc[keep].reset_index(drop=True)
    for column in ("user", "item", "event"):
        frame[column] = frame[column].cat.remove_unused_categories()
    order = None if log.time_order is None else drop_from_order(log.time_order, keep)
    return EventLog(frame=frame, source=log.source, has_timestamp=log.has_timestamp,
                    has_event=log.has_event, has_value=log.has_value, time_order=order)
