"""Latent space page: a map of the users from their μ, clusters, cohorts, directions, exports."""

import contextlib
import io
import logging
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from seqvae import drift, export, latent
from seqvae.errors import SeqVAEError
from seqvae.export import neutralise_formulas
from seqvae.ui import charts, runtime, state
from seqvae.ui.text import escape_markdown, natural_key, natural_order, plotly_text, shorten

logger = logging.getLogger("seqvae.ui")


def colour_options(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """What the map can be coloured by: only what tells users apart in this log (a log
    without event types has one dominant event for everyone; one without times no recency; an
    attribute whose values hardly repeat, such as a zip code, leaves nearly every user "other").
    -> (the options, the attributes left out for that last reason)."""
    options = ["cluster"]
    if frame["dominant_event"].nunique() > 1:
        options.append("dominant event")
    options.append("activity (events)")
    if frame["days_since_last"].notna().any():
        options.append("recency (days since last)")
    options.append("reconstruction error")
    left_out = []
    for column in (c for c in frame.columns if c.startswith("attr:")):
        values = frame[column]
        if is_categorical_attribute(values) and not latent.categories_repeat(values):
            left_out.append(column.removeprefix("attr:"))
        else:
            options.append(column.removeprefix("attr:"))
    return options, left_out


def is_categorical_attribute(values: pd.Series) -> bool:
    """An attribute is coloured by category unless it is numeric with more than 12 values."""
    return not (pd.api.types.is_numeric_dtype(values) and values.nunique() > 12)


def colour_values(view: state.LatentView, frame: pd.DataFrame, choice: str,
                  names: dict[int, str]) -> tuple[pd.Series, bool]:
    """(values, is_categorical) for the colour choice."""
    if choice == "cluster":
        return pd.Series([names.get(int(c), str(c)) for c in view.clusters]), True
    if choice == "dominant event":
        return frame["dominant_event"].astype(str), True
    if choice == "activity (events)":
        return frame["events"].astype(float), False
    if choice == "recency (days since last)":
        return frame["days_since_last"].astype(float), False
    if choice == "reconstruction error":
        return pd.Series(view.reconstruction_error()), False
    values = frame[f"attr:{choice}"]
    categorical = is_categorical_attribute(values)
    if categorical:  # a user without a value reads "—", not "nan"
        return values.astype(object).where(values.notna(), "—").astype(str), True
    return values.astype(float), False


def map_figure(coords: np.ndarray, frame: pd.DataFrame, rows: np.ndarray, values: pd.Series,
               categorical: bool, size_by_activity: bool, highlight: int | None,
               colour_name: str = "", clusters: pd.Series | None = None,
               window: list[tuple[float, float]] | None = None) -> go.Figure:
    """`window`: the (low, high) of each axis the map opens on (`latent.view_range`), else
    the points' full extent."""
    dims = coords.shape[1]
    shown_values = values.to_numpy()[rows]
    if categorical:  # the 20 most common values get colours of their own, the rest "other"
        shown_values = latent.top_categories(pd.Series(shown_values),
                                             top=len(latent.PALETTE)).to_numpy()
    value_text = ([plotly_text(v) for v in shown_values] if categorical else
                  [f"{v:,.4g}" if np.isfinite(v) else "—" for v in shown_values.astype(float)])
    cluster_text = (clusters.to_numpy()[rows] if clusters is not None
                    else np.full(rows.shape, ""))
    hover = [f"user {plotly_text(u)}<br>{e:,} events<br>last: {plotly_text(items)}"
             + (f"<br>{plotly_text(colour_name)}: {v}" if colour_name != "cluster" else "")
             + (f"<br>cluster {plotly_text(c)}" if c != "" else "")
             for u, e, items, v, c in zip(
                 frame["user"].to_numpy()[rows], frame["events"].to_numpy()[rows],
                 frame["last_items"].to_numpy()[rows], value_text, cluster_text, strict=True)]
    hover = np.asarray(hover, dtype=object)
    sizes = (4 + 10 * np.sqrt(frame["events"].to_numpy()[rows]
                              / max(frame["events"].max(), 1))) if size_by_activity else 6
    sizes = np.broadcast_to(sizes, rows.shape).astype(float)
    scatter = go.Scattergl if dims == 2 else go.Scatter3d
    fig = go.Figure()

    def axes(points: np.ndarray) -> dict:
        return ({"x": points[:, 0], "y": points[:, 1]} if dims == 2 else
                {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2]})

    if categorical:
        # greys, listed last: the categories past the 20 coloured, and HDBSCAN's noise
        muted = {"other": latent.OTHER_COLOUR}
        if colour_name == "cluster":
            muted["noise"] = latent.NOISE_COLOUR
        categories = sorted((c for c in pd.unique(shown_values) if c not in muted),
                            key=natural_key)
        categories += [c for c in muted if c in set(shown_values)]
        for i, category in enumerate(categories):
            members = shown_values == category
            colour = muted.get(category) or latent.PALETTE[i % len(latent.PALETTE)]
            fig.add_trace(scatter(
                **axes(coords[rows][members]), mode="markers", name=plotly_text(category),
                customdata=frame["user"].to_numpy()[rows][members], hovertext=hover[members],
                hoverinfo="text", marker={"size": sizes[members] * (1 if dims == 2 else 0.5),
                                          "color": colour, "opacity": 0.75}))
    else:
        colour, title, ticks = shown_values.astype(float), plotly_text(colour_name), {}
        if (logged := charts.log_colour_scale(colour)) is not None:  # else most users share one hue
            colour, ticks = logged
            title += " (log scale)"
        fig.add_trace(scatter(
            **axes(coords[rows]), mode="markers", name="users",
            customdata=frame["user"].to_numpy()[rows], hovertext=hover, hoverinfo="text",
            marker={"size": sizes * (1 if dims == 2 else 0.5), "color": colour,
                    "colorscale": "Cividis", "showscale": True, "opacity": 0.8,
                    "colorbar": {"title": {"text": title, "side": "right"}, "thickness": 14,
                                 **ticks}}))
    if highlight is not None:
        fig.add_trace(scatter(
            **axes(coords[[highlight]]), mode="markers", name="searched user",
            customdata=frame["user"].to_numpy()[[highlight]], hoverinfo="text",
            hovertext=[f"user {plotly_text(frame['user'].iloc[highlight])}"],
            marker={"size": 18, "color": "rgba(0,0,0,0)", "line": {"width": 3,
                                                                   "color": "#000000"}}))
    # the legend below the map, in rows: long cluster labels no longer take half its width
    fig.update_layout(height=680, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"itemsizing": "constant", "orientation": "h", "x": 0, "y": -0.02,
                              "yanchor": "top", "font": {"size": 11},
                              "title": {"text": plotly_text(colour_name) + " "}},
                      plot_bgcolor="white")
    # no dragmode here: Streamlit's default (pan, with click-to-select) lets a click open a
    # user; the toolbar's lasso and box tools select regions (a click does not select there)
    if dims == 2:
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
        fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
        if window is not None:
            fig.update_xaxes(range=list(window[0]))
            fig.update_yaxes(range=list(window[1]))
    return fig


