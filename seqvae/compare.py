"""Compare the SeqVAE with the baselines under one protocol: split, tune on validation, test once.

This is what `seqvae evaluate` and the dashboard's Evaluate page run. For every model:

1. fit on ``split.train``; hyperparameters (EASE's λ, ItemKNN's neighbours) are chosen on the
   validation holdout from a fixed grid, and the neural models' epochs by early stopping on it,
   all by validation NDCG@`select_k`;
2. evaluate the chosen model once on the test holdout (full ranking, inputs excluded).

The test holdout is touched exactly once per model and never informs a choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from seqvae.evaluation import Evaluation, evaluate
from seqvae.sequences import Sequences
from seqvae.splits import Split, holdout_users, leave_one_out, time_cut

PROTOCOLS = ("leave-one-out", "holdout-users", "time-cut")
MODELS = ("seqvae", "sasrec", "multvae", "ease", "itemknn", "pop")
# "sasrec" is the SeqVAE's deterministic twin: the same network and training, no sampling and
# no KL; whatever the starting configuration says, "seqvae" is the variational one
VARIATIONAL = {"seqvae": True, "sasrec": False}
# the grids searched on validation
GRIDS: dict[str, list[dict[str, Any]]] = {
    "pop": [{}],
    "itemknn": [{"neighbours": n} for n in (20, 50, 100, 200, 500)],
    "ease": [{"l2": v} for v in (10.0, 50.0, 200.0, 500.0, 1000.0, 3000.0)],
}


def make_split(sequences: Sequences, protocol: str, *, seed: int = 0,
               n_holdout: int | float = 0.1, min_length: int | None = None) -> Split:
    """The split of a protocol (see `seqvae.splits`)."""
    if protocol == "leave-one-out":
        return leave_one_out(sequences, min_length=min_length or 3)
    if protocol == "holdout-users":
        return holdout_users(sequences, n_holdout=n_holdout, seed=seed,
                             min_length=min_length or 2)
    if protocol == "time-cut":
        return time_cut(sequences)
    raise ValueError(f"`protocol` should be one of {', '.join(PROTOCOLS)}. "
                     f"Received: {protocol!r}")


@dataclass
class ModelResult:
    """One model's outcome: the chosen parameters, its validation and its test metrics."""

    model: str
    params: dict[str, Any]
    validation: dict[str, float]
    metrics: dict[str, float]  # on the test holdout
    fit_seconds: float
    eval_seconds: float
    tried: list[dict[str, Any]] = field(default_factory=list)  # every setting and its score
    evaluation: Evaluation | None = None  # per-user test values
    recommender: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "metrics": self.metrics, "validation": self.validation,
                "fit_seconds": round(self.fit_seconds, 3),
                "eval_seconds": round(self.eval_seconds, 3),
                "params": self.params, "tried": self.tried}


@dataclass
class Comparison:
    protocol: str
    dataset: dict[str, int]
    ks: list[int]
    selection: str  # the validation metric every choice was made on
    results: list[ModelResult]

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "dataset": self.dataset, "ks": self.ks,
                "selection": self.selection,
                "results": [r.to_dict() for r in self.results]}


