"""Baselines on the same recommender contract as the SeqVAE: what it has to beat.

* `Popularity` — every user gets the items most users interacted with.
* `ItemKNN` — cosine similarity between items' user sets, each item's `neighbours` most similar
  items kept; a user's score for item j is the sum of j's similarities to the user's items.
* `EASE` — Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019): the item-item
  weights B = argmin ‖X − XB‖² + λ‖B‖², diag(B) = 0, in closed form
  (P = (XᵀX + λI)⁻¹, B = I − P · diag(1/diag(P))); its one constant λ is chosen on validation.
* `MultVAEBaseline` — Mult-VAE (Liang et al., WWW 2018) built from the SeqVAE's own layers
  (`seqvae.model.MultVAE`): the same likelihood and latent, but a bag of items with no order, so
  the difference to the SeqVAE is what modelling the sequence adds.

Every model reads binary user x item interactions (repeats count once), scores the full item
vocabulary of the data it was fitted on, and keeps the estimator contract the SeqVAE keeps
(`SeqVAERecommender.configured(config).fit(split)`): configured in ``__init__``,
``fit(split_or_sequences) -> self``, ``score(sequences, exclude_seen)``, the shared `recommend`
of `BaseRecommender`, ``similar_items`` where the model has item-item weights, and
``save(directory)`` / `seqvae.load` (`seqvae.bundle`).
"""

from __future__ import annotations

import dataclasses
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from seqvae.errors import NotFittedError, TrainingDataError
from seqvae.recommender import BaseRecommender
from seqvae.sequences import OOV, Sequences
from seqvae.splits import Split