def selected_users(event: object) -> tuple[list[str], str]:
    """User ids of the points the analyst picked on the map, and how (click, box, lasso)."""
    selection = getattr(event, "selection", None) or (event.get("selection") if isinstance(
        event, dict) else None)
    if not selection:
        return [], ""
    points = selection.get("points", []) if isinstance(selection, dict) else selection.points
    users = []
    for point in points:
        custom = point.get("customdata")
        if isinstance(custom, list | tuple):
            custom = custom[0] if custom else None
        if custom is not None:
            users.append(str(custom))
    get = selection.get if isinstance(selection, dict) else lambda k, d=None: getattr(
        selection, k, d)
    how = "lasso" if get("lasso", []) else "box" if get("box", []) else "click"
    return list(dict.fromkeys(users)), how


def cohort_ui(view: state.LatentView, dataset: state.Dataset | None, shown_map: str) -> None:
    """The selection drawn on a map (`shown_map` names the map on the page now): what sets
    its users apart, who they are, and keeping and comparing it as a named cohort."""
    selection = st.session_state.get(state.SELECTION) or {}
    users = [str(u) for u in selection.get("users", [])]
    cohorts: dict[str, list[str]] = st.session_state.setdefault(state.COHORTS, {})
    st.subheader("Cohorts", anchor=False)
    if not users:
        st.caption("Pick the lasso or the box in the map's toolbar and draw around users to see "
                   "what sets them apart; name the selection to keep it.")
    else:
        rows = view.rows_of(users)
        drawn_on = selection.get("map")
        st.markdown(f"**Selection:** {len(rows):,} users ({escape_markdown(selection.get('how', ''))}"
                    + (f" on the {drawn_on}" if drawn_on else "") + ")")
        if drawn_on and drawn_on != shown_map:
            # the same users, wherever they lie now: say so, or the map and the table disagree
            st.caption(f"Drawn on the {drawn_on}, not the {shown_map} above: the same users, "
                       "who may lie elsewhere on this one. Draw again to select from this map.")
        items_table, events_table = latent.characterise(
            view.sequences, rows, view.item_vocab, view.event_vocab, reach=view.reach)
        # a log without event types has one, every event's: a table of one row with lift 1
        typed = len(events_table) > 1
        left, right = st.columns([3, 2]) if typed else (st.container(), None)
        with left:
            st.markdown("Items that set them apart")
            st.dataframe(as_percent(titled(items_table, dataset), LIFT_SHARES),
                         hide_index=True, width="stretch", column_config=LIFT_COLUMNS)
            st.caption("Raw lift = the selected users who had the item / the number expected if "
                       "the selection were like everyone. Lift, the order: the same with 20 "
                       "users added to both, so an item 3 users had where 0.3 were expected "
                       "(raw 10) ranks below one 60 had where 20 were (raw 3); items fewer than "
                       "5 selected users (or 2%) had are left out.")
        if right is not None:
            with right:
                st.markdown("Event types")
                st.dataframe(as_percent(events_table, LIFT_SHARES), hide_index=True,
                             width="stretch", column_config=LIFT_COLUMNS)
        breakdown = latent.attribute_breakdown(view.frame, rows)
        if len(breakdown):
            st.markdown("Who they are: the selection against everyone, by user attribute")
            shares = breakdown[breakdown["kind"] == "share"]
            numeric = breakdown[breakdown["kind"] == "numeric"]
            if len(shares):
                # a difference of two shares is in percentage points, not a percentage
                shares = as_percent(shares, ("cohort", "everyone", "difference"))
                st.dataframe(shares.drop(columns=["kind", "cohort median", "overall median"]),
                             hide_index=True, width="stretch", column_config={
                                 "cohort": st.column_config.NumberColumn("selection", format=PERCENT),
                                 "everyone": st.column_config.NumberColumn(format=PERCENT),
                                 "difference": st.column_config.NumberColumn(
                                     "difference (points)", format="%+.1f")})
            if len(numeric):
                numbers = {c: st.column_config.NumberColumn(format="%.2f")
                           for c in ("selection mean", "everyone's mean", "difference",
                                     "selection median", "overall median")}
                st.dataframe(numeric.drop(columns=["kind", "value"]).rename(
                    columns={"cohort": "selection mean", "everyone": "everyone's mean",
                             "cohort median": "selection median"}),
                    hide_index=True, width="stretch", column_config=numbers)
        with st.expander(f"The {len(rows):,} selected users"):
            st.dataframe(cohort_table(view, dataset, rows), hide_index=True, width="stretch")
        name_col, button_col = st.columns([3, 1])
        name = name_col.text_input("Name this selection", key="cohort_name",
                                   placeholder="e.g. late-night bargain hunters")
        kept = st.session_state.pop("cohort_kept", None)
        if kept is not None:
            st.toast(f"Kept {kept[0]} ({kept[1]:,} users)")
        button_col.button("Keep", key="cohort_keep", disabled=not name.strip(),
                          on_click=keep_cohort,
                          args=(cohorts, name.strip(), [view.frame["user"].iloc[r] for r in rows]))
        st.download_button("Download the selection (CSV)", data=csv_bytes(
            cohort_table(view, dataset, rows)), file_name="cohort.csv", mime="text/csv",
            key="cohort_csv")
    if len(cohorts) >= 2:
        st.markdown("**Compare two kept cohorts**")
        a, b = st.columns(2)
        names = list(cohorts)
        for column, default, key in ((a, 0, "compare_a"), (b, 1, "compare_b")):
            with column:
                chosen = st.selectbox("Cohort", names, index=default, key=key)
                rows = view.rows_of(cohorts[chosen])
                table, _ = latent.characterise(view.sequences, rows, view.item_vocab,
                                               view.event_vocab, top=8, reach=view.reach)
                st.caption(f"{len(rows):,} users")
                st.dataframe(as_percent(titled(table, dataset), LIFT_SHARES),
                             hide_index=True, width="stretch", column_config=LIFT_COLUMNS)
    elif cohorts:
        st.caption(f"Kept: {', '.join(escape_markdown(n) for n in cohorts)} — keep another to "
                   "compare two side by side.")


