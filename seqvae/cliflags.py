"""The flags the ``seqvae`` commands share, and what they build: how to read a log
(`add_reading_flags` -> `options_from_args`, `sequence_options`), the store's sizes, and the side
tables (`add_side_table_flags` -> `read_side_table`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import pandas as pd


def add_side_table_flags(parser: argparse.ArgumentParser, kinds: Sequence[str]) -> None:
    """Flags for the side tables a command reads: item metadata (titles, categories) and user
    attributes, read as the Data page reads them (header detected unless told)."""
    group = parser.add_argument_group("side tables")
    for kind in kinds:
        what = ("item metadata: item id, title, category, … (e.g. MovieLens' u.item)"
                if kind == "item" else "user attributes: user id, segment, age, … (e.g. u.user)")
        group.add_argument(f"--{kind}-meta", metavar="FILE", help=what)
        group.add_argument(f"--{kind}-meta-header", choices=["auto", "yes", "no"], default="auto",
                           help="does its first line name the columns (default: detected; "
                           "u.item and u.user have none)")
        group.add_argument(f"--{kind}-meta-key", metavar="COLUMN",
                           help=f"the column holding the {kind} id (default: by name, else the "
                           "first; headerless files have column_1, column_2, …)")
        group.add_argument(f"--{kind}-meta-sep", metavar="SEP",
                           help="its delimiter (default: sniffed)")
        group.add_argument(f"--{kind}-meta-names", metavar="A,B,C",
                           help="names for its columns (a file without a header line)")
        if kind == "item":
            group.add_argument("--item-meta-title", metavar="COLUMN",
                               help="the column holding the titles (default: detected)")


def read_side_table(args: argparse.Namespace, kind: str) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    """The side table `--{kind}-meta` names, keyed by id, and how it was read (the columns
    chosen, the first rows) — or None when none was given."""
    from seqvae.logs import key_column, preview_table, read_metadata

    path = getattr(args, f"{kind}_meta", None)
    if not path:
        return None
    header = {"auto": None, "yes": True, "no": False}[getattr(args, f"{kind}_meta_header")]
    sep = getattr(args, f"{kind}_meta_sep")
    typed = getattr(args, f"{kind}_meta_names")
    names = [n.strip() for n in typed.split(",")] if typed else None
    preview = preview_table(path, header=header, sep=sep, names=names)
    columns = [str(c) for c in preview.columns]
    key = getattr(args, f"{kind}_meta_key") or key_column(columns, cast(Any, kind))
    title = getattr(args, "item_meta_title", None) if kind == "item" else None
    table = read_metadata(path, key=cast(Any, kind), key_col=key, title_col=title,
                          header=header, sep=sep, names=names)
    if kind == "item" and title is None and "title" in table.columns:
        title = next((c for c in columns if c not in table.columns and c != key), "title")
    return table, {"source": Path(path).name, "rows": len(table), "key": key, "title": title,
                   "columns": columns, "preview": preview.head(3).to_dict("records")}


def add_reading_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every command that reads a log shares."""
    group = parser.add_argument_group("reading the log")
    group.add_argument("--format", default="auto",
                       choices=["auto", "delimited", "parquet", "jsonl", "sequence-lines"],
                       help="file format (default: detected from the name and the content)")
    group.add_argument("--sep", help="field delimiter, e.g. ',' ';' 'tab' (default: sniffed)")
    header = group.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_true", default=None,
                        help="the first line is a header")
    header.add_argument("--no-header", dest="header", action="store_false",
                        help="the first line is data")
    group.add_argument("--names", help="comma-separated column names for a file without header")
    for role, example in (("user", "customer_id"), ("item", "sku"), ("timestamp", "ts"),
                          ("event", "action"), ("value", "rating")):
        extra = "" if role in ("user", "item") else "; '' for none"
        group.add_argument(f"--{role}-col", dest=f"{role}_col", metavar="COLUMN",
                           help=f"column holding the {role} (name or 1-based number, "
                           f"e.g. {example}; default: detected{extra})")
    group.add_argument("--timestamp-unit", default="auto", choices=["auto", "s", "ms", "us", "ns"],
                       help="unit of numeric timestamps (default: told apart by magnitude)")
    group.add_argument("--missing-timestamp", default="previous",
                       choices=["previous", "drop", "file-order"],
                       help="a row without a timestamp takes the user's previous one (default), "
                       "is dropped, or keeps its place in the file")
    group.add_argument("--missing-value", default="median", choices=["median", "mean", "drop"],
                       help="fill a missing value with the column's median (default) or mean, "
                       "or drop the row")
    group.add_argument("--keep-duplicates", action="store_true",
                       help="keep rows identical in every mapped column (default: removed)")
    group.add_argument("--encoding", help="text encoding (default: UTF-8, falling back to Latin-1)")
    group.add_argument("--max-mb", type=float, default=2048.0,
                       help="refuse files larger than this many megabytes (default: 2048)")
    group.add_argument("--min-item-count", type=int, default=1,
                       help="items seen fewer times become out-of-vocabulary (default: 1)")
    group.add_argument("--k-core", type=int, default=0,
                       help="keep users and items with at least K events, iteratively (default: off)")


def add_store_flags(parser: Any) -> None:
    parser.add_argument("--chunk-mb", type=float, default=64.0,
                        help="megabytes of text parsed at a time (64)")
    parser.add_argument("--block-events", type=int, default=1 << 22,
                        help="events held at once while sorting and training (4194304)")


def options_from_args(args: argparse.Namespace) -> Any:
    """Build `IngestOptions` from the shared reading flags."""
    from seqvae.logs import IngestOptions

    names = tuple(n.strip() for n in args.names.split(",")) if args.names else None
    return IngestOptions(
        format=args.format,
        sep=args.sep,
        header=args.header,
        names=names,
        user_col=args.user_col,
        item_col=args.item_col,
        timestamp_col=args.timestamp_col,
        event_col=args.event_col,
        value_col=args.value_col,
        timestamp_unit=args.timestamp_unit,
        missing_timestamp=args.missing_timestamp,
        missing_value=args.missing_value,
        drop_duplicates=not args.keep_duplicates,
        encoding=args.encoding,
        max_bytes=int(args.max_mb * 1024 * 1024),
    )


def sequence_options(args: argparse.Namespace) -> Any:
    from seqvae.sequences import SequenceOptions

    return SequenceOptions(min_item_count=args.min_item_count, k_core=args.k_core)
