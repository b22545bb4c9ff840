"""Data page: load a behaviour log (the bundled sample or an upload), map its columns, and read
its summary and ingest report."""

import logging
from collections.abc import Callable

import pandas as pd
import streamlit as st

from seqvae.errors import LogFormatError
from seqvae.logs import DROP_REASONS, IngestOptions, key_column, preview_table, read_metadata
from seqvae.ui import charts, state
from seqvae.ui.loading import load_dataset, load_sample
from seqvae.ui.text import escape_markdown

logger = logging.getLogger("seqvae.ui")

NONE = "(none)"
SEPARATORS = {"detect": None, "comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|",
              "space": " "}
# the layouts a text log can have (the CLI's --format); Parquet and JSON lines go by their name
LAYOUTS = {"detect": "auto", "a table": "delimited", "one user per line": "sequence-lines"}


def _load(make: Callable[[], state.Dataset], *, pending: tuple[str, bytes] | None = None) -> None:
    """Run a load; on failure keep what was loaded before and remember the message."""
    try:
        state.set_dataset(make())
        st.session_state.pop(state.UPLOAD_ERROR, None)
        st.session_state.pop(state.PENDING_UPLOAD, None)
    except LogFormatError as exc:
        st.session_state[state.UPLOAD_ERROR] = exc
        if pending is not None:
            st.session_state[state.PENDING_UPLOAD] = pending
    except Exception as exc:  # never a traceback in the browser
        logger.exception("unexpected error while reading a log")
        st.session_state[state.UPLOAD_ERROR] = LogFormatError(
            pending[0] if pending else "the log",
            f"could not be read ({type(exc).__name__}: {exc})",
            fix="check the file's format, or set the reading options below",
        )
        if pending is not None:
            st.session_state[state.PENDING_UPLOAD] = pending


def source_ui() -> None:
    left, right = st.columns([1, 2], gap="large")
    with left:
        st.markdown("**Try it on generated data**")
        st.caption("2,000 shoppers, 1,000 products, views → carts → purchases, with six planted "
                   "user segments.")
        if st.button("Load the bundled sample", type="primary", key="load_sample"):
            _load(load_sample)
    with right:
        uploaded = st.file_uploader(
            "…or upload your log (CSV, TSV or any delimiter, Parquet, JSON lines; .gz too)",
            key="log_upload",
            help="One event per row: a user column and an item column are needed; a timestamp, "
            "an event type and a value (rating, quantity) are used when present.",
        )
        if uploaded is None and st.session_state.get(state.SEEN_UPLOAD.format("log_upload")):
            # the file was removed from the uploader: so is the message about it
            st.session_state.pop(state.SEEN_UPLOAD.format("log_upload"), None)
            if st.session_state.pop(state.PENDING_UPLOAD, None) is not None:
                st.session_state.pop(state.UPLOAD_ERROR, None)
        if state.is_new_upload("log_upload", uploaded):
            data = uploaded.getvalue()
            _load(lambda: load_dataset(uploaded.name, data), pending=(uploaded.name, data))
        current = state.dataset()
        if uploaded is None and current is not None:
            # the uploader forgets its file once another page has run: say what is loaded
            st.caption(f"In use: **{escape_markdown(current.name)}** (below). A file uploaded "
                       "here replaces it.")


def error_ui() -> None:
    error = st.session_state.get(state.UPLOAD_ERROR)
    if error is None:
        return
    lines = f" (lines {', '.join(map(str, error.lines))})" if error.lines else ""
    column = f" in column “{error.column}”" if error.column else ""
    st.error(f"**{escape_markdown(error.source)} was not loaded:** {escape_markdown(error.problem)}"
             f"{escape_markdown(column + lines)}.  \n**What to do:** {escape_markdown(error.fix)}",
             icon="⚠️")
    if state.dataset() is not None:
        st.caption(f"Still using {escape_markdown(state.dataset().name)}.")  # type: ignore[union-attr]