# shares are shown in percent with one decimal: Streamlit's "percent" preset shows as many
# decimals as each value needs, so one column mixed them; `as_percent` scales them first
PERCENT = "%.1f%%"


def as_percent(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """A copy of `frame` whose share `columns` (those present) are in percent, for `PERCENT`."""
    present = [c for c in columns if c in frame.columns]
    return frame.assign(**{c: frame[c] * 100 for c in present})


# the lift tables' share columns, in percent
LIFT_SHARES = ("cohort share", "overall share")
# compact number columns, so lift is never cut off
LIFT_COLUMNS = {
    "cohort users": st.column_config.NumberColumn("users", width="small"),
    "cohort share": st.column_config.NumberColumn("selection", format=PERCENT, width="small"),
    "overall share": st.column_config.NumberColumn("everyone", format=PERCENT, width="small"),
    "lift": st.column_config.NumberColumn(format="%.2f", width="small"),
    "raw lift": st.column_config.NumberColumn(format="%.2f", width="small"),
}


def cohort_table(view: state.LatentView, dataset: state.Dataset | None,
                 rows: np.ndarray) -> pd.DataFrame:
    """The selected users with their activity, cluster and every attribute."""
    names = view.cluster_names(dataset.items if dataset is not None else None)
    table = view.frame.iloc[rows].copy()
    table.insert(1, "cluster", [names.get(int(c), str(c)) for c in view.clusters[rows]])
    return table.rename(columns=lambda c: c.removeprefix("attr:"))


def titled(table: pd.DataFrame, dataset: state.Dataset | None) -> pd.DataFrame:
    items = dataset.items if dataset is not None else None
    if items is None or "title" not in items.columns or "item" not in table.columns:
        return table
    out = table.copy()
    out.insert(1, "title", items["title"].reindex(out["item"].astype(str)).to_numpy())
    return out


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return neutralise_formulas(frame).to_csv(index=False).encode("utf-8")


def neighbours_ui(view: state.LatentView, row: int) -> None:
    rows, distance = latent.nearest_users(view.mu, row, k=10)
    table = view.frame.iloc[rows][["user", "events", "last_items"]].copy()
    # the User page's similar users give the same pairs as a similarity, to 3 decimals
    table.insert(1, "cosine similarity of μ", np.round(1.0 - distance, 3))
    st.markdown(f"**Nearest users to {escape_markdown(view.frame['user'].iloc[row])}** "
                "(full latent space)")
    st.dataframe(table.rename(columns={"last_items": "last items"}), hide_index=True,
                 width="stretch")


def between_ui(view: state.LatentView, dataset: state.Dataset | None) -> None:
    st.subheader("Between two users", anchor=False)
    st.caption("What the decoder produces along the straight line from one user's μ to "
               "another's: the items that rise and fall tell what that direction means.")
    users = natural_order(view.frame["user"].astype(str).to_numpy())
    # the user last opened (User page, or a click on the map) starts the line, once per user
    # opened: a pick made here afterwards stays
    opened = st.session_state.get(state.SELECTED_USER)
    start = str(opened) if opened is not None and view.rows_of([opened], missing_ok=True).size \
        else users[0]
    if start != st.session_state.get(state.BETWEEN_OPENED):
        st.session_state[state.BETWEEN_OPENED] = st.session_state["between_a"] = start
    listed = list(dict.fromkeys([start, *users[:state.LISTED_USERS]]))
    a, b = st.columns(2)
    more = (f" The first {state.LISTED_USERS:,} of {len(users):,} users are listed; type any "
            "other id in full." if len(users) > state.LISTED_USERS else "")
    picked = [column.selectbox(label, listed, index=index, key=key, accept_new_options=True,
                               filter_mode="contains", help="Type part of an id to filter." + more)
              for column, label, index, key in ((a, "From user", 0, "between_a"),
                                                (b, "To user", min(1, len(listed) - 1),
                                                 "between_b"))]
    unknown = [str(u) for u in picked if u is None or not view.rows_of([u], missing_ok=True).size]
    if unknown:
        st.warning(f"No user “{escape_markdown(unknown[0])}” in this model's log: pick one from "
                   "the list, or type an id in full.")
        return
    first, second = (str(u) for u in picked)
    rows = view.rows_of([first, second])
    probabilities, movers = latent.interpolate(view.recommender, view.mu[rows[0]],
                                               view.mu[rows[1]])
    steps = np.linspace(0, 1, probabilities.shape[0])
    fig = go.Figure()
    ids = view.recommender.item_vocab_.lookup(list(movers["item"]))
    titles = titled(movers, dataset)
    labels = (titles["title"].where(titles["title"].notna(), titles["item"]).astype(str)
              if "title" in titles.columns else movers["item"].astype(str))
    for i, (label, index) in enumerate(zip(labels, ids, strict=True)):
        # the legend keeps a line's name short; its point says the whole title
        fig.add_trace(go.Scatter(x=steps, y=probabilities[:, index], mode="lines",
                                 name=plotly_text(shorten(label, 40)),
                                 hovertemplate=f"{plotly_text(label)}<br>%{{x:.2f}} of the way: "
                                               "probability %{y:.4f}<extra></extra>",
                                 line={"color": latent.PALETTE[i % len(latent.PALETTE)],
                                       "dash": "solid" if i < len(ids) // 2 else "dot"}))
    fig.update_layout(height=420, xaxis_title=f"from {plotly_text(first)} (0) to "
                      f"{plotly_text(second)} (1)", yaxis_title="probability",
                      margin={"l": 10, "r": 10, "t": 20, "b": 10},
                      legend={"font": {"size": 10}, "title": {"text": "solid: rises · dotted: falls"}})
    st.plotly_chart(fig, width="stretch", key="between_chart")
    st.dataframe(titles, hide_index=True, width="stretch", column_config={
        "title": st.column_config.TextColumn(width="large"),
        **{c: st.column_config.NumberColumn(format="%.4f", width="small")
           for c in ("at start", "at end", "change")}})


def drift_ui(view: state.LatentView, dataset: state.Dataset | None) -> None:
    """Every user encoded as of two dates (their events up to each date, the fold-in path) and
    the movement drawn on the PCA map; the users, clusters and items behind it."""
    st.subheader("Drift over time", anchor=False)
    history = view.sequences
    if not history.has_timestamps:
        st.caption("This model's log has no timestamps: drift over time needs them.")
        return
    first, last = drift.time_range(history)
    middle = pd.Timestamp(int(np.median(history.timestamps)), unit="us", tz="UTC")
    st.caption("Each user as of two dates: the μ the model gives their events up to each date, "
               "exactly as for a new user (no retraining). Users with no event between the "
               "dates stay where they are; users whose first event is after the first date are "
               "not on this map.")
    with st.form("drift_form", border=False):
        a, b, c = st.columns([2, 2, 1])
        start = a.date_input("As of (end of day)", value=middle.date(), min_value=first.date(),
                             max_value=last.date(), key="drift_start")
        end = b.date_input("Compared with (end of day)", value=last.date(),
                           min_value=first.date(), max_value=last.date(), key="drift_end")
        arrows = c.number_input("Users drawn", 10, 1000, 150, step=10, key="drift_arrows")
        run = st.form_submit_button("Show the drift")
    key = (str(start), str(end))
    drifts: dict = view.__dict__.setdefault("drifts", {})
    if run and key not in drifts:
        day = pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        try:
            with st.spinner("Encoding every user as of both dates…"):
                drifts[key] = drift.drift(view.recommender, pd.Timestamp(start) + day,
                                          pd.Timestamp(end) + day, view=view.view)
        except SeqVAEError as error:
            st.error(escape_markdown(str(error)))
            return
    if run:  # the dates asked for, computed now or kept from before (in this view)
        st.session_state[state.DRIFT_SHOWN] = key
    shown = st.session_state.get(state.DRIFT_SHOWN)
    if shown not in drifts:
        return
    result = drifts[shown]
    names = view.cluster_names(dataset.items if dataset is not None else None)
    movement = result.movement
    active = result.events_between > 0
    typical = float(np.median(movement[active])) if active.any() else 0.0
    st.markdown(f"**{result.rows.size:,} users** on the map as of {shown[0]} "
                f"({result.not_yet:,} arrive later); **{int(active.sum()):,}** had events up to "
                f"{shown[1]} and moved (median movement {typical:.3f}: the Euclidean distance "
                f"between their two μ, in the latent space's units).")
    mean, components = latent.pca_basis(view.mu, 2)
    before = (result.before - mean) @ components.T
    after = (result.after - mean) @ components.T
    order = np.argsort(-movement, kind="stable")[: int(arrows)]
    order = order[movement[order] > 0]  # users without events between the dates did not move
    if order.size == 0:
        st.info(f"No user had an event between {shown[0]} and {shown[1]}: nobody moved.")
        return
    everyone = (view.mu - mean) @ components.T
    clusters = view.clusters[result.rows[order]]
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=everyone[:, 0], y=everyone[:, 1], mode="markers",
                               name="every user now", hoverinfo="skip",
                               marker={"size": 4, "color": "#DDDDDD"}))
    for i, label in enumerate(np.unique(clusters)):
        members = order[clusters == label]
        xs = np.column_stack([before[members, 0], after[members, 0],
                              np.full(members.size, np.nan)]).ravel()
        ys = np.column_stack([before[members, 1], after[members, 1],
                              np.full(members.size, np.nan)]).ravel()
        colour = latent.PALETTE[i % len(latent.PALETTE)]
        name = plotly_text(names.get(int(label), str(label)))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour, "width": 1},
                                 name=name, legendgroup=name, hoverinfo="skip"))
        users = history.users[result.rows[members]].astype(str)
        fig.add_trace(go.Scatter(
            x=before[members, 0], y=before[members, 1], mode="markers", legendgroup=name,
            showlegend=False, marker={"size": 6, "color": "white", "line": {"color": colour,
                                                                          "width": 1.5}},
            hovertext=[f"user {plotly_text(u)} as of {shown[0]}" for u in users],
            hoverinfo="text"))
        fig.add_trace(go.Scatter(
            x=after[members, 0], y=after[members, 1], mode="markers", legendgroup=name,
            showlegend=False, marker={"size": 7, "color": colour}, customdata=users,
            hovertext=[f"user {plotly_text(u)} as of {shown[1]}<br>moved {m:.3f} after "
                       f"{n:,} events" for u, m, n in zip(users, movement[members],
                                                           result.events_between[members],
                                                           strict=True)],
            hoverinfo="text"))
    fig.update_layout(height=560, plot_bgcolor="white", margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      title=(f"The {order.size:,} users who moved most"
                             if order.size < int(active.sum())
                             else f"All {order.size:,} users who moved")
                      + f": ○ {shown[0]} → ● {shown[1]} "
                      "(PCA of today's μ; colour: cluster)",
                      legend={"orientation": "h", "y": -0.02, "yanchor": "top"})
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    st.plotly_chart(fig, width="stretch", key="drift_map")
    left, right = st.columns(2)
    with left:
        st.markdown("Users who moved most (select a row to open the user)")
        movers = drift.top_movers(result, history.users, k=20)
        movers.insert(1, "cluster", [names.get(int(c), str(c)) for c in view.clusters[movers["row"]]])
        small = {c: st.column_config.NumberColumn(c.removeprefix("events "), width="small")
                 for c in ("events by start", "events between")}
        picked = st.dataframe(movers.drop(columns="row"), hide_index=True, width="stretch",
                              key="drift_movers", on_select="rerun", selection_mode="single-row",
                              column_config={"moved": st.column_config.NumberColumn(
                                  format="%.3f", width="small"), **small})
        selected = getattr(getattr(picked, "selection", None), "rows", None) or []
        if selected:
            st.session_state[state.SELECTED_USER] = str(movers["user"].iloc[selected[0]])
            st.session_state["user_pick_pending"] = st.session_state[state.SELECTED_USER]
            st.switch_page("pages/user.py")
    with right:
        st.markdown("Clusters (today's) by how far their users moved")
        st.dataframe(as_percent(drift.cohort_drift(result, view.clusters, names),
                                ("active between",)), hide_index=True,
                     width="stretch", column_config={
                         "active between": st.column_config.NumberColumn(format=PERCENT),
                         "mean movement": st.column_config.NumberColumn(format="%.3f"),
                         "centre moved": st.column_config.NumberColumn(format="%.3f")})
    done, towards = drift.items_behind(view.recommender, result, order)
    left, right = st.columns(2)
    with left:
        st.markdown(f"What the {order.size:,} users drawn did between the dates")
        st.dataframe(as_percent(titled(done, dataset), LIFT_SHARES),
                     hide_index=True, width="stretch", column_config=LIFT_COLUMNS)
    with right:
        st.markdown("Where they moved to: items the decoder now expects more of")
        st.dataframe(titled(towards, dataset), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.4f")
                                    for c in ("at start", "at end", "change")})


