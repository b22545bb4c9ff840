"""Background training jobs: continuing a finished job from its checkpoint, and cleaning up."""

from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path

import pytest

from seqvae.logs import read_log
from seqvae.sample import generate
from seqvae.training import BatchProgress, SeqVAEConfig, TrainingHistory
from seqvae.ui import jobs


def wait(job: jobs.TrainingJob, seconds: float = 240.0) -> jobs.TrainingJob:
    deadline = time.monotonic() + seconds
    while job.active and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not job.active, "the job did not finish in time"
    assert job.state == "done", job.message
    return job


def test_continue_training_goes_on_from_the_last_epoch():
    data = generate(n_users=80, n_items=40, seed=3).events.to_csv(index=False).encode()
    log, _ = read_log(io.BytesIO(data), name="shop.csv")
    config = SeqVAEConfig(embed_dim=8, hidden_dim=16, latent_dim=8, max_len=20, epochs=2,
                          patience=50)
    first = wait(jobs.start_training(log, "shop.csv", config, data_fingerprint="f"))
    # the job hands over a model whose users' μ are already encoded (for the Latent page)
    assert first.phase == "encoding" and first.snapshot()["phase"] == "encoding"
    caches = first.recommender._encoding_caches  # μ of every user, in both views
    assert {view: c[2].shape[0] for view, c in caches.items()} == {
        "next": first.recommender.history_.n_users, "taste": first.recommender.history_.n_users}
    # and the most popular items' score on the same test, the floor the page compares with
    assert set(first.popularity_metrics) == set(first.test_metrics) == {"NDCG@10", "HR@10"}
    assert 0 < first.popularity_metrics["HR@10"] < 1
    checkpoint = first.checkpoint_dir
    assert checkpoint is not None and any(Path(checkpoint).iterdir())
    second = wait(jobs.start_training(log, "shop.csv", replace(config, epochs=4),
                                      data_fingerprint="f", continue_from=first))
    assert second.checkpoint_dir == checkpoint and first.checkpoint_dir is None
    assert not first.continues and second.continues and second.earlier_epochs == 2
    assert first.own_epochs == 2 and second.own_epochs == 2  # epochs 3 and 4 are the second's
    assert [e.epoch for e in second.history.epochs] == [1, 2, 3, 4]
    # the first two epochs are the first job's, not trained again
    assert [e.validation for e in second.history.epochs[:2]] == \
        [e.validation for e in first.history.epochs]
    assert [e.epoch for e in second.epochs] == [1, 2, 3, 4]  # the curves start with them
    second.discard()
    assert not Path(checkpoint).exists() and second.checkpoint_dir is None


def progress_at(epoch: int, batch: int, epochs: int = 8, batches: int = 10) -> BatchProgress:
    return BatchProgress(epoch, epochs, batch, batches, 7.0, 6.9, 90.0, 0.001, 0.0)


def test_the_time_left_goes_by_this_jobs_pace_after_its_first_batch():
    # a new model: 30 s of preparing and tracing before the first batch ends, then 1 s a batch
    job = jobs.TrainingJob(dataset_name="log.csv", config=SeqVAEConfig(epochs=8))
    job.started = 0.0
    assert job.eta_seconds(now=5.0) is None  # no batch yet: no estimate
    job._on_batch(progress_at(1, 1), now=30.0)
    assert job.eta_seconds(now=30.0) is None  # one batch tells no pace yet
    job._on_batch(progress_at(1, 5), now=34.0)
    # 4 batches in 4 s: 0.4 epoch in 4 s; 7.5 epochs left -> 75 s (the preparing not counted)
    assert abs(job.eta_seconds(now=34.0) - 75.0) < 1e-9
    # a continued job (epochs 1-3 trained before): only its own epochs set the pace
    later = jobs.TrainingJob(dataset_name="log.csv", config=SeqVAEConfig(epochs=8),
                             earlier_epochs=3)
    later._on_batch(progress_at(4, 1), now=100.0)
    later._on_batch(progress_at(4, 6), now=110.0)  # 0.5 epoch in 10 s; 4.4 epochs left
    assert abs(later.eta_seconds(now=110.0) - 88.0) < 1e-9
    assert later.eta_seconds(now=120.0) > later.eta_seconds(now=110.0)  # no progress: longer


