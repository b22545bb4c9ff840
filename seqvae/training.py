"""Training a SeqVAE on a split: batches of training windows, KL annealing, early stopping on
validation NDCG that restores the best weights, progress hooks and cancellation. The typed
config lives in `seqvae.config` and is re-exported here.

    recommender, history = fit(split, SeqVAEConfig(epochs=20), on_epoch=print)

The batches of training windows (random, by length, or packed several to a row) are made by
`seqvae.batches`; the softmax runs at real steps only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from seqvae.batches import TrainingBatches, make_batches, pack_windows
from seqvae.config import ADDED_FIELDS, SeqVAEConfig
from seqvae.errors import TrainingDataError
from seqvae.evaluation import evaluate
from seqvae.sequences import Sequences
from seqvae.splits import Holdout, Split

# AdamW's gradients are clipped to this norm, each variable's on its own
CLIP_NORM = 5.0


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
    # batches trained, and the predicted steps (events) they held
    batches: int = 0
    events: int = 0
    # of `seconds`, the part spent training (the rest: validation)
    train_seconds: float = 0.0


@dataclass
class TrainingHistory:
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    cancelled: bool = False
    seconds: float = 0.0
    # an ensemble (`SeqVAEConfig.members` > 1): the histories of its networks after the first
    # (as `to_dict`); the fields above are the first network's, `seconds` the whole training's
    members: list[dict[str, Any]] = field(default_factory=list)
    # an ensemble's validation scores: its networks together, each at its best epoch (the
    # epochs above score the first network alone); empty for one network
    ensemble_validation: dict[str, float] = field(default_factory=dict)

    @property
    def best_validation(self) -> dict[str, float]:
        """The trained model's validation scores: the best epoch's, or an ensemble's as a
        whole."""
        if self.ensemble_validation:
            return self.ensemble_validation
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
    # an ensemble's (`SeqVAEConfig.members`) progress is one network's: which, of how many
    network: int = 1  # 1-based
    networks: int = 1


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
# the training loop (one process, or one of several workers)
# --------------------------------------------------------------------------------------------


class BatchSource(Protocol):
    """Where an epoch's global batches come from: in memory, or read from disk block by block."""

    @property
    def batches_per_epoch(self) -> int: ...

    def epoch(self, number: int) -> Iterator[dict[str, np.ndarray]]: ...

    def with_seed(self, seed: int) -> BatchSource: ...


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """The random stream of one epoch: a function of (seed, epoch) alone, so a run resumed from
    a checkpoint shuffles and samples exactly as an uninterrupted one."""
    return np.random.default_rng([seed, epoch, stream])


@dataclass
class MemoryBatches:
    """`TrainingBatches` as a `BatchSource`."""

    batches: TrainingBatches
    seed: int

    @property
    def batches_per_epoch(self) -> int:
        return self.batches.batches_per_epoch

    def epoch(self, number: int) -> Iterator[dict[str, np.ndarray]]:
        yield from self.batches.epoch(epoch_rng(self.seed, number))

    def with_seed(self, seed: int) -> MemoryBatches:
        """The same windows, drawn into batches in another order (another network's)."""
        return replace(self, seed=seed)


@dataclass(frozen=True)
class NegativeSampler:
    """Negatives for the sampled softmax: `count` item ids per batch, drawn with replacement
    from the training popularity Q, with log(count · Q) for the log-Q correction (Bengio &
    Senécal 2008; Yi et al., RecSys 2019): subtracting it from every candidate's logit makes the
    sampled softmax an unbiased estimate of the full one's gradient in expectation."""

    count: int
    cumulative: np.ndarray  # (n_items,) cumulative Q; reserved ids have Q = 0
    log_expected: np.ndarray  # (n_items,) float32 log(count · Q), 0 where Q = 0

    @classmethod
    def from_counts(cls, counts: np.ndarray, count: int) -> NegativeSampler:
        counts = np.asarray(counts, dtype=np.float64).copy()
        counts[:2] = 0.0  # padding and OOV are never candidates
        q = counts / max(counts.sum(), 1.0)
        with np.errstate(divide="ignore"):
            log_expected = np.where(q > 0, np.log(count * q), 0.0).astype(np.float32)
        return cls(count, np.cumsum(q), log_expected)

    def draw(self, rng: np.random.Generator, targets: np.ndarray) -> dict[str, np.ndarray]:
        negatives = np.searchsorted(self.cumulative, rng.random(self.count) * self.cumulative[-1],
                                    side="right")
        negatives = np.minimum(negatives, self.cumulative.size - 1).astype(np.int32)
        return {"negatives": negatives, "negative_log_q": self.log_expected[negatives],
                "target_log_q": self.log_expected[targets[..., 0]]}


