"""Scale: two worker processes train as one, a stopped run resumes from its checkpoint, and the
out-of-core commands train from a store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from seqvae.bundle import load
from seqvae.cli import main
from seqvae.errors import TrainingDataError
from seqvae.logs import read_log
from seqvae.sample import generate
from seqvae.sequences import encode
from seqvae.splits import leave_one_out
from seqvae.training import SeqVAEConfig, fit, local_cluster

# Two workers add the same numbers in another order (each sums its half, then the halves are
# added): the weights after an epoch agree to ~2e-6 on this machine. A weight is compared
# relative to its norm, or to 1 where the norm is below 1: the attention's key biases get no
# gradient at all in exact arithmetic (a softmax does not change when every key's score moves
# by the same amount), so only rounding moves them, by ~1e-6, and their tiny norms (~1e-5)
# would turn that into a large relative gap.
WEIGHT_TOLERANCE = 1e-4
LOSS_TOLERANCE = 1e-5


def train_command(log, out, *extra: str) -> list[str]:
    return [sys.executable, "-m", "seqvae", "train", str(log), "--out", str(out), "--epochs", "1",
            "--dropout", "0", "--batch-size", "64", "--json", "--quiet", *extra]


@pytest.fixture(scope="module")
def small_log(tmp_path_factory):
    """250 users, 120 items: a few batches of 64 windows an epoch, enough for what these tests
    compare, at a fraction of the bundled sample's cost (three processes train on it)."""
    path = tmp_path_factory.mktemp("small") / "events.csv"
    generate(n_users=250, n_items=120, seed=11).events.to_csv(path, index=False)
    return path


