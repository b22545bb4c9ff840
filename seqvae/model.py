"""The sequential variational autoencoder (SeqVAE) in Keras 3.

A user's behaviour sequence becomes, at every step, a Gaussian over a small latent space; the
decoder turns a latent point into scores over all items. Follows SVAE (Sachdeva et al., "Sequential
Variational Autoencoders for Collaborative Filtering", WSDM 2019) with Mult-VAE's multinomial
likelihood (Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018):

    e_t   = Emb_item(i_t) + Emb_event(a_t) + Emb_gap(g_t)            (B, L, E), dropout
    h_t   = GRU/LSTM(e_1..e_t)                                       (B, L, H), padding masked
    μ_t, log σ²_t = W_μ h_t, clip(W_σ h_t)                           (B, L, Z)
    z_t   = μ_t + σ_t · ε,  ε ~ N(0, I)   (training);   z_t = μ_t (inference)
    u_t   = tanh(W_d z_t)                                            (B, L, D)
    s_t   = u_t · Vᵀ + b                                             (B, L, n_items)

so the score of an item is the similarity of the user's decoded latent and the item's vector V_j.
The loss at step t is the multinomial negative log-likelihood of the next `next_k` items plus
β · KL(N(μ_t, σ_t²) ‖ N(0, I)), averaged over real (unpadded) steps; β is a `keras.Variable`
that `seqvae.training.KLAnnealing` raises from 0 to a cap.

Every layer here is registered with Keras and serialisable; there is no `Lambda` layer, so
`model.keras` loads with ``safe_mode=True``.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

PACKAGE = "seqvae"
NEG_INF = -1e9


def gaussian_kl(mean: Any, log_var: Any) -> Any:
    """KL(N(mean, exp(log_var)) ‖ N(0, I)) summed over the last axis.

    Closed form for a diagonal Gaussian: ``-½ Σ (1 + log σ² − μ² − σ²)``.
    """
    return -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GaussianLatent(layers.Layer):
    """h -> (μ, log σ², z): two projections, a clipped log-variance and the reparameterisation.

    z = μ + σ·ε with ε ~ N(0, I) while training, z = μ otherwise. The layer owns its
    `SeedGenerator`, so sampling is reproducible from the model's seed.
    """

    def __init__(self, latent_dim: int, log_var_min: float = -8.0, log_var_max: float = 4.0,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.log_var_min = log_var_min
        self.log_var_max = log_var_max
        self.seed = seed
        self.mean_dense = layers.Dense(latent_dim, name="mean")
        self.log_var_dense = layers.Dense(latent_dim, name="log_var")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape: Any) -> None:
        self.mean_dense.build(input_shape)
        self.log_var_dense.build(input_shape)

    def call(self, hidden: Any, training: bool | None = None,
             noise: Any = None) -> tuple[Any, Any, Any]:
        """`noise`: ε given by the caller (the training pipeline draws it per example, so a
        batch gets the same ε however it is split across workers); drawn here when None."""
        mean = self.mean_dense(hidden)
        log_var = ops.clip(self.log_var_dense(hidden), self.log_var_min, self.log_var_max)
        if training:
            if noise is None:
                noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
            z = mean + ops.exp(0.5 * log_var) * noise
        else:
            z = mean
        return mean, log_var, z

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "latent_dim": self.latent_dim,
                "log_var_min": self.log_var_min, "log_var_max": self.log_var_max,
                "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ItemScorer(layers.Layer):
    """u -> u · Vᵀ + b over every item; padding and out-of-vocabulary ids never score.

    ``V`` (n_items, dim) are the item representations that live in the users' decoded space.
    """

    def __init__(self, n_items: int, dim: int, n_reserved: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_items = n_items
        self.dim = dim
        self.n_reserved = n_reserved
        self.supports_masking = True  # the mask passes through; scores are per step

    def build(self, input_shape: Any) -> None:
        self.item_vectors = self.add_weight(
            name="item_vectors", shape=(self.n_items, self.dim),
            initializer=keras.initializers.GlorotUniform(), regularizer=None,
        )
        self.item_bias = self.add_weight(name="item_bias", shape=(self.n_items,),
                                         initializer="zeros")

    def call(self, user_vectors: Any) -> Any:
        logits = ops.matmul(user_vectors, ops.transpose(self.item_vectors)) + self.item_bias
        reserved = ops.cast(ops.arange(self.n_items) < self.n_reserved, logits.dtype)
        return logits + reserved * NEG_INF

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_items": self.n_items, "dim": self.dim,
                "n_reserved": self.n_reserved}


class _LossTracking:
    """β, and the loss / reconstruction / KL trackers the training loops report, for both VAEs."""

    def _init_tracking(self) -> None:
        self.beta = keras.Variable(0.0, trainable=False, name="beta", dtype="float32")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")

    def _total(self, reconstruction: Any, kl: Any, extra: Any = ()) -> Any:
        total = reconstruction + self.beta * kl
        if extra:
            total = total + ops.sum(extra)
        self.loss_tracker.update_state(total)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return total

    @property
    def metrics(self) -> list[Any]:
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeqVAE(_LossTracking, keras.Model):
    """The sequential VAE. Inputs are a dict of int32 tensors of shape (B, L), right-padded with 0:
    ``items``, ``events``, ``gaps``; training batches also carry ``targets`` (B, L, next_k), the
    ids of the next items at each step (0 where there is none).

    ``call`` returns a dict: ``mean`` and ``log_var`` (B, L, Z), ``logits`` (B, L, n_items) and
    ``mask`` (B, L).
    """

    def __init__(
        self,
        n_items: int,
        n_events: int,
        n_gaps: int,
        embed_dim: int = 64,
        hidden_dim: int = 128,
        latent_dim: int = 32,
        encoder: str = "gru",
        dropout: float = 0.2,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if encoder not in ("gru", "lstm"):
            raise ValueError(f"`encoder` should be 'gru' or 'lstm'. Received: `encoder`={encoder!r}")
        self.n_items = n_items
        self.n_events = n_events
        self.n_gaps = n_gaps
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.encoder_kind = encoder
        self.dropout_rate = dropout
        self.seed = seed
        self.item_embedding = layers.Embedding(n_items, embed_dim, name="item_embedding")
        self.event_embedding = layers.Embedding(n_events, embed_dim, name="event_embedding")
        self.gap_embedding = layers.Embedding(n_gaps, embed_dim, name="gap_embedding")
        self.input_dropout = layers.Dropout(dropout, seed=seed, name="input_dropout")
        rnn = layers.GRU if encoder == "gru" else layers.LSTM
        self.recurrent = rnn(hidden_dim, return_sequences=True, name=encoder)
        self.latent = GaussianLatent(latent_dim, seed=seed + 1, name="latent")
        self.decoder_hidden = layers.Dense(hidden_dim, activation="tanh", name="decoder_hidden")
        self.decoder_dropout = layers.Dropout(dropout, seed=seed + 2, name="decoder_dropout")
        self.scorer = ItemScorer(n_items, hidden_dim, name="item_scorer")
        self._init_tracking()

    # ---- forward ----------------------------------------------------------------------------

    def encode_steps(self, inputs: dict[str, Any], training: bool | None = None) -> tuple[Any, ...]:
        """-> (mean, log_var, z, mask) at every step."""
        items = inputs["items"]
        mask = ops.not_equal(items, 0)
        embedded = (self.item_embedding(items) + self.event_embedding(inputs["events"])
                    + self.gap_embedding(inputs["gaps"]))
        embedded = self.input_dropout(embedded, training=training)
        hidden = self.recurrent(embedded, mask=mask, training=training)
        mean, log_var, z = self.latent(hidden, training=training, noise=inputs.get("noise"))
        return mean, log_var, z, mask

    def decode(self, z: Any, training: bool | None = None) -> Any:
        """Latent points (..., Z) -> item logits (..., n_items)."""
        user_vectors = self.decoder_dropout(self.decoder_hidden(z), training=training)
        return self.scorer(user_vectors)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> dict[str, Any]:
        mean, log_var, z, mask = self.encode_steps(inputs, training=training)
        return {"mean": mean, "log_var": log_var, "logits": self.decode(z, training=training),
                "mask": mask}

    # ---- loss -------------------------------------------------------------------------------

    def loss_terms(self, x: dict[str, Any], y_pred: dict[str, Any]) -> tuple[Any, Any, Any]:
        """-> (total, reconstruction, KL): the multinomial NLL of the next items and the KL,
        summed over real steps and divided by the number of such steps.

        That number is ``x["n_steps"]`` when the batch carries it: the count over the *whole*
        batch when the batch is split across workers, so that the workers' losses (and
        gradients) add up to those of the undivided batch.
        """
        targets = x["targets"]  # (B, L, K)
        log_probs = ops.log_softmax(y_pred["logits"], axis=-1)  # (B, L, V)
        target_mask = ops.cast(ops.not_equal(targets, 0), "float32")
        picked = ops.take_along_axis(log_probs, targets, axis=-1)  # (B, L, K)
        n_targets = ops.sum(target_mask, axis=-1)
        step_nll = -ops.sum(picked * target_mask, axis=-1) / ops.maximum(n_targets, 1.0)
        step_kl = gaussian_kl(y_pred["mean"], y_pred["log_var"])
        step_mask = ops.cast(y_pred["mask"], "float32") * ops.cast(n_targets > 0, "float32")
        if "n_steps" in x:
            n_steps = ops.maximum(ops.cast(x["n_steps"], "float32"), 1.0)
        else:
            n_steps = ops.maximum(ops.sum(step_mask), 1.0)
        reconstruction = ops.sum(step_nll * step_mask) / n_steps
        kl = ops.sum(step_kl * step_mask) / n_steps
        total = reconstruction + self.beta * kl
        if self.losses:
            total = total + ops.sum(self.losses)
        return total, reconstruction, kl

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, training: bool = True) -> Any:
        """Multinomial NLL of the next items + β · KL, averaged over real steps."""
        total, reconstruction, kl = self.loss_terms(x, y_pred)
        self.loss_tracker.update_state(total)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return total

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "n_items": self.n_items,
            "n_events": self.n_events,
            "n_gaps": self.n_gaps,
            "embed_dim": self.embed_dim,
            "hidden_dim": self.hidden_dim,
            "latent_dim": self.latent_dim,
            "encoder": self.encoder_kind,
            "dropout": self.dropout_rate,
            "seed": self.seed,
        }

    def build_for_inputs(self, length: int = 2) -> None:
        """Create every weight by running one tiny batch (needed before loading weights)."""
        zeros = ops.ones((1, length), dtype="int32") * 2
        self({"items": zeros, "events": zeros * 0 + 1, "gaps": zeros * 0 + 1}, training=False)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MultVAE(_LossTracking, keras.Model):
    """Mult-VAE (Liang et al. 2018) built from the SeqVAE's parts, as the baseline without order.

    A user is a bag of items: the L2-normalised multi-hot vector x (B, n_items), with dropout,
    goes through a tanh layer to a `GaussianLatent`; the decoder is a tanh layer and the same
    `ItemScorer` as the SeqVAE's. Loss: multinomial NLL of the bag + β · KL, per user.
    """

    def __init__(self, n_items: int, hidden_dim: int = 600, latent_dim: int = 200,
                 dropout: float = 0.5, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_items = n_items
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.dropout_rate = dropout
        self.seed = seed
        self.input_dropout = layers.Dropout(dropout, seed=seed, name="input_dropout")
        self.encoder_hidden = layers.Dense(hidden_dim, activation="tanh", name="encoder_hidden")
        self.latent = GaussianLatent(latent_dim, seed=seed + 1, name="latent")
        self.decoder_hidden = layers.Dense(hidden_dim, activation="tanh", name="decoder_hidden")
        self.scorer = ItemScorer(n_items, hidden_dim, name="item_scorer")
        self._init_tracking()

    def call(self, bag: Any, training: bool | None = None) -> dict[str, Any]:
        norm = ops.sqrt(ops.maximum(ops.sum(ops.square(bag), axis=-1, keepdims=True), 1e-12))
        hidden = self.encoder_hidden(self.input_dropout(bag / norm, training=training))
        mean, log_var, z = self.latent(hidden, training=training)
        return {"mean": mean, "log_var": log_var,
                "logits": self.scorer(self.decoder_hidden(z))}

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, training: bool = True) -> Any:
        log_probs = ops.log_softmax(y_pred["logits"], axis=-1)
        reconstruction = ops.mean(-ops.sum(log_probs * x, axis=-1))
        kl = ops.mean(gaussian_kl(y_pred["mean"], y_pred["log_var"]))
        return self._total(reconstruction, kl)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_items": self.n_items, "hidden_dim": self.hidden_dim,
                "latent_dim": self.latent_dim, "dropout": self.dropout_rate, "seed": self.seed}
