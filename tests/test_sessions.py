"""A session's data, model and jobs survive a reload of the tab (the token in the URL), the store
stops work nobody can reach any more and stays bounded; the pages say when the model in use
belongs to other data, and a cancelled job is shown as cancelled."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from seqvae.training import SeqVAEConfig
from seqvae.ui import jobs, sessions, state
from seqvae.ui.sessions import SessionStore
from tests.conftest import texts


class FakeJob:
    def __init__(self, active: bool = True) -> None:
        self.active = active
        self.reason: str | None = None

    def cancel(self, reason: str = "stopped by you") -> None:
        self.reason = reason
        self.active = False


def test_a_saved_session_opens_again_and_unknown_tokens_do_not():
    store = SessionStore()
    store.save("t1", {state.COHORTS: {"a": ["u1"]}}, "streamlit-1")
    assert store.open("t1", "streamlit-2") == {state.COHORTS: {"a": ["u1"]}}
    assert store.open("nope", "streamlit-3") is None
    assert len(store.new_token()) >= 20 and store.new_token() != store.new_token()


def test_idle_sessions_expire_and_their_jobs_stop():
    store = SessionStore(idle_expiry_s=100, orphan_grace_s=10)
    job = FakeJob()
    store.save("old", {state.JOB: job}, "s1")
    store.save("new", {}, "s2")
    now = time.monotonic()
    assert store.sweep(now=now + 50) == []
    assert store.sweep(now=now + 101) == ["old", "new"]
    assert job.reason == "its session expired" and len(store) == 0


def test_a_job_whose_tabs_are_all_closed_stops_after_the_grace_period():
    store = SessionStore(idle_expiry_s=10_000, orphan_grace_s=60)
    orphan, watched = FakeJob(), FakeJob()
    store.save("closed", {state.JOB: orphan}, "s1")
    store.save("open", {state.EVALUATION: watched}, "s2")
    connected = {"s2"}.__contains__
    now = time.monotonic()
    store.sweep(connected, now=now)  # "closed" is seen disconnected from now on
    store.sweep(connected, now=now + 30)
    assert orphan.active and watched.active  # still within the grace period (a reload)
    store.sweep(connected, now=now + 61)
    assert orphan.reason == "its browser tab was closed" and watched.active
    assert "closed" in store  # its data stay until expiry: the URL still opens them


def test_a_reconnected_tab_resets_the_grace_period():
    store = SessionStore(idle_expiry_s=10_000, orphan_grace_s=60)
    job = FakeJob()
    store.save("t", {state.JOB: job}, "s1")
    now = time.monotonic()
    store.sweep(lambda sid: False, now=now)
    store.open("t", "s2")  # the tab reloaded: a new Streamlit session under the same token
    store.sweep(lambda sid: sid == "s2", now=now + 61)
    store.sweep(lambda sid: sid == "s2", now=now + 200)
    assert job.active


def test_the_store_keeps_at_most_max_sessions_dropping_the_least_recent():
    store = SessionStore(max_sessions=2)
    jobs_ = {}
    for token in ("a", "b", "c"):
        jobs_[token] = FakeJob()
        store.save(token, {state.JOB: jobs_[token]}, token)
        time.sleep(0.001)
    assert store.sweep() == ["a"]
    assert "a" not in store and "b" in store and "c" in store
    assert jobs_["a"].reason == "its session expired" and jobs_["c"].active


def load_sample(at):
    at.run()
    at.button(key="load_sample").click().run()
    assert not at.exception, at.exception
    return at


def test_a_reload_finds_the_data_again(app):
    from streamlit.testing.v1 import AppTest

    at = load_sample(app)
    token = at.session_state[sessions.TOKEN]
    assert at.query_params[sessions.PARAM] == token
    loaded = at.session_state[state.DATASET]
    # a reload: a new browser session that opens the same URL
    again = AppTest.from_file(app._script_path, default_timeout=60)
    again.query_params[sessions.PARAM] = token
    again.run()
    assert not again.exception, again.exception
    assert again.session_state[state.DATASET] is loaded
    assert any("2,000 users" in t for t in texts(again.sidebar.success))
    # a stranger without the token gets an empty session of their own
    other = AppTest.from_file(app._script_path, default_timeout=60).run()
    assert other.session_state[sessions.TOKEN] != token
    assert state.DATASET not in other.session_state


def test_a_link_to_an_expired_session_says_so(app):
    app.query_params[sessions.PARAM] = "expired-or-made-up"
    app.run()
    assert not app.exception
    assert any("has expired" in t for t in texts(app.sidebar.warning))
    assert app.session_state[sessions.TOKEN] != "expired-or-made-up"


@pytest.fixture
def sample_dataset():
    from seqvae.ui.loading import load_sample as read_sample

    return read_sample()


def test_a_training_survives_a_reload_and_can_be_stopped_from_the_new_tab(app, sample_dataset):
    from streamlit.testing.v1 import AppTest

    at = app
    at.session_state[state.DATASET] = sample_dataset
    at.run()
    at.switch_page("pages/train.py").run()
    at.number_input(key="knob_epochs").set_value(50)
    at.button(key="train_start").click().run()
    job = at.session_state[state.JOB]
    assert job.active
    token = at.session_state[sessions.TOKEN]
    try:
        again = AppTest.from_file(app._script_path, default_timeout=60)
        again.query_params[sessions.PARAM] = token
        again.run()
        again.switch_page("pages/train.py").run()
        assert again.session_state[state.JOB] is job
        assert again.number_input(key="knob_epochs").value == 50  # the settings came back
        assert not again.warning, texts(again.warning)
        assert any("Model:** training" in t for t in texts(again.sidebar.info)), texts(again.sidebar.info)
        again.button(key="train_stop").click().run()
        deadline = time.monotonic() + 120
        while job.active and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not job.active and job.state == "cancelled"
        again.run()
        shown = texts(again.info) + texts(again.warning)
        assert any("stopped by you" in t for t in shown), shown
        assert not any("Training finished" in t for t in texts(again.success))
    finally:
        job.cancel()


def test_a_job_cancelled_before_it_started_is_not_shown_as_finished(app, sample_dataset):
    job = jobs.TrainingJob(dataset_name=sample_dataset.name, config=SeqVAEConfig(),
                           state="cancelled",
                           message="stopped by you while waiting for a free slot")
    app.session_state[state.DATASET] = sample_dataset
    app.session_state[state.JOB] = job
    app.run()
    app.switch_page("pages/train.py").run()
    assert not app.exception
    assert any("cancelled before it started" in t for t in texts(app.warning))
    assert not any("Training finished" in t for t in texts(app.success))


def test_a_model_of_other_data_is_named_on_every_page(app, sample_dataset):
    from seqvae.ui.state import ModelInUse

    class Recommender:  # only what the sidebar reads
        class config_:
            latent_dim = 8

        class item_vocab_:
            size = 12

        class history_:
            n_users = 10

    model = ModelInUse(recommender=Recommender, name="SeqVAE on other.csv",
                       origin="trained in this session",
                       created=dt.datetime.now(dt.UTC).isoformat(), validation_ndcg=None,
                       data_name="other.csv", data_fingerprint="not-this-data")
    app.session_state[state.DATASET] = sample_dataset
    app.session_state[state.MODEL] = model
    app.run()
    assert not app.exception, app.exception
    sidebar = texts(app.sidebar.warning) + texts(app.sidebar.caption)
    sidebar = [t.replace("\\", "") for t in sidebar]  # markdown escapes
    assert any("other.csv" in t and "not on the data loaded now" in t for t in sidebar), sidebar
    assert any("Next:" in t and "train a model on sample: events.csv" in t for t in sidebar)