# keys of a batch that every replica receives whole (not split by rows)
SHARED_KEYS = ("n_steps", "negatives", "negative_log_q")


def _complete(batch: dict[str, np.ndarray], rng: np.random.Generator,
              latent_dim: int, sampler: NegativeSampler | None = None) -> dict[str, Any]:
    """Add what the step needs besides the data: ε for every cell (drawn here, per example, so
    that splitting a batch across workers does not change it), the batch's number of predicted
    steps (each worker divides its sum by the whole batch's count) and, for the sampled
    softmax, the batch's shared negatives."""
    shape = batch["items"].shape
    out = {**batch,
           "noise": rng.standard_normal((*shape, latent_dim), dtype=np.float32),
           "n_steps": np.float32((batch["targets"] != 0).any(axis=-1).sum())}
    if sampler is not None:
        out.update(sampler.draw(rng, batch["targets"]))
    return out


def shard(batch: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    """Worker `index` of `count`'s contiguous share of a global batch's rows (may be empty);
    what all rows share (the batch's step count, the negatives) is kept whole."""
    rows = batch["items"].shape[0]
    lo, hi = index * rows // count, (index + 1) * rows // count
    return {key: value if key in SHARED_KEYS else value[lo:hi] for key, value in batch.items()}


def _signature(config: SeqVAEConfig) -> dict[str, Any]:
    import tensorflow as tf

    cells = tf.TensorSpec((None, None), tf.int32)
    signature = {"items": cells, "events": cells, "gaps": cells, "remaining": cells,
                 "targets": tf.TensorSpec((None, None, config.next_k), tf.int32),
                 "noise": tf.TensorSpec((None, None, config.latent_dim), tf.float32),
                 "n_steps": tf.TensorSpec((), tf.float32)}
    if config.batching_used == "packed":
        signature.update(segments=cells, positions=cells)
    if config.negatives:
        signature.update(negatives=tf.TensorSpec((config.negatives,), tf.int32),
                         negative_log_q=tf.TensorSpec((config.negatives,), tf.float32),
                         target_log_q=tf.TensorSpec((None, None), tf.float32))
    return signature


def epoch_options() -> Any:
    """The `tf.data` options of an epoch's pipeline: each worker reads whole global batches
    (`shard` splits them), and no autotuning. The autotuner's thread sleeps in doubling
    intervals (10 ms, 20 ms, … 10.24 s) and deleting an iterator waited for its current sleep
    to end: a third of Beauty's epochs, ~12 s of steps, ended only 20.5 s after they began
    (10 ms + … + 10.24 s). The pipeline has nothing to tune: one generator, a fixed prefetch."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.autotune.enabled = False
    return options


def _distributed_batches(source: BatchSource, epoch: int, config: SeqVAEConfig,
                         strategy: Any, sampler: NegativeSampler | None = None) -> Any:
    """The epoch as a `tf.data` pipeline per worker (prefetched, so the next batch is prepared
    while the current one trains); each replica gets its share of every global batch."""
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync

    def pipeline(context: Any) -> Any:
        # a worker's pipeline feeds its local replicas in turn: replica r of this worker gets
        # share (first + r) of every global batch
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        packed = config.batching_used == "packed"

        def generate() -> Iterator[dict[str, np.ndarray]]:
            rng = epoch_rng(config.seed, epoch, stream=1)
            for batch in source.epoch(epoch):
                if packed:
                    batch = pack_windows(batch, config.max_len)
                complete = _complete(batch, rng, config.latent_dim, sampler)
                for replica in range(first, first + local):
                    yield shard(complete, replica, replicas)

        dataset = tf.data.Dataset.from_generator(generate, output_signature=_signature(config))
        return dataset.with_options(epoch_options()).prefetch(2)

    return strategy.distribute_datasets_from_function(pipeline)


def _make_step(model: Any, optimizer: Any, strategy: Any, clipnorm: float,
               spec: Any) -> Callable[..., Any]:
    """One optimiser step on a (distributed) batch -> (loss, reconstruction, KL) of the batch.

    `spec` is the batches' element spec, every dimension that varies from batch to batch left
    open, so the step is traced once. Traced from the first batch's shapes and again when a
    batch of other shapes came (``reduce_retracing``), it cost a second trace and a second
    graph optimisation: ~4 s of every training's first epoch on 2 cores (on a 150-user log the
    first epoch fell from 7.6 to 3.4 s; the tests train dozens of such models).

    Each replica's loss is its share of the batch's sum divided by the whole batch's step count,
    so the sum of the replicas' gradients is the gradient of the undivided batch. Each
    variable's gradient is clipped to `clipnorm` only once it is that sum (the replicas add
    their gradients first), so several workers take exactly the single-process step: clipping
    each replica's share instead (at ``clipnorm / replicas``) changed the step whenever a share
    reached its bound, which on the sample log is most early steps (two workers then ended an
    epoch ~1% away from one process; now ~1e-6, rounding).
    """
    import tensorflow as tf

    variables = model.trainable_weights
    replicas = strategy.num_replicas_in_sync

    def replica_step(batch: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
        with tf.GradientTape() as tape:
            outputs = model(batch, training=True)
            total, reconstruction, kl = model.loss_terms(batch, outputs)
        # the twin's log-variance takes no part in its loss: a zero gradient, not None. The
        # embedding tables' gradients come as slices, one per lookup: made dense, so that the
        # clipped norm is the norm of the gradient (the slices' norm counts an event type's
        # every occurrence apart) and workers add them up exactly like one process
        gradients = [tf.zeros(v.shape, v.dtype) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(tape.gradient(total, variables), variables, strict=True)]
        if replicas > 1:  # every replica holds the whole batch's gradients
            gradients = tf.distribute.get_replica_context().all_reduce("SUM", gradients)
        if clipnorm:
            gradients = [tf.clip_by_norm(g, clipnorm) for g in gradients]
        if replicas > 1:  # the optimiser sums the replicas' gradients again
            gradients = [g / replicas for g in gradients]
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return total, reconstruction, kl, batch["n_steps"] / replicas

    @tf.function(input_signature=[spec])
    def step(batch: Any) -> tuple[Any, ...]:
        per_replica = strategy.run(replica_step, args=(batch,))
        return tuple(strategy.reduce("SUM", value, axis=None) for value in per_replica)

    return step


def is_chief(strategy: Any) -> bool:
    """Whether this process writes files: the only one, or the cluster's chief (TensorFlow's
    rule: the "chief" task if TF_CONFIG names one, else worker 0)."""
    return bool(getattr(getattr(strategy, "extended", None), "should_checkpoint", True))


def _agree(strategy: Any, value: float, operation: str = "MEAN") -> float:
    """`value` reduced across workers ("SUM" or "MEAN"), so that every worker takes the same
    decision from it; the value itself when there is one replica."""
    if strategy.num_replicas_in_sync == 1:
        return value
    import tensorflow as tf

    per_replica = strategy.run(lambda: tf.constant(value, tf.float64))
    return float(strategy.reduce(operation, per_replica, axis=None))


def local_cluster(workers: int) -> list[str]:
    """`TF_CONFIG` values for `workers` processes on this machine (free ports on 127.0.0.1), one
    per process: to try or test multi-worker training without a cluster."""
    import socket

    sockets = [socket.socket() for _ in range(workers)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    addresses = [f"127.0.0.1:{handle.getsockname()[1]}" for handle in sockets]
    for handle in sockets:
        handle.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})
            for i in range(workers)]


CHECKPOINT_VERSION = 2
CHECKPOINT_FILE = "checkpoint.npz"


def _fingerprint(config: SeqVAEConfig, train: Sequences, source: BatchSource,
                 n_workers: int) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed (the epoch limit may grow): the settings,
    the data (a digest of the vocabularies and of every user's length and last item), how the
    batches are cut, and the number of workers."""
    import hashlib

    digest = hashlib.sha256()
    for part in (json.dumps([train.item_vocab.to_json(), train.event_vocab.to_json()]).encode(),
                 np.ascontiguousarray(train.offsets).tobytes(),
                 np.ascontiguousarray(train.items[train.offsets[1:] - 1]).tobytes()
                 if train.n_events else b""):
        digest.update(part)
    settings = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    return {"config": settings, "data": digest.hexdigest(), "users": train.n_users,
            "events": train.n_events, "source": type(source).__name__,
            "block_events": getattr(source, "block_events", None), "workers": n_workers}


