"""The model directory: save a trained recommender, load it back safely.

Layout (a contract users' scripts rely on):

| file | holds |
|---|---|
| ``model.keras`` | the network, Keras native format, loaded with ``safe_mode=True`` |
| ``member-2.keras``, … | an ensemble's other networks (``members`` > 1 in config.json) |
| ``vocab.json`` | ``{"items": [...], "events": [...]}`` — ids 2, 3, ... in order (0 padding, 1 OOV) |
| ``config.json`` | every hyperparameter (``model``) and the data schema (``data``) |
| ``history.json`` | per-epoch losses, β, validation metrics, seconds |
| ``metrics.json`` | the evaluation results recorded with the model |
| ``histories.npz`` | the users' encoded sequences the model recommends from (plain arrays) |
| ``users.json`` | the user ids of those sequences, in order |
| ``manifest.json`` | the SHA-256 of every file above |

The baselines (popularity, item-KNN, EASE, Mult-VAE) save to the same kind of directory, with
``weights.npz`` (their arrays: counts, the similarity or weight matrix, the network's weights) in
place of ``model.keras`` and ``history.json``, and ``config.json``'s ``kind`` naming the model;
`load` gives back the model that was saved, whichever it is.

Nothing is pickled: JSON, NumPy arrays loaded with ``allow_pickle=False``, and a Keras file whose
custom layers are registered classes. A missing, truncated or modified file, a ``Lambda`` layer
or a layer class seqvae does not know is refused with a `BundleError` that names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from seqvae.errors import SeqVAEError
from seqvae.sequences import SequenceOptions, Sequences, Vocabulary

# 2: the tied-embedding SeqVAE with a choice of encoder (attention / GRU / LSTM); directories of
# format 1 (a GRU with separate output item vectors) are refused with a message to retrain
FORMAT_VERSION = 2
FILES = ("model.keras", "vocab.json", "config.json", "history.json", "metrics.json",
         "histories.npz", "users.json")
#: a baseline's directory: its arrays instead of a network and a training history
BASELINE_FILES = ("weights.npz", "vocab.json", "config.json", "metrics.json", "histories.npz",
                  "users.json")


class BundleError(SeqVAEError, ValueError):
    """A model directory cannot be loaded; the message names the file and what to do."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default) + "\n",
                    encoding="utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def check_target(directory: str | os.PathLike[str]) -> Path:
    """`directory` as a place a model may be written to: new, empty or a model directory."""
    target = Path(directory)
    if target.exists() and not (target / "manifest.json").exists() and any(target.iterdir()):
        raise BundleError(f"{target} exists and is not a seqvae model directory; "
                          "choose another --out (nothing was written)")
    return target


def member_files(count: int) -> tuple[str, ...]:
    """The files of an ensemble's networks after the first (``model.keras``)."""
    return tuple(f"member-{index}.keras" for index in range(2, count + 1))


