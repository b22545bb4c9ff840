"""seqvae.model: the KL in closed form, shapes, causal and padding masks for every encoder, tied
item embeddings, the sampled softmax, the deterministic twin, serialisation of the custom layers."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from seqvae.batches import pack_windows
from seqvae.model import (
    CausalAttentionBlock,
    GaussianLatent,
    ItemScorer,
    LowPassMixing,
    SeqVAE,
    TiedItemScorer,
    causal_padding_mask,
    causal_segment_mask,
    gaussian_kl,
    lowpass_kernel,
    within_remaining,
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


@pytest.fixture(scope="module", params=["attention", "gru", "lstm", "attention+lowpass"])
def model(request):
    # "attention+lowpass": BSARec's causal low-pass branch beside attention, post-norm as there
    lowpass = request.param.endswith("+lowpass")
    m = SeqVAE(n_items=12, n_events=4, n_gaps=6, embed_dim=8, hidden_dim=8, latent_dim=4,
               encoder=request.param.split("+")[0], n_heads=2, max_len=8,
               lowpass=0.7 if lowpass else 0.0, block_norm="post" if lowpass else "pre")
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


def test_label_smoothing_is_the_smoothed_cross_entropy_over_real_items():
    # ε of each target's mass spread evenly over the real items (ids 2…11, never padding or
    # the unknown item): the training path's cheap form (the mean logit taken as the mean
    # item's score) must equal the definition, from the full logits, in NumPy; so must the
    # path that scores every cell, with one target a step and with two (smoothed once a step)
    eps = 0.2
    twin = SeqVAE(n_items=12, n_events=4, n_gaps=6, embed_dim=8, hidden_dim=8, latent_dim=4,
                  dropout=0.0, variational=False, max_len=8, label_smoothing=eps, seed=3)
    twin.build_for_inputs()
    twin.scorer.item_bias.assign(np.linspace(-1.0, 1.0, 12).astype("float32"))
    batch = {**inputs([[2, 3, 4, 0]]), "targets": np.array([[[3], [4], [5], [0]]], "int32")}
    logits = np.asarray(twin(batch, training=False)["logits"], dtype="float64")[0, :3, 2:]
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    targets = np.array([3, 4, 5]) - 2
    expected = np.mean((1 - eps) * -log_p[np.arange(3), targets] + eps * -log_p.mean(axis=-1))
    _, smoothed, _ = twin.loss_terms(batch, twin(batch, training=True))
    assert float(smoothed) == pytest.approx(expected, rel=1e-5)
    _, every_cell, _ = twin.loss_terms(batch, twin(batch, training=False))
    assert float(every_cell) == pytest.approx(expected, rel=1e-5)
    plain = np.mean(-log_p[np.arange(3), targets])
    assert abs(expected - plain) > 0.01  # ε changes the loss: the check above can fail
    two = {**batch, "targets": np.array([[[3, 5], [4, 0], [5, 6], [0, 0]]], "int32")}
    per_step = [[3, 5], [4], [5, 6]]
    expected_two = np.mean([(1 - eps) * np.mean([-log_p[t, i - 2] for i in per_step[t]])
                            + eps * -log_p[t].mean() for t in range(3)])
    _, smoothed_two, _ = twin.loss_terms(two, twin(two, training=True))
    assert float(smoothed_two) == pytest.approx(expected_two, rel=1e-5)
    _, every_cell_two, _ = twin.loss_terms(two, twin(two, training=False))
    assert float(every_cell_two) == pytest.approx(expected_two, rel=1e-5)
    # the sampled softmax with every real item drawn once and equal Q is the full softmax, so
    # with smoothing too (the smoothing term takes the logits before the log-Q correction)
    sampled_batch = {**batch, "negatives": np.arange(2, 12, dtype="int32"),
                     "negative_log_q": np.full(10, -1.5, "float32"),
                     "target_log_q": np.full((1, 4), -1.5, "float32")}
    _, sampled, _ = twin.loss_terms(sampled_batch, twin(sampled_batch, training=True))
    assert float(sampled) == pytest.approx(expected, rel=1e-5)
    assert SeqVAE.from_config(twin.get_config()).label_smoothing == eps


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
    mixed = CausalAttentionBlock(8, 2, 16, 0.1, seed=4, lowpass=0.7, lowpass_bins=2, max_len=9)
    assert CausalAttentionBlock.from_config(mixed.get_config()).get_config() == mixed.get_config()
    mixing = LowPassMixing(8, 9, 2, seed=1)
    assert LowPassMixing.from_config(mixing.get_config()).get_config() == mixing.get_config()
    assert keras.saving.get_registered_name(SeqVAE) == "seqvae>SeqVAE"


def test_encoder_is_checked():
    with pytest.raises(ValueError, match="`encoder`"):
        SeqVAE(n_items=5, n_events=3, n_gaps=4, encoder="transformer")
    with pytest.raises(ValueError, match="`n_heads`"):
        SeqVAE(n_items=5, n_events=3, n_gaps=4, embed_dim=8, n_heads=3)


@pytest.mark.parametrize(("variational", "next_k", "smoothing"),
                         [(True, 1, 0.0), (False, 1, 0.0), (True, 2, 0.0), (True, 2, 0.1),
                          (False, 2, 0.1)])
def test_training_scores_only_real_steps_and_loses_nothing(variational, next_k, smoothing):
    # in training the softmax runs at the steps that have a target only; without dropout and
    # with the same noise, the loss is the one taken over the full (B, L, V) logits, with one
    # target a step and with the next two (the second missing where the user's events end)
    net = SeqVAE(n_items=12, n_events=4, n_gaps=6, embed_dim=8, hidden_dim=8, latent_dim=4,
                 dropout=0.0, variational=variational, max_len=8, label_smoothing=smoothing)
    net.build_for_inputs()
    net.beta.assign(0.5)
    targets = np.array([[[3, 4], [4, 5], [5, 9], [0, 0]], [[7, 8], [8, 0], [0, 0], [0, 0]]],
                       "int32")[..., :next_k]
    batch = {**inputs([[2, 3, 4, 5], [6, 7, 0, 0]]), "targets": targets,
             "noise": np.random.default_rng(1).standard_normal((2, 4, 4)).astype("float32")}
    trained = net(batch, training=True)
    assert "logits" not in trained and tuple(trained["step_logits"].shape) == (5, 12)
    # the first target of each real step; the later ones enter through the correction
    assert np.asarray(trained["step_targets"]).tolist() == [3, 4, 5, 7, 8]
    assert ("step_correction" in trained) == (next_k > 1 or smoothing > 0)
    # the same computation with every step scored: the full logits, masked in the loss
    mean, log_var, z, mask = net.encode_steps(batch, training=True)
    full = {"mean": mean, "log_var": log_var, "mask": mask, "logits": net.decode(z)}
    for got, want in zip(net.loss_terms(batch, trained), net.loss_terms(batch, full), strict=True):
        assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_causal_segment_mask_worked_by_hand():
    # one row holding window 1 (cells 0-1), window 2 (cells 2-4) and a padding cell
    mask = np.asarray(causal_segment_mask(np.array([[1, 1, 2, 2, 2, 0]], "int32")))[0]
    assert mask.astype(int).tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],  # window 2's first event sees itself only, not window 1
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # padding sees padding: no row is empty
    ]


def test_the_lowpass_branch_gives_each_step_what_bsarec_reads_at_the_last_position():
    # BSARec (AAAI 2024) left-pads a sequence to max_len, keeps the lowest `bins` frequencies of
    # its real FFT ("ortho" both ways) and reads the last position; `LowPassMixing` must give
    # every step t of a right-padded window what that gives for the events up to t
    max_len, bins, dim = 8, 3, 4
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 5, dim)).astype("float32")  # 5 events, no padding
    layer = LowPassMixing(dim, max_len, bins, seed=2)
    layer.build((1, 5, dim))
    beta2 = np.asarray(layer.sqrt_beta) ** 2
    allowed = causal_padding_mask(np.ones((1, 5), bool))
    got = np.asarray(layer(x, allowed))[0]
    for t in range(5):
        padded = np.zeros((max_len, dim))
        padded[max_len - t - 1:] = x[0, :t + 1]  # left-padded prefix of t + 1 events
        spectrum = np.fft.rfft(padded, axis=0, norm="ortho")
        spectrum[bins:] = 0
        low = np.fft.irfft(spectrum, n=max_len, axis=0, norm="ortho")[-1]
        np.testing.assert_allclose(got[t], low + beta2 * (x[0, t] - low), atol=1e-5)
    # the kernel's first weight, worked by hand: (1 + 2 cos 0 + 2 cos 0) / 8 = 5 / 8
    assert lowpass_kernel(max_len, bins)[0] == pytest.approx(5 / 8)

    # learned: the same filter at the start, its weights by lag trainable and kept in the config
    learned = LowPassMixing.from_config({**layer.get_config(), "learned": True})
    learned.build((1, 5, dim))
    learned.sqrt_beta.assign(layer.sqrt_beta)
    np.testing.assert_allclose(np.asarray(learned(x, allowed))[0], got, atol=1e-6)
    assert {w.path.split("/")[-1] for w in learned.trainable_weights} == {"sqrt_beta",
                                                                          "lag_weights"}
    import tensorflow as tf

    with tf.GradientTape() as tape:
        out = tf.reduce_sum(learned(x, allowed))
    gradient = tape.gradient(out, learned.lag_weights.value)
    # lags 0..4 occur in a window of 5 events, the longer ones do not
    assert (np.abs(np.asarray(gradient)[:5]) > 0).all()
    assert not np.asarray(gradient)[5:].any()


@pytest.mark.parametrize("variational, lowpass, position_from, remaining",
                         [(True, 0.0, "start", False), (False, 0.0, "start", False),
                          (True, 0.7, "start", False), (True, 0.7, "end", False),
                          (True, 0.7, "end", True)])
def test_packed_windows_give_what_each_window_gives_on_its_own_row(variational, lowpass,
                                                                  position_from, remaining):
    # five windows of 4, 1, 3, 2 and 2 events, right-padded to 6; packed into rows of 6
    net = SeqVAE(n_items=20, n_events=4, n_gaps=6, embed_dim=8, hidden_dim=8, latent_dim=4,
                 dropout=0.0, variational=variational, n_heads=2, max_len=6, lowpass=lowpass,
                 position_from=position_from)
    net.build_for_inputs()
    net.beta.assign(0.5)
    items = np.array([[2, 3, 4, 5, 0, 0], [6, 0, 0, 0, 0, 0], [7, 8, 9, 0, 0, 0],
                      [10, 11, 0, 0, 0, 0], [12, 13, 0, 0, 0, 0]], "int32")
    targets = np.where(items > 0, items + 1, 0)[..., None].astype("int32")
    targets[:, :, 0][items == 0] = 0
    batch = {**inputs(items, events=(items > 0) * (2 + items % 2), gaps=(items > 0) * 3),
             "targets": targets}
    if remaining:  # given, not counted from each window's end: pack_windows carries them along
        after = (items > 0)[:, ::-1].cumsum(1)[:, ::-1] - 1 + np.array([[0], [1], [0], [2], [1]])
        batch["remaining"] = np.where(items > 0, after, 0).astype("int32")
    packed = pack_windows(batch, 6)
    # 12 events in 2 full rows instead of 5 rows of 6 cells
    assert packed["items"].shape == (2, 6) and (packed["items"] != 0).all()
    rng = np.random.default_rng(3)
    packed["noise"] = rng.standard_normal((2, 6, 4)).astype("float32")
    # the same noise, cell for cell, back in the unpacked layout
    noise = np.zeros((5, 6, 4), "float32")
    for row, cell in zip(*np.nonzero(packed["items"]), strict=True):
        window = int(np.flatnonzero((items == packed["items"][row, cell]).any(axis=1))[0])
        noise[window, packed["positions"][row, cell]] = packed["noise"][row, cell]
    batch["noise"] = noise
    mean_packed = np.asarray(net.encode_steps(packed, training=True)[0])
    mean_rows = np.asarray(net.encode_steps(batch, training=True)[0])
    for row, cell in zip(*np.nonzero(packed["items"]), strict=True):
        window = int(np.flatnonzero((items == packed["items"][row, cell]).any(axis=1))[0])
        np.testing.assert_allclose(mean_packed[row, cell],
                                   mean_rows[window, packed["positions"][row, cell]], atol=1e-5)
    got = net.loss_terms(packed, net(packed, training=True))
    want = net.loss_terms(batch, net(batch, training=True))
    for a, b in zip(got, want, strict=True):
        assert float(a) == pytest.approx(float(b), rel=1e-5)


def test_positions_from_the_end_align_a_recommendation_with_the_latest_training_event():
    net = SeqVAE(n_items=20, n_events=4, n_gaps=6, embed_dim=8, hidden_dim=8, latent_dim=4,
                 dropout=0.0, max_len=6, lowpass=0.7, lowpass_learned=True,
                 position_from="end", seed=2)
    net.build_for_inputs()

    def mean(items, **extra):
        return np.asarray(net.encode_steps({**inputs(items), **extra}, training=False)[0])

    # a history's last step is position 0 (no event follows the next one), the step before 1…
    short = mean([[2, 3, 4]])
    np.testing.assert_allclose(short, mean([[2, 3, 4]], remaining=np.array([[2, 1, 0]])),
                               atol=1e-6)
    # padding changes nothing, and a packed window counts from its own end
    np.testing.assert_allclose(short[0], mean([[2, 3, 4, 0, 0]])[0, :3], atol=1e-6)
    packed = mean([[7, 8, 2, 3, 4, 0]], segments=np.array([[1, 1, 2, 2, 2, 0]]),
                  positions=np.array([[0, 1, 0, 1, 2, 0]]))
    np.testing.assert_allclose(short[0], packed[0, 2:5], atol=1e-6)
    # a training window of the same events and one more: the step that predicted the latest
    # event (the 4th) is the step a recommendation reads after the 3rd, position for position
    window = [[2, 3, 4, 5]]
    trained = mean(window, remaining=np.asarray(within_remaining(np.array(window, "int32"))))
    assert np.asarray(within_remaining(np.array(window, "int32"))).tolist() == [[2, 1, 0, 0]]
    np.testing.assert_allclose(short[0], trained[0, :3], atol=1e-6)
    # where a step sits does change it: the same events counted from the start differ
    assert not np.allclose(short, mean([[2, 3, 4]], remaining=np.array([[0, 1, 2]])))
    with pytest.raises(ValueError, match="`position_from`"):
        SeqVAE(n_items=20, n_events=4, n_gaps=6, position_from="middle")
    assert SeqVAE.from_config(net.get_config()).position_from == "end"
    # a model saved before the option (no `position_from` in its config) counted from the start
    older = net.get_config()
    del older["position_from"]
    older = SeqVAE.from_config(older)
    older.build_for_inputs()
    assert older.position_from == "start"
    assert any("/position_embedding/" in w.path for w in older.weights)
    assert not any("recency_embedding" in w.path for w in older.weights)


def test_an_identity_head_starts_as_the_plain_sasrec_score():
    # with identity_head, μ = h and u = μ at the start: the logits are LN(h) · E + b exactly
    net = SeqVAE(n_items=12, n_events=4, n_gaps=6, embed_dim=8, hidden_dim=8, latent_dim=8,
                 identity_head=True)
    net.build_for_inputs()
    batch = inputs([[2, 3, 4, 0]])
    hidden, _ = net.encode_hidden(batch, training=False)
    mean = np.asarray(net.encode_steps(batch, training=False)[0])
    np.testing.assert_allclose(mean, np.asarray(hidden), atol=1e-6)
    logits = np.asarray(net(batch, training=False)["logits"])[0, :3, 2:]
    table = np.asarray(net.item_embedding.embeddings)[2:]
    np.testing.assert_allclose(logits, np.asarray(hidden)[0, :3] @ table.T, atol=1e-5)