def _save_checkpoint(directory: Path, state: dict[str, Any],
                     arrays: dict[str, list[np.ndarray]]) -> None:
    """Everything needed to continue after `state["epoch"]`: one file, written under a
    temporary name and renamed, so a reader sees the previous checkpoint or this one."""
    directory.mkdir(parents=True, exist_ok=True)
    flat: dict[str, Any] = {f"{name}/{i}": value for name, values in arrays.items()
                            for i, value in enumerate(values)}
    temporary = directory / f".{CHECKPOINT_FILE}.tmp"
    with temporary.open("wb") as handle:
        np.savez(handle, state=np.array(json.dumps(state)), **flat)
    os.replace(temporary, directory / CHECKPOINT_FILE)


def remove_checkpoint(directory: str | os.PathLike[str]) -> None:
    """Delete what `_save_checkpoint` wrote (and the folder, if nothing else is in it), an
    ensemble's other networks' checkpoints (``member-2``, …) included."""
    directory = Path(directory)
    for member in directory.glob("member-*"):
        if member.is_dir():
            remove_checkpoint(member)
    for name in (CHECKPOINT_FILE, f".{CHECKPOINT_FILE}.tmp"):
        (directory / name).unlink(missing_ok=True)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def _load_checkpoint(directory: Path, fingerprint: dict[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]] | None:
    if not (directory / CHECKPOINT_FILE).exists():
        return None
    with np.load(directory / CHECKPOINT_FILE, allow_pickle=False) as stored:
        state = json.loads(str(stored["state"]))
        recorded = state.get("fingerprint")
        if isinstance(recorded, dict) and isinstance(recorded.get("config"), dict):
            # a checkpoint written before a setting existed was trained as that setting's
            # ADDED_FIELDS value: it resumes under it
            recorded = {**recorded, "config": {**ADDED_FIELDS, **recorded["config"]}}
        if state.get("version") != CHECKPOINT_VERSION or recorded != fingerprint:
            raise TrainingDataError(
                f"the checkpoint in {directory} belongs to another run (other settings, data or "
                "number of workers); delete it, or pass another --checkpoint-dir, to start "
                "afresh")
        arrays: dict[str, list[np.ndarray]] = {}
        names = [k for k in stored.files if k != "state"]
        for key in sorted(names, key=lambda k: (k.split("/")[0], int(k.split("/")[1]))):
            arrays.setdefault(key.split("/")[0], []).append(stored[key])
    return state, arrays


