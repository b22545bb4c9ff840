"""The row rules over column arrays, shared by both readers: time order within users,
duplicates, rows dropped from an order, missing timestamps (a policy), values filled within a
user. Pure functions of arrays and the report.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from seqvae.logtypes import IngestOptions, IngestReport


def first_lines(mask: np.ndarray, lines: np.ndarray) -> list[int]:
    return [int(n) for n in lines[np.flatnonzero(mask)[:5]]]


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
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the missing-timestamp policy -> (timestamps, rows to drop)."""
    count = int(missing.sum())
    policy = options.missing_timestamp
    if policy == "drop":
        report.drop("missing_timestamp", count, first_lines(missing, lines))
        return micros, missing
    if policy == "file-order":
        # The row keeps no timestamp; sequences place it after the user's previous event.
        report.filled["timestamp_file_order"] = count
        report.warnings.append(
            f"{count:,} rows have no timestamp (lines "
            f"{', '.join(map(str, first_lines(missing, lines)))}); kept in file order, right "
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
            f"{', '.join(map(str, first_lines(missing & ~still, lines)))}); given the timestamp "
            "of the user's previous event (or the next one for a first event)"
        )
    if still.any():
        report.drop("missing_timestamp", int(still.sum()), first_lines(still, lines))
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
