"""The SeqVAE's typed configuration: every hyperparameter with the measurement behind its
default (docs/model.md), its checks, and how a saved configuration written before a field
existed reads back (`ADDED_FIELDS`). `seqvae.training` re-exports all of it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# how training windows are put into batches (`SeqVAEConfig.batching`)
BATCHINGS = ("auto", "packed", "random", "length")


@dataclass(frozen=True)
class SeqVAEConfig:
    """Every hyperparameter of a SeqVAE and its training."""

    # "attention" (causal self-attention, SASRec-style), "gru" or "lstm"
    encoder: str = "attention"
    # width of the item / event-type / time-gap (and position) embeddings, of the attention
    # blocks, and of the item vectors the scores are taken against (tied to the input table)
    embed_dim: int = 64
    # the recurrent state (gru / lstm), or the attention blocks' feed-forward width
    hidden_dim: int = 128
    # size of the user representation μ (per position)
    latent_dim: int = 64
    # attention blocks, and heads per block (attention only)
    n_blocks: int = 2
    n_heads: int = 1
    # False: the deterministic twin (no sampling, no KL; z = μ) that measures what the latent
    # costs or buys
    variational: bool = True
    # dropout on the embeddings and inside the attention blocks
    dropout: float = 0.5
    # attention blocks: "pre" (LayerNorm before each sub-layer) or "post" (after each residual)
    block_norm: str = "pre"
    # 0: Keras' default initialisers; s: embeddings and kernels drawn from N(0, s²), truncated
    init_std: float = 0.0
    # the share α of BSARec's low-pass branch beside the attention in every attention block
    # (made causal: `seqvae.model.LowPassMixing`; 0 = attention alone; gru / lstm have no such
    # block), and how many of the lowest frequencies of a `max_len` window it keeps (BSARec's
    # c = 5 keeps 3). 0.7 is BSARec's Beauty setting; with the identity head it learned faster
    # on Beauty and ended higher (validation NDCG@20 0.0779 against 0.0762; docs/model.md)
    lowpass: float = 0.7
    lowpass_bins: int = 3
    # train the low-pass branch's weights by lag, a causal convolution that starts as BSARec's
    # filter, so each block learns how much an earlier event counts by how long ago it came
    # (the position table says where it sits in the window, not how far back); on Beauty the
    # best validation NDCG@20 rose from 0.0803 to 0.0824, and came 1 epoch sooner (docs/model.md)
    lowpass_learned: bool = True
    # start the latent head and the decoder as identity maps (μ = h, u = z), so the network
    # starts as a plain SASRec score h · E; False: Keras' default (Glorot) initialisation, a
    # random map between h and the item table that learned slower and levelled off lower
    # (validation NDCG@20 on Beauty 0.0713 against 0.0762 after 20 epochs; docs/model.md)
    identity_head: bool = True
    # the share ε of each step's target mass spread evenly over the catalogue (label
    # smoothing): the loss becomes (1 − ε) · cross-entropy + ε · the mean negative
    # log-probability of every item (with the sampled softmax its log-normaliser is the
    # sample's estimate). On Beauty 0.1 lifted the best validation NDCG@20 from 0.0824 to
    # 0.0840 and was ahead at 29 of 30 epochs; ML-100K ahead at every epoch, the sample level
    # (docs/model.md)
    label_smoothing: float = 0.1
    # what the attention encoder's position table counts: "end", how many events follow the
    # item a step predicts, so the step that predicts a user's next event is always position
    # 0 — in training the user's latest event, in a recommendation the next one (as BSARec's
    # left-padded windows align them); "start", each step's place in its window. With the
    # latest events told apart, Beauty's best validation NDCG@20 rose from 0.0840 to 0.0846,
    # one step past validation from 0.0734 to 0.0755, and its test NDCG@20 over three seeds
    # from 0.0657 to 0.0685 (docs/model.md, docs/results.md). The count stops at
    # `max_len` − 1: in a long history, the steps of a window that ends 50 or more events
    # before the user's latest share that one position
    position_from: str = "end"
    # 0: full softmax over every item at every step; N: sampled softmax against N negatives
    # per batch, drawn by training popularity and log-Q corrected (for large catalogues)
    negatives: int = 0
    # the multinomial likelihood covers the next `next_k` items after each step
    next_k: int = 1
    # training windows: length and stride (the most recent `max_len` events represent a user)
    max_len: int = 50
    stride: int = 25
    # windows per batch; 0: from the data, `seqvae.batches.auto_batch_size` (256 on Beauty, 64
    # on the sample)
    batch_size: int = 0
    # "random": batches drawn from all windows, padded to `max_len` (the softmax runs at real
    # steps only); "packed" (attention only): the same random batches with several short
    # windows packed into each row of `max_len` cells, each window attending to itself alone —
    # the same computation without most of the padding; "length": batches of windows of
    # similar length, each cut to its bucket. Batches of one length learned far slower
    # (validation NDCG@20 on Beauty 0.029 against 0.043 after 4 epochs; docs/model.md): each
    # step saw one kind of user. "auto": packed for attention, random for gru / lstm
    batching: str = "auto"
    # upper bound on epochs; early stopping usually ends sooner
    epochs: int = 30
    # with the identity head a slower rate levels off higher on Beauty (validation NDCG@20
    # 0.0803 against 0.0779 at 4e-3; ML-100K 0.147 against 0.153, the sample 0.184 against
    # 0.191: docs/model.md)
    learning_rate: float = 2e-3
    # "cosine": decay to a tenth of `learning_rate` over `decay_epochs` epochs, then hold it;
    # "constant". The horizon is its own setting, not `epochs`: a short run (the dashboard's
    # 6 epochs) keeps nearly the full rate, and a limit raised to continue training does not
    # reshape the schedule. On Beauty it gained 4% over constant (docs/model.md)
    lr_schedule: str = "cosine"
    decay_epochs: int = 30
    # AdamW's decoupled weight decay
    weight_decay: float = 1e-4
    # 0: validate and keep the weights as trained; E > 0: keep an exponential moving average of
    # the weights over about E epochs (Polyak averaging: momentum 1 − 1 / (E · batches an
    # epoch)), validate it and keep the best epoch's average as the model
    average_epochs: float = 0.0
    # β rises linearly from 0 to `beta_cap` over `anneal_epochs`. The KL is summed over the
    # latent's dimensions at every step, so even 0.01 outweighed what the next item gained from
    # a precise μ on Beauty and collapsed the KL to ~6 nats (docs/model.md); 0.001 keeps it
    beta_cap: float = 0.001
    anneal_epochs: float = 3.0
    # stop when validation NDCG@`eval_k` has not improved for `patience` epochs: ML-100K's
    # curve is ragged (±0.01 from one epoch to the next), and patience 5 stopped it at epoch 15
    # (0.136) where patience 10 let it reach 0.147 at epoch 27 (docs/model.md)
    patience: int = 10
    eval_k: int = 10
    seed: int = 0
    # networks trained alone (seeds `seed`, `seed` + 1, …) whose scores are averaged: the mean
    # of their log-softmax ranks the items. Two of the defaults lifted Beauty's validation
    # NDCG@20 from 0.0846 to 0.0891 and its test from 0.0683 to 0.0727 (docs/model.md, the eighth
    # and tenth passes). On two cores or more each trains in a process of its own, as many at
    # once as there are cores (two on 2 cores: ~1.3x the time of one); on one core, under a
    # strategy or from a store, one after the other. The latent map, similar users and the
    # explanations read the first network
    members: int = 1
    # end an epoch after this many batches (None: when every window has been seen once); for
    # logs so large that validating once per pass is too rare
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        for name in ("embed_dim", "hidden_dim", "latent_dim", "next_k", "max_len", "stride",
                     "epochs", "decay_epochs", "eval_k", "members"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` should be a positive integer. Received: `{name}`={value!r}")
        if self.encoder not in ("attention", "gru", "lstm"):
            raise ValueError("`encoder` should be 'attention', 'gru' or 'lstm'. "
                             f"Received: `encoder`={self.encoder!r}")
        for name in ("n_blocks", "n_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` should be a positive integer. Received: `{name}`={value!r}")
        if self.encoder == "attention" and self.embed_dim % self.n_heads:
            raise ValueError(f"`embed_dim` ({self.embed_dim}) should be a multiple of `n_heads`. "
                             f"Received: `n_heads`={self.n_heads}")
        if self.block_norm not in ("pre", "post"):
            raise ValueError("`block_norm` should be 'pre' or 'post'. "
                             f"Received: `block_norm`={self.block_norm!r}")
        if not 0.0 <= self.lowpass <= 1.0:
            raise ValueError(f"`lowpass` should be in [0, 1]. Received: `lowpass`={self.lowpass}")
        if not isinstance(self.lowpass_bins, int) or self.lowpass_bins < 1:
            raise ValueError("`lowpass_bins` should be a positive integer. "
                             f"Received: `lowpass_bins`={self.lowpass_bins!r}")
        if self.init_std < 0:
            raise ValueError(f"`init_std` should be >= 0. Received: `init_std`={self.init_std}")
        if self.batching not in BATCHINGS:
            raise ValueError(f"`batching` should be one of {', '.join(map(repr, BATCHINGS))}. "
                             f"Received: `batching`={self.batching!r}")
        if self.batching == "packed" and self.encoder != "attention":
            raise ValueError("`batching`='packed' needs the attention encoder (a recurrent "
                             "state would run from one packed window into the next); use "
                             f"'random' or 'auto'. Received: `encoder`={self.encoder!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError("`lr_schedule` should be 'constant' or 'cosine'. "
                             f"Received: `lr_schedule`={self.lr_schedule!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 0:
            raise ValueError("`batch_size` should be a positive integer, or 0 to choose it from "
                             f"the data. Received: `batch_size`={self.batch_size!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` should be in [0, 1). Received: `dropout`={self.dropout}")
        for name in ("learning_rate", "weight_decay", "beta_cap", "anneal_epochs",
                     "average_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` should be >= 0. Received: `{name}`={getattr(self, name)}")
        if not isinstance(self.negatives, int) or self.negatives < 0:
            raise ValueError("`negatives` should be 0 (full softmax) or a positive integer. "
                             f"Received: `negatives`={self.negatives!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("`label_smoothing` should be in [0, 1). "
                             f"Received: `label_smoothing`={self.label_smoothing}")
        if self.position_from not in ("start", "end"):
            raise ValueError("`position_from` should be 'start' or 'end'. "
                             f"Received: `position_from`={self.position_from!r}")
        if self.patience < 1:
            raise ValueError(f"`patience` should be >= 1. Received: `patience`={self.patience}")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int)
                                                 or self.steps_per_epoch < 1):
            raise ValueError("`steps_per_epoch` should be a positive integer or None. "
                             f"Received: `steps_per_epoch`={self.steps_per_epoch!r}")

    @property
    def batching_used(self) -> str:
        """What "auto" stands for with this encoder: "packed" for attention, else "random"."""
        if self.batching != "auto":
            return self.batching
        return "packed" if self.encoder == "attention" else "random"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SeqVAEConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown SeqVAEConfig fields: {', '.join(sorted(unknown))}")
        return cls(**values)

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> SeqVAEConfig:
        """The settings a model directory or checkpoint recorded, one written before a field
        existed included: such a field takes the value that gives what the code did then."""
        return cls.from_dict({**ADDED_FIELDS, **values})


# SeqVAEConfig fields added since model format 2, with the values that give what the code did
# before them (a model directory or checkpoint written without them was trained that way)
ADDED_FIELDS = {"lowpass": 0.0, "lowpass_bins": 3, "identity_head": False,
                "average_epochs": 0.0, "lowpass_learned": False, "label_smoothing": 0.0,
                "position_from": "start", "members": 1}
