"""A trained SeqVAE as a recommender: encode users, reconstruct sequences, recommend, compare.

Batch-first and vectorised: every method takes many users (or raw sequences) at once and runs the
network on padded batches of each user's most recent window.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from seqvae.errors import NotFittedError
from seqvae.sequences import (
    GAP_FIRST,
    OOV,
    PAD,
    SequenceOptions,
    Sequences,
    Vocabulary,
    encode_user,
    time_gaps,
)

if TYPE_CHECKING:
    from seqvae.logs import EventLog


DAY_MICROS = 86_400 * 1_000_000  # an appended event's gap when a user has no gap to go by

#: what a user's μ summarises: "next", the posterior after their last event (what recommendations
#: decode); "taste", the posteriors of every event of their last window combined
VIEWS = ("next", "taste")


def combine_steps(mean: np.ndarray, log_var: np.ndarray, real: np.ndarray,
                  weighted: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(n, L, Z) per-step posteriors and an (n, L) mask of real steps -> (n, Z) each: the
    Gaussians of a row's real steps multiplied as independent evidence about one user, a
    precision-weighted mean with log σ² = −log Σ σ⁻². A step the network is sure of counts
    more; a longer history gives a narrower σ. ``weighted=False`` (the twin, whose σ is never
    trained): the plain mean of μ, and the mean log σ². A row without a real step keeps its
    first step's values (as the "next" view does)."""
    real = real.astype(mean.dtype)[..., None]
    empty = real.sum(axis=1) == 0  # (n, 1)
    real = np.where(empty[:, None, :], np.eye(1, mean.shape[1], dtype=mean.dtype)[..., None],
                    real)
    if weighted:
        precision = np.exp(-log_var.astype(np.float64)) * real
        total = precision.sum(axis=1)
        combined = (precision * mean).sum(axis=1) / total
        return combined.astype(mean.dtype), (-np.log(total)).astype(log_var.dtype)
    count = real.sum(axis=1)
    return ((real * mean).sum(axis=1) / count).astype(mean.dtype), \
        ((real * log_var).sum(axis=1) / count).astype(log_var.dtype)


@dataclass
class Batch:
    items: np.ndarray
    events: np.ndarray
    gaps: np.ndarray