def compare(
    sequences: Sequences,
    protocol: str = "leave-one-out",
    models: Sequence[str] = MODELS,
    ks: Sequence[int] = (10, 20),
    *,
    seqvae_config: Any = None,
    multvae_config: Any = None,
    select_k: int | None = None,
    seed: int = 0,
    split: Split | None = None,
    progress: Callable[[str], None] | None = None,
    cancel: Any = None,
) -> Comparison:
    """Fit, tune and test each of `models` under `protocol`.

    Args:
        sequences: the encoded log.
        models: names from `MODELS`.
        ks: the cut-offs reported.
        seqvae_config, multvae_config: starting configurations (epochs are the limit; early
            stopping picks the epoch); their `eval_k` is set to `select_k`.
        select_k: validation NDCG@select_k picks every hyperparameter (default: the largest K).
        split: a ready split (otherwise made from `protocol` with `seed`).
        progress: called with a line of text at each stage.
        cancel: a `CancelToken`, checked between models, epochs and chunks.
    """
    from seqvae.training import SeqVAEConfig

    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"`models` should be names from {', '.join(MODELS)}. "
                         f"Received: {', '.join(unknown) or 'none'}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"`ks` should be positive integers. Received: {ks}")
    select_k = select_k or ks[-1]
    selection = f"NDCG@{select_k}"
    split = split or make_split(sequences, protocol, seed=seed)
    say = progress or (lambda _message: None)
    popularity = np.bincount(split.train.items, minlength=split.train.item_vocab.size)
    results = []
    for name in models:
        if cancel is not None and cancel.cancelled:
            break
        say(f"{name}: fitting")
        started = time.perf_counter()
        tried: list[dict[str, Any]] = []
        if name in ("seqvae", "sasrec"):
            from seqvae.training import fit

            config = replace(seqvae_config or SeqVAEConfig(), eval_k=select_k,
                             variational=VARIATIONAL[name])
            def said(record: Any, model: str = name) -> None:
                say(f"{model}: epoch {record.epoch}, validation {selection} "
                    f"{record.validation[selection]:.4f}")

            recommender, history = fit(split, config, cancel=cancel, on_epoch=said)
            validation = history.best_validation
            params = {**config.to_dict(), "epochs": history.best_epoch}
            tried = [{"epoch": e.epoch, selection: e.validation[selection]}
                     for e in history.epochs]
        elif name == "multvae":
            from seqvae.baselines import MultVAEBaseline, MultVAEConfig

            mconfig = replace(multvae_config or MultVAEConfig(), eval_k=select_k, seed=seed)
            recommender = MultVAEBaseline(mconfig).fit(
                split.train, split.validation, cancel=cancel, on_epoch=lambda r: say(
                    f"multvae: epoch {r['epoch']}, validation {selection} {r[selection]:.4f}"))
            tried = [{"epoch": r["epoch"], selection: r[selection]} for r in recommender.epochs_]
            validation = evaluate(recommender, split.validation, [select_k],
                                  with_auc=False).metrics
            params = dict(recommender.params_)
        else:
            recommender, validation, tried = _grid_search(name, split, select_k, say, cancel)
            params = dict(recommender.params_)
        fit_seconds = time.perf_counter() - started
        if cancel is not None and cancel.cancelled:
            say(f"{name}: stopped before testing")
            break
        say(f"{name}: testing")
        test = evaluate(recommender, split.test, ks, popularity=popularity, cancel=cancel)
        results.append(ModelResult(
            model=name, params=params,
            validation={k: v for k, v in validation.items() if k.startswith(("NDCG", "HR"))},
            metrics=test.metrics, fit_seconds=fit_seconds, eval_seconds=test.seconds,
            tried=tried, evaluation=test, recommender=recommender))
    return Comparison(protocol=split.protocol,
                      dataset={"users": sequences.n_users, "items": sequences.item_vocab.size - 2,
                               "events": sequences.n_events},
                      ks=ks, selection=selection, results=results)


def _grid_search(name: str, split: Split, select_k: int, say: Callable[[str], None],
                 cancel: Any = None) -> tuple[Any, dict[str, float], list[dict[str, Any]]]:
    from seqvae.baselines import EASE, ItemKNN, Popularity

    factory = {"pop": Popularity, "itemknn": ItemKNN, "ease": EASE}[name]
    metric = f"NDCG@{select_k}"
    best: tuple[float, Any, dict[str, float]] | None = None
    tried = []
    for params in GRIDS[name]:
        if best is not None and cancel is not None and cancel.cancelled:
            break  # keep the best setting so far
        model = factory(**params).fit(split.train)
        validation = evaluate(model, split.validation, [select_k], with_auc=False).metrics
        tried.append({**params, metric: validation[metric]})
        say(f"{name}: {params or 'fitted'}, validation {metric} {validation[metric]:.4f}")
        if best is None or validation[metric] > best[0]:
            best = (validation[metric], model, validation)
        else:
            del model
    assert best is not None
    return best[1], best[2], tried
