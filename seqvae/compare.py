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
# above this many items EASE's search takes minutes (an items x items inverse per setting:
# Beauty's 12,101 items, ~2 min for the six on 2 cores); the Evaluate page says so
EASE_SLOW_ABOVE = 5_000


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

    def still_improving(self) -> bool:
        """A neural model whose best validation epoch was its last: it stopped on its epoch
        limit (or was stopped) while still improving, so more epochs would likely score more.
        Early stopping always ends past the best epoch."""
        epochs = [t for t in self.tried if "epoch" in t]
        if not epochs:
            return False
        score = next(k for k in epochs[0] if k != "epoch")
        return max(epochs, key=lambda t: t[score])["epoch"] == epochs[-1]["epoch"]

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
        if name in GRIDS:
            recommender, validation, tried = _grid_search(name, split, select_k, say, cancel)
        else:  # the neural models: epochs chosen by early stopping on validation
            unfitted = _neural(name, seqvae_config, multvae_config, select_k, seed)
            recommender = unfitted.fit(
                split, cancel=cancel, on_epoch=lambda r, m=name, n=unfitted.config_.epochs: say(
                    f"{m}: epoch {r['epoch']} of at most {n}, validation {selection} "
                    f"{r[selection]:.4f}"))
            tried = [{"epoch": r["epoch"], selection: r[selection]} for r in recommender.epochs_]
            validation = evaluate(recommender, split.validation, [select_k],
                                  with_auc=False).metrics
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


def _neural(name: str, seqvae_config: Any, multvae_config: Any, select_k: int, seed: int) -> Any:
    """An unfitted SeqVAE, twin or Mult-VAE, its epochs chosen on validation NDCG@`select_k`."""
    if name == "multvae":
        from seqvae.baselines import MultVAEBaseline, MultVAEConfig

        return MultVAEBaseline(replace(multvae_config or MultVAEConfig(), eval_k=select_k,
                                       seed=seed))
    from seqvae.recommender import SeqVAERecommender
    from seqvae.training import SeqVAEConfig

    return SeqVAERecommender.configured(replace(seqvae_config or SeqVAEConfig(),
                                                eval_k=select_k, variational=VARIATIONAL[name]))


def _grid_search(name: str, split: Split, select_k: int, say: Callable[[str], None],
                 cancel: Any = None) -> tuple[Any, dict[str, float], list[dict[str, Any]]]:
    from seqvae.baselines import EASE, ItemKNN, Popularity

    factory = {"pop": Popularity, "itemknn": ItemKNN, "ease": EASE}[name]
    metric = f"NDCG@{select_k}"
    best: tuple[float, Any, dict[str, float]] | None = None
    tried = []
    grid = GRIDS[name]
    for i, params in enumerate(grid, start=1):
        if best is not None and cancel is not None and cancel.cancelled:
            break  # keep the best setting so far
        model = factory(**params).fit(split)
        validation = evaluate(model, split.validation, [select_k], with_auc=False).metrics
        tried.append({**params, metric: validation[metric]})
        # "setting i of n": how far a slow search is (EASE inverts an items x items matrix
        # for each of its settings: minutes on 12,101 items)
        setting = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                            for k, v in params.items())  # "l2 = 50", not "{'l2': 50.0}"
        say(f"{name}: {setting or 'fitted'}" + (f", setting {i} of {len(grid)}"
                                                 if len(grid) > 1 else "")
            + f", validation {metric} {validation[metric]:.4f}")
        if best is None or validation[metric] > best[0]:
            best = (validation[metric], model, validation)
        else:
            del model
    assert best is not None
    return best[1], best[2], tried


def default_metrics(comparison: Comparison) -> list[str]:
    """The compact table's columns: NDCG, HR and coverage at every K, leaving out a per-user
    metric whose values equal an earlier one's for every model (Recall and TruncatedRecall are
    HR when each user has one target, as under leave-one-out)."""
    first = comparison.results[0]
    wanted = [f"{m}@{k}" for k in comparison.ks for m in ("NDCG", "HR", "Recall", "Coverage")]
    chosen: list[str] = []
    for name in (m for m in wanted if m in first.metrics):
        per_user = [r.evaluation.per_user.get(name) if r.evaluation else None for r in comparison.results]
        same_as_earlier = any(
            all(
                p is not None
                and r.evaluation is not None
                and c in r.evaluation.per_user
                and np.array_equal(p, r.evaluation.per_user[c])
                for p, r in zip(per_user, comparison.results, strict=True)
            )
            for c in chosen
        )
        if not same_as_earlier:
            chosen.append(name)
    return chosen


