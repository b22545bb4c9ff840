"""Train / validation / test splits that never leak a held-out event into a model's input.

Three protocols (see ``docs/protocols.md`` and the datasets README):

* `leave_one_out` — per user, the last event is the test target and the one before it the
  validation target (the next-item protocol of SASRec, BERT4Rec, ICLRec).
* `holdout_users` — validation and test users are drawn at random (seeded) and never trained on;
  each held-out user's first 80% of events (in time order) are the input, the rest the target
  (the fold-in protocol of Mult-VAE, Liang et al. 2018, made temporal as in SVAE).
* `time_cut` — one global time: events before it train, events after it are targets (no model
  sees the future of any user).

Every target is recorded by its ``event_index`` so that tests can prove the absence of leakage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqvae.errors import TrainingDataError
from seqvae.sequences import Sequences, index_ranges, segment_count


@dataclass
class Holdout:
    """Users to evaluate: what the model may see (`inputs`) and what it should predict."""

    inputs: Sequences  # one row per evaluated user
    target_offsets: np.ndarray  # (n_users + 1,) CSR offsets into the target arrays
    target_items: np.ndarray  # (n_targets,) item ids
    target_event_index: np.ndarray  # (n_targets,) event_index of each target event

    @property
    def n_users(self) -> int:
        return self.inputs.n_users

    def targets(self, row: int) -> np.ndarray:
        return self.target_items[self.target_offsets[row]:self.target_offsets[row + 1]]


@dataclass
class Split:
    """What a model trains on, what chooses its hyperparameters, and what reports its quality."""

    protocol: str
    train: Sequences
    validation: Holdout
    test: Holdout


def _holdout(full: Sequences, rows: np.ndarray, input_mask: np.ndarray,
             target_mask: np.ndarray) -> Holdout:
    """Build a Holdout for the users at `rows` from event masks over `full`."""
    users = full.subset_users(rows)
    take = index_ranges(full.offsets[rows], full.lengths[rows])  # the same order as subset_users
    in_mask = input_mask[take]
    tgt_mask = target_mask[take]
    inputs = users.select(in_mask, drop_empty_users=False)
    per_user_targets = segment_count(tgt_mask, users.offsets)
    return Holdout(
        inputs=inputs,
        target_offsets=np.concatenate([[0], np.cumsum(per_user_targets)]).astype(np.int64),
        target_items=users.items[tgt_mask],
        target_event_index=users.event_index[tgt_mask],
    )


def _position_in_user(seqs: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """(position of each event within its user, that user's length), per event."""
    lengths = seqs.lengths
    user = seqs.user_of_event
    position = np.arange(seqs.n_events) - seqs.offsets[:-1][user]
    return position, lengths[user]


def leave_one_out(seqs: Sequences, *, min_length: int = 3) -> Split:
    """Last event -> test, second to last -> validation, the rest -> training.

    Users with fewer than `min_length` events are not evaluated; all their events train.
    """
    if min_length < 3:
        raise ValueError(f"`min_length` should be >= 3. Received: `min_length`={min_length}")
    train_mask, val_target, test_target = _leave_one_out_masks(seqs, min_length)
    rows = np.flatnonzero(seqs.lengths >= min_length)
    if rows.size == 0:
        raise TrainingDataError(
            f"no user has at least {min_length} events, so leave-one-out has nothing to "
            "evaluate; use a log with longer histories"
        )
    return Split(
        protocol="leave-one-out",
        train=seqs.select(train_mask),
        validation=_holdout(seqs, rows, train_mask, val_target),
        test=_holdout(seqs, rows, train_mask | val_target, test_target),
    )


def _leave_one_out_masks(seqs: Sequences, min_length: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events that train, validate, test under leave-one-out."""
    position, length = _position_in_user(seqs)
    evaluated = length >= min_length
    test_target = evaluated & (position == length - 1)
    val_target = evaluated & (position == length - 2)
    return ~(test_target | val_target), val_target, test_target


def leave_one_out_train(seqs: Sequences, *, min_length: int = 3) -> Sequences:
    """The training part of `leave_one_out` alone (for training from blocks of users)."""
    return seqs.select(_leave_one_out_masks(seqs, min_length)[0])


def holdout_users(
    seqs: Sequences,
    *,
    n_holdout: int | float = 0.1,
    fold_in: float = 0.8,
    seed: int = 0,
    min_length: int = 2,
) -> Split:
    """Held-out validation and test users with a temporal fold-in.

    Args:
        n_holdout: users in each of validation and test: a count, or a share of eligible users.
        fold_in: share of each held-out user's events (time order) given as input; the rest
            (at least one event) are the targets.
        seed: seeds the choice of held-out users.
        min_length: users with fewer events are never held out.
    """
    if not 0.0 < fold_in < 1.0:
        raise ValueError(f"`fold_in` should be in (0, 1). Received: `fold_in`={fold_in}")
    eligible = np.flatnonzero(seqs.lengths >= max(2, min_length))
    count = round(n_holdout * eligible.size) if isinstance(n_holdout, float) else n_holdout
    if count < 1 or 2 * count >= eligible.size:
        raise TrainingDataError(
            f"cannot hold out {count} validation and {count} test users from {eligible.size} "
            f"users with at least {max(2, min_length)} events; lower n_holdout or use a bigger log"
        )
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(eligible)
    val_rows = np.sort(chosen[:count])
    test_rows = np.sort(chosen[count:2 * count])
    position, length = _position_in_user(seqs)
    n_target = np.maximum(1, np.round((1.0 - fold_in) * length).astype(np.int64))
    n_target = np.minimum(n_target, length - 1)
    is_target = position >= length - n_target
    held = np.zeros(seqs.n_users, dtype=bool)
    held[val_rows] = True
    held[test_rows] = True
    held_event = held[seqs.user_of_event]
    return Split(
        protocol="holdout-users",
        train=seqs.select(~held_event),
        validation=_holdout(seqs, val_rows, ~is_target, is_target),
        test=_holdout(seqs, test_rows, ~is_target, is_target),
    )


def time_cut(
    seqs: Sequences,
    *,
    test_start: float | None = None,
    validation_start: float | None = None,
    test_quantile: float = 0.9,
    validation_quantile: float = 0.8,
) -> Split:
    """A global time cut.

    Training: events before ``validation_start``. Validation: users active before and after it;
    input = their events before it, targets = their events in [validation_start, test_start).
    Test: input = events before ``test_start``, targets = events from it on.

    Args:
        test_start, validation_start: cut times in epoch microseconds; by default the
            `test_quantile` and `validation_quantile` of all event times.
    """
    if not seqs.has_timestamps:
        raise TrainingDataError(
            "a time cut needs timestamps and this log has none; use leave-one-out or held-out users"
        )
    ts = seqs.timestamps
    test_start = float(np.quantile(ts, test_quantile)) if test_start is None else test_start
    validation_start = (float(np.quantile(ts, validation_quantile))
                        if validation_start is None else validation_start)
    if validation_start > test_start:
        raise ValueError("`validation_start` should not be after `test_start`. Received: "
                         f"{validation_start} > {test_start}")
    before_val = ts < validation_start
    before_test = ts < test_start
    val_target = ~before_val & before_test
    test_target = ~before_test

    def rows_with(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        user = seqs.user_of_event
        has_in = np.bincount(user[inputs], minlength=seqs.n_users) > 0
        has_tgt = np.bincount(user[targets], minlength=seqs.n_users) > 0
        return np.flatnonzero(has_in & has_tgt)

    val_rows = rows_with(before_val, val_target)
    test_rows = rows_with(before_test, test_target)
    if val_rows.size == 0 or test_rows.size == 0:
        raise TrainingDataError(
            "no user is active on both sides of the time cut; move the cut "
            "(test_quantile / validation_quantile)"
        )
    return Split(
        protocol="time-cut",
        train=seqs.select(before_val),
        validation=_holdout(seqs, val_rows, before_val, val_target),
        test=_holdout(seqs, test_rows, before_test, test_target),
    )
