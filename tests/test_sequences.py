"""seqvae.sequences: vocabularies, time order, gap buckets, k-core, windows."""

from __future__ import annotations

import numpy as np
import pytest

from seqvae.logs import IngestOptions, read_log
from seqvae.sequences import (
    OOV,
    PAD,
    SequenceOptions,
    Vocabulary,
    encode,
    encode_user,
    gap_buckets,
    k_core_mask,
    time_gaps,
)


def log_of(text: str, **options):
    return read_log(text.encode(), IngestOptions(**options), name="t.csv")


LOG = (
    "user,item,event,ts\n"
    "u1,a,view,1000\n"      # line 2
    "u2,b,view,1000\n"
    "u1,b,cart,1010\n"
    "u1,c,view,1005\n"      # earlier than the line above: sorted before it
    "u2,a,purchase,1000\n"  # same time as u2's first event: file order breaks the tie
    "u3,a,view,1000\n"
)


def test_time_order_is_stable_and_per_user():
    log, _ = log_of(LOG, timestamp_unit="s")
    seqs = encode(log)
    assert list(seqs.users) == ["u1", "u2", "u3"]
    u1 = seqs.item_vocab.token(seqs.of_user(0)["items"])
    assert list(u1) == ["a", "c", "b"]
    u2 = seqs.item_vocab.token(seqs.of_user(1)["items"])
    assert list(u2) == ["b", "a"]
    assert list(seqs.lengths) == [3, 2, 1]


def test_vocabularies_reserve_padding_and_oov():
    log, _ = log_of(LOG, timestamp_unit="s")
    seqs = encode(log)
    # item counts: a 3, b 2, c 1 -> ids 2, 3, 4 (most frequent first)
    assert seqs.item_vocab.tokens == ("a", "b", "c")
    assert list(seqs.item_vocab.lookup(["a", "c", "zzz"])) == [2, 4, OOV]
    assert list(seqs.item_vocab.token([PAD, OOV, 2])) == ["<pad>", "<oov>", "a"]
    assert seqs.item_vocab.size == 5
    assert seqs.event_vocab.tokens == ("view", "cart", "purchase")
    assert (seqs.items >= 2).all()


def test_min_item_count_maps_rare_items_to_oov():
    log, _ = log_of(LOG, timestamp_unit="s")
    seqs = encode(log, SequenceOptions(min_item_count=2))
    assert seqs.item_vocab.tokens == ("a", "b")
    assert (seqs.items == OOV).sum() == 1  # the single "c"


def test_vocabulary_json_round_trip():
    vocab = Vocabulary(("x", "y"))
    assert Vocabulary.from_json(vocab.to_json()) == vocab


def test_gap_buckets_log_scale():
    # gap 0 s -> 2 + floor(log2(1)) = 2; 1 s -> 3; 3 s -> 4; 1 day -> 2 + 16 = 18; unknown -> 1
    gaps = np.array([0.0, 1.0, 3.0, 86400.0, np.nan, 1e12])
    assert list(gap_buckets(gaps, 34)) == [2, 3, 4, 18, 1, 33]


def test_gaps_of_an_encoded_log():
    log, _ = log_of(LOG, timestamp_unit="s")
    seqs = encode(log)
    # u1: a@1000 (first -> 1), c@1005 (5 s -> 2 + floor(log2 6) = 4), b@1010 (5 s -> 4)
    assert list(seqs.of_user(0)["gaps"]) == [1, 4, 4]
    # without timestamps every gap is unknown
    log, _ = log_of("user,item\n1,a\n1,b\n")
    assert list(encode(log).gaps) == [1, 1]


def test_k_core_is_iterative_and_reported():
    # user 3 has one event; removing it leaves item z with one event, which goes too
    users = np.array([0, 0, 1, 1, 2, 0])
    items = np.array([0, 1, 0, 1, 2, 2])
    keep = k_core_mask(users, items, 2)
    assert list(keep) == [True, True, True, True, False, False]
    log, report = log_of("user,item\n1,x\n1,y\n2,x\n2,y\n3,z\n1,z\n")
    seqs = encode(log, SequenceOptions(k_core=2), report)
    assert report.dropped == {"k_core": 2} and report.rows_kept == 4
    assert seqs.n_events == 4
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())