def exports_ui(view: state.LatentView, dataset: state.Dataset | None) -> None:
    st.subheader("Exports", anchor=False)
    # what the files hold: redo them when the clusters, the maps or the side tables changed
    signature = (id(view), view._clusters_key, tuple(sorted(view.coords)), view._side_key)
    cached = st.session_state.get("latent_exports")
    if cached is not None and cached[0] != signature:
        cached = None
        st.session_state.pop("latent_exports", None)
    if not st.button("Prepare the exports", key="exports_prepare"):
        if cached is None:
            st.caption("Users (μ, σ, map coordinates, cluster and its name, attributes; CSV and "
                       "Parquet); the vectors + metadata pair for TensorBoard's Embedding "
                       "Projector; every user's top 10 with titles (CSV).")
            return
    else:
        coords = dict(view.coords)
        coords.setdefault("PCA-2", latent.project_pca(view.mu, 2))
        names = view.cluster_names(dataset.items if dataset is not None else None)
        table = export.user_table(view.frame, view.mu, view.sigma, coords, view.clusters,
                                  names, mapped=view.sample_rows)
        parquet = io.BytesIO()
        table.to_parquet(parquet, index=False)
        vectors = "\n".join("\t".join(f"{v:.6g}" for v in row) for row in view.mu) + "\n"
        meta_columns = [c for c in table.columns
                        if c in ("user", "events", "cluster", "cluster_name", "dominant_event")
                        or c.startswith("attr:")]
        meta = export.projector_metadata(table[meta_columns])
        titles = (dataset.items["title"] if dataset is not None and dataset.items is not None
                  and "title" in dataset.items.columns else None)
        recs = export.all_recommendations(view.recommender, k=10, titles=titles)
        cached = (signature, {
            "users.csv": csv_bytes(table), "users.parquet": parquet.getvalue(),
            "vectors.tsv": vectors.encode(),
            "metadata.tsv": meta.to_csv(index=False, sep="\t").encode(),
            "recommendations.csv": csv_bytes(recs)})
        st.session_state["latent_exports"] = cached
    files = cached[1]
    columns = st.columns(len(files))
    mimes = {"csv": "text/csv", "parquet": "application/octet-stream", "tsv": "text/tab-separated-values"}
    for column, (name, data) in zip(columns, files.items(), strict=True):
        column.download_button(name, data=data, file_name=name, mime=mimes[name.rsplit(".", 1)[1]],
                               key=f"download_{name}")