def test_two_workers_train_as_one_process_with_the_same_global_batch(small_log, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = [subprocess.Popen(
        train_command(small_log, tmp_path / "two", "--strategy", "multi-worker"),
        env={**env, "TF_CONFIG": tf_config}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for tf_config in local_cluster(2)]
    # the single process beside them: much of each run is one-threaded start-up and tracing
    single = subprocess.Popen(train_command(small_log, tmp_path / "one"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    _, err = single.communicate(timeout=300)
    assert single.returncode == 0, err[-2000:]

    assert [r["workers"] for r in results] == [2, 2]
    assert "out" in results[0] and "out" not in results[1]  # only the chief writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # checkpoints removed
    assert results[0]["validation"] == results[1]["validation"]  # the workers hold one model
    two, one = load(tmp_path / "two"), load(tmp_path / "one")
    loss_two = two.training_history_.epochs[0].loss
    loss_one = one.training_history_.epochs[0].loss
    assert abs(loss_two - loss_one) <= LOSS_TOLERANCE * abs(loss_one)
    gaps = {w.path: float(np.linalg.norm(np.asarray(w) - b) / max(np.linalg.norm(b), 1.0))
            for w, b in zip(two.model_.weights, one.model_.get_weights(), strict=True)}
    assert max(gaps.values()) <= WEIGHT_TOLERANCE, gaps
    scores_two = two.model_.get_weights()[-1]
    assert not np.allclose(scores_two, 0)  # it trained


def test_multi_worker_without_tf_config_says_what_is_missing(sample_events, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = main(["train", str(sample_events), "--out", str(tmp_path / "m"), "--strategy",
                 "multi-worker"])
    assert code == 2
    assert "TF_CONFIG" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def small_split(small_log):
    log, report = read_log(small_log)
    return leave_one_out(encode(log, report=report))


def test_a_stopped_run_resumes_from_its_checkpoint_as_if_never_stopped(small_split, tmp_path):
    config = SeqVAEConfig(epochs=3, patience=5, hidden_dim=32, embed_dim=16, latent_dim=8)
    whole, whole_history = fit(small_split, config)
    checkpoint = tmp_path / "checkpoint"
    fit(small_split, SeqVAEConfig(**{**config.to_dict(), "epochs": 2}),
        checkpoint_dir=checkpoint)
    with np.load(checkpoint / "checkpoint.npz") as stored:  # one file: state and arrays
        assert json.loads(str(stored["state"]))["epoch"] == 2
    epochs_run = []
    resumed, history = fit(small_split, config, checkpoint_dir=checkpoint,
                           on_epoch=lambda record: epochs_run.append(record.epoch))
    assert epochs_run == [3]  # epochs 1 and 2 came from the checkpoint
    # the same numbers up to float rounding: the resumed process traces its graphs for the
    # batch shapes in another order, which may pick other kernels
    np.testing.assert_allclose([e.loss for e in history.epochs],
                               [e.loss for e in whole_history.epochs], rtol=1e-6)
    assert history.best_epoch == whole_history.best_epoch
    # atol: the key biases, which only rounding moves (see WEIGHT_TOLERANCE), sit near 1e-6
    for a, b in zip(resumed.model_.get_weights(), whole.model_.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    with pytest.raises(TrainingDataError, match="belongs to another run"):
        fit(small_split, SeqVAEConfig(**{**config.to_dict(), "latent_dim": 4}),
            checkpoint_dir=checkpoint)


def test_a_checkpoint_from_before_a_new_setting_resumes_under_its_old_value(small_split,
                                                                             tmp_path):
    config = SeqVAEConfig(epochs=2, patience=5, hidden_dim=32, embed_dim=16, latent_dim=8)
    checkpoint = tmp_path / "checkpoint"
    fit(small_split, SeqVAEConfig(**{**config.to_dict(), "epochs": 1}), checkpoint_dir=checkpoint)
    # rewrite it as a version of seqvae before `average_epochs` would have
    path = checkpoint / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    state = json.loads(str(arrays.pop("state")))
    del state["fingerprint"]["config"]["average_epochs"]
    np.savez(path, state=np.array(json.dumps(state)), **arrays)
    # it was trained without a moving average: a run that keeps one is another run
    with pytest.raises(TrainingDataError, match="belongs to another run"):
        fit(small_split, SeqVAEConfig(**{**config.to_dict(), "average_epochs": 1.0}),
            checkpoint_dir=checkpoint)
    epochs_run = []
    fit(small_split, config, checkpoint_dir=checkpoint,
        on_epoch=lambda record: epochs_run.append(record.epoch))
    assert epochs_run == [2]  # resumed after epoch 1


def test_ingest_then_train_from_the_store_and_recommend(sample_events, tmp_path, capsys):
    code = main(["ingest", str(sample_events), "--out", str(tmp_path / "store"), "--json",
                 "--chunk-mb", "0.5"])
    ingested = json.loads(capsys.readouterr().out)
    assert code == 0 and ingested["users"] == 2000 and ingested["rows_read"] == ingested["events"]
    mine = tmp_path / "mine"  # a checkpoint folder that holds other files too
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code = main(["train", str(tmp_path / "store"), "--out", str(tmp_path / "model"), "--epochs",
                 "1", "--eval-users", "300", "--block-events", "20000", "--json", "--quiet",
                 "--checkpoint-dir", str(mine)])
    trained = json.loads(capsys.readouterr().out)
    assert code == 0 and trained["epochs"] == 1
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["evaluated_users"] == 300
    model = load(tmp_path / "model")
    assert model.history_.n_events == ingested["events"]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]  # only the checkpoint went
    code = main(["recommend", str(tmp_path / "model"), "--user", str(model.history_.users[0]),
                 "--json"])
    assert code == 0 and len(json.loads(capsys.readouterr().out)["items"]) == 10

    # --out-of-core builds the store itself, in a temporary folder removed afterwards; --refit
    # then retrains from it on every event, each user's last two included
    code = main(["train", str(sample_events), "--out", str(tmp_path / "model2"), "--epochs", "1",
                 "--out-of-core", "--eval-users", "300", "--json", "--quiet", "--refit"])
    refitted = json.loads(capsys.readouterr().out)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "model", "model2", "store"]
    assert refitted["refit"]["epochs"] == 1 and refitted["refit"]["events"] == ingested["events"]
    metrics = json.loads((tmp_path / "model2" / "metrics.json").read_text())
    assert metrics["refit"]["epochs"] == 1 and "before the refit" in metrics["refit"]["scored"]
    assert metrics["test"] and metrics["evaluated_users"] == 300  # the held-out model's
    assert load(tmp_path / "model2").history_.n_events == ingested["events"]

    # options that shape a store belong to `seqvae ingest`
    code = main(["train", str(tmp_path / "store"), "--out", str(tmp_path / "m3"), "--k-core",
                 "3"])
    assert code == 2 and "seqvae ingest" in capsys.readouterr().err
