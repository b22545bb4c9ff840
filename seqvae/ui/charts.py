"""Plotly figures of a log: events per user, event-type mix, events over time.

Figures only — no Streamlit here — so they can be tested and reused by the CLI or notebooks.
Colours come from Okabe & Ito's colour-blind-safe palette.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from seqvae.logs import EventLog
from seqvae.ui.text import shorten

#: Okabe & Ito (2008), safe for the common forms of colour blindness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")

_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 300,
           "template": "plotly_white"}


def events_per_user(log: EventLog) -> go.Figure:
    """Histogram of events per user on a log count axis: activity is heavy-tailed, and a linear
    axis hides every user past the first few bins."""
    counts = np.bincount(log.frame["user"].cat.codes.to_numpy(), minlength=log.n_users)
    fig = go.Figure(go.Histogram(x=counts, marker_color=PALETTE[0], nbinsx=50,
                                 hovertemplate="%{x} events: %{y:,} users<extra></extra>"))
    median = float(np.median(counts)) if counts.size else 0.0
    fig.update_layout(title=f"Events per user (median {median:g})", xaxis_title="events",
                      yaxis_title="users (log scale)", **_LAYOUT)
    # a label at each power of ten only: Plotly's own log ticks also label 2 and 5 of every
    # decade, which overlap on a 300-pixel chart once the counts span a few decades
    fig.update_yaxes(type="log", tickformat=",d", dtick=1)
    return fig


def value_distribution(log: EventLog) -> go.Figure | None:
    """The value column (rating, quantity): a bar per value when there are few distinct ones
    (ratings), else a histogram; None without a value column."""
    if "value" not in log.frame.columns:
        return None
    values = pd.to_numeric(log.frame["value"], errors="coerce").dropna()
    if values.empty:
        return None
    distinct = values.value_counts().sort_index()
    if len(distinct) <= 20:
        trace = go.Bar(x=[f"{v:g}" for v in distinct.index], y=distinct.to_numpy(),
                       marker_color=PALETTE[2], hovertemplate="%{x}: %{y:,} events<extra></extra>")
    else:
        trace = go.Histogram(x=values, nbinsx=40, marker_color=PALETTE[2],
                             hovertemplate="%{x}: %{y:,} events<extra></extra>")
    fig = go.Figure(trace)
    fig.update_layout(title=f"Values (mean {values.mean():.3g}, median {values.median():g})",
                      xaxis_title="value", yaxis_title="events", **_LAYOUT)
    fig.update_yaxes(tickformat=",d")
    if len(distinct) <= 20:
        fig.update_xaxes(type="category")
    return fig


def event_type_mix(log: EventLog) -> go.Figure:
    counts = log.frame["event"].value_counts()
    fig = go.Figure(go.Bar(x=[str(k) for k in counts.index], y=counts.to_numpy(),
                           marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(counts))],
                           hovertemplate="%{x}: %{y:,}<extra></extra>"))
    fig.update_layout(title="Event types", yaxis_title="events", **_LAYOUT)
    return fig


def events_over_time(log: EventLog) -> go.Figure | None:
    """Events per hour, day or week (whichever gives a readable number of points for the span),
    one line per event type; bars when the span fits in a few periods."""
    if not log.has_timestamp or log.frame["timestamp"].isna().all():
        return None
    frame = log.frame[["timestamp", "event"]].dropna()
    span = frame["timestamp"].max() - frame["timestamp"].min()
    if span <= pd.Timedelta(days=3):
        freq, unit = "h", "hour"
    elif span <= pd.Timedelta(days=366):
        freq, unit = "D", "day"
    else:
        freq, unit = "W", "week"
    period = frame["timestamp"].dt.tz_convert(None).dt.to_period(freq).dt.start_time
    table = pd.crosstab(period, frame["event"].astype(str))
    fig = go.Figure()
    few = len(table) < 4  # a line through one or two points reads as nothing
    for i, column in enumerate(table.columns):
        colour = PALETTE[i % len(PALETTE)]
        if few:
            fig.add_trace(go.Bar(x=table.index, y=table[column], name=str(column),
                                 marker_color=colour))
        else:
            fig.add_trace(go.Scatter(x=table.index, y=table[column], name=str(column),
                                     mode="lines", line={"color": colour}))
    fig.update_layout(title=f"Events per {unit}", yaxis_title="events",
                      barmode="stack", **_LAYOUT)
    fig.update_yaxes(tickformat=",d", rangemode="tozero")
    # whole periods on the axis: never milliseconds on a short span
    fig.update_xaxes(tickformat={"h": "%b %d %H:00", "D": "%b %d, %Y", "W": "%b %Y"}[freq])
    return fig


def loss_curves(epochs: list) -> go.Figure:
    """The training loss per epoch in two panels sharing the epoch axis: total and
    reconstruction above; the KL term below, with β on its right-hand axis.

    The KL (tens to hundreds of nats, summed over the latent's dimensions) and the
    reconstruction (a few nats per step) differ by two orders of magnitude: on one axis the
    curve that shows learning would lie flat on zero.
    """
    from plotly.subplots import make_subplots

    x = [e.epoch for e in epochs]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        specs=[[{}], [{"secondary_y": True}]])
    for i, (name, values) in enumerate((
        ("total", [e.loss for e in epochs]),
        ("reconstruction", [e.reconstruction_loss for e in epochs]),
    )):
        fig.add_trace(go.Scatter(x=x, y=values, name=name, mode="lines+markers",
                                 line={"color": PALETTE[i]}), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=[e.kl_loss for e in epochs], name="KL",
                             mode="lines+markers", line={"color": PALETTE[2]}), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=[e.beta for e in epochs], name="β", mode="lines",
                             line={"color": PALETTE[3], "dash": "dot"}),
                  row=2, col=1, secondary_y=True)
    fig.update_layout(title="Training loss per epoch", legend={"orientation": "h", "y": -0.25},
                      **{**_LAYOUT, "height": 380})
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_yaxes(title_text="KL", row=2, col=1, secondary_y=False)
    # 0.001, not Plotly's SI "1m"
    fig.update_yaxes(title_text="β", row=2, col=1, secondary_y=True, rangemode="tozero",
                     tickformat=".4~f", exponentformat="none", showgrid=False)
    fig.update_xaxes(tickformat="d", dtick=max(1, len(x) // 10))  # whole epochs
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    return fig


def validation_curves(epochs: list) -> go.Figure:
    """Validation metrics per epoch (the early-stopping metric first)."""
    x = [e.epoch for e in epochs]
    fig = go.Figure()
    names = list(epochs[0].validation) if epochs else []
    for i, name in enumerate(names):
        fig.add_trace(go.Scatter(x=x, y=[e.validation.get(name) for e in epochs], name=name,
                                 mode="lines+markers", line={"color": PALETTE[i + 4]}))
    fig.update_layout(title="Validation (the best epoch is kept)", xaxis_title="epoch",
                      yaxis_title="metric", **_LAYOUT)
    fig.update_xaxes(tickformat="d", dtick=max(1, len(x) // 10))
    return fig


def timeline_marker(events: int) -> dict:
    """Points for a timeline of `events`: full size up to 60, then smaller, see-through and
    outlined, so a heavy user's hundreds of events on one line show where they crowd instead
    of one solid bar."""
    if events <= 60:
        return {"size": 10}
    return {"size": 7 if events <= 300 else 5, "opacity": 0.5,
            "line": {"width": 0.5, "color": "white"}}


def crowded_days(when: pd.Series, least: int = 50, per_day: float = 5.0) -> bool:
    """Whether a timeline of these times would pile its points up: at least `least` events,
    more than `per_day` of them a calendar day on average (a MovieLens user rating hundreds of
    films in a few sittings)."""
    if len(when) < least or not pd.api.types.is_datetime64_any_dtype(when):
        return False
    return len(when) > per_day * when.dt.floor("D").nunique()


def user_timeline(frame: pd.DataFrame, colour_by: str = "event", labels_up_to: int = 30,
                  along: str = "time") -> go.Figure:
    """One user's events: `frame` has `when` (time or position), `event`, `item`, `label` and,
    for ``colour_by="value"``, `value` (a rating: then the y axis is the value and the colour
    too). The titles of the last `labels_up_to` events are written beside their points.
    ``along="order"`` spaces the events evenly in their order (the hover still says their
    time), for days so full that on a time axis their points would lie on one another."""
    fig = go.Figure()
    timed = pd.api.types.is_datetime64_any_dtype(frame["when"])
    by_order = along == "order" or not timed
    x = pd.Series(np.arange(1, len(frame) + 1), index=frame.index) if by_order else frame["when"]
    position = pd.Series([f"event {n:,}" for n in range(1, len(frame) + 1)], index=frame.index)
    when_text = (frame["when"].dt.strftime("%Y-%m-%d %H:%M") if timed else position)
    if by_order and timed:
        when_text = position + " · " + when_text
    frame = frame.assign(x=x, when_text=when_text)
    short = frame["label"].map(lambda label: shorten(label, 24))
    text = short.where(np.arange(len(frame)) >= len(frame) - labels_up_to, "") if labels_up_to \
        else pd.Series("", index=frame.index)
    positions = np.where(np.arange(len(frame)) % 2 == 0, "top center", "bottom center")
    marker = timeline_marker(len(frame))
    if colour_by == "value" and "value" in frame.columns:
        fig.add_trace(go.Scatter(
            x=frame["x"], y=frame["value"], mode="markers+text", name="events",
            text=text, textposition=positions, textfont={"size": 10},
            marker={**marker, "color": frame["value"], "colorscale": "Viridis",
                    "showscale": True, "colorbar": {"title": {"text": "value"}, "thickness": 12}},
            customdata=frame[["label", "event", "when_text"]].to_numpy(),
            # the event type beside the value only where it tells events apart (a log without
            # types would say "unknown" on every point)
            hovertemplate="%{customdata[0]}<br>%{customdata[2]}<br>value %{y}"
                          + ("<extra>%{customdata[1]}</extra>" if frame["event"].nunique() > 1
                             else "<extra></extra>"),
        ))
        y_title = "value"
    else:
        for i, (event, part) in enumerate(frame.groupby("event", sort=False, observed=True)):
            fig.add_trace(go.Scatter(
                x=part["x"], y=part["event"], mode="markers+text", name=str(event),
                text=text[part.index], textposition=positions[part.index],
                textfont={"size": 10},
                marker={**marker, "color": PALETTE[i % len(PALETTE)]},
                customdata=part[["label", "when_text"]].to_numpy(),
                hovertemplate="%{customdata[0]}<br>%{customdata[1]}<extra>%{y}</extra>",
            ))
        y_title = "event"
    fig.update_layout(title="Timeline", xaxis_title="position in the sequence" if by_order
                      else "time",
        yaxis_title=y_title, showlegend=False, **{**_LAYOUT, "height": 360})
    return fig


def reconstruction_heatmap(probabilities: np.ndarray, step_labels: list[str],
                           item_labels: list[str]) -> go.Figure:
    """Per-step probabilities (steps x items) of the items the model believes in most."""
    fig = go.Figure(go.Heatmap(
        z=probabilities.T, x=list(range(1, len(step_labels) + 1)), y=item_labels,
        customdata=np.array([step_labels] * len(item_labels)),
        colorscale="Blues", colorbar={"title": "p(next)"},
        hovertemplate="after step %{x} (%{customdata})<br>%{y}: %{z:.3f}<extra></extra>",
    ))
    fig.update_layout(title="What the model expects next, step by step",
                      xaxis_title="step of the sequence", **{**_LAYOUT, "height": 420})
    return fig


def log_colour_scale(values: np.ndarray) -> tuple[np.ndarray, dict] | None:
    """For a skewed positive measure (the largest over 10 times the median, as events per user
    on most logs: MovieLens' 737 against a median of 65): its log10 to colour by, and a colour
    bar labelled in the measure's own units — at 1, 2 and 5 times the powers of ten inside the
    values' range where it spans under three decades, else at the powers of ten. None where a
    linear scale reads well."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.min() <= 0 or finite.max() <= 10 * np.median(finite):
        return None
    smallest, largest = float(finite.min()), float(finite.max())
    low, high = int(np.floor(np.log10(smallest))), int(np.ceil(np.log10(largest)))
    steps = (1.0, 2.0, 5.0) if high - low <= 3 else (1.0,)
    marks = [m * 10.0 ** p for p in range(low, high + 1) for m in steps]
    inside = [v for v in marks if smallest <= v * (1 + 1e-9) and v <= largest * (1 + 1e-9)]
    if len(inside) < 2:  # a narrow range: the powers of ten around it
        inside = [10.0 ** p for p in range(low, high + 1)]
    ticks = [float(np.log10(v)) for v in inside]
    return np.log10(values), {"tickvals": ticks, "ticktext": [f"{v:,.10g}" for v in inside]}