def options_ui() -> None:
    """The column mapping and reading options, pre-filled by detection."""
    current = state.dataset()
    pending = st.session_state.get(state.PENDING_UPLOAD)
    if pending is not None:
        name, data = pending
        columns: list[str] = []
        base = IngestOptions()
        roles: dict[str, str | None] = {}
    elif current is not None:
        name, data = current.name, current.data
        columns = current.report.source_columns
        base = current.options
        roles = current.report.columns
    else:
        return
    if current is not None and current.name.startswith("sample:") and pending is None:
        return
    with (st.expander(f"Columns and reading options of {name}", expanded=pending is not None),
          st.form("reading_options")):
        chosen: dict[str, str | None] = {}
        cols = st.columns(5)
        for i, role in enumerate(("user", "item", "timestamp", "event", "value")):
            with cols[i]:
                if columns:
                    choices = columns if role in ("user", "item") else [NONE, *columns]
                    detected = roles.get(role) or NONE
                    index = choices.index(detected) if detected in choices else 0
                    picked = st.selectbox(role, choices, index=index, key=f"map_{role}")
                    chosen[role] = "" if picked == NONE else picked
                else:
                    typed = st.text_input(f"{role} column", key=f"map_{role}_text",
                                          help="name or 1-based number; empty = detect")
                    chosen[role] = typed.strip() or None
        a, b, c, d = st.columns(4)
        with a:
            sep_name = st.selectbox("delimiter", list(SEPARATORS), key="opt_sep")
        with b:
            header = st.selectbox("first line", ["detect", "is a header", "is data"],
                                  key="opt_header")
        with c:
            missing_ts = st.selectbox(
                "missing timestamp", ["previous", "drop", "file-order"],
                index=["previous", "drop", "file-order"].index(base.missing_timestamp),
                key="opt_missing_ts",
                help="previous: take the user's previous event's time; drop: drop the row; "
                "file-order: keep the row in its place in the file")
        with d:
            missing_value = st.selectbox(
                "missing value", ["median", "mean", "drop"],
                index=["median", "mean", "drop"].index(base.missing_value),
                key="opt_missing_value")
        left, right = st.columns(2)
        layout = left.selectbox(
            "layout", list(LAYOUTS), key="opt_format",
            help="a table: one event per line, in columns; one user per line: a user id, then "
            "their items in time order (as in the Amazon files of SASRec's papers)")
        drop_dups = left.checkbox("remove exact duplicate rows", value=base.drop_duplicates,
                                  key="opt_dups")
        min_value = None
        if current is not None and current.log.has_value and pending is None:
            # the field starts from the data's own minimum (empty: every event), and can be
            # emptied again: a widget made with a number could not be cleared
            seeded = (current.name, current.fingerprint, current.min_value)
            if st.session_state.get("opt_min_value_of") != seeded:
                st.session_state["opt_min_value_of"] = seeded
                st.session_state["opt_min_value"] = current.min_value
            min_value = right.number_input(
                "keep only events with a value (rating) of at least", value=None,
                placeholder="keep every event", key="opt_min_value",
                help="Turns explicit ratings into positives, e.g. MovieLens ratings of 4 and "
                "5 (the CLI's --min-rating). Events below are counted in the report.")
        submitted = st.form_submit_button("Re-read with these settings")
    if submitted:
        read_as = current.report.format if current is not None and pending is None else None
        if LAYOUTS[layout] not in ("auto", read_as):
            # the columns offered were those of the other layout's reading: detect anew
            chosen = {role: None for role in chosen}
        try:
            options = IngestOptions(
                format=LAYOUTS[layout],  # type: ignore[arg-type]
                sep=SEPARATORS[sep_name],
                header={"detect": None, "is a header": True, "is data": False}[header],
                user_col=chosen["user"] or None,
                item_col=chosen["item"] or None,
                timestamp_col=chosen["timestamp"],
                event_col=chosen["event"],
                value_col=chosen["value"],
                missing_timestamp=missing_ts,
                missing_value=missing_value,
                drop_duplicates=drop_dups,
            )
        except ValueError as exc:
            st.error(escape_markdown(str(exc)))
            return
        def reread() -> state.Dataset:
            new = load_dataset(name, data, options,
                               min_value=None if min_value is None else float(min_value))
            if current is not None and current.name == name:  # side files stay attached
                new.items, new.users = current.items, current.users
            return new

        _load(reread, pending=(name, data))
        st.rerun()


SIDE_HEADER = {"detect": None, "yes": True, "no": False}


def side_table_ui(current: state.Dataset, kind: str, label: str) -> None:
    """One side file: its upload, how it is read (header, key and title columns, with a
    preview), and the table it gives, kept on the dataset."""
    upload = st.file_uploader(label, key=f"{kind}s_upload")
    if upload is None:
        return
    data = upload.getvalue()
    header = SIDE_HEADER[st.radio("Header line", list(SIDE_HEADER), horizontal=True,
                                  key=f"{kind}s_header",
                                  help="MovieLens' u.item and u.user have none.")]
    typed = st.text_input("Column names (optional)", key=f"{kind}s_names",
                          placeholder="comma-separated, e.g. user, age, gender, occupation, zip",
                          help="Names for the columns of a file without a header line (or in "
                          "place of its header); they name the colours and the breakdowns.")
    names = [n.strip() for n in typed.split(",")] if typed.strip() else None
    try:
        preview = preview_table(data, header=header, name=upload.name, names=names)
    except LogFormatError as exc:
        st.error(escape_markdown(str(exc)))
        return
    columns = list(preview.columns)
    left, right = st.columns(2)
    key_col = left.selectbox(f"{kind.title()} id column", columns, key=f"{kind}s_key",
                             index=columns.index(key_column(columns, kind)))
    title_col = None
    if kind == "item":
        choices = ["(detect)", *[c for c in columns if c != key_col]]
        picked = right.selectbox("Title column", choices, key="items_title")
        title_col = None if picked == "(detect)" else picked
    signature = (upload.file_id, header, key_col, title_col, tuple(names or ()))
    if st.session_state.get(f"{kind}s_read") != signature:
        try:
            table = read_metadata(data, key=kind, key_col=key_col, title_col=title_col,
                                  header=header, name=upload.name, names=names)
        except LogFormatError as exc:
            st.error(escape_markdown(str(exc)))
            return
        setattr(current, f"{kind}s", table)
        st.session_state[f"{kind}s_read"] = signature
    st.dataframe(preview, hide_index=True, width="stretch", key=f"{kind}s_preview")