def interactions(sequences: Sequences, n_items: int | None = None) -> sp.csr_matrix:
    """Binary (n_users, n_items) float32 matrix of who interacted with what; padding and OOV
    columns stay empty."""
    n_items = sequences.item_vocab.size if n_items is None else n_items
    keep = sequences.items > OOV
    rows = sequences.user_of_event[keep]
    cols = sequences.items[keep].astype(np.int64)
    matrix = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)),
                           shape=(sequences.n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


class _MatrixRecommender(BaseRecommender):
    """Shared fitting bookkeeping for the models that read the interaction matrix."""

    def fit(self, data: Split | Sequences, **_hooks: Any) -> Any:
        """Fit on a `Split`'s training part, or on sequences -> self (the estimator contract;
        these models take no epochs, so `on_epoch` / `cancel` have nothing to do)."""
        return self._fit(data.train if isinstance(data, Split) else data)

    @abstractmethod
    def _fit(self, train: Sequences) -> Any:
        """Fit on training sequences -> self."""

    def _start(self, train: Sequences) -> sp.csr_matrix:
        if train.n_events == 0:
            raise TrainingDataError("the training data has no events")
        self.item_vocab_ = train.item_vocab
        self.event_vocab_ = train.event_vocab
        self.history_ = train
        return interactions(train)

    def _check(self) -> None:
        if not hasattr(self, "item_vocab_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit first")

    # the model directory (`seqvae.bundle`): parameters as JSON, the fitted state as arrays
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What `save` writes: ``(params, arrays)``; `from_state` rebuilds the model from them."""
        self._check()
        return dict(self.params_), self._arrays()

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (what `weights.npz` holds)."""

    @classmethod
    @abstractmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray],
                   n_items: int) -> _MatrixRecommender:
        """The fitted model back from `state`'s parameters and arrays."""

    def save(self, directory: Any, **kwargs: Any) -> Any:
        """Write the fitted model to a model directory (`seqvae.bundle.save`); `seqvae.load`
        reads it back."""
        from seqvae.bundle import save

        return save(self, directory, **kwargs)

    def _similarity_row(self, index: int) -> np.ndarray:
        raise TypeError(f"{self.name} has no notion of similar items")

    def similar_items(self, item: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The `k` items the model links most to `item` (its own item-item weights):
        ``(item_ids, weights)``."""
        self._check()
        index = int(self.item_vocab_.lookup([item])[0])
        if index == OOV:
            raise KeyError(f"unknown item id: {item!r}")
        row = np.asarray(self._similarity_row(index), dtype=np.float64).copy()
        row[[0, OOV, index]] = -np.inf
        best = np.argsort(-row, kind="stable")[:k]
        return self.item_vocab_.token(best), row[best]


class Popularity(_MatrixRecommender):
    """Most popular first: an item's score is the number of training users who interacted with
    it."""

    name = "pop"

    def __init__(self) -> None:
        self.params_: dict[str, Any] = {}

    def _fit(self, train: Sequences) -> Popularity:
        matrix = self._start(train)
        self.counts_ = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, sequences: Sequences, exclude_seen: bool = True) -> np.ndarray:
        self._check()
        scores = np.tile(self.counts_, (sequences.n_users, 1))
        return self._exclude(scores, sequences, exclude_seen)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts_}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray],
                   n_items: int) -> Popularity:
        model = cls()
        model.counts_ = _sized(arrays["counts"], n_items)
        return model


class ItemKNN(_MatrixRecommender):
    """Item-based nearest neighbours with cosine similarity (Sarwar et al. 2001; Deshpande and
    Karypis 2004): sim(i, j) = |U_i ∩ U_j| / sqrt(|U_i| |U_j|), top `neighbours` per item."""

    name = "itemknn"

    def __init__(self, neighbours: int = 100) -> None:
        if neighbours < 1:
            raise ValueError(f"`neighbours` should be >= 1. Received: {neighbours}")
        self.params_ = {"neighbours": int(neighbours)}

    def _fit(self, train: Sequences) -> ItemKNN:
        matrix = self._start(train)
        norms = np.sqrt(np.asarray(matrix.sum(axis=0)).ravel())
        inverse = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        cooc = (matrix.T @ matrix).tocsr()
        cooc.setdiag(0)
        cooc.eliminate_zeros()
        sim = sp.diags(inverse) @ cooc @ sp.diags(inverse)
        self.similarity_ = _top_per_row(sim.tocsr(), self.params_["neighbours"])
        return self

    def score(self, sequences: Sequences, exclude_seen: bool = True) -> np.ndarray:
        self._check()
        inputs = interactions(sequences, self.item_vocab_.size)
        scores = np.asarray((inputs @ self.similarity_).toarray(), dtype=np.float32)
        return self._exclude(scores, sequences, exclude_seen)

    def _similarity_row(self, index: int) -> np.ndarray:
        return self.similarity_[index].toarray().ravel()

    def _arrays(self) -> dict[str, np.ndarray]:
        matrix = self.similarity_
        return {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray],
                   n_items: int) -> ItemKNN:
        model = cls(int(params["neighbours"]))
        model.similarity_ = sp.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n_items, n_items))
        return model


def _top_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the `k` largest entries of each row (ties: the lower column)."""
    indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
    keep = np.zeros(data.size, dtype=bool)
    for row in range(matrix.shape[0]):
        lo, hi = indptr[row], indptr[row + 1]
        if hi - lo <= k:
            keep[lo:hi] = True
            continue
        order = np.lexsort((indices[lo:hi], -data[lo:hi]))[:k]
        keep[lo + order] = True
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    new_indptr = kept_before[indptr].astype(indptr.dtype)
    return sp.csr_matrix((data[keep], indices[keep], new_indptr), shape=matrix.shape)


class EASE(_MatrixRecommender):
    """EASE (Steck 2019) with L2 constant `l2` (λ)."""

    name = "ease"

    def __init__(self, l2: float = 500.0) -> None:
        if l2 <= 0:
            raise ValueError(f"`l2` should be > 0. Received: `l2`={l2}")
        self.params_ = {"l2": float(l2)}

    def _fit(self, train: Sequences) -> EASE:
        from scipy.linalg import lapack

        matrix = self._start(train)
        # co-occurrence counts, exact in float32 (integers below 2^24)
        gram = np.asarray((matrix.T @ matrix).toarray(), dtype=np.float32)
        gram[np.diag_indices_from(gram)] += self.params_["l2"]
        # (XᵀX + λI) is symmetric positive definite: Cholesky inverse (LAPACK potrf + potri), in
        # single precision — half the time and memory of double on Beauty's 12,101 items
        # (14.7 s against 30.2 s per λ), with weights within 4e-7 of double's and the same
        # top 20 for every user compared (docs/benchmarks.md); the grid's λ ≥ 10 keeps it well
        # conditioned
        factor, info = lapack.spotrf(gram, lower=False, overwrite_a=True, clean=True)
        if info != 0:
            raise TrainingDataError(f"EASE: the Gram matrix is not positive definite ({info})")
        upper, info = lapack.spotri(factor, lower=False, overwrite_c=True)
        del factor
        inverse = np.triu(upper) + np.triu(upper, 1).T
        del upper
        weights = -inverse / np.diag(inverse)[None, :]
        np.fill_diagonal(weights, 0.0)
        self.weights_ = weights.astype(np.float32, copy=False)
        return self

    def score(self, sequences: Sequences, exclude_seen: bool = True) -> np.ndarray:
        self._check()
        inputs = interactions(sequences, self.item_vocab_.size)
        scores = np.asarray(inputs @ self.weights_, dtype=np.float32)
        return self._exclude(scores, sequences, exclude_seen)

    def _similarity_row(self, index: int) -> np.ndarray:
        return self.weights_[index]  # how much having `index` adds to each item's score

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray],
                   n_items: int) -> EASE:
        model = cls(float(params["l2"]))
        model.weights_ = _sized(arrays["weights"], n_items, n_items)
        return model


@dataclass(frozen=True)
class MultVAEConfig:
    """Mult-VAE's published settings (Liang et al. 2018): [n_items -> 600 -> 200 -> 600 ->
    n_items], input dropout 0.5, Adam 1e-3, batch 500, β annealed to 0.2 over 200,000 updates;
    the number of epochs chosen by early stopping on validation NDCG@`eval_k`."""

    hidden_dim: int = 600
    latent_dim: int = 200
    dropout: float = 0.5
    batch_size: int = 500
    learning_rate: float = 1e-3
    beta_cap: float = 0.2
    anneal_steps: int = 200_000
    epochs: int = 100
    patience: int = 5
    eval_k: int = 10
    seed: int = 0