def _swap_in_average(model: Any, optimizer: Any) -> list[np.ndarray]:
    """Put the optimiser's moving average of the weights into the model (to validate and keep
    it); returns the weights as trained, to put back before the next step. Keras' public
    `finalize_variable_values` is that swap for an optimiser with `use_ema`."""
    trained = [np.array(variable.numpy()) for variable in model.trainable_variables]
    optimizer.finalize_variable_values(model.trainable_variables)
    return trained


def build_model(config: SeqVAEConfig, train: Sequences) -> Any:
    """A fresh (untrained) Keras `SeqVAE` of `config` for the vocabularies of `train`."""
    from seqvae.model import SeqVAE

    return SeqVAE(
        n_items=train.item_vocab.size,
        n_events=train.event_vocab.size,
        n_gaps=train.options.time_buckets,
        embed_dim=config.embed_dim,
        hidden_dim=config.hidden_dim,
        latent_dim=config.latent_dim,
        encoder=config.encoder,
        n_blocks=config.n_blocks,
        n_heads=config.n_heads,
        max_len=config.max_len,
        dropout=config.dropout,
        variational=config.variational,
        seed=config.seed,
        block_norm=config.block_norm,
        init_std=config.init_std,
        lowpass=config.lowpass,
        lowpass_bins=config.lowpass_bins,
        lowpass_learned=config.lowpass_learned,
        identity_head=config.identity_head,
        label_smoothing=config.label_smoothing,
        position_from=config.position_from,
    )