def summary(
    comparison: Comparison,
    metrics: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> Any:
    """One row per model: each metric's test value, its bootstrap interval over users, and
    whether it is the best or statistically tied with the best.

    The bootstrap is paired: every resample draws the same users for every model (they were all
    tested on the same holdout), so the difference to the best model is measured on the same
    users; a model is "tied" when the interval of that difference includes 0. Catalogue-level
    metrics (coverage) have no per-user values and get no interval.

    Returns a DataFrame indexed by model with columns ``<metric>``, ``<metric> low``,
    ``<metric> high`` and ``<metric> vs best`` ("best", "tied" or "worse").
    """
    import pandas as pd

    metrics = list(metrics) if metrics is not None else default_metrics(comparison)
    results = comparison.results
    n_users = next((len(r.evaluation.users) for r in results if r.evaluation is not None), 0)
    tail = (1.0 - confidence) / 2.0
    table = pd.DataFrame(index=[r.model for r in results])
    for metric in metrics:
        values = np.array([r.metrics.get(metric, np.nan) for r in results], dtype=np.float64)
        table[metric] = values
        per_user = [r.evaluation.per_user.get(metric) if r.evaluation is not None else None for r in results]
        if any(p is None or len(p) != n_users for p in per_user) or n_users == 0:
            table[f"{metric} low"] = np.nan
            table[f"{metric} high"] = np.nan
            table[f"{metric} vs best"] = np.where(values == np.nanmax(values), "best", "")
            continue
        present = [p for p in per_user if p is not None]
        stacked = np.stack([np.nan_to_num(p, nan=0.0) for p in present])  # (models, users)
        boot = _bootstrap_means(stacked, n_boot, seed)  # (models, n_boot)
        table[f"{metric} low"] = np.quantile(boot, tail, axis=1)
        table[f"{metric} high"] = np.quantile(boot, 1.0 - tail, axis=1)
        best = int(np.nanargmax(values))
        difference = boot[best] - boot  # (models, n_boot), >= 0 where the best leads
        tied = np.quantile(difference, tail, axis=1) <= 0.0
        table[f"{metric} vs best"] = [
            "best" if i == best else ("tied" if tied[i] else "worse") for i in range(len(results))
        ]
    return table


def leaders(table: Any, metric: str) -> tuple[str, list[str], list[str]]:
    """From a `summary` table: (the best model on `metric`, the models level with it — the
    paired interval of their difference includes 0 —, the models below it), each in the
    table's order."""
    column = table[f"{metric} vs best"]
    best = [model for model in table.index if column[model] == "best"]
    if not best:
        raise ValueError(f"no model has a value of {metric}")
    return (best[0], [m for m in table.index if column[m] == "tied"],
            [m for m in table.index if column[m] not in ("best", "tied")])


def paired_difference(first: np.ndarray, second: np.ndarray, *, confidence: float = 0.95,
                      n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """How much `first` leads `second` on the same users: the mean of first − second over users,
    its paired bootstrap interval (every resample draws the same users for both), and the shares
    of users where first is above and below.

    Args:
        first, second: one value per user (e.g. per-user NDCG), in the same user order; NaN
            counts as 0, as in `summary`.
    """
    a = np.nan_to_num(np.asarray(first, dtype=np.float64), nan=0.0)
    b = np.nan_to_num(np.asarray(second, dtype=np.float64), nan=0.0)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"`first` and `second` should hold one value per user each, for the "
                         f"same users. Received shapes {a.shape} and {b.shape}")
    boot = _bootstrap_means(np.stack([a - b]), n_boot, seed)[0]
    tail = (1.0 - confidence) / 2.0
    return {"difference": float((a - b).mean()), "low": float(np.quantile(boot, tail)),
            "high": float(np.quantile(boot, 1.0 - tail)), "users": int(a.size),
            "above": float((a > b).mean()), "below": float((a < b).mean())}


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int, chunk: int = 50) -> np.ndarray:
    """(models, users) -> (models, n_boot): the means over users resampled with replacement,
    the same users for every model in each resample; `chunk` resamples at a time, so memory
    stays at chunk x users indices."""
    rng = np.random.default_rng(seed)
    n_users = values.shape[1]
    out = np.empty((values.shape[0], n_boot))
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        draws = rng.integers(0, n_users, size=(size, n_users))
        out[:, start : start + size] = values[:, draws].mean(axis=2)
    return out