def test_an_ensembles_time_left_is_the_pace_of_the_network_it_follows():
    # networks 1 and 2 of 3 train at once; network 1 ends, the progress follows network 2 (half
    # done), whose pace since then is what the estimate goes by, not the jump between the two
    job = jobs.TrainingJob(dataset_name="log.csv", config=SeqVAEConfig(epochs=8, members=3))
    job._on_batch(replace(progress_at(1, 1), networks=3), now=10.0)
    job._on_batch(replace(progress_at(8, 10), networks=3), now=90.0)
    job._on_batch(replace(progress_at(4, 1), network=2, networks=3), now=91.0)
    assert job.eta_seconds(now=91.0) is None  # its first batch heard: no pace yet
    job._on_batch(replace(progress_at(4, 6), network=2, networks=3), now=96.0)
    assert abs(job.eta_seconds(now=96.0) - 44.0) < 1e-9  # 0.5 epoch in 5 s; 4.4 epochs left


def test_a_refit_job_hands_over_the_model_retrained_on_every_event():
    data = generate(n_users=80, n_items=40, seed=3).events.to_csv(index=False).encode()
    log, _ = read_log(io.BytesIO(data), name="shop.csv")
    config = SeqVAEConfig(embed_dim=8, hidden_dim=16, latent_dim=8, max_len=20, epochs=2,
                          patience=50)
    job = wait(jobs.start_training(log, "shop.csv", config, data_fingerprint="f", refit=True))
    best = job.history.best_epoch
    assert job.refit_info is not None and job.refit_info["epochs"] == best
    assert job.refit_info["events"] == job.recommender.history_.n_events
    assert job.refit_info["seconds"] > 0
    assert f"then retrained on all {job.refit_info['events']:,} events" in job.message
    assert job.phase == "encoding"  # μ encoded from the retrained model, after the refit
    caches = job.recommender._encoding_caches  # μ of every user, in both views
    assert {view: c[2].shape[0] for view, c in caches.items()} == {
        "next": job.recommender.history_.n_users, "taste": job.recommender.history_.n_users}
    assert set(job.test_metrics) == {"NDCG@10", "HR@10"}  # the held-out model's test
    assert not job.can_continue  # its model is not the checkpoint's
    job.discard()


def test_a_stop_while_retraining_keeps_the_tested_model_and_its_figures():
    data = generate(n_users=80, n_items=40, seed=3).events.to_csv(index=False).encode()
    log, _ = read_log(io.BytesIO(data), name="shop.csv")
    config = SeqVAEConfig(embed_dim=8, hidden_dim=16, latent_dim=8, max_len=20, epochs=2,
                          patience=50)
    job = jobs.start_training(log, "shop.csv", config, data_fingerprint="f", refit=True)
    deadline = time.monotonic() + 240
    while job.phase != "refitting" and job.active and time.monotonic() < deadline:
        time.sleep(0.02)
    job.cancel()
    wait(job)  # "done": the epochs were complete and the tested model is kept
    assert job.refit_info is None and "while retraining on every event" in job.message
    assert job.recommender.training_history_ is job.history
    assert set(job.test_metrics) == {"NDCG@10", "HR@10"}
    job.discard()


def test_only_a_job_that_ended_still_improving_offers_to_continue():
    def job_with(best: int, epochs: int, stopped: bool = False) -> jobs.TrainingJob:
        history = TrainingHistory(best_epoch=best, stopped_early=stopped)
        history.epochs = [object()] * epochs  # only their number matters here
        return jobs.TrainingJob(dataset_name="d", config=SeqVAEConfig(), state="done",
                                history=history, checkpoint_dir="/nowhere")

    assert job_with(best=6, epochs=6).can_continue
    assert not job_with(best=4, epochs=6).can_continue
    assert not job_with(best=6, epochs=6, stopped=True).can_continue