def save(recommender: Any, directory: str | os.PathLike[str], *,
         metrics: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Path:
    """Write `recommender` — the SeqVAE, its twin or a baseline — to `directory` (created; an
    existing model directory is replaced).

    The files are written to a temporary folder beside it and moved into place at the end, so
    an interrupted save never leaves a half-written model directory. `metrics` (metrics.json)
    defaults to the evaluation the recommender records (``metrics_``: set by
    `seqvae.pipeline.train` and by `load`).
    """
    from seqvae.export import atomic_directory

    history = recommender.history_
    if history is None:
        raise BundleError("the recommender has no user histories to save")
    baseline = recommender.name in _baselines()

    def write(staging: Path) -> None:
        data_schema = {**(data or {}),
                       "time_buckets": history.options.time_buckets,
                       "min_item_count": history.options.min_item_count,
                       "has_timestamps": bool(history.has_timestamps)}
        if baseline:
            params, arrays = recommender.state()
            np.savez(staging / "weights.npz", **arrays)
            _write_json(staging / "config.json", {"format_version": FORMAT_VERSION,
                                                  "kind": recommender.name, "model": params,
                                                  "data": data_schema})
        else:
            recommender.model_.save(staging / "model.keras")
            for name, network in zip(member_files(len(recommender.others_) + 1),
                                     recommender.others_, strict=True):
                network.save(staging / name)
            _write_json(staging / "config.json", {"format_version": FORMAT_VERSION,
                                                  "kind": "seqvae",
                                                  "model": recommender.config_.to_dict(),
                                                  "data": data_schema})
            training = getattr(recommender, "training_history_", None)
            _write_json(staging / "history.json", training.to_dict() if training else {})
        _write_json(staging / "vocab.json", {"items": recommender.item_vocab_.to_json(),
                                             "events": recommender.event_vocab_.to_json()})
        recorded = getattr(recommender, "metrics_", None)
        _write_json(staging / "metrics.json", metrics if metrics is not None else recorded or {})
        np.savez_compressed(staging / "histories.npz", offsets=history.offsets,
                            items=history.items, events=history.events, gaps=history.gaps,
                            timestamps=history.timestamps)
        _write_json(staging / "users.json", [str(u) for u in history.users])
        names = BASELINE_FILES if baseline else (
            *FILES, *member_files(len(recommender.others_) + 1))
        _write_json(staging / "manifest.json",
                    {"format_version": FORMAT_VERSION,
                     "sha256": {name: _sha256(staging / name) for name in names}})

    return atomic_directory(check_target(directory), write)


def _baselines() -> dict[str, Any]:
    from seqvae.baselines import BASELINES

    return BASELINES


def _read_json(directory: Path, name: str) -> Any:
    try:
        return json.loads((directory / name).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{directory / name} is damaged ({exc}); re-save or re-train the "
                          "model") from None


def load(directory: str | os.PathLike[str]) -> Any:
    """Load a model directory written by `save` -> the working recommender that was saved (a
    `SeqVAERecommender`, or a baseline).

    Raises:
        BundleError: a file is missing, damaged or modified since it was saved; the network
            contains a Lambda layer or an unknown layer; or the files disagree with each other.
    """
    root = Path(directory)
    if not root.is_dir():
        raise BundleError(f"{root} is not a model directory (no such folder)")
    baseline = (root / "weights.npz").is_file() and not (root / "model.keras").exists()
    names = BASELINE_FILES if baseline else FILES
    for name in (*names, "manifest.json"):
        if not (root / name).is_file():
            raise BundleError(f"{root / name} is missing; this is not a complete seqvae model "
                              "directory")
    manifest = _read_json(root, "manifest.json")
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{root / 'manifest.json'} says model format {version!r}; this seqvae reads format "
            f"{FORMAT_VERSION} (format 1 came before the attention encoder and tied item "
            "embeddings, and its network cannot be rebuilt); retrain the model with "
            "`seqvae train` or the dashboard's Train page")
    expected = manifest.get("sha256", {}) if isinstance(manifest, dict) else {}
    if not baseline:  # an ensemble's other networks: what config.json says it holds
        config = _read_json(root, "config.json")
        members = config.get("model", {}).get("members", 1) if isinstance(config, dict) else 1
        names = (*names, *member_files(int(members)))
        for name in names:
            if not (root / name).is_file():
                raise BundleError(f"{root / name} is missing; config.json says the model has "
                                  f"{members} networks")
    for name in names:
        if expected.get(name) != _sha256(root / name):
            raise BundleError(f"{root / name} does not match the checksum recorded when the model "
                              "was saved (truncated or modified); re-save or re-train the model")
    if baseline:
        return _load_baseline(root)
    from seqvae.recommender import SeqVAERecommender
    from seqvae.training import TrainingHistory

    model = _load_network(root / "model.keras")
    others = [_load_network(root / name) for name in names if name.startswith("member-")]
    vocab = _read_json(root, "vocab.json")
    config = _read_json(root, "config.json")
    item_vocab = Vocabulary.from_json(vocab["items"])
    event_vocab = Vocabulary.from_json(vocab["events"])
    named = zip(("model.keras", *member_files(len(others) + 1)), (model, *others), strict=True)
    for name, network in named:
        if item_vocab.size != network.n_items or event_vocab.size != network.n_events:
            raise BundleError(f"{root / 'vocab.json'} does not fit {name} ({item_vocab.size} "
                              f"item ids against {network.n_items})")
    history = _read_history(root, item_vocab, event_vocab, config, model.n_gaps)
    recommender = SeqVAERecommender(model, saved_config(config["model"]), item_vocab,
                                    event_vocab, history)
    recommender.others_ = others
    recommender.training_history_ = TrainingHistory.from_dict(_read_json(root, "history.json"))
    recommender.metrics_ = _read_json(root, "metrics.json")
    return recommender