def umap_ui(view: state.LatentView, dims: int, place) -> str:
    """UMAP's parameters and *Run UMAP*; every run is kept, so going back to earlier parameters
    is instant. -> the key of the map to show (the PCA until a UMAP exists)."""
    shown = view.umap_params.get(dims, (15, 0.1))
    with place.form(f"umap_form_{dims}", border=False):
        left, right = st.columns(2)
        neighbours = left.select_slider("UMAP neighbours", [5, 10, 15, 30, 50], value=shown[0],
                                        key=f"umap_neighbours_{dims}")
        min_dist = right.select_slider("UMAP min. distance", [0.0, 0.05, 0.1, 0.25, 0.5],
                                       value=shown[1], key=f"umap_min_dist_{dims}")
        run = st.form_submit_button("Run UMAP")
    params = (dims, int(neighbours), float(min_dist))
    took = None
    if run and not view.show_umap(*params):
        warming = "" if runtime.umap_is_warm() else (
            " UMAP is still compiling in the background: the first run can take ~30 s.")
        running = st.empty()  # the box shows while UMAP runs; the caption below says the rest
        with running.status(f"UMAP of {len(view.sample_rows):,} users (neighbours {params[1]}, "
                            f"min. distance {params[2]})…{warming}", expanded=False):
            started = time.perf_counter()
            view.compute_umap(*params)
            took = time.perf_counter() - started
        running.empty()
    if f"UMAP-{dims}" not in view.coords:
        st.info("UMAP's parameters are chosen before it runs: set them and press *Run UMAP*. "
                "Showing PCA meanwhile.")
        return f"PCA-{dims}"
    current = view.umap_params[dims]
    earlier = sorted(p[1:] for p in view.umaps if p[0] == dims and p[1:] != current)
    st.caption(f"UMAP with neighbours {current[0]}, min. distance {current[1]}"
               + (f", computed in {took:.1f} s" if took is not None else "")
               + (f"; also computed: {', '.join(f'{n}/{d}' for n, d in earlier)} (instant)"
                  if earlier else "") + ".")
    return f"UMAP-{dims}"


