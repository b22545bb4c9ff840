"""seqvae.bundle: save -> load gives the same scores; damaged, modified or unsafe files are
refused with an error that names them."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

import seqvae
from seqvae.bundle import FILES, BundleError, _sha256, save
from seqvae.splits import leave_one_out
from seqvae.training import SeqVAEConfig, fit
from tests.test_training import cyclic_log

CONFIG = SeqVAEConfig(embed_dim=8, hidden_dim=16, latent_dim=4, max_len=10, batch_size=32,
                      epochs=2, patience=2, seed=2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    sequences = cyclic_log(n_users=60, length=10)
    recommender, _ = fit(leave_one_out(sequences), CONFIG, history_sequences=sequences)
    directory = tmp_path_factory.mktemp("bundle") / "model"
    save(recommender, directory, metrics={"test": {"NDCG@10": 0.5}})
    return recommender, directory


def copy_of(directory, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(directory, target)
    return target


def rewrite_manifest(directory):
    """Record the current files' checksums, as a deliberate edit of the directory would."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["sha256"] = {name: _sha256(directory / name) for name in FILES}
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_save_then_load_gives_identical_scores(saved):
    recommender, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == sorted([*FILES, "manifest.json"])
    loaded = seqvae.load(directory)
    users = list(recommender.history_.users[:5])
    ids, scores = recommender.recommend(users, k=5)
    loaded_ids, loaded_scores = loaded.recommend(users, k=5)
    np.testing.assert_array_equal(ids, loaded_ids)
    np.testing.assert_allclose(scores, loaded_scores, rtol=1e-6)
    assert loaded.metrics_ == {"test": {"NDCG@10": 0.5}}
    assert len(loaded.training_history_.epochs) == len(recommender.training_history_.epochs)
    assert loaded.config_ == recommender.config_


@pytest.mark.parametrize("name", [*FILES, "manifest.json"])
def test_a_missing_file_is_named(saved, tmp_path, name):
    directory = copy_of(saved[1], tmp_path)
    (directory / name).unlink()
    with pytest.raises(BundleError, match=name.replace(".", r"\.") + " is missing"):
        seqvae.load(directory)


def test_a_truncated_model_is_named(saved, tmp_path):
    directory = copy_of(saved[1], tmp_path)
    data = (directory / "model.keras").read_bytes()
    (directory / "model.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"model\.keras does not match the checksum"):
        seqvae.load(directory)
    rewrite_manifest(directory)  # even with a matching checksum, a broken zip is refused
    with pytest.raises(BundleError, match=r"model\.keras is not a Keras model file"):
        seqvae.load(directory)


def test_a_modified_vocabulary_is_named(saved, tmp_path):
    directory = copy_of(saved[1], tmp_path)
    vocab = json.loads((directory / "vocab.json").read_text())
    vocab["items"] = vocab["items"][:-1]
    (directory / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(BundleError, match=r"vocab\.json does not match the checksum"):
        seqvae.load(directory)
    rewrite_manifest(directory)
    with pytest.raises(BundleError, match=r"vocab\.json does not fit model\.keras"):
        seqvae.load(directory)


def test_a_lambda_layer_is_refused(saved, tmp_path):
    directory = copy_of(saved[1], tmp_path)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    (directory / "model.keras").unlink()
    model.save(directory / "model.keras")
    rewrite_manifest(directory)
    with pytest.raises(BundleError, match="Lambda layer"):
        seqvae.load(directory)


def test_an_unknown_layer_is_refused(saved, tmp_path):
    directory = copy_of(saved[1], tmp_path)

    @keras.saving.register_keras_serializable(package="somebody_else")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Doubler()(inputs))
    (directory / "model.keras").unlink()
    model.save(directory / "model.keras")
    keras.saving.get_custom_objects().pop("somebody_else>Doubler")
    rewrite_manifest(directory)
    with pytest.raises(BundleError, match="does not know"):
        seqvae.load(directory)


def test_save_never_overwrites_a_folder_that_is_not_a_model(saved, tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    with pytest.raises(BundleError, match="not a seqvae model directory"):
        save(saved[0], folder)
    assert (folder / "thesis.txt").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_model_directory_of_the_earlier_format_is_refused_with_what_to_do(saved, tmp_path):
    _, directory = saved
    old = copy_of(directory, tmp_path)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"format 1.*retrain"):
        seqvae.load(old)


def test_a_directory_saved_before_the_newer_settings_reports_how_it_was_built():
    from seqvae.bundle import saved_config
    from seqvae.training import ADDED_FIELDS, SeqVAEConfig

    # a config.json from before `lowpass` and `identity_head`: the attention alone, a Glorot head
    older = {k: v for k, v in SeqVAEConfig(lowpass=0.7).to_dict().items() if k not in ADDED_FIELDS}
    config = saved_config(older)
    assert (config.lowpass, config.lowpass_bins, config.identity_head) == (0.0, 3, False)
    assert config.label_smoothing == 0.0  # trained on the plain cross-entropy
    assert config.position_from == "start"  # positions counted from each window's start
    # what a directory does record wins
    assert saved_config(SeqVAEConfig(lowpass=0.7).to_dict()).lowpass == 0.7
