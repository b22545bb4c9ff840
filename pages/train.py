"""Train page: a few knobs, training in the background with live progress and loss curves, Stop,
and the model directory as a zip (download, or upload a saved one)."""

import datetime as dt
import logging

import streamlit as st

from seqvae.bundle import BundleError
from seqvae.errors import SeqVAEError
from seqvae.training import SeqVAEConfig
from seqvae.ui import charts, jobs, state
from seqvae.ui.modelfiles import from_zip, to_zip
from seqvae.ui.text import escape_markdown

logger = logging.getLogger("seqvae.ui")
# while a training is set up on the page's own thread (seconds on MovieLens 100K, most of it
# TensorFlow's first import): the page said nothing for 12 s after the click
PREPARING = ("Reading the log into sequences and loading TensorFlow (the first training on this "
             "server takes longest)…")


def knobs_ui() -> SeqVAEConfig | None:
    """The training settings; returns a validated config, or None after showing the problem."""
    defaults = SeqVAEConfig()
    a, b, c, d, e = st.columns(5)
    latent = a.select_slider("Latent size", [4, 8, 16, 32, 64], value=defaults.latent_dim,
                             key="knob_latent", help="Size of each user's representation μ.")
    epochs = b.number_input("Epochs (at most)", 1, 200, value=state.DASHBOARD_EPOCHS,
                            key="knob_epochs",
                            help="The default gives a first model in about a minute on the sample; "
                            "more epochs give a better one (the CLI trains up to "
                            f"{defaults.epochs}). Training stops earlier when validation "
                            "NDCG@10 stops improving, and keeps the best epoch.")
    max_len = c.select_slider("Sequence length", [10, 20, 30, 50, 100, 200],
                              value=defaults.max_len, key="knob_max_len",
                              help="How many recent events represent a user.")
    beta = d.select_slider("β cap (KL weight)", [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2],
                           value=defaults.beta_cap, key="knob_beta",
                           help="Higher pulls users toward the prior: smoother, less detailed.")
    encoder = e.selectbox("Encoder", ["attention", "gru", "lstm"], key="knob_encoder",
                          help="attention: causal self-attention (the default, strongest on the "
                          "benchmarks); gru / lstm: recurrent.")
    with st.expander("Advanced"):
        f, g, h, i, j = st.columns(5)
        hidden = f.select_slider("Hidden width", [32, 64, 128, 256], value=defaults.hidden_dim,
                                 key="knob_hidden",
                                 help="The recurrent state, or the attention blocks' "
                                 "feed-forward width.")
        batch = g.select_slider("Batch size", [0, 32, 64, 128, 256, 512],
                                value=defaults.batch_size, key="knob_batch",
                                format_func=lambda b: "auto" if b == 0 else str(b),
                                help="Windows per batch; auto: from the data (64 on the sample, "
                                "256 on large logs).")
        rate = h.select_slider("Learning rate", [0.001, 0.002, 0.004, 0.005, 0.01, 0.02],
                               value=defaults.learning_rate, key="knob_lr")
        patience = i.number_input("Patience (epochs)", 1, 50, value=defaults.patience,
                                  key="knob_patience",
                                  help="Stop after this many epochs without a better validation "
                                  f"NDCG@10 (the best epoch is kept). The default, "
                                  f"{defaults.patience}, is longer than a first run of "
                                  f"{state.DASHBOARD_EPOCHS} epochs: such a run goes to its end.")
        seed = j.number_input("Seed", 0, 2**31 - 1, value=defaults.seed, key="knob_seed")
        members = f.select_slider(
            "Networks averaged", [1, 2, 3, 4], value=defaults.members, key="knob_members",
            help="Train this many networks, each alone with its own seed, and rank items by "
            "the mean of their scores (log-softmax). On Amazon Beauty two raised validation "
            "NDCG@20 by 5% and test NDCG@20 by 6%; on MovieLens 100K test did not rise. They "
            "train side by side, as many at once as "
            "the machine has cores (two on 2 cores: about 1.3× the time of one). The latent "
            "map shows the first network's μ.")
        st.checkbox("Retrain on every event once tested", key="knob_refit",
                    help="Each user's last two events validate and test, so the tested model "
                    "never learns from them. With this, a fresh model is trained on every "
                    "event for the epochs early stopping chose and becomes the model in use. "
                    "It pays where users have few events: on Amazon Beauty (~9 a user) one more "
                    "event per user made the next item's NDCG@20 14% higher; on MovieLens 100K "
                    "(~100 a user) it made no measurable difference. Twice the time; the test "
                    "figures stay the held-out model's (the retrained one has no unseen event "
                    "left to be scored on).")
    try:
        return SeqVAEConfig(latent_dim=int(latent), epochs=int(epochs), max_len=int(max_len),
                            stride=max(1, int(max_len) // 2), beta_cap=float(beta),
                            encoder=str(encoder), hidden_dim=int(hidden), batch_size=int(batch),
                            learning_rate=float(rate), patience=int(patience), seed=int(seed),
                            members=int(members))
    except ValueError as exc:
        st.error(escape_markdown(str(exc)))
        return None


def start_ui(dataset: state.Dataset, config: SeqVAEConfig | None) -> None:
    job = st.session_state.get(state.JOB)
    busy = job is not None and job.active
    if st.button("Train", type="primary", disabled=busy or config is None, key="train_start"):
        try:
            with st.spinner(PREPARING):
                new = jobs.start_training(dataset.log, dataset.name, config,
                                          data_fingerprint=dataset.fingerprint,
                                          refit=bool(st.session_state.get("knob_refit")))
            if job is not None:
                job.discard()  # its checkpoint: only the latest job can be continued
            st.session_state[state.JOB] = new
        except SeqVAEError as exc:
            st.error(f"**Training cannot start:** {escape_markdown(exc)}", icon="⚠️")
            return
        st.rerun()


@st.fragment(run_every=5.0)
def live_ui() -> None:
    """Redrawn every five seconds while a job is active; still once it has finished."""
    job = st.session_state.get(state.JOB)
    if job is None:
        return
    snapshot = job.snapshot()
    if snapshot["state"] in ("queued", "running"):
        progress = snapshot["progress"]
        fraction = 0.0
        if progress is not None:
            fraction = jobs.epochs_done(progress) / max(progress.epochs, 1)
        st.progress(min(max(fraction, 0.0), 1.0), text=job.progress_text(snapshot))
        if st.button("Stop", key="train_stop",
                     help="Ends after the current batch and keeps the best weights so far."):
            job.cancel()
            st.toast("Stopping after the current batch…")
    else:
        if snapshot["state"] == "done":
            state.adopt_finished_training()
            took = job.took()
            st.success(f"Training finished{f' in {took}' if took else ''}: "
                       f"{escape_markdown(snapshot['message'])}.")
            test_metrics_ui(job)
            continue_ui(job)
        elif snapshot["state"] == "cancelled":
            state.adopt_finished_training()
            if job.recommender is None:
                st.warning(f"Training cancelled before it started "
                           f"({escape_markdown(snapshot['message'])}); no model was trained.")
            else:
                took = job.took()
                st.info(f"Training stopped{f' after {took}' if took else ''}: "
                        f"{escape_markdown(snapshot['message'])}.")
        elif snapshot["state"] == "failed":
            st.error(f"**Training failed:** {escape_markdown(snapshot['message'])}", icon="⚠️")
    if snapshot["epochs"]:
        # Redraws share the CPU with the training thread: the figures are rebuilt only when an
        # epoch was added (and see seqvae/ui/runtime.py for what each redraw used to cost).
        cached = st.session_state.get(state.CURVES)
        if cached is None or cached[0] != (id(job), len(snapshot["epochs"])):
            cached = ((id(job), len(snapshot["epochs"])),
                      charts.loss_curves(snapshot["epochs"]),
                      charts.validation_curves(snapshot["epochs"]))
            st.session_state[state.CURVES] = cached
        left, right = st.columns(2)
        left.plotly_chart(cached[1], width="stretch", key="loss_curves")
        right.plotly_chart(cached[2], width="stretch", key="validation_curves")
    if not job.active and st.session_state.get(state.JOB_WAS_ACTIVE):
        st.session_state[state.JOB_WAS_ACTIVE] = False
        st.rerun(scope="app")  # the sidebar shows the new model
    if job.active:
        st.session_state[state.JOB_WAS_ACTIVE] = True


def test_metrics_ui(job: jobs.TrainingJob) -> None:
    """The test metrics of the kept epoch: each user's last event, never used for choices."""
    if not job.test_metrics:
        return
    columns = st.columns(len(job.test_metrics))
    floor = job.popularity_metrics
    for column, (name, value) in zip(columns, job.test_metrics.items(), strict=True):
        column.metric(f"test {name}", f"{value:.4f}",
                      delta=f"{value - floor[name]:+.4f} vs most popular" if name in floor
                      else None)
    st.caption("Test: each user's last event, ranked among every item they had not seen, by the "
               "kept epoch's model; scored once, after training (the validation event chose the "
               "epoch). Against it: the most popular items, scored on the same test.")
    history = job.history
    if history is not None and history.ensemble_validation:
        name = f"NDCG@{job.config.eval_k}"
        alone = next((r.validation.get(name) for r in history.epochs
                      if r.epoch == history.best_epoch), None)
        st.caption(f"This model averages {len(history.members) + 1} networks: together they "
                   f"score validation {name} {history.ensemble_validation[name]:.4f}"
                   + (f", the first network alone {alone:.4f}" if alone is not None else "")
                   + ". The curves below are the first network's.")
    if job.refit_info is not None:
        st.caption(f"The model in use was then retrained on every event (all "
                   f"{job.refit_info['events']:,} of them, {job.refit_info['epochs']} epochs), "
                   "these test events included: it cannot be scored on them, so the figures "
                   "above are the held-out model's, the closest estimate of it there is.")
    below = [name for name, value in job.test_metrics.items()
             if name in floor and value < floor[name]]
    if below:
        st.warning(f"This model ranks the next item worse than the most popular items do "
                   f"({', '.join(below)}): its map and recommendations say little about taste "
                   "yet. Train for more epochs (Continue, or raise the epoch limit), or compare "
                   "on the Evaluate page.", icon="⚠️")


def continue_ui(job: jobs.TrainingJob) -> None:
    """When the last epoch was the best, offer more epochs from where the job ended."""
    if not job.can_continue:
        return
    st.info(f"The best epoch was the last one ({job.history.best_epoch}): validation was still "
            "improving, so more epochs would likely give a better model.")
    current = state.dataset()
    if current is None or current.fingerprint != job.data_fingerprint:
        st.caption(f"To continue, load {escape_markdown(job.dataset_name)} again (as it was "
                   "read for this training).")
        return
    left, right = st.columns([1, 3])
    # as many more as this job trained itself (at least 5): after 3 + 5 epochs, 5 again, not 8
    more = left.number_input("More epochs", 1, 200, value=max(job.own_epochs, 5),
                             key="continue_epochs")
    right.write("")
    if right.button("Continue training", key="train_continue",
                    help="Goes on from the last epoch's weights and optimiser state; early "
                    "stopping and the best epoch carry over."):
        from dataclasses import replace

        config = replace(job.config, epochs=len(job.history.epochs) + int(more))
        try:
            with st.spinner(PREPARING):
                st.session_state[state.JOB] = jobs.start_training(
                    current.log, current.name, config, data_fingerprint=current.fingerprint,
                    continue_from=job, refit=bool(st.session_state.get("knob_refit")))
        except SeqVAEError as exc:
            st.error(f"**Training cannot continue:** {escape_markdown(exc)}", icon="⚠️")
            return
        st.rerun(scope="app")


def model_files_ui() -> None:
    current = state.model()
    left, right = st.columns(2)
    with left:
        st.markdown("**Download the model**")
        if current is None:
            st.caption("Train a model (or upload one) first.")
        else:
            if st.button("Prepare the zip", key="zip_prepare"):
                with st.spinner("Packing the model directory…"):
                    st.session_state[state.MODEL_ZIP] = to_zip(current.recommender)
            if st.session_state.get(state.MODEL_ZIP):
                st.download_button("Download model.zip", st.session_state[state.MODEL_ZIP],
                                   file_name="seqvae-model.zip", mime="application/zip",
                                   key="zip_download")
    with right:
        upload = st.file_uploader("**Upload a saved model** (the zip from here, or a zipped "
                                  "model directory of `seqvae train`)", key="model_upload")
        if state.is_new_upload("model_upload", upload):
            try:
                with st.spinner("Loading the model and encoding its users…"):
                    recommender = from_zip(upload.getvalue(), upload.name)
                    if recommender.history_ is not None:
                        recommender.encode_history()  # once, here: the Latent page reads it
            except BundleError as exc:
                st.error(escape_markdown(exc), icon="⚠️")
            except Exception as exc:  # never a traceback in the browser
                logger.exception("model upload failed")
                st.error(escape_markdown(f"{upload.name} could not be loaded ({exc})"), icon="⚠️")
            else:
                best = (recommender.training_history_.best_validation
                        if recommender.training_history_ else {})
                state.set_model(state.ModelInUse(
                    recommender=recommender, name=upload.name,
                    origin=state.with_refit_note("uploaded", recommender),
                    created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    validation_ndcg=best.get("NDCG@10")))
                st.session_state.pop(state.MODEL_ZIP, None)
                st.rerun()


st.title("Train")
dataset = state.dataset()
if dataset is None:
    st.info("Load a log on the Data page first; then train a model on it here.")
else:
    st.caption(f"A sequential VAE on {escape_markdown(dataset.name)}: each user's last event is "
               "kept for testing, the one before it watches for overfitting (early stopping).")
    config = knobs_ui()
    start_ui(dataset, config)
    live_ui()
st.divider()
model_files_ui()