class BaseRecommender(ABC):
    """The recommender contract every model here keeps (the SeqVAE and the baselines).

    Subclasses implement `score`; `recommend`, `users_history`, the fold-in of new users
    (`fold_in`, `recommend_log`, `user_sequence`) and `raw_sequences` are shared.

    Attributes:
        item_vocab_, event_vocab_: the vocabularies of the data the model was fitted on; item
            scores are indexed by `item_vocab_` ids (0 padding and 1 OOV never score).
        history_: the users' sequences that `recommend(user_ids)` reads.
        params_: the hyperparameters in use (for reports).
    """

    name = "base"
    item_vocab_: Vocabulary
    event_vocab_: Vocabulary
    history_: Sequences | None = None
    params_: dict[str, Any]

    @abstractmethod
    def score(self, sequences: Sequences, exclude_seen: bool = True) -> np.ndarray:
        """Scores of every item for every user of `sequences`: (n_users, n_items) float32.

        With `exclude_seen`, every item of the user's input sequence scores -inf; padding and
        OOV always do.
        """

    @staticmethod
    def _exclude(scores: np.ndarray, sequences: Sequences, exclude_seen: bool) -> np.ndarray:
        scores[:, :2] = -np.inf
        if exclude_seen and sequences.n_events:
            scores[sequences.user_of_event, sequences.items] = -np.inf
        return scores

    def recommend(
        self,
        users: SequenceABC[Any],
        k: int = 10,
        exclude_seen: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` items for each user: ``(item_ids, scores)``, arrays of shape (n, k).

        Args:
            users: user ids known to the model's history, or raw sequences (lists of item ids)
                of users the model never saw — these need no retraining.
            k: how many items.
            exclude_seen: leave out the items already in each user's sequence.

        Raises:
            KeyError: a user id that is not in the history.
        """
        if k < 1:
            raise ValueError(f"`k` should be a positive integer. Received: `k`={k}")
        raw = [u for u in users if isinstance(u, list | tuple | np.ndarray)]
        if raw and len(raw) != len(users):
            raise ValueError("`users` should be all user ids or all raw sequences, not a mix")
        sequences = self.raw_sequences(raw) if raw else self.users_history([str(u) for u in users])
        return self.recommend_sequences(sequences, k, exclude_seen)

    def recommend_sequences(
        self,
        sequences: Sequences,
        k: int = 10,
        exclude_seen: bool = True,
        chunk_users: int = 2048,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` items for each user of `sequences`: ``(item_ids, scores)``, (n_users, k) each.

        Scored `chunk_users` at a time, so memory holds one chunk's (chunk, n_items) scores.
        With `exclude_seen`, items of a user's sequence score -inf; fewer than `k` finite scores
        leave -inf at the end of the row.
        """
        from seqvae.evaluation import top_k

        if k < 1:
            raise ValueError(f"`k` should be a positive integer. Received: `k`={k}")
        ids: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        for start in range(0, sequences.n_users, chunk_users):
            rows = np.arange(start, min(start + chunk_users, sequences.n_users))
            chunk = self.score(sequences.subset_users(rows), exclude_seen=exclude_seen)
            best = top_k(chunk, k)
            ids.append(best)
            scores.append(np.take_along_axis(chunk, best, axis=1))
        if not ids:
            width = min(k, self.item_vocab_.size)
            return self.item_vocab_.token(np.zeros((0, width), np.int64)), np.zeros((0, width),
                                                                                   np.float32)
        return self.item_vocab_.token(np.concatenate(ids)), np.concatenate(scores)

    # ---- new users: fold-in ---------------------------------------------------------------

    def encoding_options(self) -> SequenceOptions:
        """The options the training data was encoded with (time buckets, minimum item count),
        without k-core filtering: a new log's users are encoded, never filtered away."""
        if self.history_ is None:
            return SequenceOptions()
        options = self.history_.options
        return SequenceOptions(min_item_count=options.min_item_count,
                               time_buckets=options.time_buckets)

    def fold_in(self, log: EventLog) -> Sequences:
        """A new behaviour log's users, encoded exactly as the training data was: the model's
        vocabularies, its time buckets, events in time order, each event's own type and the gap
        since the user's previous event. No retraining; a stored user's own rows give back that
        user's stored arrays, so `recommend_log` then gives that user's recommendations.

        A log without an event-type column gives every event the model's most common type (as
        `raw_sequences` does). Items the model does not know: see `user_sequence`.

        Args:
            log: from `seqvae.logs.read_log` (with the same reading options as the training log).

        Returns:
            `Sequences`, users in order of first appearance in the log.
        """
        from seqvae.sequences import encode

        self._check_vocabularies()
        sequences = encode(log, self.encoding_options(), item_vocab=self.item_vocab_,
                           event_vocab=self.event_vocab_)
        frame = log.frame
        if not log.has_event:
            sequences.events[:] = 2 if self.event_vocab_.size > 2 else OOV
        else:
            self._warn_unknown_events(frame["event"].cat.categories[
                np.unique(frame["event"].cat.codes.to_numpy())])
        categories = frame["item"].cat.categories
        used = categories[np.unique(frame["item"].cat.codes.to_numpy())]
        unknown = [str(t) for t, i in zip(used, self.item_vocab_.lookup(used), strict=True)
                   if i == OOV]
        return self._known_items(sequences, unknown)

    def recommend_log(
        self,
        log: EventLog,
        k: int = 10,
        exclude_seen: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-`k` items for every user of a new log, from the log's events alone (`fold_in`).

        Returns:
            ``(user_ids, item_ids, scores)``: (n_users,) and (n_users, k) each; a user none of
            whose items the model knows is left out (with a warning).
        """
        sequences = self.fold_in(log)
        ids, scores = self.recommend_sequences(sequences, k, exclude_seen)
        return np.asarray(sequences.users, dtype=object), ids, scores

    def user_sequence(
        self,
        items: SequenceABC[Any] | np.ndarray,
        events: SequenceABC[Any] | np.ndarray | None = None,
        timestamps: SequenceABC[int] | np.ndarray | None = None,
        user: str = "<new user>",
    ) -> Sequences:
        """One user's events (e.g. a stored user's, edited) -> `Sequences` encoded like the
        training data (`seqvae.sequences.encode_user`); score it with `recommend_sequences`.

        Unknown items: where the model was trained with ``min_item_count`` > 1, rare items were
        encoded as out-of-vocabulary and the model learned what that id means, so an unknown
        item is encoded the same way (and warned about). Otherwise the model never saw that id
        as an input, so the event is left out, as if it were not there (the gaps are taken
        between the remaining events), with a warning naming the items.

        Args:
            items: (n,) item ids.
            events: (n,) event types; None: the model's most common event type for each.
            timestamps: (n,) int64 epoch microseconds (as `Sequences.timestamps`); None: no
                times (every gap "unknown").
            user: the id the result carries.

        Returns:
            `Sequences` of that one user (none, if no item is known).
        """
        self._check_vocabularies()
        sequence = encode_user(items, events, timestamps, item_vocab=self.item_vocab_,
                               event_vocab=self.event_vocab_, options=self.encoding_options(),
                               user=user)
        if events is not None:
            self._warn_unknown_events(list(events))
        unknown = list(dict.fromkeys(
            str(t) for t, i in zip(items, sequence.item_vocab.lookup(list(items)), strict=True)
            if i == OOV)) if len(items) else []
        return self._known_items(sequence, unknown)

    def edited_sequence(
        self,
        user: Any,
        remove: SequenceABC[Any] = (),
        add: SequenceABC[Any] = (),
        add_event: str | None = None,
    ) -> Sequences:
        """A stored user's events, edited, for "what if" questions (`user_sequence`, so that no
        edit gives back the stored arrays and so the stored recommendations exactly).

        Every event of an item in `remove` is left out; the items of `add` are appended after the
        user's last event, one per step of the user's median gap between events (one day for a
        user with a single event), as `add_event`.

        Args:
            user: a user id of the history.
            remove: items whose events are left out.
            add: items appended, in this order.
            add_event: the event type of the appended events; None: the user's most common
                (ties: the one most common overall).

        Returns:
            `Sequences` of that one user.

        Raises:
            KeyError: a user id that is not in the history.
        """
        history = self.users_history([str(user)])
        stored = history.of_user(0)
        items = self.item_vocab_.token(stored["items"]).astype(str)
        events = self.event_vocab_.token(stored["events"]).astype(str)
        keep = ~np.isin(items, [str(item) for item in remove])
        added = [str(item) for item in add]
        if add_event is None:
            # argmax takes the lowest id among ties: ids are most frequent first
            counts = np.bincount(stored["events"], minlength=self.event_vocab_.size)
            counts[:2] = 0
            most_common = int(np.argmax(counts)) if counts.any() else 2
            add_event = str(self.event_vocab_.token([most_common])[0])
        timestamps = None
        if history.has_timestamps:
            times = stored["timestamps"]
            last = int(times[-1]) if times.size else 0
            step = int(np.median(np.diff(times))) if times.size > 1 else DAY_MICROS
            timestamps = [*times[keep].tolist(),
                          *(last + step * (n + 1) for n in range(len(added)))]
        return self.user_sequence([*items[keep], *added], [*events[keep], *[add_event] * len(added)],
                                  timestamps, user=str(user))

    def _check_vocabularies(self) -> None:
        if getattr(self, "item_vocab_", None) is None:
            raise NotFittedError("this recommender has no vocabularies; call fit first")

    def _warn_unknown_events(self, events: Any) -> None:
        names = [str(e) for e in dict.fromkeys(events) if str(e) not in self.event_vocab_]
        if names:
            warnings.warn(f"event type(s) unknown to the model encoded as out-of-vocabulary: "
                          f"{', '.join(repr(n) for n in names[:5])}"
                          + (f" and {len(names) - 5} more" if len(names) > 5 else ""),
                          stacklevel=3)

    def _known_items(self, sequences: Sequences, unknown: list[str]) -> Sequences:
        """The rule for items outside the model's vocabulary (see `user_sequence`)."""
        n_unknown = int((sequences.items == OOV).sum())
        if n_unknown == 0:
            return sequences
        shown = ", ".join(repr(u) for u in unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        if sequences.options.min_item_count > 1:
            warnings.warn(f"{n_unknown} event(s) of item(s) without a vector of their own in the "
                          f"model encoded as out-of-vocabulary, as the training data's rare "
                          f"items were: {shown}", stacklevel=3)
            return sequences
        warnings.warn(f"left out {n_unknown} event(s) of {len(unknown)} item(s) unknown to the "
                      f"model: {shown}", stacklevel=3)
        known = sequences.select(sequences.items != OOV, drop_empty_users=True)
        if known.n_users < sequences.n_users:
            kept = set(known.users)
            lost = [str(u) for u in sequences.users if u not in kept]
            warnings.warn(f"{len(lost)} user(s) have no item the model knows and get no "
                          f"recommendations: {', '.join(repr(u) for u in lost[:5])}",
                          stacklevel=3)
        # the gaps between the events that remain, as if the left-out ones were not there
        return replace(known, gaps=time_gaps(known.timestamps if known.has_timestamps else None,
                                             known.offsets, known.options.time_buckets),
                       event_index=np.arange(known.n_events, dtype=np.int64))

    def users_history(self, user_ids: SequenceABC[str]) -> Sequences:
        if self.history_ is None:
            raise NotFittedError("this recommender has no user histories; pass raw sequences")
        rows = self.history_.user_position(user_ids)
        missing = [u for u, r in zip(user_ids, rows, strict=True) if r < 0]
        if missing:
            raise KeyError(f"unknown user ids: {', '.join(repr(m) for m in missing[:5])}")
        return self.history_.subset_users(rows)

    def raw_sequences(self, raw: SequenceABC[Any]) -> Sequences:
        """Raw item-id lists (users the model never saw) -> `Sequences`; unknown items are left
        out with a warning. No event types or times are known: each event gets the most common
        event type and the "unknown gap" bucket, so a stored user's items given this way do not
        give that user's recommendations; `user_sequence` and `fold_in` take the types and
        times too."""
        parts: list[np.ndarray] = []
        unknown: list[str] = []
        for seq in raw:
            ids = self.item_vocab_.lookup(list(seq)) if len(seq) else np.zeros(0, np.int32)
            unknown.extend(str(t) for t, i in zip(seq, ids, strict=True) if i == OOV)
            parts.append(np.asarray(ids[ids != OOV], dtype=np.int32))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5])
            warnings.warn(f"ignored {len(unknown)} item(s) unknown to the model: {shown}",
                          stacklevel=3)
        lengths = np.array([p.size for p in parts], dtype=np.int64)
        items = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        most_common_event = 2 if self.event_vocab_.size > 2 else OOV
        return Sequences(
            users=np.array([f"<sequence {i}>" for i in range(len(parts))], dtype=object),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            items=items,
            events=np.full(items.size, most_common_event, np.int32),
            gaps=np.full(items.size, GAP_FIRST, np.int32),
            timestamps=np.zeros(items.size, np.int64),
            event_index=np.arange(items.size, dtype=np.int64),
            item_vocab=self.item_vocab_,
            event_vocab=self.event_vocab_,
            has_timestamps=False,
        )


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Each row's log-probabilities under the softmax of `scores` (-inf: never chosen)."""
    top = scores.max(axis=1, keepdims=True)
    shifted = scores - np.where(np.isfinite(top), top, 0)
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def mean_log_softmax(scores: Iterable[np.ndarray]) -> np.ndarray:
    """The mean of several networks' `log_softmax` (an ensemble's scores), summed one network
    at a time."""
    total: np.ndarray | None = None
    count = 0
    for one in scores:
        part = log_softmax(one)
        total = part if total is None else total + part
        count += 1
    if total is None:
        raise ValueError("no scores to average")
    return total / count


