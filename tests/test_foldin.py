"""Fold-in: a new behaviour log (or one edited user) encoded with a fitted model's vocabularies
and time buckets exactly as the training data was, so a stored user's own events, fed back as a
new log, give exactly that user's recommendations."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from seqvae.baselines import Popularity
from seqvae.logs import IngestOptions, read_log
from seqvae.sequences import GAP_FIRST, OOV, SequenceOptions, encode, time_gaps

ARRAYS = ("items", "events", "gaps", "timestamps")


@pytest.fixture
def events(timed_events) -> pd.DataFrame:
    return timed_events


@pytest.fixture
def trained(timed_model):
    return timed_model


def rows_of(events: pd.DataFrame, users: list[str]) -> pd.DataFrame:
    """The users' own rows, in file order."""
    return events[events["user_id"].isin(users)]


def read_frame(frame: pd.DataFrame, tmp_path, name: str = "new.csv", **options):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return read_log(path, IngestOptions(**options))[0]


def assert_same_arrays(folded, stored, user: str) -> None:
    mine = folded.of_user(int(folded.user_position([user])[0]))
    theirs = stored.of_user(int(stored.user_position([user])[0]))
    for name in ARRAYS:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=f"{user} {name}")


def test_the_log_has_times_and_several_event_types(trained):
    history = trained.history_
    # otherwise the equality below would not show that types and gaps are carried over
    assert history.has_timestamps
    assert set(trained.event_vocab_.tokens) == {"view", "cart", "purchase"}
    assert (history.gaps > GAP_FIRST).any() and np.unique(history.gaps).size > 4


def test_stored_users_own_rows_give_their_recommendations(trained, events, tmp_path):
    users = ["U00003", "U00017", "U00042", "U00064"]
    log = read_frame(rows_of(events, users), tmp_path)
    folded = trained.fold_in(log)
    # users in order of first appearance in the new log
    assert sorted(folded.users) == users
    for user in users:
        assert_same_arrays(folded, trained.history_, user)
    user_ids, ids, scores = trained.recommend_log(log, k=10)
    assert list(user_ids) == list(folded.users)
    for row, user in enumerate(user_ids):
        stored_ids, stored_scores = trained.recommend([user], k=10)
        np.testing.assert_array_equal(ids[row], stored_ids[0])
        np.testing.assert_allclose(scores[row], stored_scores[0], rtol=0, atol=1e-6)


def test_the_raw_item_list_loses_types_and_times(trained):
    """Why fold-in exists: the same items as a bare list get the most common event type and
    "unknown gap" for every event, and so other scores."""
    user = "U00017"
    stored = trained.history_.of_user(int(trained.history_.user_position([user])[0]))
    items = list(trained.item_vocab_.token(stored["items"]))
    assert np.unique(stored["events"]).size > 1 or (stored["gaps"] > GAP_FIRST).any()
    _, raw_scores = trained.recommend([items], k=10)
    _, stored_scores = trained.recommend([user], k=10)
    assert not np.allclose(raw_scores, stored_scores, atol=1e-6)


def test_an_unedited_user_sequence_is_the_stored_user(trained):
    history = trained.history_
    for user in ("U00003", "U00042"):
        stored = history.of_user(int(history.user_position([user])[0]))
        sequence = trained.user_sequence(trained.item_vocab_.token(stored["items"]),
                                         trained.event_vocab_.token(stored["events"]),
                                         stored["timestamps"], user=user)
        assert_same_arrays(sequence, history, user)
        ids, scores = trained.recommend_sequences(sequence, k=10)
        stored_ids, stored_scores = trained.recommend([user], k=10)
        np.testing.assert_array_equal(ids, stored_ids)
        np.testing.assert_allclose(scores, stored_scores, rtol=0, atol=1e-6)


