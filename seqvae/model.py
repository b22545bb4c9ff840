"""The sequential variational autoencoder (SeqVAE) in Keras 3.

A user's behaviour sequence becomes, at every step, a Gaussian over a small latent space; the
decoder turns a latent point into scores over all items through the same item embedding table
that embeds the inputs. The encoder is a causal self-attention stack as in SASRec (Kang &
McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018), or a GRU / LSTM as in SVAE
(Sachdeva et al., WSDM 2019); the latent sits at every position as in ContrastVAE (Wang et al.,
CIKM 2022); the likelihood is the full softmax over items (Mult-VAE's multinomial, Liang et al.
2018), which Klenitskiy & Vasilev (RecSys 2023) show is what makes such encoders strong:

    e_t   = E[i_t] + Emb_event(a_t) + Emb_gap(g_t) (+ P[t], attention)   (B, L, D), dropout
    h_t   = Attention blocks / GRU / LSTM over e_1..e_t                  (B, L, D or H), causal
    μ_t, log σ²_t = W_μ h_t, clip(W_σ h_t)                               (B, L, Z)
    z_t   = μ_t + σ_t · ε,  ε ~ N(0, I)   (training);   z_t = μ_t (inference)
    u_t   = W_d z_t                                                      (B, L, D)
    s_t   = u_t · Eᵀ + b                                                 (B, L, n_items)

E is tied: the score of item j for a user is the similarity of the user's decoded latent and the
item's own embedding. The loss at step t is the softmax cross-entropy of the next item (or the
multinomial NLL of the next `next_k` items) plus β · KL(N(μ_t, σ_t²) ‖ N(0, I)), averaged over
real (unpadded) steps; β is a `keras.Variable` that the training loop
(`seqvae.training.train_from`) raises linearly from 0 to a cap. With ``variational=False`` the
same network is trained without noise or KL (z = μ): the deterministic twin ("sasrec" with the
attention encoder), to measure what the latent costs or buys.

Every layer here is registered with Keras and serialisable; there is no `Lambda` layer, so
`model.keras` loads with ``safe_mode=True``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
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
                 seed: int | None = None, log_var_init: float = 0.0,
                 mean_init: str = "glorot_uniform", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.log_var_min = log_var_min
        self.log_var_max = log_var_max
        self.seed = seed
        self.log_var_init = log_var_init
        self.mean_init = mean_init
        self.mean_dense = layers.Dense(latent_dim, name="mean", kernel_initializer=mean_init)
        # the log-variance starts at `log_var_init` (its bias): below 0, training starts with
        # z close to μ and the KL term widens σ where the next item does not need precision
        self.log_var_dense = layers.Dense(
            latent_dim, name="log_var",
            bias_initializer=keras.initializers.Constant(log_var_init))
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
                "seed": self.seed, "log_var_init": self.log_var_init,
                "mean_init": self.mean_init}


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
class TiedItemScorer(layers.Layer):
    """(u, E) -> u · Eᵀ + b: scores against the input item embedding table E (n_items, D), tied
    weights, so an item's input and output representations are one vector. Only the bias b
    belongs to this layer. Padding and out-of-vocabulary ids never score."""

    def __init__(self, n_items: int, n_reserved: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_items = n_items
        self.n_reserved = n_reserved
        self.supports_masking = True  # the mask passes through; scores are per step

    def build(self, input_shape: Any = None) -> None:
        self.item_bias = self.add_weight(name="item_bias", shape=(self.n_items,),
                                         initializer="zeros")

    def call(self, user_vectors: Any, table: Any) -> Any:
        logits = ops.matmul(user_vectors, ops.transpose(table)) + self.item_bias
        reserved = ops.cast(ops.arange(self.n_items) < self.n_reserved, logits.dtype)
        return logits + reserved * NEG_INF

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n_items": self.n_items, "n_reserved": self.n_reserved}


def lowpass_kernel(length: int, bins: int) -> np.ndarray:
    """The weights, by lag 0 … `length` − 1, with which BSARec's low-pass filter (keep the
    `bins` lowest frequencies of a sequence's real FFT over `length` positions) forms its value
    at the last position of a left-padded sequence: the filter is a circular convolution, so at
    the last position it reads the events `lag` steps back with weight ``h[lag]``, where h is
    the filter's response to an impulse. (length,) float32; ``h[0] = (2 bins − 1) / length``
    for bins < length / 2 (3 bins over 50: 0.1, then a slow decay); with every frequency kept
    (bins > length / 2) the filter passes x unchanged."""
    spectrum = np.fft.rfft(np.eye(1, length, 0)[0])
    spectrum[bins:] = 0.0
    return np.fft.irfft(spectrum, n=length).astype(np.float32)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LowPassMixing(layers.Layer):
    """BSARec's frequency branch (Shin et al., "An Attentive Inductive Bias for Sequential
    Recommendation beyond the Self-Attention", AAAI 2024), made causal.

    BSARec splits a left-padded sequence x into its low frequencies (the `bins` lowest of the
    real FFT, a smooth trend of the user's taste) and the rest, and rescales the rest by a
    learned β² per dimension: ``low + β² · (x − low)``. It reads the result at the last position
    only. Here every position t is given what BSARec would read if t were the last event: the
    low part is a causal convolution of the window's events 0 … t with `lowpass_kernel`, so
    every position can be supervised without seeing the future.

        low_t = Σ_{s ≤ t, same window} h[t − s] · x_s            (B, L, D)
        y_t   = low_t + β² ⊙ (x_t − low_t)

    With ``learned`` the weights by lag h are trainable (``lag_weights``), starting from the
    low-pass response: a learned causal convolution, how much an earlier event counts by how
    long ago it came.
    """

    def __init__(self, dim: int, max_len: int, bins: int = 3, seed: int = 0,
                 learned: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if bins < 1:
            raise ValueError(f"`bins` should be a positive integer. Received: `bins`={bins}")
        self.dim = dim
        self.max_len = max_len
        self.bins = bins
        self.seed = seed
        # learned: the weights by lag are trained, starting from the low-pass response
        self.learned = learned
        self.kernel = lowpass_kernel(max_len, bins)

    def build(self, input_shape: Any = None) -> None:
        # BSARec's sqrt_beta: N(0, 1) per dimension; its square scales the high frequencies
        self.sqrt_beta = self.add_weight(
            name="sqrt_beta", shape=(self.dim,),
            initializer=keras.initializers.RandomNormal(stddev=1.0, seed=self.seed))
        if self.learned:
            self.lag_weights = self.add_weight(
                name="lag_weights", shape=(self.max_len,),
                initializer=keras.initializers.Constant(self.kernel))

    def call(self, x: Any, allowed: Any) -> Any:
        """`x` (B, L, D), padding zeroed; `allowed` (B, L, L) bool, the encoder's causal mask."""
        length = ops.shape(x)[1]
        positions = ops.arange(length)
        lag = ops.expand_dims(positions, 1) - ops.expand_dims(positions, 0)  # (L, L)
        kernel = self.lag_weights if self.learned else ops.convert_to_tensor(self.kernel)
        weights = ops.take(kernel, ops.clip(lag, 0, self.max_len - 1))
        weights = ops.where(allowed, ops.expand_dims(weights, 0), 0.0)  # (B, L, L)
        low = ops.matmul(weights, x)
        return low + ops.square(self.sqrt_beta) * (x - low)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "max_len": self.max_len,
                "bins": self.bins, "seed": self.seed, "learned": self.learned}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CausalAttentionBlock(layers.Layer):
    """One pre-norm transformer block over a right-padded sequence (B, L, D):

        x = x + Dropout(MultiHeadAttention(LN(x)))     query t sees keys 1..t that are not padding
        x = x + Dropout(W_2 GELU(W_1 LN(x)))           (D -> ffn_dim -> D)

    With ``lowpass`` = α > 0 the attention shares its place with BSARec's causal low-pass branch
    (`LowPassMixing`, `lowpass_bins` frequencies): ``(1 − α) · attention + α · low-pass``, each
    with its own dropout (pre-norm), or, post-norm as in BSARec, ``(1 − α) · LN(x + attention)
    + α · LN(x + low-pass)``.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, seed: int = 0,
                 norm: str = "pre", init_std: float = 0.0, lowpass: float = 0.0,
                 lowpass_bins: int = 3, max_len: int = 50, lowpass_learned: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= lowpass <= 1.0:
            raise ValueError(f"`lowpass` should be in [0, 1]. Received: `lowpass`={lowpass}")
        if norm not in NORMS:
            raise ValueError(f"`norm` should be one of {', '.join(map(repr, NORMS))}. "
                             f"Received: `norm`={norm!r}")
        if dim % heads:
            raise ValueError(f"`embed_dim` ({dim}) should be a multiple of `n_heads`. "
                             f"Received: `n_heads`={heads}")
        self.dim = dim
        self.heads = heads
        self.ffn_dim = ffn_dim
        self.dropout_rate = dropout
        self.seed = seed
        self.norm = norm
        self.init_std = init_std
        self.attention_norm = layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.attention = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout,
                                                   seed=seed, name="attention",
                                                   kernel_initializer=kernel_init(init_std, seed))
        self.attention_dropout = layers.Dropout(dropout, seed=seed + 1, name="attention_dropout")
        self.ffn_norm = layers.LayerNormalization(epsilon=1e-6, name="ffn_norm")
        self.ffn_in = layers.Dense(ffn_dim, activation="gelu", name="ffn_in",
                                   kernel_initializer=kernel_init(init_std, seed + 1))
        self.ffn_out = layers.Dense(dim, name="ffn_out",
                                    kernel_initializer=kernel_init(init_std, seed + 2))
        self.ffn_dropout = layers.Dropout(dropout, seed=seed + 2, name="ffn_dropout")
        self.lowpass = lowpass
        self.lowpass_bins = lowpass_bins
        self.lowpass_learned = lowpass_learned
        self.max_len = max_len
        self.lowpass_mixing: LowPassMixing | None = None
        if lowpass:
            # seeds far from the blocks' own (seed, seed + 1, seed + 2, every 3 apart)
            self.lowpass_mixing = LowPassMixing(dim, max_len, lowpass_bins, seed=seed + 1000,
                                                learned=lowpass_learned, name="lowpass")
            self.lowpass_dropout = layers.Dropout(dropout, seed=seed + 1001,
                                                  name="lowpass_dropout")
            if norm == "post":
                self.lowpass_norm = layers.LayerNormalization(epsilon=1e-6, name="lowpass_norm")

    def build(self, input_shape: Any) -> None:
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.ffn_norm.build(input_shape)
        self.ffn_in.build(input_shape)
        self.ffn_out.build((*input_shape[:-1], self.ffn_dim))
        if self.lowpass_mixing is not None:
            self.lowpass_mixing.build(input_shape)
            if self.norm == "post":
                self.lowpass_norm.build(input_shape)

    def _lowpass(self, x: Any, attention_mask: Any, training: bool | None) -> Any:
        assert self.lowpass_mixing is not None
        return self.lowpass_dropout(self.lowpass_mixing(x, attention_mask), training=training)

    def call(self, x: Any, attention_mask: Any, training: bool | None = None) -> Any:
        alpha = self.lowpass
        if self.norm == "post":
            attended = self.attention(x, x, attention_mask=attention_mask, training=training)
            mixed = self.attention_norm(x + self.attention_dropout(attended, training=training))
            if alpha:
                low = self.lowpass_norm(x + self._lowpass(x, attention_mask, training))
                mixed = (1.0 - alpha) * mixed + alpha * low
            hidden = self.ffn_out(self.ffn_in(mixed))
            return self.ffn_norm(mixed + self.ffn_dropout(hidden, training=training))
        normed = self.attention_norm(x)
        attended = self.attention(normed, normed, attention_mask=attention_mask,
                                  training=training)
        update = self.attention_dropout(attended, training=training)
        if alpha:
            update = (1.0 - alpha) * update + alpha * self._lowpass(normed, attention_mask,
                                                                    training)
        x = x + update
        hidden = self.ffn_out(self.ffn_in(self.ffn_norm(x)))
        return x + self.ffn_dropout(hidden, training=training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "ffn_dim": self.ffn_dim, "dropout": self.dropout_rate, "seed": self.seed,
                "norm": self.norm, "init_std": self.init_std, "lowpass": self.lowpass,
                "lowpass_bins": self.lowpass_bins, "max_len": self.max_len,
                "lowpass_learned": self.lowpass_learned}


# where each attention block normalises: "pre" (LN before each sub-layer, one LN at the end)
# or "post" (LN after each residual sum, as in the original transformer and SASRec)
NORMS = ("pre", "post")


def kernel_init(std: float, seed: int) -> Any:
    """Keras' default (Glorot uniform) for std 0, else N(0, std²) truncated at 2σ."""
    if not std:
        return "glorot_uniform"
    return keras.initializers.TruncatedNormal(stddev=std, seed=seed)