class SeqVAERecommender(BaseRecommender):
    """A fitted SeqVAE with the vocabularies and the users' histories it recommends from.

    Attributes:
        model_: the Keras `SeqVAE` (an ensemble's first network).
        others_: an ensemble's other networks (`SeqVAEConfig.members` > 1; empty for one):
            the items are ranked by the mean of every network's log-softmax, and the
            reconstructions are that mean, renormalised. μ, the latent map, similar users and
            items and the explanations are the first network's.
        item_vocab_, event_vocab_: the vocabularies the model was trained with.
        history_: the users' sequences that `recommend(user_ids)` reads (all their events).
        config_: the `SeqVAEConfig` the model was trained with.
    """

    name = "seqvae"

    def __init__(self, model: Any, config: Any, item_vocab: Vocabulary, event_vocab: Vocabulary,
                 history: Sequences | None = None) -> None:
        self.model_ = model
        self.others_: list[Any] = []
        self.config_ = config
        # the deterministic twin (no latent) is the model `sasrec` of the comparisons
        self.name = "seqvae" if getattr(config, "variational", True) else "sasrec"
        self.item_vocab_ = item_vocab
        self.event_vocab_ = event_vocab
        self.history_ = history
        self.training_history_: Any = None  # a TrainingHistory, set by fit or load
        self.metrics_: dict[str, Any] = {}  # the evaluation recorded with the model

    @classmethod
    def configured(cls, config: Any) -> SeqVAERecommender:
        """An unfitted SeqVAE (or, with ``variational=False``, its twin) with `config`; `fit`
        trains it: the estimator contract every model of `seqvae.compare` keeps."""
        return cls(None, config, Vocabulary(()), Vocabulary(()))

    def fit(self, data: Any, *, on_epoch: Any = None, cancel: Any = None,
            **training: Any) -> SeqVAERecommender:
        """Train on a `Split` (early stopping on its validation part) -> self. `on_epoch`
        hears ``{"epoch", <validation metrics>}`` after each epoch; `training` goes to
        `seqvae.training.fit` (``history_sequences``, ``checkpoint_dir``, ``strategy``, …)."""
        from seqvae.training import fit

        hook = None if on_epoch is None else (
            lambda record: on_epoch({"epoch": record.epoch, **record.validation}))
        fitted, _ = fit(data, self.config_, on_epoch=hook, cancel=cancel, **training)
        self.__dict__.update(fitted.__dict__)
        return self

    @property
    def params_(self) -> dict[str, Any]:  # type: ignore[override]
        params = dict(self.config_.to_dict()) if hasattr(self.config_, "to_dict") else {}
        if self.training_history_ is not None and self.training_history_.best_epoch:
            params["epochs"] = self.training_history_.best_epoch  # chosen on validation
        return params

    @property
    def epochs_(self) -> list[dict[str, Any]]:
        """Every epoch trained and its validation metrics (as `MultVAEBaseline.epochs_`)."""
        history = self.training_history_
        return [] if history is None else [{"epoch": e.epoch, **e.validation}
                                           for e in history.epochs]

    # ---- building inputs --------------------------------------------------------------------

    def _check(self) -> None:
        if getattr(self, "model_", None) is None:
            raise NotFittedError("this recommender has no trained model; call fit first")

    def last_windows(self, sequences: Sequences) -> Batch:
        window = sequences.last_window(self.config_.max_len)
        return Batch(window.items, window.events, window.gaps)

    # ---- the network ------------------------------------------------------------------------

    def networks(self) -> list[Any]:
        """Every network of the model: one, or an ensemble's (the first is `model_`)."""
        return [self.model_, *self.others_]

    def _steps(self, batch: Batch, batch_size: int = 512, within: bool = False,
               model: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, log_var) at every step: (n, L, Z) each. ``within``: each step as training saw
        it, predicting the next event of the window rather than the one after the last (the
        two differ with positions counted from the end: `seqvae.model.within_remaining`).
        ``model``: one of `networks()` (default: the first)."""
        self._check()
        model = model or self.model_
        means, log_vars = [], []
        encode = self._encode_function(within, model)
        for start in range(0, batch.items.shape[0], batch_size):
            part = slice(start, start + batch_size)
            mean, log_var = encode(batch.items[part], batch.events[part], batch.gaps[part])
            means.append(np.asarray(mean))
            log_vars.append(np.asarray(log_var))
        if not means:
            z = model.latent_dim
            return np.zeros((0, batch.items.shape[1], z)), np.zeros((0, batch.items.shape[1], z))
        return np.concatenate(means), np.concatenate(log_vars)

    def _encode_function(self, within: bool = False, model: Any = None) -> Any:
        """`encode_steps` as one compiled graph for any batch shape: run eagerly, the recurrent
        loop costs ~0.5 s per call whatever the batch (measured on the sample), compiled ~5 ms.
        ``within``, ``model``: as `_steps`."""
        model = model or self.model_
        kept: dict[int, tuple[Any, dict[bool, Any]]] = self.__dict__.setdefault(
            "_encode_compiled", {})
        compiled = kept.get(id(model))
        if compiled is None or compiled[0] is not model:
            in_use = {id(network) for network in self.networks()}
            for key in [key for key in kept if key not in in_use]:  # a replaced network's
                del kept[key]
            compiled = (model, {})
            kept[id(model)] = compiled
        if within not in compiled[1]:
            import tensorflow as tf

            from seqvae.model import within_remaining

            spec = tf.TensorSpec([None, None], tf.int32)

            @tf.function(input_signature=[spec, spec, spec])
            def encode(items: Any, events: Any, gaps: Any) -> Any:
                inputs = {"items": items, "events": events, "gaps": gaps}
                if within:
                    inputs["remaining"] = within_remaining(items)
                mean, log_var, _, _ = model.encode_steps(inputs, training=False)
                return mean, log_var

            compiled[1][within] = encode
        return compiled[1][within]

    def _last(self, values: np.ndarray, batch: Batch) -> np.ndarray:
        last = np.maximum((batch.items != PAD).sum(axis=1) - 1, 0)
        return values[np.arange(values.shape[0]), last]

    def encode_batch(self, batch: Batch, batch_size: int = 1024, model: Any = None,
                     view: str = "next") -> tuple[np.ndarray, np.ndarray]:
        """Each row's (μ, log σ²), (n, Z) each; ``model``: one of `networks()` (default: the
        first). ``view`` (`VIEWS`): "next", the posterior after the row's last real step — what
        a recommendation decodes; "taste", the posteriors of all its real steps combined as
        independent evidence about one user (`combine_steps`)."""
        return self.encode_views(batch, (view,), batch_size, model)[view]

    def encode_views(self, batch: Batch, views: SequenceABC[str] = VIEWS, batch_size: int = 1024,
                     model: Any = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """`encode_batch` for several views from one pass of the network: {view: (μ, log σ²)}.

        Rows are grouped by length and each group is cut to its longest row: the encoder is
        causal and padding is masked, so the trailing padding changes nothing but the cost (on
        a log of 20,000 users of ~33 events, most windows are far shorter than `max_len`)."""
        self._check()
        for view in views:
            if view not in VIEWS:
                raise ValueError(f"`view` should be one of {', '.join(map(repr, VIEWS))}. "
                                 f"Received: `view`={view!r}")
        model = model or self.model_
        n = batch.items.shape[0]
        z = model.latent_dim
        out = {view: (np.zeros((n, z), np.float32), np.zeros((n, z), np.float32))
               for view in views}
        lengths = (batch.items != PAD).sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            width = max(int(lengths[rows].max()), 1)
            mean, log_var = self._encode_function(model=model)(batch.items[rows, :width],
                                                    batch.events[rows, :width],
                                                    batch.gaps[rows, :width])
            mean, log_var = np.asarray(mean), np.asarray(log_var)
            for view, (means, log_vars) in out.items():
                if view == "taste":
                    means[rows], log_vars[rows] = combine_steps(
                        mean, log_var, batch.items[rows, :width] != PAD,
                        weighted=bool(getattr(model, "variational", True)))
                else:
                    last = np.maximum(lengths[rows] - 1, 0)
                    means[rows] = mean[np.arange(rows.size), last]
                    log_vars[rows] = log_var[np.arange(rows.size), last]
        return out

    def encode(self, sequences: Sequences, view: str = "next") -> tuple[np.ndarray, np.ndarray]:
        """Each user's representation, (n_users, Z) each: μ and log σ² after their last event
        (``view="next"``), or every event of their last window combined (``"taste"``; see
        `encode_batch`)."""
        return self.encode_batch(self.last_windows(sequences), view=view)

    def decode_scores(self, latent: np.ndarray, batch_size: int = 2048, model: Any = None
                      ) -> np.ndarray:
        """Latent points (n, Z) of `model` (one of `networks()`, default the first) -> item
        scores (n, n_items); padding and OOV score -inf."""
        self._check()
        model = model or self.model_
        out = []
        for start in range(0, latent.shape[0], batch_size):
            out.append(np.asarray(model.decode(latent[start:start + batch_size],
                                               training=False)))
        scores = np.concatenate(out) if out else np.zeros((0, self.item_vocab_.size), np.float32)
        scores[:, :2] = -np.inf
        return scores

    def score_batch(self, batch: Batch, exclude_seen: bool = True) -> np.ndarray:
        """Item scores after each row's last step: one network's logits, or an ensemble's mean
        log-softmax."""
        if self.others_:
            scores = mean_log_softmax(
                self.decode_scores(self.encode_batch(batch, model=net)[0], model=net)
                for net in self.networks())
        else:
            mean, _ = self.encode_batch(batch)
            scores = self.decode_scores(mean)
        if exclude_seen:
            rows = np.repeat(np.arange(batch.items.shape[0]), batch.items.shape[1])
            scores[rows, batch.items.reshape(-1)] = -np.inf
            scores[:, PAD] = -np.inf
        return scores

    def score(self, sequences: Sequences, exclude_seen: bool = True) -> np.ndarray:
        """Scores of every item for every user of `sequences` (n_users, n_items).

        With `exclude_seen`, every item of the user's input sequence scores -inf (not only those
        of the last window).
        """
        scores = self.score_batch(self.last_windows(sequences), exclude_seen=False)
        return self._exclude(scores, sequences, exclude_seen)

    def reconstruct(self, user_or_sequence: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per-step item probabilities for one user (id) or raw sequence.

        Returns ``(item_ids, probabilities)``: the L item ids of the (most recent) window and an
        (L, n_items) matrix, row t = the model's distribution over the item that follows step t.
        """
        if isinstance(user_or_sequence, list | tuple | np.ndarray):
            batch = self.last_windows(self.raw_sequences([user_or_sequence]))
        else:
            batch = self.last_windows(self.users_history([str(user_or_sequence)]))
        length = int((batch.items[0] != PAD).sum())
        logits = mean_log_softmax(self._step_logits(batch, length, net)
                                  for net in self.networks())
        logits = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return self.item_vocab_.token(batch.items[0, :length]), probabilities

    def _step_logits(self, batch: Batch, length: int, model: Any) -> np.ndarray:
        """`model`'s scores at each of the first row's `length` steps, each step predicting
        the next event of the window (the last one the unknown next event)."""
        mean, _ = self._steps(batch, within=True, model=model)
        if length and model.encoder_kind == "attention" and model.position_from == "end":
            last, _ = self._steps(batch, model=model)  # the last step: the unknown next event
            mean[0, length - 1] = last[0, length - 1]
        return self.decode_scores(mean[0, :length], model=model)

    def next_item_ranks(self, user_or_sequence: Any, top: int = 3) -> pd.DataFrame:
        """How well the model expected each next event of a user's most recent window: one row
        per step with ``after`` and ``next`` (item ids), ``rank`` (of the next item among every
        item the model can score, 1 = its first guess), ``p`` (its probability) and ``top``
        (the model's `top` guesses, best first)."""
        items, probabilities = self.reconstruct(user_or_sequence)
        if len(items) < 2:
            return pd.DataFrame({"after": [], "next": [], "rank": [], "p": [], "top": []})
        steps = probabilities[:-1].copy()
        steps[:, [PAD, OOV]] = -np.inf  # never guessed, never ranked above anything
        actual = self.item_vocab_.lookup(list(items[1:]))
        p = probabilities[np.arange(steps.shape[0]), actual]
        ranks = (steps > p[:, None]).sum(axis=1) + 1
        guesses = np.argsort(-steps, axis=1, kind="stable")[:, :top]
        return pd.DataFrame({"after": items[:-1], "next": items[1:], "rank": ranks, "p": p,
                             "top": [list(self.item_vocab_.token(row)) for row in guesses]})

    def reconstruction_error(self, sequences: Sequences,
                             max_cells: int = 40_000_000) -> np.ndarray:
        """Per user: the mean negative log-likelihood of each next item of their most recent
        window under the model (what a step predicted against what came next). NaN for users
        with no pair of known items. Scored in chunks of at most `max_cells` item scores."""
        batch = self.last_windows(sequences)
        n, length = batch.items.shape
        out = np.full(n, np.nan)
        chunk = max(1, int(max_cells // max(length * self.item_vocab_.size, 1)))
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            sub = Batch(batch.items[part], batch.events[part], batch.gaps[part])
            items = sub.items
            pairs = (items[:, :-1] != PAD) & (items[:, 1:] > OOV)
            rows, cols = np.nonzero(pairs)
            if rows.size == 0:
                continue
            logits = mean_log_softmax(self.decode_scores(
                self._steps(sub, within=True, model=net)[0][rows, cols], model=net
            ).astype(np.float64) for net in self.networks())
            top = logits.max(axis=1, keepdims=True)
            log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
            nll = log_z - logits[np.arange(rows.size), items[rows, cols + 1]]
            counts = np.bincount(rows, minlength=items.shape[0])
            sums = np.bincount(rows, weights=nll, minlength=items.shape[0])
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start:start + items.shape[0]] = np.where(counts > 0, sums / counts, np.nan)
        return out

    def save(self, directory: Any, **kwargs: Any) -> Any:
        """Write the model directory (`seqvae.bundle.save`); `seqvae.load` reads it back."""
        from seqvae.bundle import save

        return save(self, directory, **kwargs)

    def item_vectors(self) -> np.ndarray:
        """The items' vectors (n_items, D): the tied embedding table the scores are taken
        against, so "user · item similarity" is literally the score (plus the item's bias)."""
        self._check()
        return np.asarray(self.model_.item_embedding.embeddings)

    def similar_items(self, item: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Items whose vectors are closest (cosine) to `item`'s: ``(item_ids, similarities)``."""
        index = int(self.item_vocab_.lookup([item])[0])
        if index == OOV:
            raise KeyError(f"unknown item id: {item!r}")
        vectors = self.item_vectors()
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        similarity = unit @ unit[index]
        similarity[[PAD, OOV, index]] = -np.inf
        best = np.argsort(-similarity, kind="stable")[:k]
        return self.item_vocab_.token(best), similarity[best]

    def similar_users(self, user: Any, k: int = 10, view: str = "next"
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Users of the history whose μ are closest (cosine) to `user`'s, both users placed by
        `view` (`VIEWS`: "next", the state after their last event, or "taste", every event of
        their last window combined; see `encode`)."""
        if self.history_ is None:
            raise NotFittedError("this recommender has no user histories")
        row = int(self.history_.user_position([str(user)])[0])
        if row < 0:
            raise KeyError(f"unknown user id: {user!r}")
        unit = self._history_units(view)
        similarity = unit @ unit[row]
        similarity[row] = -np.inf
        best = np.argsort(-similarity, kind="stable")[:k]
        return self.history_.users[best], similarity[best]

    def history_encoding(self, view: str = "next") -> tuple[np.ndarray, np.ndarray]:
        """μ and log σ² of every user of the history (as `encode(history_, view)`), computed
        once per model, history and view and kept: the latent map, similar users and the
        exports all read them. The dashboard's training job calls this before it hands the
        model over, so the Latent page does not pay for it (~5 s for 20,000 users on 2 cores)."""
        history = self._stored_history()
        cached = self._kept(view)
        if cached is None:
            cached = self._keep(view, *self.encode(history, view=view))
        return cached[2], cached[3]

    def encode_history(self) -> None:
        """Every view of `history_encoding` computed, from one pass of the network, and kept
        (the dashboard does it before a model is handed over: the map and the User page's similar
        users read either)."""
        history = self._stored_history()
        missing = [view for view in VIEWS if self._kept(view) is None]
        if missing:
            encoded = self.encode_views(self.last_windows(history), missing)
            for view, (mean, log_var) in encoded.items():
                self._keep(view, mean, log_var)

    def _kept(self, view: str) -> tuple[Any, ...] | None:
        """The kept encoding of `view` while it is the current model's and history's, else
        None: (model, history, μ, log σ², unit-length μ)."""
        cached = self.__dict__.get("_encoding_caches", {}).get(view)
        if cached is None or cached[0] is not self.model_ or cached[1] is not self.history_:
            return None
        return cached

    def _stored_history(self) -> Sequences:
        if self.history_ is None:
            raise NotFittedError("this recommender has no user histories")
        return self.history_

    def _keep(self, view: str, mean: np.ndarray, log_var: np.ndarray) -> tuple[Any, ...]:
        unit = mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        cached = (self.model_, self.history_, mean, log_var, unit)
        self.__dict__.setdefault("_encoding_caches", {})[view] = cached
        return cached

    def _history_units(self, view: str = "next") -> np.ndarray:
        """Unit-length μ of every user of the history in `view` (cosine similarity between
        users)."""
        self.history_encoding(view)
        return self.__dict__["_encoding_caches"][view][4]

    def explain(self, history_items: SequenceABC[Any], recommended: SequenceABC[Any],
                n: int = 2) -> list[list[tuple[str, float]]]:
        """For each recommended item, the `n` history items whose vectors are closest (cosine):
        "recommended because of ..." in the model's own item space."""
        vectors = self.item_vectors()
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        history = np.unique(self.item_vocab_.lookup(list(history_items)))
        history = history[history > OOV]
        out: list[list[tuple[str, float]]] = []
        if history.size == 0:
            return [[] for _ in recommended]
        targets = self.item_vocab_.lookup(list(recommended))
        similarity = unit[targets] @ unit[history].T  # (n_recommended, n_history)
        for row in similarity:
            best = np.argsort(-row, kind="stable")[:n]
            out.append([(str(self.item_vocab_.token([history[b]])[0]), float(row[b]))
                        for b in best])
        return out

