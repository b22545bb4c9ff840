"""seqvae.model: the KL in closed form, shapes, causal and padding masks for every encoder, tied
item embeddings, the sampled softmax, the deterministic twin, serialisation of the custom layers."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from seqvae.model import (
    CausalAttentionBlock,
    GaussianLatent,
    ItemScorer,
    SeqVAE,
    TiedItemScorer,
    causal_padding_mask,
    gaussian_kl,
)


def test_kl_matches_the_closed_form():
    # μ = (1, 0), σ² = (1, 4):
    # KL = -½[(1 + 0 - 1 - 1) + (1 + log 4 - 0 - 4)] = -½(-4 + log 4) = 2 - log 2 ≈ 1.3069
    mean = np.array([[1.0, 0.0]], dtype="float32")
    log_var = np.log(np.array([[1.0, 4.0]], dtype="float32"))
    assert float(gaussian_kl(mean, log_var)[0]) == pytest.approx(2 - math.log(2), rel=1e-6)
    # the prior itself: KL = 0
    assert float(gaussian_kl(np.zeros((1, 3)), np.zeros((1, 3)))[0]) == pytest.approx(0.0)


def test_kl_agrees_with_monte_carlo():
    rng = np.random.default_rng(0)
    mean, log_var = np.array([0.5, -1.0]), np.array([-0.5, 0.3])
    sigma = np.exp(0.5 * log_var)
    z = mean + sigma * rng.standard_normal((200_000, 2))
    log_q = -0.5 * (((z - mean) / sigma) ** 2 + log_var + np.log(2 * np.pi)).sum(axis=1)
    log_p = -0.5 * (z**2 + np.log(2 * np.pi)).sum(axis=1)
    assert float(gaussian_kl(mean[None], log_var[None])[0]) == pytest.approx(
        (log_q - log_p).mean(), abs=0.01)


@pytest.fixture(scope="module", params=["attention", "gru", "lstm"])
def model(request):
    m = SeqVAE(n_items=12, n_events=4, n_gaps=6, embed_dim=8, hidden_dim=8, latent_dim=4,
               encoder=request.param, n_heads=2, max_len=8)
    m.build_for_inputs()
    return m


def inputs(items, events=None, gaps=None):
    items = np.asarray(items, dtype="int32")
    return {"items": items,
            "events": np.asarray(events if events is not None else (items > 0) * 2, "int32"),
            "gaps": np.asarray(gaps if gaps is not None else (items > 0) * 1, "int32")}


def test_shapes(model):
    out = model(inputs([[2, 3, 4, 0], [5, 0, 0, 0]]), training=False)
    assert tuple(out["mean"].shape) == (2, 4, 4) and tuple(out["log_var"].shape) == (2, 4, 4)
    assert tuple(out["logits"].shape) == (2, 4, 12)
    assert np.asarray(out["mask"]).tolist() == [[True, True, True, False],
                                                [True, False, False, False]]
    # padding and OOV never score
    assert (np.asarray(out["logits"])[..., :2] < -1e8).all()


def test_padding_never_changes_an_output(model):
    short = model.encode_steps(inputs([[2, 3, 4]]), training=False)[0]
    padded = model.encode_steps(inputs([[2, 3, 4, 0, 0, 0]]), training=False)[0]
    # rubbish in the event and gap ids of padded steps changes nothing either
    noisy = model.encode_steps(inputs([[2, 3, 4, 0, 0, 0]], events=[[2, 2, 2, 3, 1, 3]],
                                      gaps=[[1, 1, 1, 5, 4, 2]]), training=False)[0]
    np.testing.assert_allclose(np.asarray(short)[0], np.asarray(padded)[0, :3], atol=1e-6)
    np.testing.assert_allclose(np.asarray(padded), np.asarray(noisy), atol=1e-6)


def test_a_step_never_sees_the_future(model):
    # the same first three events, then different fourth events: steps 1-3 must not change
    a = np.asarray(model.encode_steps(inputs([[2, 3, 4, 5]]), training=False)[0])
    b = np.asarray(model.encode_steps(inputs([[2, 3, 4, 9]]), training=False)[0])
    np.testing.assert_allclose(a[0, :3], b[0, :3], atol=1e-6)
    assert not np.allclose(a[0, 3], b[0, 3])


def test_causal_padding_mask_worked_by_hand():
    # lengths 3 and 1 in a window of 3: query t sees keys s <= t that are real
    mask = np.asarray(causal_padding_mask(np.array([[True, True, True], [True, False, False]])))
    assert mask[0].astype(int).tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert mask[1].astype(int).tolist() == [[1, 0, 0], [1, 0, 0], [1, 0, 0]]


def test_scores_use_the_tied_input_embeddings(model):
    # the logits are the decoded latent · the item embedding table + a bias: no second table
    z = np.random.default_rng(0).standard_normal((3, 4)).astype("float32")
    decoded = np.asarray(model.decoder(z))
    table = np.asarray(model.item_embedding.embeddings)
    bias = np.asarray(model.scorer.item_bias)
    expected = decoded @ table.T + bias
    got = np.asarray(model.decode(z, training=False))
    np.testing.assert_allclose(got[:, 2:], expected[:, 2:], rtol=1e-5, atol=1e-5)
    assert not any("item_vectors" in w.path for w in model.weights)


def test_sampled_softmax_with_every_item_as_a_negative_is_the_full_softmax(model):
    # with each real item drawn once as a negative and log Q equal for all, the sampled loss
    # must equal the full cross-entropy over real items (the target counted once: its copy
    # among the negatives is an accidental hit and is left out)
    batch = {**inputs([[2, 3, 4, 5]]), "targets": np.array([[[3], [4], [5], [6]]], "int32")}
    full = model(batch, training=False)
    negatives = np.arange(2, 12, dtype="int32")
    sampled_batch = {**batch, "negatives": negatives,
                     "negative_log_q": np.zeros(10, "float32"),
                     "target_log_q": np.zeros((1, 4), "float32")}
    sampled = model(sampled_batch, training=False)
    assert "logits" not in sampled and tuple(sampled["decoded"].shape) == (1, 4, 8)
    _, full_nll, _ = model.loss_terms(batch, full)
    _, sampled_nll, _ = model.loss_terms(sampled_batch, sampled)
    assert float(sampled_nll) == pytest.approx(float(full_nll), rel=1e-5)


def test_the_twin_never_samples_and_adds_no_kl():
    twin = SeqVAE(n_items=12, n_events=4, n_gaps=6, embed_dim=8, hidden_dim=8, latent_dim=4,
                  dropout=0.0, variational=False, max_len=8)
    twin.build_for_inputs()
    twin.beta.assign(1.0)
    batch = {**inputs([[2, 3, 4]]), "targets": np.array([[[3], [4], [5]]], "int32")}
    a = np.asarray(twin(batch, training=True)["step_logits"])  # the 3 real steps
    b = np.asarray(twin(batch, training=False)["logits"])[0]
    np.testing.assert_allclose(a, b, atol=1e-6)  # z = μ in training too
    total, reconstruction, kl = twin.loss_terms(batch, twin(batch, training=True))
    assert float(kl) > 0 and float(total) == pytest.approx(float(reconstruction))


def test_inference_uses_the_mean_and_training_samples(model):
    batch = inputs([[2, 3, 4]])
    mean, _, z, _ = model.encode_steps(batch, training=False)
    np.testing.assert_array_equal(np.asarray(mean), np.asarray(z))
    _, _, z_train = model.latent(np.ones((1, 3, 8), "float32"), training=True)
    mean_train, _, _ = model.latent(np.ones((1, 3, 8), "float32"), training=False)
    assert not np.allclose(np.asarray(z_train), np.asarray(mean_train))


def test_layers_round_trip_through_their_config():
    latent = GaussianLatent(4, seed=3)
    assert GaussianLatent.from_config(latent.get_config()).latent_dim == 4
    scorer = ItemScorer(10, 6)
    assert ItemScorer.from_config(scorer.get_config()).n_items == 10
    assert TiedItemScorer.from_config(TiedItemScorer(10).get_config()).n_items == 10
    block = CausalAttentionBlock(8, 2, 16, 0.1, seed=4)
    assert CausalAttentionBlock.from_config(block.get_config()).get_config() == block.get_config()
    assert keras.saving.get_registered_name(SeqVAE) == "seqvae>SeqVAE"


def test_encoder_is_checked():
    with pytest.raises(ValueError, match="`encoder`"):
        SeqVAE(n_items=5, n_events=3, n_gaps=4, encoder="transformer")
    with pytest.raises(ValueError, match="`n_heads`"):
        SeqVAE(n_items=5, n_events=3, n_gaps=4, embed_dim=8, n_heads=3)


@pytest.mark.parametrize("variational", [True, False])
def test_training_scores_only_real_steps_and_loses_nothing(variational):
    # in training the softmax runs at the steps that have a target only; without dropout and
    # with the same noise, the loss is the one taken over the full (B, L, V) logits
    net = SeqVAE(n_items=12, n_events=4, n_gaps=6, embed_dim=8, hidden_dim=8, latent_dim=4,
                 dropout=0.0, variational=variational, max_len=8)
    net.build_for_inputs()
    net.beta.assign(0.5)
    batch = {**inputs([[2, 3, 4, 5], [6, 7, 0, 0]]),
             "targets": np.array([[[3], [4], [5], [0]], [[7], [8], [0], [0]]], "int32"),
             "noise": np.random.default_rng(1).standard_normal((2, 4, 4)).astype("float32")}
    trained = net(batch, training=True)
    assert "logits" not in trained and tuple(trained["step_logits"].shape) == (5, 12)
    assert np.asarray(trained["step_targets"]).tolist() == [3, 4, 5, 7, 8]
    # the same computation with every step scored: the full logits, masked in the loss
    mean, log_var, z, mask = net.encode_steps(batch, training=True)
    full = {"mean": mean, "log_var": log_var, "mask": mask, "logits": net.decode(z)}
    for got, want in zip(net.loss_terms(batch, trained), net.loss_terms(batch, full), strict=True):
        assert float(got) == pytest.approx(float(want), rel=1e-5)