def test_an_appended_event_gets_the_gap_since_the_last(trained):
    history = trained.history_
    stored = history.of_user(int(history.user_position(["U00003"])[0]))
    items = [*trained.item_vocab_.token(stored["items"]), trained.item_vocab_.tokens[0]]
    events = [*trained.event_vocab_.token(stored["events"]), "purchase"]
    # 100 s after the last event: bucket 2 + floor(log2(1 + 100)) = 2 + 6 = 8
    timestamps = [*stored["timestamps"], stored["timestamps"][-1] + 100_000_000]
    sequence = trained.user_sequence(items, events, timestamps)
    assert sequence.gaps[-1] == 8
    assert sequence.events[-1] == trained.event_vocab_.lookup(["purchase"])[0]
    np.testing.assert_array_equal(sequence.gaps[:-1], stored["gaps"])


def test_unknown_items_are_left_out_as_if_absent(trained, events, tmp_path):
    frame = rows_of(events, ["U00042", "U00003"]).copy()
    # an unknown item halfway between two of U00042's events days apart (kept and dropped only
    # after the gaps were taken, it would split that gap: two buckets of ~half the time), and a
    # user with only unknown items
    own = frame[frame["user_id"] == "U00042"]
    times = pd.to_datetime(own["timestamp"])
    after = int(np.argmax(times.diff().dt.total_seconds().to_numpy()[1:] > 86_400)) + 1
    middle = own.iloc[[after]].copy()
    middle["item_id"] = "NOPE"
    middle["timestamp"] = (times.iloc[after - 1] + (times.iloc[after] - times.iloc[after - 1]) / 2
                           ).strftime("%Y-%m-%dT%H:%M:%SZ")
    stranger = middle.assign(user_id="U99999", item_id="NEVER")
    frame = pd.concat([stranger, frame, middle])
    log = read_frame(frame, tmp_path)
    with pytest.warns(UserWarning) as caught:
        folded = trained.fold_in(log)
    messages = " ".join(str(w.message) for w in caught)
    assert "'NOPE'" in messages and "'NEVER'" in messages and "'U99999'" in messages
    assert "left out 2 event(s)" in messages
    # the stranger gets nothing; U00042's gaps are taken as if NOPE's row were not there
    assert sorted(folded.users) == ["U00003", "U00042"]
    assert_same_arrays(folded, trained.history_, "U00042")


def test_a_log_without_event_types_takes_the_most_common(trained, events, tmp_path):
    log = read_frame(rows_of(events, ["U00003"]).drop(columns="event_type"), tmp_path)
    folded = trained.fold_in(log)
    # the vocabulary is most frequent first: id 2 is "view"
    assert trained.event_vocab_.tokens[0] == "view"
    assert set(folded.events) == {2}
    np.testing.assert_array_equal(folded.gaps, trained.history_.of_user(
        int(trained.history_.user_position(["U00003"])[0]))["gaps"])