def embedding_init(std: float, seed: int) -> Any:
    """Keras' default (uniform ±0.05) for std 0, else N(0, std²) truncated at 2σ."""
    if not std:
        return "uniform"
    return keras.initializers.TruncatedNormal(stddev=std, seed=seed)


def causal_padding_mask(mask: Any) -> Any:
    """(B, L) bool "is a real event" -> (B, L, L) bool: query t may attend to key s when s <= t
    and s is real. Sequences are right-padded, so key 0 is always allowed: no row is empty."""
    length = ops.shape(mask)[1]
    positions = ops.arange(length)
    causal = ops.expand_dims(positions, 1) >= ops.expand_dims(positions, 0)  # (L, L)
    return ops.logical_and(ops.expand_dims(causal, 0), ops.expand_dims(mask, 1))


def cells_from_here(mask: Any) -> Any:
    """(B, L) int32: how many real cells of a right-padded row lie at or after each cell."""
    return ops.cumsum(ops.cast(mask, "int32")[:, ::-1], axis=1)[:, ::-1]


def within_remaining(items: Any) -> Any:
    """(B, L) int32: for each real cell of right-padded rows, how many events of its row follow
    the next one — what a training window gives a position counted from the end (0 at the cell
    that predicts the row's last event and at the last cell itself, which predicts nothing)."""
    return ops.maximum(cells_from_here(ops.not_equal(items, 0)) - 2, 0)


