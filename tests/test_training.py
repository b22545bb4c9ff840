"""seqvae.training and the fitted recommender: learning, early stopping, cancellation,
determinism, inference, and the planted segments of the sample log."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from seqvae.batches import auto_batch_size, make_batches, pack_windows
from seqvae.errors import TrainingDataError
from seqvae.logs import read_log
from seqvae.sequences import encode
from seqvae.splits import leave_one_out
from seqvae.training import (
    CancelToken,
    NegativeSampler,
    SeqVAEConfig,
    epoch_options,
    evaluate_holdout,
    fit,
    refit,
    shard,
)

TINY = SeqVAEConfig(embed_dim=16, hidden_dim=32, latent_dim=8, max_len=12, stride=6,
                    batch_size=32, epochs=12, patience=12, learning_rate=1e-2, seed=1)


def cyclic_log(n_users: int = 240, n_items: int = 40, length: int = 14, seed: int = 0):
    """Every user walks the items in a cycle: after item i comes item i + 1 (mod n_items).

    The right next item is known, so a model that learned anything ranks it first.
    """
    rng = np.random.default_rng(seed)
    rows = [(u, (start + t) % n_items, t)
            for u, start in enumerate(rng.integers(0, n_items, n_users)) for t in range(length)]
    log, _ = read_log(pd.DataFrame(rows, columns=["user", "item", "ts"]))
    return encode(log)


@pytest.fixture(scope="module")
def cyclic():
    sequences = cyclic_log()
    split = leave_one_out(sequences)
    recommender, history = fit(split, TINY, history_sequences=sequences)
    return sequences, split, recommender, history


def test_loss_falls_and_validation_improves(cyclic):
    _, _, _, history = cyclic
    losses = [e.reconstruction_loss for e in history.epochs]
    assert losses[-1] < 0.5 * losses[0]
    assert history.best_validation["NDCG@10"] > 0.9
    for record in history.epochs:  # what the dashboard and history.json show
        assert record.seconds > 0 and set(record.validation) == {"NDCG@10", "HR@10"}
    betas = [e.beta for e in history.epochs]
    assert betas == sorted(betas) and betas[-1] == pytest.approx(TINY.beta_cap)


def test_planted_next_item_of_a_new_sequence_ranks_first(cyclic):
    _sequences, _, recommender, _ = cyclic
    # a user the model never saw, who viewed items 5, 6, 7, 8: item 9 comes next
    ids, scores = recommender.recommend([["5", "6", "7", "8"]], k=3)
    assert ids[0, 0] == "9"
    assert scores[0, 0] > scores[0, 1]
    # seen items are excluded unless asked for
    assert not {"5", "6", "7", "8"} & set(ids[0])
    with pytest.warns(UserWarning, match="unknown to the model"):
        ids, _ = recommender.recommend([["5", "6", "7", "8", "no-such-item"]], k=1)
    assert ids[0, 0] == "9"


def test_recommend_known_users_and_inference_shapes(cyclic):
    sequences, _, recommender, _ = cyclic
    users = list(sequences.users[:3])
    ids, scores = recommender.recommend(users, k=5)
    assert ids.shape == (3, 5) and scores.shape == (3, 5)
    assert (np.diff(scores, axis=1) <= 0).all()
    mean, log_var = recommender.encode(sequences)
    assert mean.shape == (sequences.n_users, TINY.latent_dim) == log_var.shape
    items, probabilities = recommender.reconstruct(users[0])
    assert probabilities.shape == (len(items), sequences.item_vocab.size)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # the model believes in each next item: at step t, item t+1 is the most probable
    predicted = sequences.item_vocab.token(probabilities[:-1].argmax(axis=1))
    assert (predicted == items[1:]).mean() > 0.9
    similar, similarity = recommender.similar_items("10", k=3)
    assert "10" not in similar and (np.diff(similarity) <= 0).all()
    neighbours, _ = recommender.similar_users(users[0], k=4)
    assert users[0] not in neighbours and len(neighbours) == 4
    with pytest.raises(KeyError, match="unknown user"):
        recommender.recommend(["nobody"], k=3)
    # the reconstruction error is the mean -log p(next item) along the last window: the model
    # that learned the cycle is far below uniform guessing (log of 40 items = 3.7)
    error = recommender.reconstruction_error(sequences)
    assert error.shape == (sequences.n_users,) and np.isfinite(error).all()
    assert error.mean() < 0.5 * np.log(40)
    # one user by hand: -log of the reconstructed probability of each next item
    first = recommender.reconstruction_error(sequences.subset_users(np.array([0])))[0]
    rows = np.arange(len(items) - 1)
    by_hand = -np.log(probabilities[rows, sequences.item_vocab.lookup(list(items[1:]))]).mean()
    assert first == pytest.approx(by_hand, rel=1e-4)
    # the next item's rank at each step (what the User page shows): 1 where the model's first
    # guess was right, the next item's own probability, the guesses best first
    steps = recommender.next_item_ranks(users[0])
    assert steps["next"].tolist() == list(items[1:]) and steps["after"].tolist() == list(items[:-1])
    np.testing.assert_allclose(steps["p"], probabilities[rows, sequences.item_vocab.lookup(
        list(items[1:]))], rtol=1e-6)
    assert ((steps["rank"] == 1) == (predicted == items[1:])).all()
    assert (steps["rank"] >= 1).all() and (steps["rank"] == 1).mean() > 0.9
    assert [top[0] for top in steps["top"]] == list(predicted)
    assert len(recommender.next_item_ranks(["10"])) == 0  # one event: nothing to rank


def test_same_seed_same_metrics():
    sequences = cyclic_log(n_users=80, length=10, seed=3)
    split = leave_one_out(sequences)
    config = SeqVAEConfig(embed_dim=8, hidden_dim=16, latent_dim=4, max_len=10, batch_size=16,
                          epochs=3, patience=3, seed=5)
    first = fit(split, config)[1]
    second = fit(split, config)[1]
    for a, b in zip(first.epochs, second.epochs, strict=True):
        assert a.loss == pytest.approx(b.loss, rel=1e-4)
        assert a.validation["NDCG@10"] == pytest.approx(b.validation["NDCG@10"], abs=1e-6)


def test_the_learning_rate_decays_over_decay_epochs_not_over_the_epoch_limit():
    sequences = cyclic_log(n_users=80, length=10, seed=3)
    split = leave_one_out(sequences)
    base = SeqVAEConfig(embed_dim=8, hidden_dim=16, latent_dim=4, max_len=10, batch_size=16,
                        epochs=2, patience=2, learning_rate=1e-2, seed=5)

    def final_rate(**changes) -> float:
        recommender = fit(split, replace(base, **changes))[0]
        optimizer = recommender.model_.optimizer
        return float(optimizer.learning_rate)  # the schedule's value at the last step

    assert final_rate(lr_schedule="constant") == pytest.approx(1e-2)
    assert final_rate(decay_epochs=2) == pytest.approx(1e-3, rel=1e-3)  # a tenth at the horizon
    # the default horizon (30 epochs) barely moves in a 2-epoch run: cos(π·2/30) ≈ 0.978
    assert final_rate() == pytest.approx(1e-3 + 9e-3 * (1 + np.cos(np.pi * 2 / 30)) / 2, rel=1e-3)
    with pytest.raises(ValueError, match="`decay_epochs`"):
        SeqVAEConfig(decay_epochs=0)


def test_weight_averaging_validates_and_keeps_the_average_while_training_goes_on_unchanged():
    sequences = cyclic_log(n_users=80, length=10, seed=3)
    split = leave_one_out(sequences)
    base = SeqVAEConfig(embed_dim=8, hidden_dim=16, latent_dim=4, max_len=10, batch_size=16,
                        epochs=3, patience=3, learning_rate=1e-2, seed=5)
    plain, plain_history = fit(split, base)
    averaged, history = fit(split, replace(base, average_epochs=2.0))
    # the average is only read: the steps, hence the training losses, are the plain run's
    np.testing.assert_allclose([e.loss for e in history.epochs],
                               [e.loss for e in plain_history.epochs], rtol=1e-5)
    optimizer = averaged.model_.optimizer
    steps = make_batches(split.train, base).batches_per_epoch
    assert optimizer.ema_momentum == pytest.approx(1 - 1 / (2 * steps))
    assert history.best_epoch == 3  # the cycle is learnt a little more every epoch
    # the model kept is the optimiser's average at the best epoch, not the trained weights
    kept = averaged.model_.trainable_variables
    for variable, average in zip(kept, optimizer._model_variables_moving_average, strict=True):
        np.testing.assert_allclose(np.asarray(variable), np.asarray(average), rtol=1e-6)
    assert not all(np.allclose(np.asarray(a), np.asarray(b)) for a, b in
                   zip(kept, plain.model_.trainable_variables, strict=True))
    # and what was validated is what is kept
    assert evaluate_holdout(averaged, split.validation, 10)["NDCG@10"] == pytest.approx(
        history.best_validation["NDCG@10"])
    assert history.best_validation != plain_history.best_validation
    with pytest.raises(ValueError, match="`average_epochs`"):
        SeqVAEConfig(average_epochs=-1)


def test_cancel_stops_after_the_batch_and_keeps_the_best_weights():
    sequences = cyclic_log(n_users=120, length=12, seed=4)
    split = leave_one_out(sequences)
    token = CancelToken()
    seen = []

    def on_batch(progress):
        seen.append((progress.epoch, progress.batch))
        if progress.epoch == 4 and progress.batch == 2:
            token.cancel()

    recommender, history = fit(split, TINY, on_batch=on_batch, cancel=token)
    assert history.cancelled and seen[-1] == (4, 2)
    assert len(history.epochs) == 4
    best = max(e.validation["NDCG@10"] for e in history.epochs)
    assert history.best_validation["NDCG@10"] == best
    # the weights in the recommender are the best epoch's
    assert evaluate_holdout(recommender, split.validation, 10)["NDCG@10"] == pytest.approx(best)


def test_an_epoch_pipeline_is_not_autotuned():
    # deleting an autotuned iterator waited out the tuner's sleep: Beauty's epochs of ~12 s of
    # steps took 20.5 s a third of the time (benchmarks/train_speed.md)
    import tensorflow as tf

    options = epoch_options()
    assert options.autotune.enabled is False
    policy = options.experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.OFF  # `shard` splits the batches


def test_data_that_cannot_train_is_refused_before_any_epoch():
    log, _ = read_log(pd.DataFrame({"user": [1, 1, 1, 2, 2, 2], "item": [1, 2, 3, 1, 2, 3]}))
    split = leave_one_out(encode(log))
    calls = []
    # every user has 3 events: one trains, two are held out, so no next item is left to learn
    with pytest.raises(TrainingDataError, match="no user has two events"):
        fit(split, TINY, on_batch=calls.append)
    assert calls == []


def test_batches_by_length_or_from_every_window():
    # 30 users of 8 events and 20 of 30, walking a cycle of 40 items
    rows = [(u, (u + t) % 40, t) for u in range(50) for t in range(8 if u < 30 else 30)]
    sequences = encode(read_log(pd.DataFrame(rows, columns=["user", "item", "ts"]))[0])
    train = leave_one_out(sequences).train
    by_length = make_batches(train, SeqVAEConfig(max_len=50, stride=25, batching="length"))
    widths = sorted(b["items"].shape[1] for b in by_length.buckets)
    assert widths == [6, 32]  # 6 and 28 training events fit the 6 and 32 buckets, not 50
    assert all(b["targets"].shape[2] == 1 for b in by_length.buckets)
    mixed = make_batches(train, SeqVAEConfig(max_len=50, stride=25, batch_size=16))
    assert [b["items"].shape[1] for b in mixed.buckets] == [50]  # one pool, padded to max_len
    # the same windows and targets either way; a batch mixes short and long users
    assert mixed.n_windows == by_length.n_windows == 50 and mixed.n_steps == by_length.n_steps
    lengths = [(b["items"] != 0).sum(axis=1) for b in mixed.epoch(np.random.default_rng(0))]
    assert any((x < 10).any() and (x > 20).any() for x in lengths)


def test_training_windows_count_positions_from_the_target_to_the_users_latest_event():
    # user 0 has 7 training events (windows of 4, stride 2: events 0-3, 2-5, 3-6), user 1 has 3
    rows = [(0, 10 + t, t) for t in range(7)] + [(1, 30 + t, t) for t in range(3)]
    train = encode(read_log(pd.DataFrame(rows, columns=["user", "item", "ts"]))[0])
    batches = make_batches(train, SeqVAEConfig(max_len=4, stride=2, batching="random"))
    (bucket,) = batches.buckets
    got = {tuple(train.item_vocab.token(row[row != 0])): list(rem[row != 0])
           for row, rem in zip(bucket["items"], bucket["remaining"], strict=True)}
    # the cell before an event k of n predicts event k, after which n - 1 - k events follow;
    # a window inside the history counts to the user's latest event, not to its own end; the
    # last cell of a history predicts nothing (0)
    assert got == {("10", "11", "12", "13"): [5, 4, 3, 2],
                   ("12", "13", "14", "15"): [3, 2, 1, 0],
                   ("13", "14", "15", "16"): [2, 1, 0, 0],
                   ("30", "31", "32"): [1, 0, 0]}
    assert (bucket["remaining"][bucket["items"] == 0] == 0).all()
    # a user's final window counts as the reconstruction counts a window's steps
    from seqvae.model import within_remaining

    final = [row for row, items in enumerate(bucket["items"])
             if train.item_vocab.token(items[items != 0])[-1] in ("16", "32")]
    assert len(final) == 2
    np.testing.assert_array_equal(
        np.asarray(within_remaining(bucket["items"][final])) * (bucket["items"][final] != 0),
        bucket["remaining"][final])


def test_packing_puts_short_windows_together_in_batch_order():
    # windows of 3, 5, 2 and 4 events (ids 11.., 21.., 31.., 41..) into rows of 6 cells:
    # first-fit decreasing places 5 → row 0, 4 → row 1, 3 → row 2, 2 → row 1 (4 + 2 = 6)
    sizes = [3, 5, 2, 4]
    items = np.zeros((4, 6), "int32")
    for w, n in enumerate(sizes):
        items[w, :n] = 10 * (w + 1) + 1 + np.arange(n)
    batch = {"items": items, "events": np.where(items > 0, 2, 0), "gaps": np.where(items > 0, 1, 0),
             "targets": np.where(items > 0, items + 1, 0)[..., None]}
    packed = pack_windows(batch, 6)
    assert packed["items"].tolist() == [[21, 22, 23, 24, 25, 0],
                                        [31, 32, 41, 42, 43, 44],  # batch order within a row
                                        [11, 12, 13, 0, 0, 0]]
    assert packed["segments"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 2, 2, 2, 2],
                                           [1, 1, 1, 0, 0, 0]]
    assert packed["positions"].tolist() == [[0, 1, 2, 3, 4, 0], [0, 1, 0, 1, 2, 3],
                                            [0, 1, 2, 0, 0, 0]]
    assert (packed["targets"][..., 0] == np.where(packed["items"] > 0,
                                                  packed["items"] + 1, 0)).all()
    with pytest.raises(ValueError, match="does not fit a row of 4"):
        pack_windows(batch, 4)


def test_packed_batching_is_the_attention_default_and_refused_for_recurrent_encoders():
    assert SeqVAEConfig().batching_used == "packed"
    assert SeqVAEConfig(encoder="gru").batching_used == "random"
    with pytest.raises(ValueError, match="needs the attention encoder"):
        SeqVAEConfig(encoder="lstm", batching="packed")


@pytest.mark.parametrize("encoder", ["gru", "lstm"])
def test_the_recurrent_encoders_learn_the_cycle_too(encoder):
    sequences = cyclic_log(n_users=160, length=12, seed=2)
    config = SeqVAEConfig(**{**TINY.to_dict(), "encoder": encoder, "dropout": 0.1, "epochs": 8,
                             "patience": 8})
    _, history = fit(leave_one_out(sequences), config)
    assert history.best_validation["NDCG@10"] > 0.8


def test_the_twin_and_the_sampled_softmax_learn_the_cycle():
    sequences = cyclic_log(n_users=160, length=12, seed=2)
    split = leave_one_out(sequences)
    twin = fit(split, SeqVAEConfig(**{**TINY.to_dict(), "variational": False}))[1]
    assert twin.best_validation["NDCG@10"] > 0.9
    # 8 of the 40 items as negatives per batch, popularity-drawn and log-Q corrected
    sampled = fit(split, SeqVAEConfig(**{**TINY.to_dict(), "negatives": 8, "epochs": 20,
                                         "patience": 20}))[1]
    assert sampled.best_validation["NDCG@10"] > 0.8


def test_negative_sampler_draws_by_popularity_and_never_a_reserved_id():
    # counts: ids 0 and 1 reserved, item 2 seen 30 times, item 3 10 times, item 4 never
    sampler = NegativeSampler.from_counts(np.array([5, 5, 30, 10, 0]), count=4)
    drawn = sampler.draw(np.random.default_rng(0), np.array([[[2], [3]]]))
    assert drawn["negatives"].shape == (4,) and set(drawn["negatives"]) <= {2, 3}
    many = np.concatenate([sampler.draw(np.random.default_rng(i), np.zeros((1, 1, 1), int))
                           ["negatives"] for i in range(500)])
    assert (many == 2).mean() == pytest.approx(0.75, abs=0.03)  # Q(2) = 30 / 40
    # log(count · Q): log(4 · 0.75) for item 2, log(4 · 0.25) = 0 for item 3
    assert sampler.log_expected[2] == pytest.approx(np.log(3.0))
    assert sampler.log_expected[3] == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(drawn["target_log_q"], [[np.log(3.0), 0.0]], atol=1e-6)


def test_shared_negatives_are_not_split_across_workers():
    batch = {"items": np.arange(8).reshape(4, 2), "n_steps": np.float32(8),
             "negatives": np.array([5, 6, 7]), "negative_log_q": np.zeros(3, np.float32)}
    share = shard(batch, 1, 2)
    assert share["items"].tolist() == [[4, 5], [6, 7]]
    assert share["negatives"].tolist() == [5, 6, 7] and share["n_steps"] == 8


def test_auto_batch_size_follows_the_data():
    # the power of two nearest windows / 32, from 32 to 256
    assert auto_batch_size(22_363) == 256  # Beauty
    assert auto_batch_size(2_700) == 64  # the sample (84 -> 64)
    assert auto_batch_size(100) == 32 and auto_batch_size(0) == 32
    sequences = cyclic_log(n_users=50, length=30)
    split = leave_one_out(sequences)
    assert make_batches(split.train, SeqVAEConfig()).batch_size == 32
    recommender, _ = fit(split, SeqVAEConfig(embed_dim=8, hidden_dim=8, latent_dim=4, epochs=1))
    assert recommender.config_.batch_size == 32  # recorded as used


def test_config_is_validated():
    with pytest.raises(ValueError, match="`latent_dim`"):
        SeqVAEConfig(latent_dim=0)
    with pytest.raises(ValueError, match="`encoder`"):
        SeqVAEConfig(encoder="cnn")
    with pytest.raises(ValueError, match="`n_heads`"):
        SeqVAEConfig(embed_dim=64, n_heads=3)
    with pytest.raises(ValueError, match="`negatives`"):
        SeqVAEConfig(negatives=-1)
    with pytest.raises(ValueError, match="`batch_size`"):
        SeqVAEConfig(batch_size=-4)
    with pytest.raises(ValueError, match="`batching`"):
        SeqVAEConfig(batching="sorted")
    with pytest.raises(ValueError, match="`label_smoothing`"):
        SeqVAEConfig(label_smoothing=1.0)
    with pytest.raises(ValueError, match="`position_from` should be 'start' or 'end'"):
        SeqVAEConfig(position_from="middle")


def test_on_the_sample_log_loss_falls_and_planted_segments_separate_in_mu(sample_events):
    """Known answer: the sample's six planted segments (never shown to the model) are found by
    k-means on the users' μ.

    Measured on 2026-11-29 (k-means, 6 clusters, three k-means seeds): an untrained encoder
    gives an adjusted Rand index of 0.006; three epochs of training give 0.318-0.323 (the Latent
    page's `cluster_users`: 0.323-0.332). The thresholds sit between: trained > 0.2, untrained
    < 0.05.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from seqvae.recommender import SeqVAERecommender
    from seqvae.training import build_model
    from tests.conftest import SAMPLE_DIR

    log, _ = read_log(sample_events)
    sequences = encode(log)
    config = SeqVAEConfig(epochs=3, patience=3)
    recommender, history = fit(leave_one_out(sequences), config, history_sequences=sequences)
    losses = [e.reconstruction_loss for e in history.epochs]
    assert losses[-1] < losses[0] - 0.3
    assert history.best_validation["NDCG@10"] > 0.05  # popularity scores 0.030 here

    segments = pd.read_csv(SAMPLE_DIR / "segments.csv", dtype=str).set_index("user_id")
    truth = segments.loc[list(sequences.users), "segment"].to_numpy()

    def ari(model_recommender) -> float:
        mean, _ = model_recommender.encode(sequences)
        clusters = KMeans(6, n_init=10, random_state=0).fit_predict(mean)
        return adjusted_rand_score(truth, clusters)

    untrained = build_model(config, sequences)  # the network under test, before training
    untrained.build_for_inputs()
    baseline = SeqVAERecommender(untrained, config, sequences.item_vocab, sequences.event_vocab,
                                 sequences)
    assert ari(recommender) > 0.2
    assert ari(baseline) < 0.05

    # the Latent page's own clustering (k-means on standardised μ) finds them too
    from seqvae.latent import cluster_users

    mean, _ = recommender.encode(sequences)
    page_ari = adjusted_rand_score(truth, cluster_users(mean, k=6))
    untrained_mean, _ = baseline.encode(sequences)
    assert page_ari > 0.2
    assert adjusted_rand_score(truth, cluster_users(untrained_mean, k=6)) < 0.05

    # the Latent page's default view, every event's Gaussian multiplied, shows taste better:
    # measured 2026-12-07 after these three epochs, ARI 0.681 against 0.369 after the last
    # event; averaging random item vectors keeps some of the bag, so an untrained network's
    # combined μ scores 0.25-0.28 over three seeds (benchmarks/segments): training must add
    taste, _ = recommender.encode(sequences, view="taste")
    taste_ari = adjusted_rand_score(truth, cluster_users(taste, k=6))
    assert taste_ari > 0.5 and taste_ari > page_ari + 0.15
    floor = adjusted_rand_score(truth, cluster_users(baseline.encode(sequences, "taste")[0], k=6))
    assert taste_ari > floor + 0.2


def test_history_encoding_is_the_histories_mu_computed_once(cyclic, monkeypatch):
    sequences, _, recommender, _ = cyclic
    expected_mean, expected_log_var = recommender.encode(recommender.history_)
    recommender.__dict__.pop("_encoding_caches", None)
    calls = []
    encode = recommender.encode
    monkeypatch.setattr(recommender, "encode",
                        lambda s, view="next": calls.append(view) or encode(s, view=view))
    mean, log_var = recommender.history_encoding()
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_var, expected_log_var, rtol=1e-5, atol=1e-6)
    recommender.history_encoding()
    recommender.similar_users(sequences.users[0], k=2)  # reads the same μ
    assert len(calls) == 1
    # another history (a model reloaded, or the same one given new users) is encoded anew
    # each view is computed once too, and kept beside the other
    taste, _ = recommender.history_encoding("taste")
    recommender.encode_history()
    assert calls == ["next", "taste"]
    np.testing.assert_allclose(taste, encode(recommender.history_, view="taste")[0], rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(taste, mean, atol=1e-3)
    # similar users by taste read the kept taste μ: the nearest by cosine, as computed by hand
    unit = taste / np.linalg.norm(taste, axis=1, keepdims=True)
    cosine = unit @ unit[0]
    cosine[0] = -np.inf
    order = np.argsort(-cosine, kind="stable")[:3]
    users, similarity = recommender.similar_users(sequences.users[0], k=3, view="taste")
    assert list(users) == list(recommender.history_.users[order])
    np.testing.assert_allclose(similarity, cosine[order], rtol=1e-5)
    assert calls == ["next", "taste"]
    recommender.history_ = sequences.subset_users(np.arange(3))
    try:
        assert recommender.history_encoding()[0].shape[0] == 3 and len(calls) == 3
    finally:
        recommender.history_ = sequences
    with pytest.raises(ValueError, match="view"):
        recommender.similar_users(sequences.users[0], view="mean")
    # what the training job calls: both views from one pass of the network
    recommender.__dict__.pop("_encoding_caches")
    passes = []
    encode_views = recommender.encode_views
    monkeypatch.setattr(recommender, "encode_views",
                        lambda batch, views: passes.append(list(views))
                        or encode_views(batch, views))
    recommender.encode_history()
    recommender.encode_history()
    assert passes == [["next", "taste"]]
    np.testing.assert_allclose(recommender.history_encoding("taste")[0], taste, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(recommender.history_encoding()[1], expected_log_var, rtol=1e-5,
                               atol=1e-6)


def test_the_taste_view_combines_every_steps_posterior(cyclic):
    """"taste": the Gaussians of a user's real steps multiplied (a precision-weighted mean of
    μ, log σ² = −log Σ σ⁻²); the twin, whose σ is never trained, averages μ plainly; a user
    with one event has the same μ in both views."""
    from seqvae.recommender import combine_steps

    sequences, _, recommender, _ = cyclic
    batch = recommender.last_windows(sequences)
    steps_mean, steps_log_var = (np.asarray(a) for a in recommender._encode_function()(
        batch.items, batch.events, batch.gaps))
    taste, taste_log_var = recommender.encode(sequences, view="taste")
    for row in range(3):
        real = batch.items[row] != 0
        precision = np.exp(-steps_log_var[row, real].astype(np.float64))
        np.testing.assert_allclose(
            taste[row], (precision * steps_mean[row, real]).sum(0) / precision.sum(0),
            rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(taste_log_var[row], -np.log(precision.sum(0)), rtol=1e-4,
                                   atol=1e-5)
        # more events than one: narrower than any single step
        assert np.all(taste_log_var[row] < steps_log_var[row, real].min(axis=0))

    mean = np.array([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]]], np.float32)
    log_var = np.log(np.array([[[1.0, 1.0], [1.0, 4.0], [1.0, 1.0]]], np.float32))
    real = np.array([[True, True, False]])  # the third step is padding
    combined, combined_log_var = combine_steps(mean, log_var, real)
    np.testing.assert_allclose(combined, [[2.0, (0 + 2 / 4) / (1 + 1 / 4)]], rtol=1e-6)
    np.testing.assert_allclose(np.exp(combined_log_var), [[0.5, 1 / 1.25]], rtol=1e-6)
    plain, _ = combine_steps(mean, log_var, real, weighted=False)
    np.testing.assert_allclose(plain, [[2.0, 1.0]], rtol=1e-6)
    lone, lone_log_var = combine_steps(mean, log_var, np.array([[True, False, False]]))
    np.testing.assert_allclose(lone, mean[:, 0])
    np.testing.assert_allclose(lone_log_var, log_var[:, 0])
    empty, empty_log_var = combine_steps(mean, log_var, np.zeros((1, 3), bool))  # no events
    np.testing.assert_allclose(empty, mean[:, 0])  # the first step's, as the "next" view
    np.testing.assert_allclose(empty_log_var, log_var[:, 0])
    # the twin's taste view is the plain mean of its steps' μ (an untrained twin will do)
    from seqvae.recommender import SeqVAERecommender
    from seqvae.training import build_model

    twin_config = replace(recommender.config_, variational=False)
    network = build_model(twin_config, sequences)
    network.build_for_inputs()
    twin = SeqVAERecommender(network, twin_config, sequences.item_vocab, sequences.event_vocab,
                             sequences)
    twin_steps, twin_log_var = (np.asarray(a) for a in twin._encode_function()(
        batch.items, batch.events, batch.gaps))
    twin_taste = twin.encode(sequences, view="taste")[0]
    for row in range(3):
        np.testing.assert_allclose(twin_taste[row],
                                   twin_steps[row, batch.items[row] != 0].mean(0),
                                   rtol=1e-4, atol=1e-5)
    # where its (untrained, unused) σ would weigh the steps otherwise
    weighted, _ = combine_steps(twin_steps[:1], twin_log_var[:1], batch.items[:1] != 0)
    assert not np.allclose(weighted[0], twin_taste[0], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="`view` should be one of 'next', 'taste'"):
        recommender.encode(sequences, view="latest")
    from seqvae.errors import NotFittedError

    recommender.history_ = None  # a model kept without its users' histories
    try:
        for encode_kept in (lambda: recommender.history_encoding("taste"),
                            recommender.encode_history):
            with pytest.raises(NotFittedError, match="no user histories"):
                encode_kept()
    finally:
        recommender.history_ = sequences


def test_refit_learns_from_the_events_the_split_held_out():
    # every user walks 12 steps of the cycle and then ends on the item "end": that last step is
    # the split's test target, so the held-out model never trains on it; retrained on every
    # event for the same epochs, the model learns it (what `seqvae train --refit` ships)
    rng = np.random.default_rng(5)
    rows = [(u, str((start + t) % 40) if t < 12 else "end", t)
            for u, start in enumerate(rng.integers(0, 40, 240)) for t in range(13)]
    sequences = encode(read_log(pd.DataFrame(rows, columns=["user", "item", "ts"]))[0])
    held_out, _ = fit(leave_one_out(sequences), TINY, history_sequences=sequences)
    model, history = refit(sequences, TINY, 10)
    assert [e.epoch for e in history.epochs] == list(range(1, 11))  # no early stopping
    assert all(e.validation == {} for e in history.epochs) and history.best_epoch == 10
    assert model.history_ is sequences and model.config_.epochs == 10
    walk = [[str(i) for i in range(5, 17)]]  # a new user's 12 steps
    assert held_out.recommend(walk, k=1)[0][0, 0] == "17"
    assert model.recommend(walk, k=1)[0][0, 0] == "end"
    with pytest.raises(ValueError, match="epochs"):
        refit(sequences, TINY, 0)


def test_the_training_step_is_traced_once_whatever_the_batch_shapes(monkeypatch):
    # a second trace (and graph optimisation) of the step cost ~4 s of every training
    from seqvae import training

    made, shapes = [], set()
    original = training._make_step

    def spy(*args, **kwargs):
        step = original(*args, **kwargs)
        made.append(step)

        def recorded(batch):
            shapes.add(tuple(batch["items"].shape))
            return step(batch)

        return recorded

    monkeypatch.setattr(training, "_make_step", spy)
    sequences = cyclic_log(n_users=100, length=9)
    fit(leave_one_out(sequences), replace(TINY, epochs=2, batch_size=16))
    assert len(shapes) > 1  # packed batches of 16 windows take different numbers of rows
    assert len(made) == 1 and made[0].experimental_get_tracing_count() == 1
