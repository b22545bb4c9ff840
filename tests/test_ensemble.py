"""seqvae.ensemble: several networks, each trained alone with its own seed (in processes of their
own where the cores allow), held by one recommender that ranks items by the mean of their
log-softmax; saved and loaded whole, stopped together."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from seqvae.bundle import BundleError, load
from seqvae.recommender import SeqVAERecommender, log_softmax
from seqvae.splits import leave_one_out
from seqvae.training import CancelToken, evaluate_holdout, fit
from tests.test_training import TINY, cyclic_log

PAIR = replace(TINY, epochs=200, patience=200, members=2)  # ended by Stop


@pytest.fixture(scope="module")
def pair():
    """Two networks trained in processes (where the machine has two cores), stopped - the
    Stop button - once the first network's second epoch has begun."""
    sequences = cyclic_log(n_users=120)
    split = leave_one_out(sequences)
    heard: list = []
    cancel = CancelToken()

    followed: list = []

    def on_batch(progress) -> None:
        followed.append((progress.network, progress.networks))
        if progress.epoch == 2:
            cancel.cancel()

    recommender, history = fit(split, PAIR, history_sequences=sequences, on_epoch=heard.append,
                               on_batch=on_batch, cancel=cancel)
    # the progress heard is the first network's while it trains; after it, whatever the second
    # did before the stop reached it
    assert followed[0] == (1, 2) and set(followed) <= {(1, 2), (2, 2)}
    assert followed == sorted(followed)
    return sequences, split, recommender, history, heard


def alone(recommender: SeqVAERecommender, network) -> SeqVAERecommender:
    """One network of an ensemble as a recommender of its own."""
    return SeqVAERecommender(network, replace(recommender.config_, members=1),
                             recommender.item_vocab_, recommender.event_vocab_,
                             recommender.history_)