def _load_network(path: Path) -> Any:
    """One network's Keras file -> the `SeqVAE`, loaded with ``safe_mode``."""
    import keras

    from seqvae.model import SeqVAE

    try:
        with zipfile.ZipFile(path) as archive:
            archive.testzip()
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{path} is not a Keras model file ({exc})") from None
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        if "lambda" in str(exc).lower() or "safe_mode" in str(exc):
            raise BundleError(f"{path} contains a Lambda layer (arbitrary code); refused") from None
        raise BundleError(f"{path} cannot be loaded ({exc})") from None
    except TypeError as exc:
        raise BundleError(f"{path} holds a layer seqvae does not know ({exc}); refused") from None
    if not isinstance(model, SeqVAE):
        raise BundleError(f"{path} holds a {type(model).__name__}, not a SeqVAE")
    return model


def _load_baseline(root: Path) -> Any:
    """A baseline's directory -> the fitted baseline, rebuilt from its parameters and arrays."""
    config = _read_json(root, "config.json")
    kind = config.get("kind") if isinstance(config, dict) else None
    factory = _baselines().get(str(kind))
    if factory is None:
        raise BundleError(f"{root / 'config.json'} names the model {kind!r}, which this seqvae "
                          f"does not know (one of {', '.join(_baselines())})")
    vocab = _read_json(root, "vocab.json")
    item_vocab = Vocabulary.from_json(vocab["items"])
    event_vocab = Vocabulary.from_json(vocab["events"])
    with np.load(root / "weights.npz", allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    try:
        recommender = factory.from_state(config["model"], arrays, item_vocab.size)
    except (KeyError, ValueError) as exc:
        raise BundleError(f"{root / 'weights.npz'} does not fit {root / 'config.json'} "
                          f"({exc})") from None
    recommender.item_vocab_, recommender.event_vocab_ = item_vocab, event_vocab
    recommender.history_ = _read_history(root, item_vocab, event_vocab, config, None)
    recommender.metrics_ = _read_json(root, "metrics.json")
    return recommender


def saved_config(values: dict[str, Any]) -> Any:
    """The `SeqVAEConfig` a model directory's config.json records, older directories included."""
    from seqvae.training import SeqVAEConfig

    return SeqVAEConfig.from_saved(values)


def _read_history(root: Path, item_vocab: Vocabulary, event_vocab: Vocabulary,
                  config: dict[str, Any], n_gaps: int | None) -> Sequences:
    users = _read_json(root, "users.json")
    with np.load(root / "histories.npz", allow_pickle=False) as arrays:
        offsets = arrays["offsets"]
        history = Sequences(
            users=np.asarray(users, dtype=object),
            offsets=offsets,
            items=arrays["items"],
            events=arrays["events"],
            gaps=arrays["gaps"],
            timestamps=arrays["timestamps"],
            event_index=np.arange(arrays["items"].shape[0], dtype=np.int64),
            item_vocab=item_vocab,
            event_vocab=event_vocab,
            has_timestamps=bool(config["data"].get("has_timestamps")),
            options=SequenceOptions(
                time_buckets=int(config["data"].get("time_buckets") or n_gaps
                                 or SequenceOptions().time_buckets),
                min_item_count=int(config["data"].get("min_item_count") or 1)),
        )
    if len(users) != offsets.shape[0] - 1:
        raise BundleError(f"{root / 'users.json'} does not fit histories.npz")
    return history
