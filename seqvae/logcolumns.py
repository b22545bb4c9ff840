"""The columns of a raw table: which column plays which role (by name, then by content), and
each column parsed to arrays — ids to codes, numbers (decimal commas too), timestamps to
microseconds with their unit found, and the check that times are plausible.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from seqvae.errors import LogFormatError
from seqvae.logtypes import ROLE_NAMES, ROLES, IngestOptions, name_key


def find_by_name(names: list[str], role: str) -> str | None:
    keys = {name_key(n): n for n in reversed(names)}
    for candidate in ROLE_NAMES[role]:
        if candidate in keys:
            return keys[candidate]
    # "user_name" / "product_code" style names: a role word at the start or the end
    for n in names:
        key = name_key(n)
        for candidate in ROLE_NAMES[role][:2]:
            if key.startswith(candidate) or key.endswith(candidate):
                return n
    return None


def _text_sample(column: pa.ChunkedArray, size: int = 2000) -> pd.Series:
    sample = column.slice(0, size)
    return arrow_to_text(sample).to_pandas().dropna()


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
            found = find_by_name([n for n in names if n not in used], role)
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


def arrow_to_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Any arrow column -> trimmed strings, empty text as null; integral floats lose their '.0'."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_floating(kind):
        column = _integral_as_int(column)
    if pa.types.is_large_string(kind):
        column = column.cast(pa.string())
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    column = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)


def _integral_as_int(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A float column whose values are all whole (ids written as 3.0) as int64; else unchanged."""
    values = column.to_numpy()
    finite = values[~np.isnan(values)]
    if finite.size and np.all(finite == np.round(finite)) and np.abs(finite).max() < 2**53:
        return pc.cast(column, pa.int64(), safe=False)
    return column


def is_missing(column: pa.ChunkedArray) -> np.ndarray:
    """Null, or text that is empty once trimmed."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return arrow_to_text(column).is_null().to_numpy(zero_copy_only=False)
    return column.is_null().to_numpy(zero_copy_only=False)


def id_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pd.Index]:
    """An id column -> (codes with -1 where missing, the ids as text).

    Integer ids are dictionary-encoded as integers and only the distinct values become text,
    which is much faster than turning every row into a string.
    """
    kind = column.type
    if pa.types.is_floating(kind):
        column = _integral_as_int(column)
        kind = column.type
    if pa.types.is_integer(kind):
        dense = _dense_int_codes(column)
        if dense is not None:
            return dense
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        column = arrow_to_text(column)
    encoded = pc.dictionary_encode(column).combine_chunks()
    indices = encoded.indices
    if indices.null_count:
        indices = pc.fill_null(indices, -1)
    codes = indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    # Trim the distinct values only (not every row); values equal once trimmed merge, and
    # empty ones become missing.
    dictionary = arrow_to_text(encoded.dictionary).to_numpy(zero_copy_only=False)
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


def compact_categorical(codes: np.ndarray, categories: pd.Index) -> pd.Categorical:
    """A Categorical of `codes` keeping only the categories used (in their order)."""
    used = np.bincount(codes, minlength=len(categories)) > 0
    if not used.all():
        remap = np.cumsum(used) - 1
        codes = remap[codes]
        categories = categories[used]
    return pd.Categorical.from_codes(codes, categories=categories, validate=False)


def parse_numbers(column: pa.ChunkedArray, decimal: str = ".") -> np.ndarray:
    """A column -> float64 with NaN where missing or not a number."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    text = arrow_to_text(column)
    if decimal == ",":
        text = pc.replace_substring(pc.replace_substring(text, ".", ""), ",", ".")
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(text.to_pandas(), errors="coerce").to_numpy(dtype=np.float64)


_UNIT_SCALE = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}


def parse_timestamps(
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
    present = ~is_missing(column)
    numeric = parse_numbers(column)
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
    series = arrow_to_text(column).to_pandas()
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


def micros_to_datetime(micros: np.ndarray) -> pd.DatetimeIndex:
    """Epoch microseconds (float64, NaN = missing) -> tz-aware UTC datetimes, without parsing."""
    missing = np.isnan(micros)
    if missing.any():
        as_int = np.where(missing, np.iinfo(np.int64).min, micros).astype(np.int64)  # NaT
    else:
        as_int = micros.astype(np.int64)
    return pd.DatetimeIndex(as_int.view("datetime64[us]")).tz_localize("UTC")