def test_the_networks_are_trained_alone_with_their_own_seeds(pair):
    _, split, recommender, history, heard = pair
    assert len(recommender.networks()) == 2
    assert recommender.config_.members == 2 and recommender.config_.seed == PAIR.seed
    assert recommender.config_.batch_size == 32  # as trained, not 0 ("auto")
    # Stop ended both networks, the first within its second or third epoch (the word takes a
    # moment to arrive), the second wherever it was: each keeps the weights its validation chose
    assert history.cancelled and history.members[0]["cancelled"]
    # the first network's epochs are the history's and what on_epoch heard; the second's are
    # kept beside them
    assert [r.epoch for r in heard] == [r.epoch for r in history.epochs]
    assert [r.epoch for r in history.epochs] in ([1, 2], [1, 2, 3])
    assert len(history.members) == 1
    # the validation the model reports is the pair's, scored as a whole
    assert history.best_validation == history.ensemble_validation == evaluate_holdout(
        recommender, split.validation, PAIR.eval_k)
    second = history.members[0]["epochs"]
    assert [e["epoch"] for e in second] == list(range(1, len(second) + 1)) and second
    # the second network is the one a lone training with the next seed, stopped after as many
    # batches, gives in this process: the fixture's networks trained in two processes (on two
    # cores), so this also says a process trains what this one does (to rounding: one core
    # against two sums in another order)
    batches, alone_cancel = sum(e["batches"] for e in second), CancelToken()
    count = iter(range(1, batches + 1))
    lone, lone_history = fit(split, replace(PAIR, members=1, seed=PAIR.seed + 1),
                             cancel=alone_cancel,
                             on_batch=lambda _: next(count) == batches and alone_cancel.cancel())
    assert [e.batches for e in lone_history.epochs] == [e["batches"] for e in second]
    for a, b in zip(recommender.networks()[1].get_weights(), lone.model_.get_weights(),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    first, second = (np.asarray(net.item_embedding.embeddings)
                     for net in recommender.networks())
    assert np.abs(first - second).max() > 0.01  # two seeds, two networks


def test_items_are_ranked_by_the_mean_of_the_networks_log_softmax(pair):
    sequences, _, recommender, _, _ = pair
    one, two = (alone(recommender, net) for net in recommender.networks())
    history = sequences.subset_users(range(20))
    by_hand = (log_softmax(one.score(history, exclude_seen=False))
               + log_softmax(two.score(history, exclude_seen=False))) / 2
    np.testing.assert_allclose(recommender.score(history, exclude_seen=False), by_hand,
                               rtol=1e-5, atol=1e-5)
    # the reconstruction is the same mean, renormalised
    user = str(sequences.users[0])
    _, probabilities = recommender.reconstruct(user)
    _, p_one = one.reconstruct(user)
    _, p_two = two.reconstruct(user)
    geometric = np.sqrt(p_one * p_two)
    np.testing.assert_allclose(probabilities, geometric / geometric.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # μ (the map, similar users) is the first network's
    np.testing.assert_array_equal(recommender.encode(history)[0], one.encode(history)[0])


def test_an_ensemble_saves_and_loads_whole(pair, tmp_path):
    sequences, _, recommender, _, _ = pair
    saved = recommender.save(tmp_path / "model")
    assert (saved / "member-2.keras").is_file()
    manifest = json.loads((saved / "manifest.json").read_text())
    assert "member-2.keras" in manifest["sha256"]
    back = load(saved)
    assert len(back.networks()) == 2 and back.config_.members == 2
    assert len(back.training_history_.members) == 1
    users = sequences.subset_users(range(10))
    np.testing.assert_array_equal(back.score(users), recommender.score(users))
    with (saved / "member-2.keras").open("ab") as handle:  # modified after saving
        handle.write(b"\0")
    with pytest.raises(BundleError, match=r"member-2\.keras does not match the checksum"):
        load(saved)
    (saved / "member-2.keras").unlink()
    with pytest.raises(BundleError, match=r"member-2\.keras is missing; config\.json says "
                                          "the model has 2 networks"):
        load(saved)


def test_the_number_of_networks_is_validated():
    for wrong in (0, -1, 1.5):
        with pytest.raises(ValueError, match="`members` should be a positive integer"):
            replace(PAIR, members=wrong)


def test_on_one_core_the_networks_train_one_after_the_other(monkeypatch):
    monkeypatch.setattr("seqvae.ensemble.available_cores", lambda: [0])
    split = leave_one_out(cyclic_log(n_users=60))
    followed, heard = [], []
    recommender, history = fit(split, replace(TINY, epochs=1, members=2),
                               on_batch=lambda p: followed.append((p.network, p.networks)),
                               on_epoch=heard.append)
    assert len(recommender.networks()) == 2 and len(history.members) == 1
    first = followed.count((1, 2))
    assert first > 0 and followed == [(1, 2)] * first + [(2, 2)] * (len(followed) - first)
    assert len(followed) > first  # the second network was heard, after the first
    assert [r.epoch for r in heard] == [1]  # on_epoch hears the first network's epochs alone
    assert set(history.ensemble_validation) == {"NDCG@10", "HR@10"}


def test_a_refit_trains_each_network_for_its_own_best_epoch(monkeypatch):
    """Each network of an ensemble is early-stopped on its own validation, so its refit on
    every event trains for that network's best epoch, not the first network's."""
    from seqvae import ensemble
    from seqvae.pipeline import Trained, refit_epochs_text, retrain
    from seqvae.training import TrainingHistory, refit, refit_epochs

    chosen = TrainingHistory(best_epoch=1, members=[{"best_epoch": 2}, {"best_epoch": None}])
    assert refit_epochs(chosen) == [1, 2, 1]  # one that chose none takes the first's count
    assert refit_epochs(TrainingHistory(best_epoch=3)) == 3
    # the networks' settings as they reach training (each network's loop runs its config's
    # epochs, as a single network's refit test holds): stopped there, nothing trains
    seen = []

    class Reached(Exception):
        pass

    def reached(source, train, validation, configs, checkpoints, **_):
        seen.append([(member.epochs, member.seed) for member in configs])
        raise Reached

    monkeypatch.setattr(ensemble, "_in_processes", reached)
    monkeypatch.setattr(ensemble, "_one_after_another", reached)
    sequences = cyclic_log(n_users=40)
    config = replace(TINY, members=2)
    with pytest.raises(Reached):
        refit(sequences, config, [2, 1])
    with pytest.raises(Reached):
        refit(sequences, config, 3)
    assert seen == [[(2, config.seed), (1, config.seed + 1)],
                    [(3, config.seed), (3, config.seed + 1)]]
    for wrong in ([1, 2, 3], [2, 0], []):
        with pytest.raises(ValueError, match="epochs"):
            refit(sequences, config, wrong)
    # the pipeline hands every network's own count over, and says so
    heard = []
    recommender = object.__new__(SeqVAERecommender)  # what the refit gives, untrained here
    recommender.config_, recommender.history_ = config, sequences
    monkeypatch.setattr("seqvae.training.refit", lambda s, c, epochs, **_: heard.append(epochs)
                        or (recommender, TrainingHistory(seconds=1.0)))
    tested = Trained(recommender=recommender, test={}, test_users=0, history=TrainingHistory(
        best_epoch=2, members=[{"best_epoch": 1}]))
    done = retrain(tested, sequences)
    assert heard == [[2, 1]]
    assert done.refit["epochs"] == 2 and done.refit["member_epochs"] == [2, 1]
    assert refit_epochs_text(done.refit) == "2, 1 epochs (one count per network)"
    assert refit_epochs_text({"epochs": 4}) == "4 epochs"
