"""Plotly figures of a log: events per user, event-type mix, events over time.

Figures only — no Streamlit here — so they can be tested and reused by the CLI or notebooks.
Colours come from Okabe & Ito's colour-blind-safe palette.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from seqvae.logs import EventLog

#: Okabe & Ito (2008), safe for the common forms of colour blindness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")

_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "height": 300,
           "template": "plotly_white"}


def events_per_user(log: EventLog) -> go.Figure:
    counts = np.bincount(log.frame["user"].cat.codes.to_numpy(), minlength=log.n_users)
    fig = go.Figure(go.Histogram(x=counts, marker_color=PALETTE[0], nbinsx=50,
                                 hovertemplate="%{x} events: %{y} users<extra></extra>"))
    fig.update_layout(title="Events per user", xaxis_title="events", yaxis_title="users",
                      **_LAYOUT)
    return fig


def event_type_mix(log: EventLog) -> go.Figure:
    counts = log.frame["event"].value_counts()
    fig = go.Figure(go.Bar(x=[str(k) for k in counts.index], y=counts.to_numpy(),
                           marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(counts))],
                           hovertemplate="%{x}: %{y:,}<extra></extra>"))
    fig.update_layout(title="Event types", yaxis_title="events", **_LAYOUT)
    return fig


def events_over_time(log: EventLog) -> go.Figure | None:
    """Events per day (per week for spans over a year), one line per event type."""
    if not log.has_timestamp or log.frame["timestamp"].isna().all():
        return None
    frame = log.frame[["timestamp", "event"]].dropna()
    span_days = (frame["timestamp"].max() - frame["timestamp"].min()).days
    freq = "W" if span_days > 366 else "D"
    period = frame["timestamp"].dt.tz_convert(None).dt.to_period(freq).dt.start_time
    table = pd.crosstab(period, frame["event"].astype(str))
    fig = go.Figure()
    for i, column in enumerate(table.columns):
        fig.add_trace(go.Scatter(x=table.index, y=table[column], name=str(column), mode="lines",
                                 line={"color": PALETTE[i % len(PALETTE)]}))
    fig.update_layout(title="Events per " + ("week" if freq == "W" else "day"),
                      yaxis_title="events", **_LAYOUT)
    return fig
