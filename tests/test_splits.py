"""seqvae.splits: the three protocols, and no held-out event ever reaches a model's input."""

from __future__ import annotations

import numpy as np
import pytest

from seqvae.errors import TrainingDataError
from seqvae.logs import read_log
from seqvae.sequences import encode
from seqvae.splits import Split, holdout_users, leave_one_out, time_cut


@pytest.fixture(scope="module")
def sample_sequences(sample_events):
    log, _ = read_log(sample_events)
    return encode(log)


def assert_no_leak(split: Split) -> None:
    """No validation or test target event is in the training data or in a model's input."""
    train = set(split.train.event_index.tolist())
    for holdout in (split.validation, split.test):
        targets = set(holdout.target_event_index.tolist())
        assert targets, "a holdout without targets tests nothing"
        assert not targets & train
        assert not targets & set(holdout.inputs.event_index.tolist())
    # validation targets are never test inputs' *future*: test targets are not validation inputs
    assert not set(split.test.target_event_index.tolist()) & set(
        split.validation.inputs.event_index.tolist())


def test_leave_one_out(sample_sequences):
    seqs = sample_sequences
    split = leave_one_out(seqs)
    assert_no_leak(split)
    evaluated = seqs.lengths >= 3
    assert split.test.n_users == split.validation.n_users == evaluated.sum()
    # one target each: the last event (test) and the one before (validation)
    assert np.all(np.diff(split.test.target_offsets) == 1)
    last = seqs.offsets[1:][evaluated] - 1
    assert np.array_equal(split.test.target_event_index, seqs.event_index[last])
    assert np.array_equal(split.validation.target_event_index, seqs.event_index[last - 1])
    # test inputs = everything before the last event
    assert np.array_equal(split.test.inputs.lengths, seqs.lengths[evaluated] - 1)
    assert split.train.n_events == seqs.n_events - 2 * evaluated.sum()


def test_holdout_users_never_train_on_held_out_users(sample_sequences):
    seqs = sample_sequences
    split = holdout_users(seqs, n_holdout=200, seed=3)
    assert_no_leak(split)
    held = set(split.validation.inputs.users) | set(split.test.inputs.users)
    assert len(held) == 400
    assert not held & set(split.train.users)
    # temporal fold-in: every target comes after every input of the same user
    for row in range(split.test.n_users):
        user_inputs = split.test.inputs.of_user(row)["timestamps"]
        lo, hi = split.test.target_offsets[row], split.test.target_offsets[row + 1]
        target_pos = split.test.target_event_index[lo:hi]
        target_ts = seqs.timestamps[target_pos]
        assert user_inputs.max() <= target_ts.min()
        assert hi - lo >= 1
    # seeded
    again = holdout_users(seqs, n_holdout=200, seed=3)
    assert list(again.test.inputs.users) == list(split.test.inputs.users)
    other = holdout_users(seqs, n_holdout=200, seed=4)
    assert list(other.test.inputs.users) != list(split.test.inputs.users)


def test_time_cut(sample_sequences):
    seqs = sample_sequences
    split = time_cut(seqs, test_quantile=0.9, validation_quantile=0.8)
    assert_no_leak(split)
    cut = np.quantile(seqs.timestamps, 0.9)
    assert split.train.timestamps.max() < cut
    assert seqs.timestamps[split.test.target_event_index].min() >= cut
    assert split.test.inputs.timestamps.max() < cut


def test_time_cut_needs_timestamps():
    log, _ = read_log(b"user,item\n1,a\n1,b\n2,a\n2,b\n", name="t.csv")
    with pytest.raises(TrainingDataError, match="timestamps"):
        time_cut(encode(log))


def test_leave_one_out_needs_long_enough_users():
    log, _ = read_log(b"user,item\n1,a\n1,b\n2,a\n2,b\n", name="t.csv")
    with pytest.raises(TrainingDataError, match="at least 3 events"):
        leave_one_out(encode(log))


def test_holdout_too_many_users():
    log, _ = read_log(b"user,item\n1,a\n1,b\n2,a\n2,b\n", name="t.csv")
    with pytest.raises(TrainingDataError, match="cannot hold out"):
        holdout_users(encode(log), n_holdout=1)
