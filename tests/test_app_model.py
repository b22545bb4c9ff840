"""The Train and User pages through AppTest: train a tiny model in the session, open a user, read
recommendations; every error path is a message, never an exception."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
import zipfile

import numpy as np
import pytest

from seqvae.sample import generate
from seqvae.ui import state
from seqvae.ui.text import duration
from tests.conftest import texts


@pytest.fixture(scope="module")
def small_log() -> bytes:
    return generate(n_users=80, n_items=40, seed=3).events.to_csv(index=False).encode()


def frame_with(at, column: str):
    """The DataFrame on the page that has `column`."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def upload(at, name: str, data: bytes):
    at.file_uploader(key="log_upload").upload(name, data, "text/csv")
    return at.run()


def open_tab(at, name: str):
    """Open one of the User page's tabs, as a click on it does (only the open tab runs)."""
    at.session_state["user_tab"] = name
    return at.run()


def wait_for_training(at, seconds: float = 240.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        at.run()
        if any("Training finished" in t for t in texts(at.success)) or at.error:
            return at
        time.sleep(1.0)
    raise AssertionError("training did not finish in time")


def train_tiny(at):
    at.switch_page("pages/train.py").run()
    at.number_input(key="knob_epochs").set_value(2)
    at.select_slider(key="knob_latent").set_value(8)
    at.select_slider(key="knob_max_len").set_value(20)
    at.select_slider(key="knob_hidden").set_value(32)
    at.button(key="train_start").click().run()
    return wait_for_training(at)


def test_train_page_without_data_says_what_to_do(app):
    at = app.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception
    assert any("Load a log on the Data page first" in t for t in texts(at.info))


def test_train_then_open_a_user(app, small_log):
    """The whole flow, with two networks averaged (the single network is the other tests')."""
    at = upload(app.run(), "shop.csv", small_log)
    at.switch_page("pages/train.py").run()
    at.select_slider(key="knob_members").set_value(2)
    at = train_tiny(at)
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    model = at.session_state[state.MODEL].recommender
    assert model.config_.members == 2 and len(model.networks()) == 2
    assert any("Model:" in t and "trained in this session" in t for t in texts(at.sidebar.success))
    assert not any("none yet" in t for t in texts(at.sidebar.info))  # one model box, not two
    # the loss curves and the validation curves are drawn
    assert len(at.get("plotly_chart")) >= 2
    # how long it took, from its slot to its end
    job = at.session_state[state.JOB]
    took = duration(job.finished - job.started)
    assert any(t.startswith(f"Training finished in {took}: best epoch ")
               for t in texts(at.success)), texts(at.success)
    # the test metrics, each against the most popular items on the same test
    shown = {m.label: m for m in at.metric}
    for name, value in job.test_metrics.items():
        assert shown[f"test {name}"].value == f"{value:.4f}"
        delta = value - job.popularity_metrics[name]
        assert shown[f"test {name}"].delta == f"{delta:+.4f} vs most popular"
    below = any(v < job.popularity_metrics[k] for k, v in job.test_metrics.items())
    assert below == any("worse than the most popular" in w for w in texts(at.warning))
    # the validation a user reads is the two networks' together (the sidebar's too); the curves
    # say the first network's alone
    together = model.training_history_.ensemble_validation["NDCG@10"]
    alone = next(r.validation["NDCG@10"] for r in model.training_history_.epochs
                 if r.epoch == model.training_history_.best_epoch)
    assert any(f"This model averages 2 networks: together they score validation NDCG@10 "
               f"{together:.4f}, the first network alone {alone:.4f}" in t
               for t in texts(at.caption))
    assert any(f"validation NDCG@10 {together:.3f}" in t for t in texts(at.sidebar.success))

    at.switch_page("pages/user.py").run()
    assert not at.exception
    at.text_input(key="user_query").set_value("U0000").run()
    user = at.selectbox(key="user_pick").value
    assert user.startswith("U0000")
    recommendations = frame_with(at, "because of")
    assert len(recommendations) == 10
    assert list(recommendations["rank"]) == list(range(1, 11))
    # the reconstruction says which steps its hit share counts: the most recent window's
    assert not any("what came next" in d.value.columns for d in at.dataframe)  # tab not open
    open_tab(at, "Reconstruction")
    steps = frame_with(at, "what came next")
    hits = int((steps["its rank"] <= 10).sum())
    caption = next(t for t in texts(at.caption) if "steps below" in t)
    assert caption.startswith(f"For {hits} of the {len(steps)} steps below "
                              f"({hits / len(steps):.0%}), what came next")
    assert f"most recent {len(steps) + 1} events" in caption
    # and that the model trained on these steps: a fit, not a forecast
    assert "It trained on them" in caption and "not a forecast" in caption
    # "what if": adding items changes the list without retraining; the pickers offer no
    # "select all matches" (Enter after typing a title would take every match)
    open_tab(at, "What if")
    assert all(at.multiselect(key=f"whatif_{kind}:{user}").proto.select_all == 0
               for kind in ("add", "remove"))
    at.multiselect(key=f"whatif_add:{user}").set_value(["P0001", "P0002"]).run()
    assert not at.exception
    assert len(frame_with(at, "change")) == 10
    # the model directory a user downloads holds both networks
    at.switch_page("pages/train.py").run()
    at.button(key="zip_prepare").click().run()
    with zipfile.ZipFile(io.BytesIO(at.session_state[state.MODEL_ZIP])) as archive:
        assert {"model.keras", "member-2.keras"} <= set(archive.namelist())
        assert json.loads(archive.read("config.json"))["model"]["members"] == 2
    # the map says whose μ it draws
    at.switch_page("pages/latent.py").run()
    assert not at.exception
    assert any("the first network's: this model ranks items by the mean of 2 networks' "
               "scores" in t for t in texts(at.caption))
    # and the Evaluate page trains its SeqVAE and twin alike
    at.switch_page("pages/evaluate.py").run()
    assert any("settings (at most 2 epochs, 2 networks averaged)" in t
               for t in texts(at.caption))


def test_training_with_the_refit_puts_the_retrained_model_in_use(app, small_log):
    at = upload(app.run(), "shop.csv", small_log)
    at.switch_page("pages/train.py").run()
    at.checkbox(key="knob_refit").check()
    at = train_tiny(at)
    assert not at.exception, at.exception
    assert not at.error, texts(at.error)
    job = at.session_state[state.JOB]
    assert job.refit and job.refit_info is not None
    assert any("then retrained on all" in t for t in texts(at.success))
    caption = next(t for t in texts(at.caption) if "retrained on every event" in t)
    assert f"{job.refit_info['epochs']} epochs" in caption and "held-out model's" in caption
    assert at.session_state[state.MODEL].recommender is job.recommender
    assert any("validation before retraining on every event" in t
               for t in texts(at.sidebar.success))
    assert not any(b.key == "train_continue" for b in at.button)
    assert {m.label for m in at.metric} == {f"test {name}" for name in job.test_metrics}
    # the downloaded model directory records its test figures and the refit
    at.button(key="zip_prepare").click().run()
    with zipfile.ZipFile(io.BytesIO(at.session_state[state.MODEL_ZIP])) as archive:
        metrics = json.loads(archive.read("metrics.json"))
    assert metrics["test"] == pytest.approx(job.test_metrics)
    assert metrics["refit"]["epochs"] == job.refit_info["epochs"] == job.history.best_epoch


def test_the_sidebar_tells_a_continued_training_from_a_new_model(app):
    from seqvae.training import SeqVAEConfig
    from seqvae.ui import jobs

    at = app.run()
    at.session_state[state.JOB] = jobs.TrainingJob(
        dataset_name="shop", config=SeqVAEConfig(), earlier_epochs=3, state="running")
    at.run()
    assert not at.exception
    assert any("the model on shop goes on after its epoch 3" in t
               for t in texts(at.sidebar.info))
    assert not any("a new model" in t for t in texts(at.sidebar.info))


def test_training_on_data_that_cannot_train_says_why(app):
    log = b"user,item\n" + b"".join(f"{u},i{u % 7}\n{u},i{(u + 1) % 7}\n".encode()
                                    for u in range(30))
    at = upload(app.run(), "two-each.csv", log)
    at.switch_page("pages/train.py").run()
    at.button(key="train_start").click().run()
    assert not at.exception
    assert any("Training cannot start" in t and "at least 3 events" in t for t in texts(at.error))


def test_a_bad_model_upload_is_a_message(app):
    at = app.run()
    at.switch_page("pages/train.py").run()
    at.file_uploader(key="model_upload").upload("model.zip", b"not a zip at all")
    at.run()
    assert not at.exception
    assert any("not a zip file" in t for t in texts(at.error))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../etc/evil.sh", "echo owned")
    at.file_uploader(key="model_upload").set_value(("model.zip", buffer.getvalue(),
                                                    "application/zip"))
    at.run()
    assert any("not part of a seqvae model directory" in t for t in texts(at.error))


def test_user_page_without_a_model_says_what_to_do(app):
    at = app.run()
    at.switch_page("pages/user.py").run()
    assert not at.exception
    assert any("Train a model" in t for t in texts(at.info))


def test_reruns_leave_the_keras_session_alone(app, monkeypatch):
    """Streamlit clears the Keras session after every run unless told not to; here a model
    trains on a background thread across reruns, so the session must survive them."""
    import keras
    from streamlit.runtime.scriptrunner import script_runner

    # restored after the test, so that the check depends on what app.py does
    monkeypatch.setattr(script_runner, "_clean_problem_modules",
                        script_runner._clean_problem_modules)
    at = app.run()
    keras.backend.get_uid("seqvae_probe")
    before = keras.backend.get_uid("seqvae_probe")
    at.run()
    at.run()
    assert keras.backend.get_uid("seqvae_probe") == before + 1
    assert not at.exception


@pytest.fixture(scope="module")
def model_in_use(small_log):
    """A tiny SeqVAE trained with the library on `small_log` (times, three event types), to put
    in a session without going through the Train page."""
    from seqvae.logs import read_log
    from seqvae.sequences import encode
    from seqvae.splits import leave_one_out
    from seqvae.training import SeqVAEConfig, fit

    log, report = read_log(io.BytesIO(small_log), name="shop.csv")
    sequences = encode(log, report=report)
    recommender, history = fit(leave_one_out(sequences), SeqVAEConfig(
        embed_dim=16, hidden_dim=16, latent_dim=8, max_len=20, epochs=1, batch_size=64),
        history_sequences=sequences)
    return state.ModelInUse(recommender=recommender, name="shop.csv", origin="trained in tests",
                            created=dt.datetime.now(dt.UTC).isoformat(),
                            validation_ndcg=history.best_validation["NDCG@10"])


def test_what_if_unedited_is_the_stored_user_and_an_edit_moves_it(app, model_in_use):
    at = app
    at.session_state[state.MODEL] = model_in_use
    at.run()
    at.switch_page("pages/user.py").run()
    assert not at.exception, at.exception
    at.text_input(key="user_query").set_value("U0001").run()
    user = at.selectbox(key="user_pick").value
    recommendations = frame_with(at, "because of")
    # unedited: the user's stored events (items, event types, times) encoded again give exactly
    # the stored recommendations, and nothing is marked as changed
    open_tab(at, "What if")
    what_if = frame_with(at, "change")
    assert list(what_if["item"]) == list(recommendations["item"])
    assert list(what_if["score"]) == list(recommendations["score"])
    assert set(what_if["change"]) == {""}
    assert any("No edit yet" in t and "median gap" in t for t in texts(at.caption))
    assert any("as a new user, with its event types and times." in t for t in texts(at.caption))
    assert not any(t.startswith("Out of the top 10") for t in texts(at.caption))
    # the user's most common event type is what added items become by default
    history = model_in_use.recommender.history_
    own = history.of_user(int(history.user_position([user])[0]))["events"]
    vocab = model_in_use.recommender.event_vocab_
    counts = np.bincount(own, minlength=vocab.size)
    counts[:2] = 0  # padding and out-of-vocabulary are no event types
    assert at.selectbox(key=f"whatif_event:{user}").value == \
        vocab.token([int(np.argmax(counts))])[0]
    # the items the user already has are marked among those that can be added
    seen = set(model_in_use.recommender.item_vocab_.token(
        history.of_user(int(history.user_position([user])[0]))["items"]))
    offered = at.multiselect(key=f"whatif_add:{user}").options
    marked = {label.split(" ")[0] for label in offered if label.endswith(" · already in the history")}
    assert marked == seen and len(offered) == model_in_use.recommender.item_vocab_.size - 2
    # adding items changes the list without retraining: at least the scores move, and the added
    # items, now in the sequence, are not recommended back
    at.multiselect(key=f"whatif_add:{user}").set_value(["P0001", "P0002"]).run()
    assert not at.exception
    edited = frame_with(at, "change")
    assert list(edited["rank"]) == list(range(1, 11))
    assert list(edited["score"]) != list(recommendations["score"])
    assert not edited["item"].str.contains(r"\bP000[12]\b|\(P000[12]\)").any()
    # the items the new ones pushed out are named, with the rank each had
    gone = [item for item in recommendations["item"] if item not in set(edited["item"])]
    out = [t for t in texts(at.caption) if t.startswith("Out of the top 10")]
    assert gone and len(out) == 1 and (edited["change"] == "new").sum() == len(gone)
    for item in gone:
        rank = int(recommendations.loc[recommendations["item"] == item, "rank"].iloc[0])
        assert f"(was {rank})" in out[0]
    # another tab and back keeps the edit (only the open tab runs: the What-if's pickers are
    # not drawn meanwhile)
    open_tab(at, "Recommendations")
    assert not any(m.key == f"whatif_add:{user}" for m in at.multiselect)
    open_tab(at, "What if")
    assert at.multiselect(key=f"whatif_add:{user}").value == ["P0001", "P0002"]
    assert frame_with(at, "change").equals(edited)
    # the edit is this user's: another page and back keeps it (and the open tab); another user
    # opens unedited, and coming back to the first finds its edit again
    at.switch_page("pages/data.py").run()
    at.switch_page("pages/user.py").run()
    assert at.session_state["user_tab"] == "What if"
    assert at.selectbox(key="user_pick").value == user
    assert at.multiselect(key=f"whatif_add:{user}").value == ["P0001", "P0002"]
    assert frame_with(at, "change").equals(edited)
    at.text_input(key="user_query").set_value("U0002").run()
    other = at.selectbox(key="user_pick").value
    assert other != user and at.multiselect(key=f"whatif_add:{other}").value == []
    assert set(frame_with(at, "change")["change"]) == {""}
    at.text_input(key="user_query").set_value(user).run()
    assert at.multiselect(key=f"whatif_add:{user}").value == ["P0001", "P0002"]
    assert frame_with(at, "change").equals(edited)
    # removing every item leaves nothing to recommend from, said as a warning
    at.multiselect(key=f"whatif_add:{user}").set_value([]).run()
    items = at.multiselect(key=f"whatif_remove:{user}").options
    at.multiselect(key=f"whatif_remove:{user}").set_value(items).run()
    assert not at.exception
    assert any("empty" in t for t in texts(at.warning))


@pytest.fixture(scope="module")
def rated():
    """A MovieLens-like log (ratings and times, no event types) with user attributes, and a
    tiny model trained on it, as the session would hold them."""
    return rated_session("u{:02d}")


def rated_session(user_id: str):
    """`rated`'s dataset and model, with user ids `user_id.format(0 … 39)`."""
    from seqvae.logs import IngestOptions, read_log
    from seqvae.sequences import encode
    from seqvae.splits import leave_one_out
    from seqvae.training import SeqVAEConfig, fit

    rng = np.random.default_rng(4)
    rows = [f"{user_id.format(u)},m{rng.integers(30):02d},{rng.integers(1, 6)},"
            f"{1_000_000_000 + 3600 * (50 * u + e)}" for u in range(40) for e in range(8)]
    data = ("user,item,rating,timestamp\n" + "\n".join(rows) + "\n").encode()
    log, report = read_log(io.BytesIO(data), name="ratings.csv")
    sequences = encode(log, report=report)
    recommender, history = fit(leave_one_out(sequences), SeqVAEConfig(
        embed_dim=8, hidden_dim=16, latent_dim=8, max_len=20, epochs=1, batch_size=32),
        history_sequences=sequences)
    import pandas as pd

    users = pd.DataFrame({"occupation": [["writer", "nurse"][u % 2] for u in range(40)],
                          "age": [20 + u for u in range(40)]},
                         index=pd.Index([user_id.format(u) for u in range(40)], name="user"))
    dataset = state.Dataset(name="ratings.csv", data=data, log=log, report=report,
                            options=IngestOptions(), users=users)
    model = state.ModelInUse(recommender=recommender, name="ratings.csv", origin="trained in tests",
                             created=dt.datetime.now(dt.UTC).isoformat(),
                             validation_ndcg=history.best_validation["NDCG@10"],
                             data_name="ratings.csv", data_fingerprint=dataset.fingerprint)
    return dataset, model


def test_user_page_shows_values_attributes_and_opens_similar_users(app, rated):
    dataset, model = rated
    at = app
    at.session_state[state.DATASET] = dataset
    at.session_state[state.MODEL] = model
    at.run()
    at.switch_page("pages/user.py").run()
    assert not at.exception, at.exception
    at.text_input(key="user_query").set_value("u03").run()
    assert at.selectbox(key="user_pick").value == "u03"
    # the user's attributes, and a timeline by value (the log has ratings, one event type)
    assert any("occupation" in m.value and "nurse" in m.value and "23" in m.value
               for m in at.markdown)
    assert at.radio(key="timeline_colour").value == "value"
    # eight events an hour apart: the timeline is along time; in order on request
    timeline = next(c for c in at.get("plotly_chart") if "timeline" in str(c.proto.id))
    assert json.loads(timeline.proto.spec)["layout"]["xaxis"]["title"]["text"] == "time"
    assert at.radio(key="timeline_along:u03").value == "time"
    at.radio(key="timeline_along:u03").set_value("order").run()
    timeline = next(c for c in at.get("plotly_chart") if "timeline" in str(c.proto.id))
    spec = json.loads(timeline.proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "position in the sequence"
    assert spec["data"][0]["customdata"][0][2].startswith("event 1 · ")
    # one event type ("unknown": the log has none): the What-if asks nothing about it
    open_tab(at, "What if")
    assert "whatif_add:u03" in {box.key for box in at.multiselect}  # the tab is drawn
    assert "whatif_event:u03" not in {box.key for box in at.selectbox}
    events = frame_with(at, "item (title)")
    log = dataset.log.frame
    own = log[log["user"] == "u03"].sort_values("timestamp")
    assert list(events["value"]) == list(own["value"])
    # similar users carry their attributes; selecting one opens that user
    open_tab(at, "Similar users")
    similar = frame_with(at, "cosine similarity of μ")
    assert {"occupation", "age"} <= set(similar.columns)
    # with their activity and latest items, as the Latent page's nearest users show them
    from seqvae.latent import user_frame

    everyone = user_frame(model.recommender.history_, model.recommender.item_vocab_,
                          model.recommender.event_vocab_, items=dataset.items).set_index("user")
    expected = everyone.loc[similar["user"].astype(str)]
    assert list(similar["events"]) == list(expected["events"])
    assert list(similar["last items"]) == list(expected["last_items"])
    # they are found by taste unless the next step is chosen, each list the recommender's own
    recommender = model.recommender
    assert at.radio(key="similar_users_by").value == "taste"
    assert list(similar["user"]) == list(recommender.similar_users("u03", view="taste")[0])
    at.radio(key="similar_users_by").set_value("next").run()
    by_next = frame_with(at, "cosine similarity of μ")
    assert list(by_next["user"]) == list(recommender.similar_users("u03", view="next")[0])
    assert list(by_next["user"]) != list(similar["user"])
    at.radio(key="similar_users_by").set_value("taste").run()
    neighbour = similar["user"].iloc[2]
    table = next(d for d in at.dataframe if "cosine similarity of μ" in d.value.columns)
    assert table.key == "similar_u03"
    at.session_state["similar_u03"] = {"selection": {"rows": [2], "columns": []}}
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="user_pick").value == neighbour
    assert at.session_state[state.SELECTED_USER] == neighbour


def test_a_user_whose_events_crowd_a_few_days_opens_on_a_timeline_in_order(app, rated,
                                                                         monkeypatch):
    from seqvae.ui import charts

    monkeypatch.setattr(charts, "crowded_days", lambda when: True)
    dataset, model = rated
    app.session_state[state.DATASET] = dataset
    app.session_state[state.MODEL] = model
    app.session_state[state.SELECTED_USER] = "u05"
    app.run()
    app.switch_page("pages/user.py").run()
    assert not app.exception, app.exception
    along = app.radio(key="timeline_along:u05")
    assert along.value == "order" and "crowd a few days" in along.help


def test_an_id_typed_in_full_comes_first_and_is_opened(app):
    from seqvae.ui.text import matching_ids

    ids = np.array(["196", "21", "1", "11", "310", "7"], dtype=object)
    # the id itself, then the ids that start with it, then the rest, each in numeric order
    assert list(matching_ids(ids, " 1 ")) == ["1", "11", "196", "21", "310"]
    assert list(matching_ids(ids, "")) == ["1", "7", "11", "21", "196", "310"]
    assert list(matching_ids(ids, "9")) == ["196"]
    # ids that are not numbers follow the numbers, as text
    mixed = np.array(["u10", "20", "u9", "3", "007", "7"], dtype=object)
    assert list(matching_ids(mixed, "")) == ["3", "007", "7", "20", "u10", "u9"]
    dataset, model = rated_session("{}")  # ids 0 … 39, as MovieLens numbers its users
    at = app
    at.session_state[state.DATASET] = dataset
    at.session_state[state.MODEL] = model
    at.run()
    at.switch_page("pages/user.py").run()
    at.selectbox(key="user_pick").set_value("13").run()
    # "1" is an id and part of 10 … 19, 21, 31: it is listed first and opened
    at.text_input(key="user_query").set_value("1").run()
    assert at.selectbox(key="user_pick").options[:3] == ["1", "10", "11"]
    assert at.selectbox(key="user_pick").value == "1"
    # a pick from the list stands while the query stays
    at.selectbox(key="user_pick").set_value("21").run()
    assert at.selectbox(key="user_pick").value == "21"
    # "3" is part of 13, 23, 30 … 39 and an id too; "3 " is the same query
    at.text_input(key="user_query").set_value("3").run()
    assert at.selectbox(key="user_pick").value == "3"
    assert not at.exception, at.exception