def test_rare_items_stay_out_of_vocabulary_as_in_training(events, tmp_path):
    """With min_item_count > 1 the training data had out-of-vocabulary events; a stored user's
    own rows encode them the same way (a baseline suffices: the encoding is shared)."""
    log = read_frame(events, tmp_path, "all.csv")
    sequences = encode(log, SequenceOptions(min_item_count=40))
    model = Popularity().fit(sequences)
    rare_user = str(sequences.users[np.flatnonzero(
        np.add.reduceat(sequences.items == OOV, sequences.offsets[:-1]) > 0)[0]])
    new = read_frame(rows_of(events, [rare_user]), tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folded = model.fold_in(new)
    assert any("out-of-vocabulary" in str(w.message) for w in caught)
    assert (folded.items == OOV).any()
    assert_same_arrays(folded, sequences, rare_user)
    assert folded.options.min_item_count == 40 and folded.options.k_core == 0


def test_an_edited_sequence_removes_and_appends_after_the_last_event(trained):
    history = trained.history_
    user = "U00042"
    stored = history.of_user(int(history.user_position([user])[0]))
    # no edit: the stored arrays
    unedited = trained.edited_sequence(user)
    for name in ARRAYS:
        np.testing.assert_array_equal(unedited.of_user(0)[name], stored[name])
    items = trained.item_vocab_.token(stored["items"])
    removed = items[0]
    new = [t for t in trained.item_vocab_.tokens if t not in set(items)][:2]
    edited = trained.edited_sequence(user, remove=[removed], add=new)
    kept = items != removed
    assert list(trained.item_vocab_.token(edited.items)) == [*items[kept], *new]
    # appended one median gap apart after the last event, as the user's most common type
    step = int(np.median(np.diff(stored["timestamps"])))
    last = int(stored["timestamps"][-1])
    assert list(edited.timestamps[-2:]) == [last + step, last + 2 * step]
    counts = np.bincount(stored["events"])
    assert set(edited.events[-2:]) == {int(np.argmax(counts))}
    # the removed item's events are gone as if never there: the gaps are taken again
    np.testing.assert_array_equal(edited.gaps, time_gaps(edited.timestamps, edited.offsets,
                                                         history.options.time_buckets))
    assert trained.edited_sequence(user, add=new, add_event="cart").events[-1] == \
        trained.event_vocab_.lookup(["cart"])[0]


def test_a_single_event_user_gets_added_items_a_day_later():
    log, _ = read_log(b"user,item,event,ts\nu1,a,cart,1000\nu2,a,view,1000\nu2,b,view,1060\n",
                      IngestOptions(timestamp_unit="s"))
    model = Popularity().fit(encode(log))
    edited = model.edited_sequence("u1", add=["b"])
    assert list(edited.timestamps) == [1000_000_000, 1000_000_000 + 86_400_000_000]
    # first event 1; a day: 2 + floor(log2(1 + 86400)) = 2 + 16 = 18; u1's own type, "cart"
    assert list(edited.gaps) == [1, 18]
    assert list(model.event_vocab_.token(edited.events)) == ["cart", "cart"]


def test_a_users_steps_are_read_as_trained_and_the_last_as_a_recommendation(trained):
    # with positions counted from the end (the default) a step predicting a known next event
    # is given the position training gave it, and the last step the one a recommendation reads
    from seqvae.model import within_remaining

    assert trained.model_.position_from == "end"
    user = "U00017"
    items, probabilities = trained.reconstruct(user)
    batch = trained.last_windows(trained.users_history([user]))
    length = len(items)
    steps = {"items": batch.items[:, :length], "events": batch.events[:, :length],
             "gaps": batch.gaps[:, :length]}
    mean = np.asarray(trained.model_.encode_steps(
        {**steps, "remaining": within_remaining(steps["items"])}, training=False)[0])[0]
    logits = np.asarray(trained.model_.decode(mean[:-1]), dtype=np.float64)
    logits[:, :2] = -np.inf
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities[:-1], want / want.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-7)
    # the last row is the recommendation's distribution over every item
    scores = trained.score(trained.users_history([user]), exclude_seen=False)[0]
    real = np.arange(2, scores.size)
    top = scores[real].max()
    log_p = scores[real] - top - np.log(np.exp(scores[real] - top).sum())
    np.testing.assert_allclose(np.log(probabilities[-1][real]), log_p, rtol=1e-4, atol=1e-4)
    # which a pass with every step as trained would not have given: the steps before the
    # last are told one event fewer follows
    last = np.asarray(trained.model_.decode(mean[-1:]), dtype=np.float64)[0, real]
    assert not np.allclose(last - last.max(), scores[real] - top, atol=1e-3)
    ranks = trained.next_item_ranks(user)
    nexts = trained.item_vocab_.lookup(list(items[1:]))
    np.testing.assert_allclose(ranks["p"], probabilities[np.arange(length - 1), nexts],
                               rtol=1e-6)