def side_tables_ui(current: state.Dataset) -> None:
    with st.expander("Optional: item titles and user attributes"):
        left, right = st.columns(2)
        with left:
            side_table_ui(current, "item", "Item metadata (item id, title, category, …)")
        with right:
            side_table_ui(current, "user", "User attributes (user id, segment, age, …)")
    # under the expander, not in it: the tables stay with the data after a reload, though
    # their uploaders come back empty, and this says they are still in use
    for label, table, known in (("items", current.items, current.log.frame["item"]),
                                ("users", current.users, current.log.frame["user"])):
        if table is not None:
            ids = pd.Index(known.cat.categories.astype(str))
            matched = int(ids.isin(table.index).sum())
            st.caption(f"In use, {label}: {len(table.columns)} attribute columns "
                       f"({escape_markdown(', '.join(map(str, table.columns)))}), known for "
                       f"{matched:,} of {ids.size:,} {label} in the log.")


def summary_ui(current: state.Dataset) -> None:
    summary = current.log.summary()
    st.subheader(f"Summary of {current.name}")
    a, b, c, d = st.columns(4)
    a.metric("Users", f"{summary['users']:,}")
    b.metric("Items", f"{summary['items']:,}")
    c.metric("Events", f"{summary['events']:,}")
    span = summary["time_span"]
    if span and span["start"]:
        start, end = pd.Timestamp(span["start"]), pd.Timestamp(span["end"])
        d.metric("Time span", f"{(end - start).days:,} days",
                 help=f"{start:%Y-%m-%d} to {end:%Y-%m-%d} (UTC)")
    else:
        d.metric("Time span", "file order", help="the log has no timestamps")
    values = charts.value_distribution(current.log)
    # a log without an event-type column (ratings, purchases only) has nothing to mix: one bar
    # "unknown" would only puzzle
    mix = current.log.has_event and current.log.frame["event"].nunique() > 1
    charts_shown = [charts.events_per_user(current.log),
                    *([charts.event_type_mix(current.log)] if mix else []),
                    *([values] if values is not None else [])]
    for column, figure in zip(st.columns(len(charts_shown)), charts_shown, strict=True):
        column.plotly_chart(figure, width="stretch")
    if not current.log.has_event:
        st.caption("The log has no event-type column: every event counts alike (the model "
                   "labels them all “unknown”).")
    if current.min_value is not None:
        st.caption(f"Only events with a value of at least {current.min_value:g} are kept.")
    over_time = charts.events_over_time(current.log)
    if over_time is not None:
        st.plotly_chart(over_time, width="stretch")
    with st.expander("First rows, as read"):
        preview = current.log.frame.head(50).copy()
        for column in ("user", "item", "event"):
            preview[column] = preview[column].astype(str)
        st.dataframe(preview, hide_index=True)


def report_ui(current: state.Dataset) -> None:
    report = current.report
    st.subheader("Ingest report")
    # one user per line: every item on a line is an event, and the report counts events
    unit = "events" if report.format == "sequence-lines" else "rows"
    st.caption(f"Every input {unit[:-1]} is accounted for: {unit} read = {unit} kept + {unit} "
               "dropped." + (" Each line of this file is one user and each item on it one "
                             "event." if unit == "events" else ""))
    a, b, c = st.columns(3)
    a.metric(f"{unit.capitalize()} read", f"{report.rows_read:,}")
    b.metric(f"{unit.capitalize()} kept", f"{report.rows_kept:,}")
    c.metric(f"{unit.capitalize()} dropped", f"{sum(report.dropped.values()):,}")
    mapping = ", ".join(f"{role} ← {col}" for role, col in report.columns.items() if col)
    details = ", ".join(f"{k}: {v}" for k, v in report.details.items())
    st.caption(escape_markdown(f"Columns: {mapping}. Read as {report.format} ({details})."))
    if report.dropped or report.filled:
        rows = [{"what": "dropped", "reason": DROP_REASONS.get(k, k), "rows": v,
                 "first lines": ", ".join(map(str, report.dropped_lines.get(k, [])))}
                for k, v in report.dropped.items()]
        rows += [{"what": "filled", "reason": k.replace("_", " "), "rows": v, "first lines": ""}
                 for k, v in report.filled.items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    else:
        st.success("No row was dropped and no value was filled in.")
    for warning in report.warnings:  # written to follow "warning:" on the command line
        st.warning(escape_markdown(warning[:1].upper() + warning[1:]))


st.title("Data")
st.caption("Load a behaviour log — who did what to which item, when — and check how it was read.")
source_ui()
error_ui()
options_ui()
current_dataset = state.dataset()
if current_dataset is not None:
    side_tables_ui(current_dataset)
    summary_ui(current_dataset)
    report_ui(current_dataset)
