"""The row rules over column arrays, shared by both readers: time order within users,
duplicates, rows dropped from an order, missing timestamps (a policy), values filled within a
user. Pure functions of arrays and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from seqvae.errors import LogFormatError
from seqvae.logtypes import IngestOptions, IngestReport


def first_lines(mask: np.ndarray, lines: np.ndarray, n: int = 5) -> list[int]:
    """The `n` smallest source lines of the rows in `mask` (rows need not be in file order)."""
    chosen = lines[mask]
    if chosen.size > n:
        chosen = np.partition(chosen, n - 1)[:n]
    return [int(x) for x in np.sort(chosen)]


#: The warning of each finding about rows, in the order a report lists them; {n}: how many rows,
#: {lines}: the first five source lines, other fields as noted.
FINDINGS = {
    "implausible_timestamp": "{n} timestamps in {column!r} are before 1990 or more than a year "
                             "ahead (lines {lines}): kept, but check the time column and its unit",
    "bad_timestamp": "{n} timestamps in {column!r} could not be read (lines {lines}); treated as "
                     "missing",
    "timestamp_filled": "{n} rows have no timestamp (lines {lines}); given the timestamp of the "
                        "user's previous event (or the next one for a first event)",
    "timestamp_file_order": "{n} rows have no timestamp (lines {lines}); kept in file order, right "
                            "after the user's previous event",
    "user_without_time": "{n} rows belong to users without any timestamp (lines {lines}); dropped",
    "missing_event": "{n} rows have no event type (lines {lines}); labelled {label!r}",
    "bad_value": "{n} values in {column!r} are not numbers (lines {lines}); treated as missing",
    "value_filled": "{n} rows have no value (lines {lines}); filled with the {policy} ({fill:g})",
    "duplicate": "{n} exact duplicate rows were removed (lines {lines}){note}",
}


@dataclass
class Findings:
    """What the row rules found, over one chunk (`read_log`) or many (`build_store`): a count and
    the five smallest lines per finding, and the distinct values seen (for the value fill).
    `write` turns them into the report's warnings, in one order and one wording for both
    readers."""

    counts: dict[str, int] = field(default_factory=dict)
    lines: dict[str, list[int]] = field(default_factory=dict)
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    value_counts: pd.Series | None = None

    def note(self, kind: str, mask: np.ndarray, lines: np.ndarray, **fields: Any) -> int:
        """Count the rows of `mask` under `kind`; returns how many."""
        count = int(mask.sum())
        if count:
            self.counts[kind] = self.counts.get(kind, 0) + count
            self.lines[kind] = sorted({*self.lines.get(kind, []), *first_lines(mask, lines)})[:5]
            self.fields.setdefault(kind, {}).update(fields)
        return count

    def see_values(self, values: np.ndarray) -> None:
        """Add numbers to those the missing-value fill is computed from."""
        distinct, counts = np.unique(values[~np.isnan(values)], return_counts=True)
        seen = pd.Series(counts, index=distinct)
        self.value_counts = seen if self.value_counts is None else self.value_counts.add(
            seen, fill_value=0)

    def value_fill(self, policy: str) -> float:
        """The median or mean of every value seen: exact, from the counts of distinct values."""
        counts = self.value_counts
        if counts is None or counts.empty:
            return float("nan")
        counts = counts.sort_index()
        if policy == "mean":
            return float((counts.index.to_numpy() * counts.to_numpy()).sum() / counts.sum())
        cumulative = counts.cumsum().to_numpy()
        total = cumulative[-1]
        low = counts.index[np.searchsorted(cumulative, (total + 1) // 2)]
        high = counts.index[np.searchsorted(cumulative, total // 2 + 1)]
        return float((low + high) / 2)

    def write(self, report: IngestReport) -> None:
        for kind, template in FINDINGS.items():
            if kind in self.counts:
                report.warnings.append(template.format(
                    n=f"{self.counts[kind]:,}", lines=", ".join(map(str, self.lines[kind])),
                    **self.fields[kind]))


def drop_missing_ids(users: np.ndarray, items: np.ndarray, lines: np.ndarray,
                     report: IngestReport) -> np.ndarray:
    """The first rule: a row without a user or an item id (codes < 0) is dropped -> rows kept."""
    missing_user = users < 0
    missing_item = (items < 0) & ~missing_user
    for reason, mask in (("missing_user", missing_user), ("missing_item", missing_item)):
        report.drop(reason, int(mask.sum()), first_lines(mask, lines))
    return ~(missing_user | missing_item)


def duplicate_note(has_timestamps: bool) -> str:
    """Without timestamps, a repeated event is indistinguishable from a duplicate row: say so."""
    return "" if has_timestamps else (
        " (the log has no timestamps, so repeated events by the same user on the same item "
        "count as duplicates; to keep them: --keep-duplicates, or in the dashboard untick "
        "'remove exact duplicate rows')")


def refuse_unreadable_timestamps(name: str, column: str | None, bad: int, considered: int,
                                 lines: list[int], options: IngestOptions) -> None:
    """Too many timestamps that parse as nothing: the column is not a time column."""
    if considered and bad > options.max_bad_timestamp_share * considered:
        raise LogFormatError(
            name, f"{bad:,} of {considered:,} timestamps cannot be read as dates or epoch numbers",
            column=column, lines=lines,
            fix="use ISO-8601 text (2024-05-01T12:00:00Z) or epoch seconds/milliseconds, or map "
            "the timestamp to no column (--timestamp-col '') to use file order")


def refuse_no_numbers(name: str, column: str | None, lines: list[int]) -> None:
    raise LogFormatError(name, "no value in the value column is a number", column=column,
                         lines=lines,
                         fix="map the value to no column (--value-col '') or fix the column")


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


def time_codes(micros: np.ndarray) -> np.ndarray:
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
    return factorise(micros)


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


def duplicates_in_order(order: np.ndarray, users: np.ndarray, times: np.ndarray | None,
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


def drop_from_order(order: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """`order` over the rows where `keep` is true, renumbered to those rows."""
    new_position = np.cumsum(keep) - 1
    return new_position[order[keep[order]]]


def factorise(values: np.ndarray) -> np.ndarray:
    """Codes of any 1-D array (NaN gets a code of its own)."""
    codes, _ = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64, copy=False)


def handle_missing_timestamps(
    micros: np.ndarray,
    missing: np.ndarray,
    keep: np.ndarray,
    user_codes: np.ndarray,
    lines: np.ndarray,
    options: IngestOptions,
    report: IngestReport,
    findings: Findings,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the missing-timestamp policy to one user-complete set of rows -> (timestamps, rows
    to drop). "previous" drops the rows of users with no timestamp at all."""
    policy = options.missing_timestamp
    if policy == "drop":
        report.drop("missing_timestamp", int(missing.sum()), first_lines(missing, lines))
        return micros, missing
    if policy == "file-order":
        # The row keeps no timestamp; sequences place it after the user's previous event.
        report.filled["timestamp_file_order"] = (report.filled.get("timestamp_file_order", 0)
                                                 + findings.note("timestamp_file_order",
                                                                 missing, lines))
        return micros, np.zeros_like(missing)
    filled = fill_within_users(np.where(keep, micros, np.nan), user_codes)
    still = missing & np.isnan(filled)
    n_filled = findings.note("timestamp_filled", missing & ~still, lines)
    if n_filled:
        report.filled["timestamp"] = report.filled.get("timestamp", 0) + n_filled
    if findings.note("user_without_time", still, lines):
        report.drop("missing_timestamp", int(still.sum()), first_lines(still, lines))
    return np.where(missing, filled, micros), still


def fill_within_users(values: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Fill NaN from the same user's previous value in file order, else the next one."""
    series = pd.Series(values)
    groups = series.groupby(users)
    filled = groups.ffill()
    return filled.fillna(filled.groupby(users).bfill()).to_numpy()