def causal_segment_mask(segments: Any) -> Any:
    """(B, L) int segment of each cell (1, 2, … for the windows packed into a row, 0 padding)
    -> (B, L, L) bool: query t may attend to key s when s <= t and both belong to the same
    window. A window occupies consecutive cells, so this is exactly its own causal mask; a
    padding cell attends to the padding before it and to itself, so no row is empty."""
    length = ops.shape(segments)[1]
    positions = ops.arange(length)
    causal = ops.expand_dims(positions, 1) >= ops.expand_dims(positions, 0)  # (L, L)
    same = ops.equal(ops.expand_dims(segments, 2), ops.expand_dims(segments, 1))  # (B, L, L)
    return ops.logical_and(ops.expand_dims(causal, 0), same)


ENCODERS = ("attention", "gru", "lstm")
POSITIONS_FROM = ("start", "end")


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeqVAE(_LossTracking, keras.Model):
    """The sequential VAE. Inputs are a dict of int32 tensors of shape (B, L), right-padded with 0:
    ``items``, ``events``, ``gaps``; training batches also carry ``targets`` (B, L, next_k), the
    ids of the next items at each step (0 where there is none), and ``remaining`` (B, L), how
    many of the user's events follow each step's target (the position with
    ``position_from="end"``; without it, counted from each row's or window's last cell). A
    packed batch (attention only: several short windows share a row,
    `seqvae.batches.pack_windows`) adds ``segments`` (B, L),
    the window each cell belongs to (1, 2, …; 0 padding), and ``positions`` (B, L), each cell's
    place in its own window; attention then stays inside a window, so every window is encoded
    exactly as if it had a row of its own.

    ``call`` returns a dict: ``mean`` and ``log_var`` (B, L, Z), ``logits`` (B, L, n_items) and
    ``mask`` (B, L).

    Args:
        n_items, n_events, n_gaps: vocabulary sizes (reserved ids included).
        embed_dim: D, the width of the embeddings, of the attention blocks and of the item
            vectors the scores are taken against.
        hidden_dim: the recurrent state (GRU / LSTM), or the attention blocks' feed-forward width.
        latent_dim: Z, the size of the user representation μ.
        encoder: "attention", "gru" or "lstm".
        n_blocks, n_heads: attention blocks and heads per block (attention only).
        max_len: the longest window (the learned position table's size; attention only).
        position_from: what the position table counts (attention only): "start", each cell's
            place in its window; "end", how many events follow the item the cell predicts, so
            the cell that predicts a user's next event always has the same position, in
            training (the latest training event) as in a recommendation.
        dropout: on the embeddings and inside the attention blocks.
        variational: sample z and add the KL term (False: the deterministic twin, z = μ).
        lowpass, lowpass_bins: the share α of BSARec's causal low-pass branch beside the
            attention in every block (0: attention alone), and the frequencies it keeps.
        lowpass_learned: train that branch's weights by lag, starting from its response.
        identity_head: start the latent head and the decoder as identity maps.
        label_smoothing: ε, the share of each step's target mass spread evenly over the
            real items.
        seed: seeds every dropout and the sampling.
    """

    def __init__(
        self,
        n_items: int,
        n_events: int,
        n_gaps: int,
        embed_dim: int = 64,
        hidden_dim: int = 128,
        latent_dim: int = 64,
        encoder: str = "attention",
        n_blocks: int = 2,
        n_heads: int = 1,
        max_len: int = 50,
        dropout: float = 0.5,
        variational: bool = True,
        seed: int = 0,
        block_norm: str = "pre",
        init_std: float = 0.0,
        lowpass: float = 0.0,
        lowpass_bins: int = 3,
        lowpass_learned: bool = False,
        identity_head: bool = False,
        label_smoothing: float = 0.0,
        position_from: str = "start",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if encoder not in ENCODERS:
            raise ValueError(f"`encoder` should be one of {', '.join(map(repr, ENCODERS))}. "
                             f"Received: `encoder`={encoder!r}")
        if position_from not in POSITIONS_FROM:
            raise ValueError(f"`position_from` should be one of "
                             f"{', '.join(map(repr, POSITIONS_FROM))}. "
                             f"Received: `position_from`={position_from!r}")
        self.n_items = n_items
        self.n_events = n_events
        self.n_gaps = n_gaps
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.latent_dim = latent_dim
        self.encoder_kind = encoder
        self.n_blocks = n_blocks
        self.n_heads = n_heads
        self.max_len = max_len
        self.dropout_rate = dropout
        self.variational = variational
        self.seed = seed
        self.block_norm = block_norm
        self.init_std = init_std
        self.lowpass = lowpass
        self.lowpass_bins = lowpass_bins
        self.lowpass_learned = lowpass_learned
        self.identity_head = identity_head
        self.label_smoothing = label_smoothing
        self.position_from = position_from
        self.item_embedding = layers.Embedding(
            n_items, embed_dim, name="item_embedding",
            embeddings_initializer=embedding_init(init_std, seed + 2))
        self.event_embedding = layers.Embedding(
            n_events, embed_dim, name="event_embedding",
            embeddings_initializer=embedding_init(init_std, seed + 3))
        self.gap_embedding = layers.Embedding(
            n_gaps, embed_dim, name="gap_embedding",
            embeddings_initializer=embedding_init(init_std, seed + 4))
        self.input_dropout = layers.Dropout(dropout, seed=seed, name="input_dropout")
        self.blocks: list[CausalAttentionBlock] = []
        if encoder == "attention":
            if position_from == "start":
                self.position_embedding = layers.Embedding(
                    max_len, embed_dim, name="position_embedding",
                    embeddings_initializer=embedding_init(init_std, seed + 5))
            else:
                self.recency_embedding = layers.Embedding(
                    max_len, embed_dim, name="recency_embedding",
                    embeddings_initializer=embedding_init(init_std, seed + 6))
            self.input_norm = layers.LayerNormalization(epsilon=1e-6, name="input_norm")
            self.blocks = [CausalAttentionBlock(embed_dim, n_heads, hidden_dim, dropout,
                                                seed=seed + 10 + 3 * b, norm=block_norm,
                                                init_std=init_std, lowpass=lowpass,
                                                lowpass_bins=lowpass_bins, max_len=max_len,
                                                lowpass_learned=lowpass_learned,
                                                name=f"block_{b}")
                           for b in range(n_blocks)]
            # a post-norm stack already ends on a LayerNormalization
            self.output_norm = (layers.LayerNormalization(epsilon=1e-6, name="output_norm")
                                if block_norm == "pre" else None)
        else:
            rnn = layers.GRU if encoder == "gru" else layers.LSTM
            self.recurrent = rnn(hidden_dim, return_sequences=True, name=encoder)
        # σ starts at e^-2 ≈ 0.14: a latent that starts as the prior's σ = 1 drowns μ in noise
        # and collapses to the prior before it learns (measured on Beauty: docs/model.md)
        # identity_head: μ = h and u = z at the start (a plain SASRec score, h · E), so the
        # head's two linear maps do not start as a random rotation and rescaling of h
        head = "identity" if identity_head else None
        self.latent = GaussianLatent(latent_dim, seed=seed + 1, log_var_init=-4.0, name="latent",
                                     mean_init=head or "glorot_uniform")
        self.decoder = layers.Dense(embed_dim, name="decoder",
                                    kernel_initializer=head or kernel_init(init_std, seed + 7))
        self.scorer = TiedItemScorer(n_items, name="item_scorer")
        self._init_tracking()

    # ---- forward ----------------------------------------------------------------------------

    def encode_hidden(self, inputs: dict[str, Any], training: bool | None = None
                      ) -> tuple[Any, Any]:
        """-> (h, mask): the encoder's state after every step (B, L, ·) and (B, L) bool."""
        items = inputs["items"]
        mask = ops.not_equal(items, 0)
        embedded = (self.item_embedding(items) + self.event_embedding(inputs["events"])
                    + self.gap_embedding(inputs["gaps"]))
        if self.encoder_kind == "attention":
            if "segments" in inputs:  # several windows packed into each row (training)
                attention_mask = causal_segment_mask(inputs["segments"])
            else:
                attention_mask = causal_padding_mask(mask)
            embedded = self.input_norm(embedded + self.position_vectors(inputs, mask))
            hidden = self.input_dropout(embedded, training=training)
            hidden = hidden * ops.cast(mask, hidden.dtype)[..., None]
            for block in self.blocks:
                hidden = block(hidden, attention_mask, training=training)
            return (self.output_norm(hidden) if self.output_norm is not None else hidden), mask
        embedded = self.input_dropout(embedded, training=training)
        return self.recurrent(embedded, mask=mask, training=training), mask

    def position_vectors(self, inputs: dict[str, Any], mask: Any) -> Any:
        """Each cell's position vector (B or 1, L, D). ``position_from="start"``: its place in
        its window. ``"end"``: how many events follow the item it predicts, ``inputs["remaining"]``
        where given (training windows: 0 where the target is the user's latest event), else
        counted from its row's (or packed window's) last real cell, whose next event is the
        unknown one a recommendation predicts (0 there). Both count up to ``max_len`` − 1."""
        if self.position_from == "start":
            if "positions" in inputs:
                return self.position_embedding(inputs["positions"])
            return self.position_embedding(ops.arange(ops.shape(mask)[1]))[None]
        if "remaining" in inputs:
            remaining = inputs["remaining"]
        elif "segments" in inputs:
            segments = inputs["segments"]
            later = ops.logical_and(  # cells of the same window at or after this one
                ops.equal(ops.expand_dims(segments, 2), ops.expand_dims(segments, 1)),
                ops.expand_dims(ops.arange(ops.shape(segments)[1]), 0)
                >= ops.expand_dims(ops.arange(ops.shape(segments)[1]), 1))
            remaining = ops.sum(ops.cast(later, "int32"), axis=2) - 1
        else:
            remaining = cells_from_here(mask) - 1
        return self.recency_embedding(ops.clip(remaining, 0, self.max_len - 1))

    def encode_steps(self, inputs: dict[str, Any], training: bool | None = None) -> tuple[Any, ...]:
        """-> (mean, log_var, z, mask) at every step. The twin (``variational=False``) never
        samples: z = μ in training too."""
        hidden, mask = self.encode_hidden(inputs, training=training)
        mean, log_var, z = self.latent(hidden, training=training and self.variational,
                                       noise=inputs.get("noise"))
        return mean, log_var, z, mask

    def decode(self, z: Any, training: bool | None = None) -> Any:
        """Latent points (..., Z) -> item logits (..., n_items)."""
        # no dropout on the decoded vector: it is the score's query, and noise there only blurs
        # every item's logit (measured: docs/model.md)
        return self.scorer(self.decoder(z), self.item_embedding.embeddings)

    def call(self, inputs: dict[str, Any], training: bool | None = None) -> dict[str, Any]:
        """A batch that carries ``negatives`` (the sampled softmax) gets the decoded vectors
        ``decoded`` (B, L, D) instead of the full ``logits``, which it never needs."""
        mean, log_var, z, mask = self.encode_steps(inputs, training=training)
        out = {"mean": mean, "log_var": log_var, "mask": mask}
        if "negatives" in inputs:
            out["decoded"] = self.decoder(z)
        elif training and "targets" in inputs:
            # training: the softmax over the catalogue (most of a step's cost) only at the steps
            # that have a target, not at the padding; a step's later targets (`next_k` > 1) end
            # where the user's events do, so its first target says whether it has any
            targets = inputs["targets"]
            n_next = targets.shape[-1]
            real = ops.nonzero(ops.reshape(
                ops.logical_and(mask, ops.not_equal(targets[..., 0], 0)), (-1,)))[0]
            flat = ops.take(ops.reshape(z, (-1, ops.shape(z)[-1])), real, axis=0)
            decoded = self.decoder(flat)
            out["step_logits"] = self.scorer(decoded, self.item_embedding.embeddings)
            out["step_targets"] = ops.take(ops.reshape(targets[..., 0], (-1,)), real)
            if n_next > 1 or self.label_smoothing:
                out["step_correction"] = self.target_correction(
                    decoded, ops.take(ops.reshape(targets, (-1, n_next)), real, axis=0))
        else:
            out["logits"] = self.decode(z, training=training)
        return out

    def target_correction(self, decoded: Any, targets: Any) -> Any:
        """(..., D) decoded vectors and (..., K) target ids (0 = none; the first always real)
        -> (...): what turns the cross-entropy of the first target, lse − l_1, into the
        training objective, the mean over the K targets of − log p_k smoothed by ε:
        (1 − ε) · (lse − mean_k l_k) + ε · (lse − mean l) = (lse − l_1) + (l_1 − mean_k l_k)
        + ε · (mean_k l_k − mean l). A score is linear in the item's vector and bias, so the
        targets' logits and the mean logit over the real items (the mean item's score) cost
        no pass over the catalogue."""
        table, bias = self.item_embedding.embeddings, self.scorer.item_bias
        reserved = self.scorer.n_reserved
        picked = (ops.sum(ops.expand_dims(decoded, -2) * ops.take(table, targets, axis=0),
                          axis=-1) + ops.take(bias, targets))  # (..., K)
        real = ops.cast(ops.not_equal(targets, 0), "float32")
        mean_picked = ops.sum(picked * real, axis=-1) / ops.maximum(ops.sum(real, axis=-1), 1.0)
        correction = picked[..., 0] - mean_picked
        if self.label_smoothing:
            mean_logit = (ops.sum(decoded * ops.mean(table[reserved:], axis=0), axis=-1)
                          + ops.mean(bias[reserved:]))
            correction = correction + self.label_smoothing * (mean_picked - mean_logit)
        return correction

    def sampled_nll(self, x: dict[str, Any], decoded: Any) -> Any:
        """Per step (B, L): the cross-entropy of the next item against the batch's shared
        negatives (S,), every logit log-Q corrected; a negative that is the step's own target
        is left out (an "accidental hit")."""
        table = self.item_embedding.embeddings
        bias = self.scorer.item_bias
        target = x["targets"][..., 0]  # (B, L)
        target_logit = (ops.sum(decoded * ops.take(table, target, axis=0), axis=-1)
                        + ops.take(bias, target) - x["target_log_q"])
        negatives = x["negatives"]
        negative_logits = (ops.matmul(decoded, ops.transpose(ops.take(table, negatives, axis=0)))
                           + ops.take(bias, negatives) - x["negative_log_q"])  # (B, L, S)
        hit = ops.equal(ops.expand_dims(target, -1), negatives)
        negative_logits = ops.where(hit, NEG_INF, negative_logits)
        logits = ops.concatenate([ops.expand_dims(target_logit, -1), negative_logits], axis=-1)
        return ops.logsumexp(logits, axis=-1) - target_logit

    # ---- loss -------------------------------------------------------------------------------

    def loss_terms(self, x: dict[str, Any], y_pred: dict[str, Any]) -> tuple[Any, Any, Any]:
        """-> (total, reconstruction, KL): the cross-entropy of the next item(s) and the KL,
        summed over real steps and divided by the number of such steps.

        That number is ``x["n_steps"]`` when the batch carries it: the count over the *whole*
        batch when the batch is split across workers, so that the workers' losses (and
        gradients) add up to those of the undivided batch. The twin's KL is reported (it is
        what the KL of its μ would be) but not added.
        """
        targets = x["targets"]  # (B, L, K)
        target_mask = ops.cast(ops.not_equal(targets, 0), "float32")
        n_targets = ops.sum(target_mask, axis=-1)
        step_kl = gaussian_kl(y_pred["mean"], y_pred["log_var"])
        step_mask = ops.cast(y_pred["mask"], "float32") * ops.cast(n_targets > 0, "float32")
        if "n_steps" in x:
            n_steps = ops.maximum(ops.cast(x["n_steps"], "float32"), 1.0)
        else:
            n_steps = ops.maximum(ops.sum(step_mask), 1.0)
        if "step_logits" in y_pred:  # scored at the real steps only (see `call`)
            step_nll = ops.sparse_categorical_crossentropy(
                y_pred["step_targets"], y_pred["step_logits"], from_logits=True)
            if "step_correction" in y_pred:  # later targets, label smoothing
                step_nll = step_nll + y_pred["step_correction"]
            reconstruction = ops.sum(step_nll) / n_steps
            return self._combine(reconstruction, ops.sum(step_kl * step_mask) / n_steps)
        if "decoded" in y_pred:
            step_nll = self.sampled_nll(x, y_pred["decoded"])
            if self.label_smoothing:  # exact where the sampled softmax is the full one
                step_nll = step_nll + self.target_correction(y_pred["decoded"], targets)
        elif targets.shape[-1] == 1 and not self.label_smoothing:  # the fused cross-entropy
            step_nll = ops.sparse_categorical_crossentropy(targets[..., 0], y_pred["logits"],
                                                           from_logits=True)
        else:
            step_nll = self.multi_target_nll(y_pred["logits"], targets)
        reconstruction = ops.sum(step_nll * step_mask) / n_steps
        return self._combine(reconstruction, ops.sum(step_kl * step_mask) / n_steps)

    def multi_target_nll(self, logits: Any, targets: Any) -> Any:
        """(..., V) logits and (..., K) target ids (0 = none) -> (...): the mean negative
        log-likelihood of a step's targets, with ε of the mass (label smoothing) spread evenly
        over the real items. Taken from the log-normaliser and the picked logits, never the
        (..., V) log-probabilities: − log p_k = lse − l_k, and the uniform part lse − mean l."""
        target_mask = ops.cast(ops.not_equal(targets, 0), "float32")
        normaliser = ops.logsumexp(logits, axis=-1)
        picked = ops.take_along_axis(logits, targets, axis=-1)
        step_nll = normaliser - ops.sum(picked * target_mask, axis=-1) / ops.maximum(
            ops.sum(target_mask, axis=-1), 1.0)
        if not self.label_smoothing:
            return step_nll
        uniform_nll = normaliser - ops.mean(logits[..., self.scorer.n_reserved:], axis=-1)
        return (1.0 - self.label_smoothing) * step_nll + self.label_smoothing * uniform_nll

    def _combine(self, reconstruction: Any, kl: Any) -> tuple[Any, Any, Any]:
        total = reconstruction + self.beta * kl if self.variational else reconstruction
        if self.losses:
            total = total + ops.sum(self.losses)
        return total, reconstruction, kl

    def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                     sample_weight: Any = None, training: bool = True) -> Any:
        """Cross-entropy of the next items + β · KL, averaged over real steps."""
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
            "n_blocks": self.n_blocks,
            "n_heads": self.n_heads,
            "max_len": self.max_len,
            "dropout": self.dropout_rate,
            "variational": self.variational,
            "seed": self.seed,
            "block_norm": self.block_norm,
            "init_std": self.init_std,
            "lowpass": self.lowpass,
            "lowpass_bins": self.lowpass_bins,
            "lowpass_learned": self.lowpass_learned,
            "identity_head": self.identity_head,
            "label_smoothing": self.label_smoothing,
            "position_from": self.position_from,
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
