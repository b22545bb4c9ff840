"""Figures of seqvae.ui.charts that carry more than one scale."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from seqvae.logs import read_log
from seqvae.ui.charts import events_per_user, loss_curves, user_timeline


def test_the_kl_term_has_an_axis_of_its_own_so_the_reconstruction_curve_is_readable():
    epochs = [SimpleNamespace(epoch=e, loss=8.0 - e * 0.5, reconstruction_loss=7.9 - e * 0.5,
                              kl_loss=60.0 + 20 * e, beta=0.001 * e / 3) for e in (1, 2, 3)]
    fig = loss_curves(epochs)
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"total", "reconstruction", "KL", "β"}
    assert list(traces["reconstruction"].y) == [7.4, 6.9, 6.4]
    assert list(traces["KL"].y) == [80.0, 100.0, 120.0]
    # total and reconstruction share the upper panel's axis; KL and β each have another
    assert traces["total"].yaxis == traces["reconstruction"].yaxis
    axes = {traces[n].yaxis for n in ("reconstruction", "KL", "β")}
    assert len(axes) == 3, axes
    # the upper panel's axis is the loss's
    upper = traces["reconstruction"].yaxis.replace("y", "yaxis")
    layout = fig.layout[upper]
    assert layout.title.text == "loss"
    # two panels on one epoch axis
    assert traces["reconstruction"].xaxis != traces["KL"].xaxis
    assert fig.layout.xaxis.matches == traces["KL"].xaxis


def test_events_per_user_labels_the_log_axis_at_powers_of_ten_only():
    # 2,000 users with 1 to 2,000 events: the users axis spans three decades
    lengths = np.unique(np.geomspace(1, 2000, 2000).astype(int), return_counts=True)
    users = np.repeat(np.arange(lengths[0].size), lengths[0])
    log, _ = read_log(pd.DataFrame({"user": users, "item": users % 7, "ts": np.arange(users.size)}))
    fig = events_per_user(log)
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis.dtick == 1  # one label per decade: 1, 10, 100, …
    assert list(fig.data[0].x) == list(np.bincount(log.frame["user"].cat.codes))


def test_a_heavy_users_timeline_shows_its_points_small_and_see_through():
    def timeline(n, colour_by="event"):
        frame = pd.DataFrame({"when": np.arange(1, n + 1), "event": ["view", "cart"] * (n // 2),
                              "item": [f"i{k}" for k in range(n)], "label": [f"t{k}" for k in range(n)],
                              "value": np.tile([1.0, 5.0], n // 2)})
        return user_timeline(frame, colour_by, labels_up_to=0)

    for colour_by in ("event", "value"):
        light = timeline(20, colour_by)
        assert {t.marker.size for t in light.data} == {10} and light.data[0].marker.opacity is None
        heavy = timeline(700, colour_by)
        assert {t.marker.size for t in heavy.data} == {5}
        assert {t.marker.opacity for t in heavy.data} == {0.5}
        assert sum(len(t.x) for t in heavy.data) == 700  # every event is still drawn
    assert timeline(200).data[0].marker.size == 7


def test_a_skewed_measure_is_coloured_on_a_log_scale_labelled_in_its_own_units():
    from seqvae.ui.charts import log_colour_scale

    events = np.array([2.0, 5, 6, 6, 7, 9, 40, 190])  # median 6.5, the largest 29 times it
    colour, ticks = log_colour_scale(events)
    np.testing.assert_allclose(colour, np.log10(events))
    # ticks inside the colour bar's range, at 1, 2 and 5 times the powers of ten
    assert ticks["ticktext"] == ["2", "5", "10", "20", "50", "100"]
    np.testing.assert_allclose(ticks["tickvals"], np.log10([2, 5, 10, 20, 50, 100]))
    # MovieLens 100K: 20 to 737 events a user, a median of 65 (11 times): a log scale too
    movielens = np.array([20.0, 33, 65, 65, 148, 737])
    assert log_colour_scale(movielens)[1]["ticktext"] == ["20", "50", "100", "200", "500"]
    assert log_colour_scale(np.array([0.5, 2.0, 3.0])) is None  # level: linear reads well
    assert log_colour_scale(np.array([0.0, 1.0, 500.0])) is None  # a zero has no log
    assert log_colour_scale(np.array([np.nan, np.nan])) is None
    colour, ticks = log_colour_scale(np.array([0.02, 0.05, 0.06, 3.0, np.nan]))
    assert ticks["ticktext"] == ["0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]
    assert np.isnan(colour[-1])
    # four decades or more: the powers of ten alone
    wide = log_colour_scale(np.array([1.0, 2, 2, 3, 50_000]))[1]["ticktext"]
    assert wide == ["1", "10", "100", "1,000", "10,000"]


def test_long_titles_are_cut_with_an_ellipsis_and_short_ones_kept():
    from seqvae.ui.text import shorten

    assert shorten("Heat (1995)", 24) == "Heat (1995)"
    assert shorten("x" * 24, 24) == "x" * 24
    cut = shorten("Dr. Strangelove or: How I Learned to Stop Worrying (1963)", 24)
    assert cut == "Dr. Strangelove or: How…" and len(cut) <= 24  # trailing space dropped
    frame = pd.DataFrame({"when": [1, 2], "event": ["view", "view"], "item": ["a", "b"],
                          "label": ["A title far longer than the label room (2001)", "Short"]})
    fig = user_timeline(frame)
    assert list(fig.data[0].text) == ["A title far longer than…", "Short"]
    assert list(fig.data[0].customdata[:, 0]) == list(frame["label"])  # the hover keeps it whole


def test_a_timeline_of_crowded_days_can_be_drawn_in_order_and_still_say_the_time():
    from seqvae.ui.charts import crowded_days

    # 60 ratings in two sittings: on a time axis they would lie on two vertical stacks
    sittings = pd.to_datetime(["1998-03-01 20:00"] * 30 + ["1998-04-11 21:00"] * 30, utc=True)
    when = pd.Series(sittings + pd.to_timedelta(np.arange(60), unit="min"))
    assert crowded_days(when)
    assert not crowded_days(when[:40])  # too few events to crowd
    spread = pd.Series(pd.to_datetime("1998-01-01", utc=True) + pd.to_timedelta(
        np.arange(60), unit="D"))
    assert not crowded_days(spread) and not crowded_days(pd.Series(np.arange(60)))
    frame = pd.DataFrame({"when": when, "event": ["rate"] * 60, "item": [f"i{k}" for k in range(60)],
                          "label": [f"t{k}" for k in range(60)]})
    by_time, in_order = user_timeline(frame), user_timeline(frame, along="order")
    assert pd.to_datetime(by_time.data[0].x, utc=True).equals(pd.DatetimeIndex(when))
    assert by_time.layout.xaxis.title.text == "time"
    assert list(in_order.data[0].x) == list(range(1, 61))
    assert in_order.layout.xaxis.title.text == "position in the sequence"
    assert in_order.data[0].customdata[31, 1] == "event 32 · 1998-04-11 21:31"
    # by rating: the hover names the event type only where the user's events have several
    rated = frame.assign(value=np.tile([1.0, 5.0], 30))
    assert user_timeline(rated, "value").data[0].hovertemplate.endswith("<extra></extra>")
    typed = rated.assign(event=["view", "buy"] * 30)
    assert user_timeline(typed, "value").data[0].hovertemplate.endswith(
        "<extra>%{customdata[1]}</extra>")
    assert by_time.data[0].customdata[31, 1] == "1998-04-11 21:31"
