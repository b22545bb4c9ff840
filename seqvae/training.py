"""Training a SeqVAE on a split: typed config, length-bucketed batches, KL annealing, early
stopping on validation NDCG that restores the best weights, progress hooks and cancellation.

    recommender, history = fit(split, SeqVAEConfig(epochs=20), on_epoch=print)

Batches are bucketed by sequence length (8, 16, 32, ... up to `max_len`), so the network runs on
few padded steps; the bucket lengths are few, so the training function is traced only a few times.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from seqvae.errors import TrainingDataError
from seqvae.evaluation import evaluate
from seqvae.sequences import OOV, Sequences
from seqvae.splits import Holdout, Split


@dataclass(frozen=True)
class SeqVAEConfig:
    """Every hyperparameter of a SeqVAE and its training."""

    # size of the item / event-type / time-gap embeddings (summed)
    embed_dim: int = 64
    # recurrent state and decoder width (the items' vectors have this size)
    hidden_dim: int = 128
    # size of the user representation μ
    latent_dim: int = 32
    # "gru" or "lstm"
    encoder: str = "gru"
    # dropout on the embeddings and on the decoder
    dropout: float = 0.1
    # the multinomial likelihood covers the next `next_k` items after each step
    next_k: int = 1
    # training windows: length and stride (the most recent `max_len` events represent a user)
    max_len: int = 50
    stride: int = 25
    batch_size: int = 64
    # upper bound on epochs; early stopping usually ends sooner
    epochs: int = 30
    learning_rate: float = 1e-2
    # AdamW's decoupled weight decay
    weight_decay: float = 1e-4
    # β rises linearly from 0 to `beta_cap` over `anneal_epochs`; a small cap leaves the latent
    # room to carry what the next item needs (a cap of 0.2 collapsed it on the sample log)
    beta_cap: float = 0.05
    anneal_epochs: float = 3.0
    # stop when validation NDCG@`eval_k` has not improved for `patience` epochs
    patience: int = 3
    eval_k: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("embed_dim", "hidden_dim", "latent_dim", "next_k", "max_len", "stride",
                     "batch_size", "epochs", "eval_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` should be a positive integer. Received: `{name}`={value!r}")
        if self.encoder not in ("gru", "lstm"):
            raise ValueError(f"`encoder` should be 'gru' or 'lstm'. Received: `encoder`={self.encoder!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` should be in [0, 1). Received: `dropout`={self.dropout}")
        for name in ("learning_rate", "weight_decay", "beta_cap", "anneal_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` should be >= 0. Received: `{name}`={getattr(self, name)}")
        if self.patience < 1:
            raise ValueError(f"`patience` should be >= 1. Received: `patience`={self.patience}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SeqVAEConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown SeqVAEConfig fields: {', '.join(sorted(unknown))}")
        return cls(**values)


@dataclass
class EpochRecord:
    """What one epoch did."""

    epoch: int
    loss: float
    reconstruction_loss: float
    kl_loss: float
    beta: float
    validation: dict[str, float]
    seconds: float


@dataclass
class TrainingHistory:
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def best_validation(self) -> dict[str, float]:
        for record in self.epochs:
            if record.epoch == self.best_epoch:
                return record.validation
        return {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingHistory:
        epochs = [EpochRecord(**e) for e in values.get("epochs", [])]
        rest = {k: v for k, v in values.items() if k != "epochs"}
        return cls(epochs=epochs, **rest)


@dataclass
class BatchProgress:
    """Reported after every batch."""

    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based within the epoch
    batches: int
    loss: float
    reconstruction_loss: float
    kl_loss: float
    beta: float
    elapsed: float


class CancelToken:
    """Ask a running `fit` to stop after the current batch (thread-safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def bucket_lengths(max_len: int) -> list[int]:
    """Window lengths the batches are padded to: from 4 up by x1.5, then `max_len`
    ([4, 6, 9, 14, 21, 32, 50] for 50). Each length costs one graph trace (~2 s once); on Beauty,
    whose users mostly have under ten events, this leaves 14% of the cells padding where
    powers of two from 8 left 36%."""
    lengths = [4]
    while lengths[-1] * 1.5 < max_len * 0.85:
        lengths.append(math.ceil(lengths[-1] * 1.5))
    return sorted({min(n, max_len) for n in lengths} | {max_len})


@dataclass
class TrainingBatches:
    """Windows with their next-item targets, grouped into length buckets."""

    buckets: list[dict[str, np.ndarray]]
    batch_size: int
    n_windows: int
    n_steps: int

    def epoch(self, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
        batches = []
        for bucket in self.buckets:
            order = rng.permutation(bucket["items"].shape[0])
            for start in range(0, order.size, self.batch_size):
                take = order[start:start + self.batch_size]
                batches.append({key: value[take] for key, value in bucket.items()})
        return [batches[i] for i in rng.permutation(len(batches))]

    @property
    def batches_per_epoch(self) -> int:
        return sum(math.ceil(b["items"].shape[0] / self.batch_size) for b in self.buckets)


def make_batches(train: Sequences, config: SeqVAEConfig) -> TrainingBatches:
    windows = train.windows(config.max_len, config.stride)
    targets = train.next_items(windows, config.next_k)
    targets = np.where(targets == OOV, 0, targets)  # rare items are not prediction targets
    lengths = (windows.items != 0).sum(axis=1)
    useful = (targets != 0).any(axis=(1, 2))  # a window of one event has nothing to predict
    buckets = []
    bounds = bucket_lengths(config.max_len)
    lower = 0
    for bound in bounds:
        chosen = useful & (lengths > lower) & (lengths <= bound)
        lower = bound
        if not chosen.any():
            continue
        buckets.append({
            "items": windows.items[chosen, :bound],
            "events": windows.events[chosen, :bound],
            "gaps": windows.gaps[chosen, :bound],
            "targets": targets[chosen, :bound],
        })
    return TrainingBatches(buckets, config.batch_size, int(useful.sum()),
                           int(lengths[useful].sum()))


def check_trainable(split: Split) -> None:
    """Refuse, before any epoch, data on which a SeqVAE cannot learn."""
    train = split.train
    n_items = train.item_vocab.size - 2
    if n_items < 2:
        raise TrainingDataError(
            f"the log has {n_items} item(s) after filtering; a recommender needs at least two")
    if train.n_users == 0 or int(train.lengths.max(initial=0)) < 2:
        raise TrainingDataError(
            "no user has two events in the training data, so there is no next item to learn "
            "from; use a log with longer histories")
    if split.validation.n_users == 0:
        raise TrainingDataError("the validation split is empty; use a log with more users")


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def evaluate_holdout(recommender: Any, holdout: Holdout, k: int,
                     chunk_users: int = 2048) -> dict[str, float]:
    """NDCG@k and HR@k of `recommender` on a holdout (inputs excluded from the ranking), scored
    `chunk_users` at a time (2,048 users x 12,101 items is 99 MB)."""
    metrics = evaluate(recommender, holdout, [k], with_auc=False, chunk_users=chunk_users).metrics
    return {f"NDCG@{k}": metrics[f"NDCG@{k}"], f"HR@{k}": metrics[f"HR@{k}"]}


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


def fit(
    split: Split,
    config: SeqVAEConfig | None = None,
    *,
    history_sequences: Sequences | None = None,
    on_batch: Callable[[BatchProgress], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    cancel: CancelToken | None = None,
) -> tuple[Any, TrainingHistory]:
    """Train a SeqVAE on ``split.train``, early-stopping on ``split.validation``.

    Args:
        split: from `seqvae.splits`; the test part is not touched.
        config: hyperparameters; defaults suit the bundled sample.
        history_sequences: the users' full sequences the fitted recommender recommends from
            (default: the training sequences).
        on_batch, on_epoch: progress hooks, called on the training thread.
        cancel: a token; once cancelled, training ends after the current batch and keeps the
            best weights seen.

    Returns:
        ``(recommender, history)``.

    Raises:
        TrainingDataError: the data cannot train a model (said before any epoch runs).
    """
    import keras

    from seqvae.model import SeqVAE
    from seqvae.recommender import SeqVAERecommender

    config = config or SeqVAEConfig()
    check_trainable(split)
    batches = make_batches(split.train, config)
    if batches.n_windows == 0:
        raise TrainingDataError("no training window has a next item to predict")
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train = split.train
    model = SeqVAE(
        n_items=train.item_vocab.size,
        n_events=train.event_vocab.size,
        n_gaps=train.options.time_buckets,
        embed_dim=config.embed_dim,
        hidden_dim=config.hidden_dim,
        latent_dim=config.latent_dim,
        encoder=config.encoder,
        dropout=config.dropout,
        seed=config.seed,
    )
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=config.learning_rate,
                                                   weight_decay=config.weight_decay,
                                                   clipnorm=5.0))
    model.build_for_inputs()
    recommender = SeqVAERecommender(model, config, train.item_vocab, train.event_vocab,
                                    history_sequences if history_sequences is not None else train)
    history = TrainingHistory()
    anneal_steps = max(1.0, config.anneal_epochs * batches.batches_per_epoch)
    metric_name = f"NDCG@{config.eval_k}"
    best_score = -np.inf
    best_weights: list[np.ndarray] | None = None
    since_best = 0
    step = 0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        epoch_batches = batches.epoch(rng)
        sums = {"loss": 0.0, "reconstruction_loss": 0.0, "kl_loss": 0.0}
        done = 0
        for number, batch in enumerate(epoch_batches, start=1):
            beta = config.beta_cap * min(1.0, step / anneal_steps)
            model.beta.assign(beta)
            model.reset_metrics()  # so the logs are this batch's, averaged below
            logs = model.train_on_batch(batch, return_dict=True)
            step += 1
            done += 1
            for key in sums:
                sums[key] += float(logs[key])
            if on_batch is not None:
                on_batch(BatchProgress(epoch, config.epochs, number, len(epoch_batches),
                                       sums["loss"] / done, sums["reconstruction_loss"] / done,
                                       sums["kl_loss"] / done, beta,
                                       time.perf_counter() - started))
            if cancel is not None and cancel.cancelled:
                history.cancelled = True
                break
        validation = evaluate_holdout(recommender, split.validation, config.eval_k)
        record = EpochRecord(
            epoch=epoch,
            loss=sums["loss"] / max(done, 1),
            reconstruction_loss=sums["reconstruction_loss"] / max(done, 1),
            kl_loss=sums["kl_loss"] / max(done, 1),
            beta=float(model.beta.numpy()),
            validation=validation,
            seconds=time.perf_counter() - epoch_start,
        )
        history.epochs.append(record)
        if validation[metric_name] > best_score:
            best_score = validation[metric_name]
            best_weights = [np.array(w) for w in model.get_weights()]
            history.best_epoch = epoch
            since_best = 0
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(record)
        if history.cancelled:
            break
        if since_best >= config.patience:
            history.stopped_early = True
            break
    if best_weights is not None:
        model.set_weights(best_weights)
    history.seconds = time.perf_counter() - started
    recommender.training_history_ = history
    return recommender, history
