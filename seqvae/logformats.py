"""Bytes to a raw Arrow table with a source line per row: the format (delimited text, Parquet,
JSON lines, one sequence per line), the encoding, the delimiter, the header, decimal commas,
Excel's ``sep=`` line; markup and prose are refused.

Nothing here knows the column roles; `seqvae.logcolumns` reads the columns, `seqvae.logrules`
applies the row policies.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seqvae.errors import LogFormatError
from seqvae.logtypes import NULL_TEXTS, ROLE_NAMES, IngestOptions, Source, name_key

SNIFF_BYTES = 256 * 1024


_SNIFF_LINES = 400


_DELIMITERS = ("\t", ",", ";", "|", " ")


_DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}


@dataclass
class RawTable:
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


def load_raw(source: Source, options: IngestOptions, name: str | None) -> RawTable:
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
            raise_too_large(display_name, len(data), options.max_bytes)
        suffix = Path(suffix).stem if suffix.endswith(".gz") else ""  # log.csv.gz -> log.csv
    if fmt == "auto":
        fmt = detect_format(data, suffix, display_name)
    if fmt == "parquet":
        return _raw_from_parquet(data, display_name)
    text, encoding, warnings = decode_text(data, display_name, options)
    if fmt == "jsonl":
        return _raw_from_jsonl(text, display_name, warnings, encoding)
    if fmt == "sequence-lines":
        return _raw_from_sequence_lines(text, display_name, warnings, encoding)
    # the UTF-8 bytes pyarrow parses: the file itself unless it had to be transcoded
    utf8 = data[3:] if encoding == "utf-8-sig" else data if encoding == "utf-8" else None
    return _raw_from_delimited(text, display_name, options, warnings, encoding, utf8)


def raise_too_large(name: str, size: int, limit: int) -> None:
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
            raise_too_large(display, size, options.max_bytes)
        return path.read_bytes(), display, path.name.lower()
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        display = name or "<bytes>"
    elif hasattr(source, "read"):
        display = name or str(getattr(source, "name", "<upload>"))
        declared = getattr(source, "size", None)
        if isinstance(declared, int) and declared > options.max_bytes:
            raise_too_large(display, declared, options.max_bytes)
        data = source.read(options.max_bytes + 1)
        if isinstance(data, str):
            data = data.encode("utf-8")
    else:
        raise TypeError(
            "`source` should be a path, bytes, a binary file object or a DataFrame. "
            f"Received: {type(source).__name__}"
        )
    if len(data) > options.max_bytes:
        raise_too_large(display, len(data), options.max_bytes)
    return data, display, display.lower()


_PARQUET_MAGIC = b"PAR1"


def detect_format(data: bytes, suffix: str, name: str) -> str:
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


def decode_text(data: bytes, name: str, options: IngestOptions) -> tuple[str, str, list[str]]:
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
    head = data[:SNIFF_BYTES]
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


def _raw_from_frame(frame: pd.DataFrame, name: str) -> RawTable:
    if frame.shape[1] == 0 or len(frame) == 0:
        raise LogFormatError(name, "the DataFrame is empty", fix="pass a log with one event per row")
    frame = frame.reset_index(drop=True)
    frame.columns = unique_names([str(c) for c in frame.columns])
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = pa.Table.from_pandas(frame.astype(object).where(frame.notna(), None).astype(str)
                                     .where(frame.notna(), None), preserve_index=False)
    return RawTable(name, "dataframe", table, np.arange(1, len(frame) + 1), [], {})


def _raw_from_parquet(data: bytes, name: str) -> RawTable:
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise LogFormatError(name, f"the Parquet file cannot be read ({exc})",
                             fix="re-export the file; it may be truncated") from None
    if table.num_rows == 0:
        raise LogFormatError(name, "the Parquet file has no rows", fix="export a non-empty log")
    table = table.rename_columns(unique_names(table.column_names))
    return RawTable(name, "parquet", table, np.arange(1, table.num_rows + 1), [], {})


def _raw_from_jsonl(text: str, name: str, warnings: list[str], encoding: str) -> RawTable:
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


def _raw_from_sequence_lines(text: str, name: str, warnings: list[str], encoding: str) -> RawTable:
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
    return RawTable(name, "sequence-lines", table, lines, warnings, details, ordered_by_position=True)


# ---- delimited text ------------------------------------------------------------------------


def _sample_lines(text: str) -> list[str]:
    head = text[:SNIFF_BYTES]
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


def looks_numeric(value: str) -> bool:
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
    if any(name_key(c) in known for c in first if c):
        return True
    rest = rows[1:]
    if not rest:
        return False
    for j, value in enumerate(first):
        column = [r[j].strip() for r in rest if len(r) > j and r[j].strip()]
        if not column or looks_numeric(value):
            continue
        numeric_share = sum(looks_numeric(v) for v in column) / len(column)
        if numeric_share >= 0.9:
            return True
    return False


def unique_names(names: list[str]) -> list[str]:
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
_FUNCTION_WORDS = frozenset((
    "the", "and", "of", "to", "a", "an", "in", "is", "for", "that", "with", "this", "are", "on",
    "by", "as", "be", "or", "from", "it", "at", "was", "were", "not", "you", "we", "which",
    "have", "has"))
_PROSE_STRIP = ".,;:!?()\"'“”"


def refuse_prose(lines: list[str], name: str) -> None:
    """Running text (a README, a letter) read as one sequence per line is refused: its words
    end in punctuation far more often than ids do, and English's function words ("the", "of",
    "and" …: about a quarter of any prose) are not the ids of users or items — a basket log of
    plain words ("milk bread eggs") has next to none of them."""
    tokens = [t for ln in lines for t in ln.split()]
    if len(tokens) < 20:
        return
    punctuated = sum(bool(_WORD_WITH_PUNCTUATION.match(t)) for t in tokens)
    # several different ones: a log whose ids happen to be "a" or "in" is still a log
    found = [w for w in (t.lower().strip(_PROSE_STRIP) for t in tokens) if w in _FUNCTION_WORDS]
    if punctuated > 0.1 * len(tokens) or (len(found) > 0.12 * len(tokens)
                                          and len(set(found)) >= 4):
        raise LogFormatError(
            name, "the file reads as running text, not a log (words and punctuation, no "
            "columns of ids)", lines=[1],
            fix="upload the log itself: one event per row (user, item, …) or one user per "
            "line (a user id, then their items in time order)")


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
) -> RawTable:
    layout = delimited_layout(text, name, options, warnings, encoding)
    if layout is None:
        return _raw_from_sequence_lines(text, name, warnings, encoding)
    table, lines_arr, ragged = _parse_delimited(text, layout.sep, layout.names, layout.skip,
                                                layout.infer, name, utf8, options.null_texts)
    if ragged:
        warnings.append(ragged)
    if table.num_rows == 0:
        raise LogFormatError(name, "the file has a header line and no data rows", lines=[1],
                             fix="export the rows of the log too")
    return RawTable(name, "delimited", table, lines_arr, warnings, layout.details)


def delimited_layout(text: str, name: str, options: IngestOptions, warnings: list[str],
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
                fix="a log needs at least a user and an item column; set the delimiter if it "
                "is unusual (--sep; in the dashboard, the Data page's reading options)",
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
                    "(user item1 item2 ..., items in time order); to read it as a table, "
                    "set the layout to a table (--format delimited; in the dashboard, the "
                    "Data page's reading options)"
                )
                return None
    if n_fields < 2:
        raise LogFormatError(
            name, f"only one column was found with the delimiter {sep!r}", lines=[1],
            fix="a log needs at least a user and an item column; check the delimiter "
            "(--sep; in the dashboard, the Data page's reading options)",
        )
    header = options.header if options.header is not None else _detect_header(rows)
    header_names = [c.strip() for c in rows[0]] if header else None
    if options.names is not None:
        names = list(options.names)
        if len(names) != n_fields:  # fewer would drop columns, more would invent them
            raise LogFormatError(
                name, f"{len(names)} column names were given for {n_fields} columns "
                f"({_DELIMITER_NAMES.get(sep, sep)}-separated)",
                lines=[1 + preamble], fix=f"give {n_fields} names, one per column, in order")
        names = unique_names(names)
    elif header_names is not None:
        names = unique_names(header_names)
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
    utf8: bytes | None = None, null_texts: tuple[str, ...] = NULL_TEXTS,
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
                null_values=list(null_texts),
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
    return _parse_delimited_slow(text, sep, names, skip, name, null_texts)


def _parse_delimited_slow(
    text: str, sep: str, names: list[str], skip: int, name: str,
    null_texts: tuple[str, ...] = NULL_TEXTS,
) -> tuple[pa.Table, np.ndarray, str]:
    n = len(names)
    columns: list[list[str | None]] = [[] for _ in range(n)]
    line_numbers: list[int] = []
    short: list[int] = []
    long: list[int] = []
    nulls = set(null_texts)
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
            columns[j].append(None if cell in nulls else cell)
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