class MultVAEBaseline(_MatrixRecommender):
    """Mult-VAE on the bag of a user's items (no order)."""

    name = "multvae"

    def __init__(self, config: MultVAEConfig | None = None) -> None:
        self.config_ = config or MultVAEConfig()
        self.params_ = {key: getattr(self.config_, key) for key in
                        ("hidden_dim", "latent_dim", "dropout", "beta_cap", "batch_size")}
        self.epochs_: list[dict[str, float]] = []

    def fit(self, data: Split | Sequences, validation: Any = None,  # type: ignore[override]
            on_epoch: Callable[[dict[str, float]], None] | None = None,
            cancel: Any = None) -> MultVAEBaseline:
        """Train on a `Split` (its validation part for early stopping) or on sequences (with
        an optional `validation` holdout): keep the epoch with the best validation NDCG and
        stop after `patience` epochs without improvement (or once `cancel` is cancelled)."""
        import keras

        from seqvae.evaluation import evaluate
        from seqvae.model import MultVAE

        train = data.train if isinstance(data, Split) else data
        if isinstance(data, Split):
            validation = data.validation
        config = self.config_
        matrix = self._start(train)
        keras.utils.set_random_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        model = MultVAE(matrix.shape[1], config.hidden_dim, config.latent_dim, config.dropout,
                        config.seed)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
        model(np.zeros((1, matrix.shape[1]), np.float32))
        self.model_ = model
        rows = np.flatnonzero(np.diff(matrix.indptr) > 0)
        metric = f"NDCG@{config.eval_k}"
        best, best_weights, since_best, step = -np.inf, None, 0, 0
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            order = rng.permutation(rows)
            losses = []
            for start in range(0, order.size, config.batch_size):
                batch = matrix[order[start:start + config.batch_size]].toarray()
                model.beta.assign(min(config.beta_cap, config.beta_cap * step
                                      / max(config.anneal_steps, 1)))
                model.reset_metrics()
                losses.append(float(model.train_on_batch(batch, return_dict=True)["loss"]))
                step += 1
            record = {"epoch": epoch, "loss": float(np.mean(losses)),
                      "seconds": time.perf_counter() - started}
            if validation is not None:
                value = evaluate(self, validation, [config.eval_k], with_auc=False).metrics[metric]
                record[metric] = value
                if value > best:
                    best, since_best = value, 0
                    best_weights = [np.array(w) for w in model.get_weights()]
                else:
                    since_best += 1
            self.epochs_.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if validation is not None and since_best >= config.patience:
                break
            if cancel is not None and cancel.cancelled:
                break
        if best_weights is not None:
            model.set_weights(best_weights)
        self.params_["epochs"] = (int(np.argmax([r.get(metric, -1) for r in self.epochs_])) + 1
                                  if validation is not None else len(self.epochs_))
        return self

    def score(self, sequences: Sequences, exclude_seen: bool = True) -> np.ndarray:
        self._check()
        inputs = interactions(sequences, self.item_vocab_.size)
        out = []
        for start in range(0, inputs.shape[0], 2048):
            bag = inputs[start:start + 2048].toarray()
            out.append(np.asarray(self.model_(bag, training=False)["logits"], dtype=np.float32))
        scores = (np.concatenate(out) if out
                  else np.zeros((0, self.item_vocab_.size), np.float32))
        return self._exclude(scores, sequences, exclude_seen)

    def _fit(self, train: Sequences) -> MultVAEBaseline:
        return self.fit(train)  # no validation holdout: every epoch, none chosen

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        self._check()
        config = {**asdict(self.config_), "epochs_run": self.epochs_, "params": self.params_}
        return config, self._arrays()

    def _arrays(self) -> dict[str, np.ndarray]:
        return {f"w{i}": w for i, w in enumerate(self.model_.get_weights())}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray],
                   n_items: int) -> MultVAEBaseline:
        from seqvae.model import MultVAE

        fields = {f.name for f in dataclasses.fields(MultVAEConfig)}
        model = cls(MultVAEConfig(**{k: v for k, v in params.items() if k in fields}))
        model.params_ = dict(params.get("params", model.params_))
        model.epochs_ = list(params.get("epochs_run", []))
        config = model.config_
        network = MultVAE(n_items, config.hidden_dim, config.latent_dim, config.dropout,
                          config.seed)
        network(np.zeros((1, n_items), np.float32))
        weights = [arrays[f"w{i}"] for i in range(len(arrays))]
        if [w.shape for w in weights] != [tuple(w.shape) for w in network.get_weights()]:
            raise ValueError("the stored weights do not fit the network of these settings")
        network.set_weights(weights)
        model.model_ = network
        return model


def _sized(array: np.ndarray, *shape: int) -> np.ndarray:
    if array.shape != shape:
        raise ValueError(f"an array of shape {array.shape} where {shape} was expected")
    return array


#: every baseline by its name in `seqvae evaluate --models` and in the model directory
BASELINES: dict[str, Any] = {model.name: model for model in
                             (Popularity, ItemKNN, EASE, MultVAEBaseline)}