def test_windows_cover_every_event_and_end_at_the_last():
    log, _ = log_of("user,item\n" + "".join(f"1,i{k}\n" for k in range(7)) + "2,i0\n2,i1\n")
    seqs = encode(log)
    windows = seqs.windows(length=3, stride=2)
    # user 1 (7 events): starts 0, 2, 4 (the last ends at event 7); user 2: one padded window
    assert len(windows) == 4
    assert list(windows.user_index) == [0, 0, 0, 1]
    tokens = [list(seqs.item_vocab.token(row[row != PAD])) for row in windows.items]
    assert tokens == [["i0", "i1", "i2"], ["i2", "i3", "i4"], ["i4", "i5", "i6"], ["i0", "i1"]]
    assert windows.mask.sum(axis=1).tolist() == [3, 3, 3, 2]


def test_last_window_is_the_most_recent_events():
    log, _ = log_of("user,item\n" + "".join(f"1,i{k}\n" for k in range(7)) + "2,i0\n")
    seqs = encode(log)
    last = seqs.last_window(4)
    assert list(seqs.item_vocab.token(last.items[0])) == ["i3", "i4", "i5", "i6"]
    assert list(last.items[1]) == [seqs.item_vocab.lookup(["i0"])[0], 0, 0, 0]


@pytest.mark.parametrize(("length", "stride"), [(0, 1), (3, 0)])
def test_window_arguments_are_checked(length, stride):
    log, _ = log_of("user,item\n1,a\n1,b\n")
    with pytest.raises(ValueError, match="positive integer"):
        encode(log).windows(length, stride)


def test_select_and_subset_keep_alignment():
    log, _ = log_of(LOG, timestamp_unit="s")
    seqs = encode(log)
    first_events = seqs.select(np.isin(np.arange(seqs.n_events), seqs.offsets[:-1]))
    assert list(first_events.lengths) == [1, 1, 1]
    sub = seqs.subset_users(np.array([2, 0]))
    assert list(sub.users) == ["u3", "u1"] and list(sub.lengths) == [1, 3]
    assert list(seqs.user_position(["u3", "nobody"])) == [2, -1]


def test_time_gaps_start_again_for_every_user():
    # two users: [0 s, 1 s, 4 s] and [10 s, 10 s]; 1 s -> 2 + floor(log2 2) = 3,
    # 3 s -> 2 + floor(log2 4) = 4, 0 s -> 2; each user's first event -> 1
    micros = np.array([0, 1, 4, 10, 10]) * 1_000_000
    offsets = np.array([0, 3, 5])
    assert list(time_gaps(micros, offsets, 34)) == [1, 3, 4, 1, 2]
    assert list(time_gaps(None, offsets, 34)) == [1, 1, 1, 1, 1]


def test_encode_user_follows_the_rules_of_encode():
    log, _ = log_of(LOG, timestamp_unit="s")
    seqs = encode(log)
    # u1 again, given out of time order: a@1000, b@1010, c@1005 -> sorted a, c, b
    one = encode_user(["a", "b", "c"], ["view", "cart", "view"],
                      [1000_000_000, 1010_000_000, 1005_000_000], item_vocab=seqs.item_vocab,
                      event_vocab=seqs.event_vocab, options=seqs.options, user="u1")
    for name in ("items", "events", "gaps", "timestamps"):
        assert list(one.of_user(0)[name]) == list(seqs.of_user(0)[name]), name
    # no types: the most common (id 2, "view"); no times: every gap unknown; unknown item: OOV
    bare = encode_user(["a", "zzz"], None, None, item_vocab=seqs.item_vocab,
                       event_vocab=seqs.event_vocab)
    assert list(bare.items) == [2, OOV] and list(bare.events) == [2, 2]
    assert list(bare.gaps) == [1, 1] and not bare.has_timestamps
    with pytest.raises(ValueError, match="`events` should have one entry per item"):
        encode_user(["a"], ["view", "cart"], None, item_vocab=seqs.item_vocab,
                    event_vocab=seqs.event_vocab)
