"""Drift over time: every user encoded as of two dates, and what moved.

A user's representation as of a date is the μ the model gives the user's events up to that
date — exactly what the fold-in path gives those events as a new user (a prefix of a stored
sequence keeps its event types and time gaps, so no retraining and no approximation). A user
with no event between the two dates therefore does not move at all; a user with no event before
the first date is not on the map yet and is counted, not shown.

* `drift(recommender, start, end, view)` — the two encodings and each user's movement.
* `top_movers`, `cohort_drift` — the users and the clusters that moved most.
* `items_behind` — what the movers did between the dates (items by shrunk lift against
  everyone's events between the dates) and where the decoder says they moved to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from seqvae.errors import SeqVAEError
from seqvae.latent import characterise, interpolate
from seqvae.sequences import Sequences, segment_count


@dataclass
class Drift:
    """Users present at `start` (rows of the recommender's stored histories), their μ as of
    `start` and as of `end`, and how far each moved (Euclidean distance in the full latent
    space)."""

    start: pd.Timestamp
    end: pd.Timestamp
    rows: np.ndarray  # (n,) rows of `recommender.history_` of the users with events by `start`
    before: np.ndarray  # (n, Z)
    after: np.ndarray  # (n, Z)
    events_before: np.ndarray  # (n,) events up to `start`
    events_between: np.ndarray  # (n,) events after `start`, up to `end`
    not_yet: int  # users whose first event is after `start`
    between: Sequences  # every stored user's events after `start`, up to `end` (all rows kept)

    @property
    def movement(self) -> np.ndarray:
        return np.linalg.norm(self.after - self.before, axis=1)


def as_of(history: Sequences, when: pd.Timestamp) -> np.ndarray:
    """Event mask: the events of `history` up to `when` (inclusive)."""
    return history.timestamps <= _micros(when)


def _utc(when: Any) -> pd.Timestamp:
    """A date or timestamp as a UTC timestamp (naive ones are taken as UTC)."""
    stamp = pd.Timestamp(when)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _micros(when: Any) -> int:
    return int(_utc(when).value // 1000)


def time_range(history: Sequences) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last event time of the stored histories (UTC)."""
    if not history.has_timestamps or history.n_events == 0:
        raise SeqVAEError("Drift over time needs a log with timestamps: this model's users have "
                          "none. Train on a log with a time column.")
    return (pd.Timestamp(int(history.timestamps.min()), unit="us", tz="UTC"),
            pd.Timestamp(int(history.timestamps.max()), unit="us", tz="UTC"))


def drift(recommender: Any, start: Any, end: Any, view: str = "next") -> Drift:
    """Encode every stored user as of `start` and as of `end` (dates or timestamps; naive ones
    are UTC) and measure the movement; ``view`` as in `SeqVAERecommender.encode`."""
    history = recommender.history_
    first, _ = time_range(history)
    start, end = _utc(start), _utc(end)
    if not start < end:
        raise SeqVAEError(f"The first date ({start:%Y-%m-%d %H:%M}) should come before the "
                          f"second ({end:%Y-%m-%d %H:%M}).")
    up_to_start = as_of(history, start)
    up_to_end = as_of(history, end)
    counts_before = segment_count(up_to_start, history.offsets)
    rows = np.flatnonzero(counts_before > 0)
    if rows.size == 0:
        raise SeqVAEError(f"No user has an event by {start:%Y-%m-%d %H:%M}: the log starts on "
                          f"{first:%Y-%m-%d}. Pick a later first date.")
    present = np.zeros(history.n_users, dtype=bool)
    present[rows] = True
    on_map = present[history.user_of_event]
    before_seq = history.select(up_to_start & on_map)
    after_seq = history.select(up_to_end & on_map)
    before, _ = recommender.encode(before_seq, view=view)
    after, _ = recommender.encode(after_seq, view=view)
    between_mask = up_to_end & ~up_to_start
    between = history.select(between_mask, drop_empty_users=False)
    return Drift(start=start, end=end, rows=rows, before=before, after=after,
                 events_before=counts_before[rows], events_between=between.lengths[rows],
                 not_yet=int(history.n_users - rows.size), between=between)


def top_movers(result: Drift, users: np.ndarray, k: int = 20) -> pd.DataFrame:
    """The `k` users who moved most: ``user``, ``row`` (in the stored histories), ``moved``,
    events up to the first date and between the dates."""
    order = np.argsort(-result.movement, kind="stable")[:k]
    return pd.DataFrame({"user": np.asarray(users)[result.rows[order]].astype(str),
                         "row": result.rows[order], "moved": result.movement[order],
                         "events by start": result.events_before[order],
                         "events between": result.events_between[order]})


def cohort_drift(result: Drift, labels: np.ndarray, names: dict[int, str] | None = None
                 ) -> pd.DataFrame:
    """Per cluster (`labels`: one per stored user): its users on the map, the share of them
    active between the dates, their mean movement, and how far the cluster's centre moved."""
    names = names or {}
    cluster = np.asarray(labels)[result.rows]
    records = []
    for label in np.unique(cluster):
        members = cluster == label
        records.append({
            "cluster": names.get(int(label), str(label)), "users": int(members.sum()),
            "active between": float((result.events_between[members] > 0).mean()),
            "mean movement": float(result.movement[members].mean()),
            "centre moved": float(np.linalg.norm(result.after[members].mean(axis=0)
                                                 - result.before[members].mean(axis=0))),
        })
    frame = pd.DataFrame(records, columns=["cluster", "users", "active between",
                                           "mean movement", "centre moved"])
    return frame.sort_values("mean movement", ascending=False, kind="stable").reset_index(drop=True)


def items_behind(recommender: Any, result: Drift, members: np.ndarray, top: int = 10
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What lies behind the movement of the users at `members` (positions in `result`):

    ``(done, towards)`` — the items they interacted with between the dates, by lift (shrunk,
    as for cohorts) against every user's events between the dates; and the items whose decoded
    probability rose most from the group's mean μ at the start to its mean μ at the end
    (``item``, ``at start``, ``at end``, ``change``).
    """
    members = np.asarray(members)
    done, _ = characterise(result.between, result.rows[members], recommender.item_vocab_,
                           recommender.event_vocab_, top=top, min_users=2)
    _, movers = interpolate(recommender, result.before[members].mean(axis=0),
                            result.after[members].mean(axis=0), steps=2, top=top)
    towards = movers[movers["change"] > 0].reset_index(drop=True)
    return done, towards