def fit(
    split: Split,
    config: SeqVAEConfig | None = None,
    *,
    history_sequences: Sequences | None = None,
    on_batch: Callable[[BatchProgress], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    cancel: CancelToken | None = None,
    strategy: Any = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
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
        strategy: a `tf.distribute` strategy (e.g. `MultiWorkerMirroredStrategy`); each worker
            runs this same call and trains on its share of every batch. None: this process.
        checkpoint_dir: written after every epoch (by the chief); a run that finds a checkpoint
            of the same settings there continues from it.

    Returns:
        ``(recommender, history)``.

    Raises:
        TrainingDataError: the data cannot train a model (said before any epoch runs).
    """
    config = config or SeqVAEConfig()
    check_trainable(split)
    source, config = _in_memory(split.train, config)
    return train_from(source, split.train, split.validation,
                      config, history_sequences=history_sequences, on_batch=on_batch,
                      on_epoch=on_epoch, cancel=cancel, strategy=strategy,
                      checkpoint_dir=checkpoint_dir)


def _in_memory(train: Sequences, config: SeqVAEConfig) -> tuple[MemoryBatches, SeqVAEConfig]:
    """The training windows of `train` in memory, and `config` with the batch size they use."""
    batches = make_batches(train, config)
    if batches.n_windows == 0:
        raise TrainingDataError("no training window has a next item to predict")
    return MemoryBatches(batches, config.seed), replace(config, batch_size=batches.batch_size)


def refit(
    sequences: Sequences,
    config: SeqVAEConfig,
    epochs: int | Sequence[int],
    *,
    on_batch: Callable[[BatchProgress], None] | None = None,
    cancel: CancelToken | None = None,
    strategy: Any = None,
) -> tuple[Any, TrainingHistory]:
    """Train a fresh SeqVAE on every event of `sequences` for `epochs` epochs: no validation,
    no early stopping, the same settings and seed as the run that chose `epochs` on held-out
    events (`fit`). The events that run held out to validate and test train here too, so the
    model learns from each user's latest events; it can no longer be scored on them. An
    ensemble (`config.members` > 1) may be given one count per network (`refit_epochs`), as
    each was early-stopped on its own.

    Returns ``(recommender, history)``; the history's epochs carry losses and no validation.
    """
    config, member_epochs = refit_config(config, epochs)
    source, config = _in_memory(sequences, config)
    return train_from(source, sequences, None, config,
                      history_sequences=sequences, on_batch=on_batch, cancel=cancel,
                      strategy=strategy, member_epochs=member_epochs)


def refit_epochs(history: TrainingHistory) -> int | list[int]:
    """The epochs a refit trains for, from the run that chose them: the best epoch, or an
    ensemble's, one per network (each network's own best; one that chose none, stopped in its
    first epoch, takes the first network's)."""
    best = int(history.best_epoch or 0)
    if not history.members:
        return best
    return [best] + [int(member.get("best_epoch") or best) for member in history.members]


def refit_config(config: SeqVAEConfig, epochs: int | Sequence[int]
                 ) -> tuple[SeqVAEConfig, list[int] | None]:
    """`config` set to train `epochs` (the first network's, where one count per network is
    given), and the counts per network (None for one count)."""
    counts = [epochs] if isinstance(epochs, int | np.integer) else list(epochs)
    if not counts or any(int(count) < 1 for count in counts):
        raise ValueError(f"`epochs` should be a positive integer, or one per network. "
                         f"Received: `epochs`={epochs}")
    if len(counts) > 1 and len(counts) != config.members:
        raise ValueError(f"`epochs` gives {len(counts)} counts for {config.members} "
                         f"network(s): give one, or one per network")
    member_epochs = [int(count) for count in counts] if len(counts) > 1 else None
    return replace(config, epochs=int(counts[0])), member_epochs


def train_from(
    source: BatchSource,
    train: Sequences,
    validation: Holdout | None,
    config: SeqVAEConfig,
    *,
    history_sequences: Sequences | None = None,
    on_batch: Callable[[BatchProgress], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    cancel: CancelToken | None = None,
    strategy: Any = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    member_epochs: Sequence[int] | None = None,
) -> tuple[Any, TrainingHistory]:
    """The loop behind `fit` and `refit`, for any `BatchSource` (`train` gives the
    vocabularies). Without `validation`, every one of `config.epochs` epochs runs and the model
    keeps the last one's weights (the moving average's, with `average_epochs`). With
    `config.members` > 1, `seqvae.ensemble.train_members` trains that many networks, each for
    its own count of `member_epochs` where given (a refit)."""
    if config.members > 1:
        from seqvae.ensemble import train_members

        return train_members(source, train, validation, config,
                             history_sequences=history_sequences, on_batch=on_batch,
                             on_epoch=on_epoch, cancel=cancel, strategy=strategy,
                             checkpoint_dir=checkpoint_dir, member_epochs=member_epochs)
    import keras
    import tensorflow as tf

    from seqvae.recommender import SeqVAERecommender

    strategy = strategy or tf.distribute.get_strategy()
    config = replace(config, batching=config.batching_used)  # recorded as used
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config, train)
        steps = source.batches_per_epoch
        if config.steps_per_epoch is not None:
            steps = min(steps, config.steps_per_epoch)
        learning_rate: Any = config.learning_rate
        if config.lr_schedule == "cosine":  # a function of the optimiser's step: resumes exactly
            learning_rate = keras.optimizers.schedules.CosineDecay(
                config.learning_rate, decay_steps=max(1, steps * config.decay_epochs), alpha=0.1)
        averaging: dict[str, Any] = {}
        if config.average_epochs > 0:  # the average lives in the optimiser's variables
            averaging = {"use_ema": True,
                         "ema_momentum": 1.0 - 1.0 / max(1.0, config.average_epochs * steps)}
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate,
                                           weight_decay=config.weight_decay, **averaging)
        model.compile(optimizer=optimizer)
        model.build_for_inputs()
        optimizer.build(model.trainable_variables)
    step_fn: Callable[..., Any] | None = None  # made for the first epoch's batches
    sampler = None
    if config.negatives:
        if config.next_k != 1:
            raise ValueError("the sampled softmax (`negatives` > 0) predicts the next item only; "
                             f"set `next_k`=1. Received: `next_k`={config.next_k}")
        sampler = NegativeSampler.from_counts(
            np.bincount(train.items, minlength=train.item_vocab.size), config.negatives)
    recommender = SeqVAERecommender(model, config, train.item_vocab, train.event_vocab,
                                    history_sequences if history_sequences is not None else train)
    history = TrainingHistory()
    batches_per_epoch = source.batches_per_epoch
    if config.steps_per_epoch is not None:
        batches_per_epoch = min(batches_per_epoch, config.steps_per_epoch)
    anneal_steps = max(1.0, config.anneal_epochs * batches_per_epoch)
    metric_name = f"NDCG@{config.eval_k}"
    best_score = -np.inf
    best_weights: list[np.ndarray] | None = None
    since_best = 0
    step = 0
    first_epoch = 1
    checkpoint = Path(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = _fingerprint(config, train, source, strategy.num_replicas_in_sync)
    found = _load_checkpoint(checkpoint, fingerprint) if checkpoint is not None else None
    resume_from = found[0]["epoch"] if found else 0
    mean = _agree(strategy, resume_from)
    if _agree(strategy, (resume_from - mean) ** 2) > 0:  # not every worker found the same
        raise TrainingDataError(
            f"the workers found different checkpoints in {checkpoint} (this one: epoch "
            f"{resume_from}); put --checkpoint-dir on storage every worker reads")
    if found:
        state, arrays = found
        for variable, value in zip(model.variables, arrays["variables"], strict=True):
            variable.assign(value)  # weights, β and the dropout / sampling seeds' states
        for variable, value in zip(optimizer.variables, arrays["optimizer"], strict=True):
            variable.assign(value)
        best_weights = arrays.get("best")
        history = TrainingHistory.from_dict(state["history"])
        best_score, since_best, step = state["best_score"], state["since_best"], state["step"]
        first_epoch = state["epoch"] + 1
        if history.stopped_early:
            first_epoch = config.epochs + 1
    started = time.perf_counter() - history.seconds
    for epoch in range(first_epoch, config.epochs + 1):
        epoch_start = time.perf_counter()
        sums = np.zeros(3)
        done = events = 0
        batches = _distributed_batches(source, epoch, config, strategy, sampler)
        if step_fn is None:
            step_fn = _make_step(model, optimizer, strategy, CLIP_NORM, batches.element_spec)
        for batch in batches:
            beta = config.beta_cap * min(1.0, step / anneal_steps)
            model.beta.assign(beta)
            *losses, n_steps = (float(v) for v in step_fn(batch))
            sums += losses
            events += int(n_steps)
            step += 1
            done += 1
            if on_batch is not None:
                loss, reconstruction, kl = (float(v) for v in sums / done)
                on_batch(BatchProgress(epoch, config.epochs, done, max(done, batches_per_epoch),
                                       loss, reconstruction, kl, beta,
                                       time.perf_counter() - started))
            if cancel is not None and cancel.cancelled:
                history.cancelled = True
                break
            if done == config.steps_per_epoch:
                break
        train_seconds = time.perf_counter() - epoch_start
        trained = _swap_in_average(model, optimizer) if optimizer.use_ema else None
        validation_scores: dict[str, float] = {}
        if validation is not None:
            validation_scores = evaluate_holdout(recommender, validation, config.eval_k)
            # the workers' scores agree; averaging makes their early-stopping decisions
            # identical even where float results could differ in the last bit
            validation_scores = {name: _agree(strategy, value)
                                 for name, value in validation_scores.items()}
        loss, reconstruction, kl = sums / max(done, 1)
        record = EpochRecord(epoch=epoch, loss=float(loss), reconstruction_loss=float(reconstruction),
                             kl_loss=float(kl), beta=float(model.beta.numpy()),
                             validation=validation_scores,
                             seconds=time.perf_counter() - epoch_start, batches=done,
                             events=events, train_seconds=train_seconds)
        history.epochs.append(record)
        if validation is None or validation_scores[metric_name] > best_score:
            best_score = validation_scores.get(metric_name, best_score)
            best_weights = [np.array(w) for w in model.get_weights()]
            history.best_epoch = epoch
            since_best = 0
        else:
            since_best += 1
        if trained is not None:  # training goes on from the weights as trained
            for variable, value in zip(model.trainable_variables, trained, strict=True):
                variable.assign(value)
        if since_best >= config.patience and not history.cancelled:
            history.stopped_early = True
        history.seconds = time.perf_counter() - started
        if on_epoch is not None:
            on_epoch(record)
        if checkpoint is not None and not history.cancelled and is_chief(strategy):
            _save_checkpoint(checkpoint, {
                "version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "epoch": epoch,
                "step": step, "best_score": float(best_score), "since_best": since_best,
                "history": history.to_dict()},
                {"variables": [np.asarray(v) for v in model.variables],
                 "optimizer": [np.asarray(v) for v in optimizer.variables],
                 "best": best_weights or []})
        if history.cancelled or history.stopped_early:
            break
    if best_weights:
        model.set_weights(best_weights)
    history.seconds = time.perf_counter() - started
    recommender.training_history_ = history
    return recommender, history