def keep_cohort(cohorts: dict[str, list[str]], name: str, users: list[str]) -> None:
    """The Keep button's callback: keep the selection under `name` and empty the name box (a
    callback runs before the page, when the box may still be changed), so the next selection
    is not kept under the same name by mistake."""
    cohorts[name] = users
    st.session_state["cohort_name"] = ""
    st.session_state["cohort_kept"] = (name, len(users))


def map_description(projection: str, dims: int, view: str) -> str:
    """How the page names a map in words, e.g. "PCA 2-D map by taste"."""
    return f"{projection} {dims}-D map by {view if view == 'taste' else 'next step'}"


def map_ui(view: state.LatentView, dataset: state.Dataset | None) -> str:
    """The map of the users, its controls and its selection; returns the map's description."""
    frame = view.frame
    a, b, c, d = st.columns([2, 1, 2, 2])
    projection = a.radio("Projection", ["PCA", "UMAP"], horizontal=True, key="latent_projection",
                         help="PCA is instant; UMAP keeps neighbourhoods (computed on request).")
    dims = b.radio("Dimensions", [2, 3], horizontal=True, key="latent_dims")
    options, left_out = colour_options(frame)
    if st.session_state.get("latent_colour") not in (None, *options):  # kept from another log
        del st.session_state["latent_colour"]
    colour = c.selectbox("Colour by", options, key="latent_colour", help=(
        f"Not offered: {', '.join(left_out)} — {'its' if len(left_out) == 1 else 'their'} "
        "values hardly repeat (the 20 most common cover under half of the users), so nearly "
        "every user would be the grey “other”." if left_out else None))
    with d:
        method = st.radio("Clusters", ["k-means", "HDBSCAN"], horizontal=True,
                          key="latent_cluster_method", help="Found on μ in the full latent "
                          "space, not on the map.")
        k = st.slider("k", 2, 12, 6, key="latent_k", disabled=method != "k-means")
    clustering = ("kmeans" if method == "k-means" else "hdbscan", int(k))
    slow = (clustering[0] == "hdbscan" and not view.has_clusters(*clustering)
            and len(view.frame) > state.HDBSCAN_SLOW_ABOVE)
    # exact, on every user: found on a draw of 5,000 of Beauty's 22,363 users it took a
    # fifteenth of the time, but agreed with the exact labels at ARI 0.05-0.49 by draw
    with st.spinner(f"HDBSCAN on all {len(view.frame):,} users in {view.mu.shape[1]} "
                    "dimensions: its time grows faster than the square of the users, so this "
                    "takes a minute or more (once: every clustering is kept)…",
                    show_time=True) if slow else contextlib.nullcontext():
        view.set_clusters(*clustering)
    names = view.cluster_names(dataset.items if dataset is not None else None)
    e, f, g = st.columns([2, 2, 1])
    search = e.text_input("Find a user", key="latent_search", placeholder="user id")
    size_by_activity = g.checkbox("Size by activity", value=True, key="latent_size")
    highlight = None
    if search.strip():
        found = view.rows_of([search.strip()], missing_ok=True)
        if len(found):
            highlight = int(found[0])
        else:
            e.warning(f"No user “{escape_markdown(search.strip())}”.")
    key = f"{projection}-{dims}"
    if projection == "UMAP":
        key = umap_ui(view, int(dims), f)
    if key.startswith("PCA") and key not in view.coords:
        view.coords[key] = latent.project_pca(view.mu, int(dims))
    coords = view.coords[key]
    rows = view.sample_rows
    if highlight is not None and highlight not in set(rows.tolist()):
        rows = np.sort(np.append(rows, highlight))
    if len(rows) < len(frame):
        st.caption(f"Showing a sample of {len(rows):,} of {len(frame):,} users, drawn once for "
                   "this map (each first cluster kept its share), so a UMAP stays when the "
                   "clusters change; the clusters and the exports cover every user.")
    values, categorical = colour_values(view, frame, colour, names)
    cluster_labels = pd.Series([names.get(int(c), str(c)) for c in view.clusters])
    # a few far users (UMAP's small islands, PCA's heaviest users) would squeeze the rest into
    # a corner: the map opens on the body of the users and says how many it leaves out
    window = None
    if int(dims) == 2:
        kept = np.flatnonzero(rows == highlight) if highlight is not None else None
        window = latent.view_range(coords[rows], keep=kept)
    fig = map_figure(coords, frame, rows, values, categorical, size_by_activity, highlight,
                     colour_name=colour, clusters=cluster_labels,
                     window=window[0] if window else None)
    event = st.plotly_chart(fig, width="stretch", key="latent_map", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    if window and window[1]:
        st.caption(f"{window[1]:,} {'user lies' if window[1] == 1 else 'users lie'} far from "
                   "the rest, outside this view, so that the others are not squeezed into a "
                   "corner: double-click the map to zoom out to every user.")
    users, how = selected_users(event)
    shown = map_description(key.split("-")[0], int(dims), view.view)  # PCA until a UMAP exists
    # the chart returns its last selection on every rerun: act on a new one only
    signature = (how, tuple(users))
    if users and st.session_state.get("latent_handled_selection") != signature:
        st.session_state["latent_handled_selection"] = signature
        if how == "click" and len(users) == 1:
            st.session_state[state.SELECTED_USER] = users[0]
            # the User page opens on this user, whatever its search box held before
            st.session_state["user_pick_pending"] = users[0]
            st.switch_page("pages/user.py")
        st.session_state[state.SELECTION] = {"users": users, "how": how, "map": shown}
    if highlight is not None:
        neighbours_ui(view, highlight)
    return shown


st.title("Latent space")
if (mismatch := state.data_mismatch()) is not None:
    st.warning(escape_markdown(mismatch), icon="⚠️")
model_in_use = state.model()
if model_in_use is None:
    st.info(state.no_model_yet("map its users"))
else:
    dataset = state.dataset()
    users_by = st.radio(
        "Place users by", list(state.USERS_BY), horizontal=True, key="latent_users_by",
        format_func=state.USERS_BY.get,
        help="Taste: the posteriors of every event of a user's last window multiplied, so each "
             "event counts by how sure the network is of it (the twin, which has no "
             "uncertainty, takes the plain mean of μ): who the user is over their "
             "history. Next step: the state after their last event, which their "
             "recommendations decode: what they are about to do. On the bundled sample, six "
             "clusters of the taste view match its planted segments twice as well "
             "(docs/results.md).")
    view = state.latent_view(model_in_use, dataset, users_by)
    networks = 1 + len(getattr(model_in_use.recommender, "others_", []))
    st.caption(f"{len(view.frame):,} users, each a point: their μ (latent size "
               f"{view.mu.shape[1]}) "
               + ("combined over every event of their last window" if users_by == "taste"
                  else "after their last event")
               + (f" — the first network's: this model ranks items by the mean of {networks} "
                  "networks' scores" if networks > 1 else "")
               + ". Click a user to open them; pick the lasso or box in the chart's toolbar and "
               "draw around users to form a cohort.")
    shown_map = map_ui(view, dataset)
    st.divider()
    cohort_ui(view, dataset, shown_map)
    st.divider()
    between_ui(view, dataset)
    st.divider()
    drift_ui(view, dataset)
    st.divider()
    exports_ui(view, dataset)