def test_an_evaluation_shows_progress_epoch_by_epoch_not_only_model_by_model():
    from seqvae.compare import compare
    from seqvae.pipeline import encode_log

    data = generate(n_users=80, n_items=40, seed=3).events.to_csv(index=False).encode()
    log, _ = read_log(io.BytesIO(data), name="shop.csv")
    job = jobs.EvaluationJob(dataset_name="shop.csv", protocol="leave-one-out",
                             models=["pop", "seqvae"], ks=[10])
    seen: list[float] = []

    def say(line: str) -> None:
        job._say(line)
        seen.append(job.fraction_done())

    config = SeqVAEConfig(embed_dim=8, hidden_dim=16, latent_dim=8, max_len=20, epochs=4,
                          patience=50)
    compare(encode_log(log).sequences, "leave-one-out", ["pop", "seqvae"], [10],
            seqvae_config=config, progress=say)
    epochs = [f for line, f in zip(job.lines, seen, strict=True) if ": epoch " in line]
    # the popularity model is half the run; each of the SeqVAE's 4 epochs an eighth more
    assert epochs == [0.5 + 0.125 * e for e in (1, 2, 3, 4)], (job.lines, seen)
    assert seen == sorted(seen) and seen[-1] == 1.0
    # EASE's search: each of its settings a sixth of its share, said as it goes
    job = jobs.EvaluationJob(dataset_name="shop.csv", protocol="leave-one-out",
                             models=["ease"], ks=[10])
    seen.clear()
    compare(encode_log(log).sequences, "leave-one-out", ["ease"], [10], progress=say)
    settings = [f for line, f in zip(job.lines, seen, strict=True) if ", setting " in line]
    assert settings == pytest.approx([i / 6 for i in range(1, 7)]), job.lines
    assert "ease: l2 = 10, setting 1 of 6, validation NDCG@10 " in job.lines[1]


def test_an_evaluations_text_says_which_model_of_how_many_and_the_time_so_far():
    job = jobs.EvaluationJob(dataset_name="shop.csv", protocol="leave-one-out",
                             models=["pop", "ease", "seqvae"], ks=[10])
    assert job.status(now=5.0) == "waiting for a free slot…"
    job.started = 100.0
    job._say("pop: fitting")  # the lines in `seqvae.compare.compare`'s order
    # the model by the page's name for it
    assert job.status(now=112.0) == "most popular: fitting · model 1 of 3 · 12 s so far"
    job._say("pop: fitted, validation NDCG@10 0.0410")
    assert job.status(now=112.5).startswith(
        "most popular: fitted, validation NDCG@10 0.0410 · model 1 ")
    job._say("pop: testing")
    assert job.status(now=113.0) == "most popular: testing · model 1 of 3 · 13 s so far"
    job._say("ease: fitting")
    assert job.status(now=175.0) == "EASE: fitting · model 2 of 3 · 1 min 15 s so far"
    assert job.fraction_done() == pytest.approx(1 / 3)
    # a tuned model's search fills its share setting by setting (EASE: minutes on a large
    # catalogue), in the words `compare` says them
    job._say("ease: l2 = 50, setting 2 of 6, validation NDCG@10 0.0512")
    assert job.fraction_done() == pytest.approx(1 / 3 + 2 / 6 / 3)



def test_a_job_says_how_long_it_ran_once_it_has_ended():
    job = jobs.TrainingJob(dataset_name="log.csv", config=SeqVAEConfig(epochs=2))
    assert job.took() is None  # queued
    job.started = 10.0
    assert job.took() is None  # running
    job.finished = 75.4
    assert job.took() == "1 min 05 s"


def test_the_progress_line_says_which_network_of_an_ensemble_it_follows():
    job = jobs.TrainingJob(dataset_name="log.csv", config=SeqVAEConfig(epochs=8, members=3))

    def line(progress, phase: str = "", now: float = 0.0) -> str:
        return job.progress_text({"state": "running", "progress": progress, "phase": phase},
                                 now=now)

    assert line(None) == "Preparing…"  # no slot yet: nothing to count from
    preparing = job.progress_text({"state": "running", "progress": None, "phase": "",
                                   "started": 100.0}, now=112.4)
    assert preparing.startswith("Preparing… 12 s so far: cutting the log into windows, building")
    one = progress_at(2, 3)
    assert line(one).startswith("Epoch 2/8 · batch 3/10 · loss 7.000")
    assert "network" not in line(one) and "left" not in line(one)  # one network, no pace yet
    job._on_batch(replace(progress_at(1, 1), network=2, networks=3), now=10.0)
    job._on_batch(replace(progress_at(1, 6), network=2, networks=3), now=15.0)
    text = line(job.progress, now=15.0)
    assert text.startswith("Network 2 of 3 · epoch 1/8 · batch 6/10 · loss 7.000")
    assert text.endswith("· about 74 s left for this network")  # 0.5 epoch in 5 s; 7.4 left
    assert line(replace(job.progress, batch=10)) == (
        "Network 2 of 3 · epoch 1/8 · validating (ranking every item for each validation user)…")
    assert line(job.progress, "refitting") == (
        "Training done · retraining on every event: network 2 of 3, epoch 1/8, batch 6/10…")
    assert line(one, "refitting") == (
        "Training done · retraining on every event: epoch 2/8, batch 3/10…")
