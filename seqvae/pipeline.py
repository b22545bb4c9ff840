"""One flow from a behaviour log to a trained, tested model directory, for every caller: the
command line (`seqvae train`, `evaluate`), the dashboard's training job, the benchmarks.

    data = prepare("events.csv", min_rating=None)        # read, filter, encode
    trained = train(data.sequences, SeqVAEConfig())      # leave-one-out split, fit, test
    trained.save("model", data.report)                   # the model directory

Comparing models under a protocol is `seqvae.compare.compare`, which takes the same prepared
sequences. Each step can also be run alone (`seqvae.logs.read_log`, `seqvae.sequences.encode`,
`seqvae.training.fit`); this module only fixes their order and what is recorded, so the CLI and
the dashboard cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqvae.logs import EventLog, IngestOptions, IngestReport, Source, keep_positive, read_log
from seqvae.sequences import SequenceOptions, Sequences, encode
from seqvae.splits import Split, leave_one_out


@dataclass
class Prepared:
    """A log read, filtered and encoded, with the report that accounts for every row."""

    log: EventLog
    report: IngestReport
    sequences: Sequences


def prepare(source: Source, options: IngestOptions | None = None,
            sequence_options: SequenceOptions | None = None, *, min_rating: float | None = None,
            name: str | None = None) -> Prepared:
    """Read `source` (`read_log`), keep the events rated at least `min_rating` when given
    (`keep_positive`), and encode the users' sequences (`encode`); every drop is in the report.
    """
    log, report = read_log(source, options, name=name)
    return encode_log(log, report, sequence_options, min_rating=min_rating)


def encode_log(log: EventLog, report: IngestReport | None = None,
               sequence_options: SequenceOptions | None = None, *,
               min_rating: float | None = None) -> Prepared:
    """`prepare`'s steps after reading, for a log already in memory (the dashboard's)."""
    report = report or IngestReport(source=log.source, format="in memory",
                                    rows_read=log.n_events, rows_kept=log.n_events)
    if min_rating is not None:
        log = keep_positive(log, min_rating, report)
    return Prepared(log, report, encode(log, sequence_options, report))


def training_split(sequences: Sequences) -> Split:
    """The split a model is trained on: each user's last event for the test, the one before
    for validation (early stopping). Refuses, before any epoch, data that cannot train."""
    from seqvae.training import check_trainable

    split = leave_one_out(sequences)
    check_trainable(split)
    return split


@dataclass
class Trained:
    """A fitted SeqVAE (or its twin), its training curves and its score on the test holdout."""

    recommender: Any
    history: Any  # a `TrainingHistory`
    test: dict[str, float]
    test_users: int
    # the most popular items scored on the same test: the floor a model must clear to be
    # worth reading (None unless asked for)
    popularity: dict[str, float] | None = None
    # set when the model was retrained on every event after the test (`train(refit=True)`):
    # its epochs, events and seconds; validation and test describe the model before it
    refit: dict[str, Any] | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        """What the model directory records as ``metrics.json``."""
        metrics = {"protocol": "leave-one-out", "best_epoch": self.history.best_epoch,
                   "validation": self.history.best_validation, "test": self.test,
                   "evaluated_users": self.test_users}
        if self.refit is not None:
            metrics["refit"] = {**self.refit, "scored": "validation and test were measured "
                                "on the model that held those events out, before the refit"}
        return metrics

    def save(self, directory: str | os.PathLike[str], report: IngestReport) -> Path:
        """The model directory (`seqvae.bundle.save`), with the metrics and the data schema."""
        from seqvae.bundle import save

        sequences = self.recommender.history_  # every user's full sequence
        return save(self.recommender, directory, metrics=self.metrics, data={
            "source": report.source, "columns": report.columns, "users": sequences.n_users,
            "items": sequences.item_vocab.size - 2, "events": sequences.n_events})


def train(sequences: Sequences, config: Any, *, split: Split | None = None,
          on_phase: Callable[[str], None] | None = None, encode_users: bool = False,
          popularity: bool = False, refit: bool = False, **fit_options: Any) -> Trained:
    """Split (`training_split`, unless given), fit (`seqvae.training.fit`: `on_batch`,
    `on_epoch`, `cancel`, `strategy`, `checkpoint_dir` go to it), then test the best epoch.

    Recommendations come from every user's full sequence (`sequences`). With `encode_users`,
    μ of every user is computed before returning (the Latent page's first need), and
    `on_phase` hears "testing", "refitting" and "encoding" as each starts. With `popularity`,
    the most popular items are scored on the same test too (`Trained.popularity`).

    With `refit`, after the test a fresh model is trained on every event of `sequences` for
    the epochs early stopping chose (`seqvae.training.refit`) and replaces the tested one: it
    learns from each user's latest events, which the split held out (on Beauty one more event
    per user lifted the next item's NDCG@20 by 14%; on MovieLens 100K, with ten times longer
    histories, no gain was measured: docs/model.md). Its own score cannot be
    measured; `Trained.test` stays the held-out model's. A refit stopped by `cancel` keeps the
    tested model (`Trained.refit` stays None).
    """
    from seqvae.training import fit

    split = split or training_split(sequences)
    recommender, history = fit(split, config, history_sequences=sequences, **fit_options)
    refitting = bool(refit and history.best_epoch and not history.cancelled)
    trained = tested(recommender, history, split.test, config, on_phase=on_phase,
                     encode_users=encode_users and not refitting)
    if popularity:
        from seqvae.baselines import Popularity
        from seqvae.training import evaluate_holdout

        trained.popularity = evaluate_holdout(Popularity().fit(split), split.test,
                                              config.eval_k)
    if refitting:
        retrain(trained, sequences, on_phase=on_phase, encode_users=encode_users,
                **fit_options)
    trained.recommender.metrics_ = trained.metrics  # saved with it (a zip, a model directory)
    return trained


def refit_epochs_text(refit: dict[str, Any]) -> str:
    """How long a refit (`Trained.refit`) trained, in words: "12 epochs", or an ensemble's
    "12, 15 epochs (one count per network)"."""
    counts = refit.get("member_epochs")
    if not counts:
        return f"{refit['epochs']} epochs"
    return f"{', '.join(map(str, counts))} epochs (one count per network)"


def retrain(trained: Trained, sequences: Sequences | None = None, *, store: Any = None,
            block_events: int = 1 << 22, on_phase: Callable[[str], None] | None = None,
            encode_users: bool = False, **fit_options: Any) -> Trained:
    """The refit step of `train` (`refit=True`), also for a model tested after `fit_store`
    (pass the `store`): a fresh model trained on every event for the epochs early stopping
    chose (an ensemble's networks each for their own) replaces the tested one, unless it was
    cancelled (`cancel`; `on_batch` and `strategy` are heard too; other fit options are
    ignored). The tested model's settings as they were used (its batch size resolved from its
    data) train it: "auto" chosen again from the larger data could pick another batch size.
    A run that chose no epoch (cancelled in its first) is returned as it is."""
    from seqvae.ondisk import refit_store
    from seqvae.training import refit, refit_epochs

    epochs = refit_epochs(trained.history)  # an ensemble's: each network's own best epoch
    if not trained.history.best_epoch or trained.history.cancelled:
        return trained
    if on_phase is not None:
        on_phase("refitting")
    options = {k: v for k, v in fit_options.items() if k in ("on_batch", "cancel", "strategy")}
    config = trained.recommender.config_
    if store is not None:
        recommender, history = refit_store(store, config, epochs, block_events=block_events,
                                           **options)
    elif sequences is not None:
        recommender, history = refit(sequences, config, epochs, **options)
    else:
        raise ValueError("retrain needs the `sequences` or the `store` the model was fitted on")
    if not history.cancelled:
        # the curves users read (history.json, the Training page) stay the held-out run's:
        # the refit has no validation to draw
        recommender.training_history_ = trained.history
        trained.recommender = recommender
        first = epochs if isinstance(epochs, int) else epochs[0]
        trained.refit = {"epochs": first, "events": int(recommender.history_.n_events),
                         "seconds": round(history.seconds, 1),
                         **({} if isinstance(epochs, int) else {"member_epochs": epochs})}
        trained.recommender.metrics_ = trained.metrics
    if encode_users:
        if on_phase is not None:
            on_phase("encoding")
        trained.recommender.encode_history()
    return trained


def tested(recommender: Any, history: Any, test_holdout: Any, config: Any, *,
           on_phase: Callable[[str], None] | None = None, encode_users: bool = False) -> Trained:
    """The last steps of `train` for a model fitted elsewhere (from a sequence store)."""
    from seqvae.training import evaluate_holdout

    if on_phase is not None:
        on_phase("testing")
    test = evaluate_holdout(recommender, test_holdout, config.eval_k)
    if encode_users:
        if on_phase is not None:
            on_phase("encoding")
        recommender.encode_history()
    return Trained(recommender, history, test, test_holdout.n_users)
