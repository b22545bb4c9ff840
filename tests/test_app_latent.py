"""The Latent space page through AppTest, with a model put in the session: the map, colours
from user attributes, clusters, a cohort from an injected selection, neighbours, the line
between two users, and exports that cannot run as spreadsheet formulas."""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from seqvae.logs import IngestOptions, read_log
from seqvae.sample import generate
from seqvae.sequences import encode
from seqvae.splits import leave_one_out
from seqvae.training import SeqVAEConfig, fit
from seqvae.ui import state
from seqvae.ui.text import shorten


@pytest.fixture(scope="module")
def trained():
    sample = generate(n_users=120, n_items=60, seed=5)
    events = sample.events.copy()
    # a user id that a spreadsheet would run as a formula
    events.loc[events["user_id"] == events["user_id"].iloc[0], "user_id"] = "=SUM(A1:A9)"
    data = events.to_csv(index=False).encode()
    log, report = read_log(io.BytesIO(data), name="shop.csv")
    sequences = encode(log, report=report)
    recommender, history = fit(leave_one_out(sequences), SeqVAEConfig(
        embed_dim=8, hidden_dim=16, latent_dim=8, max_len=20, epochs=2), history_sequences=sequences)
    segments = sample.segments.rename(columns={"user_id": "user"}).set_index("user")
    items = sample.items.rename(columns={"item_id": "item"}).set_index("item")
    dataset = state.Dataset(name="shop.csv", data=data, log=log, report=report,
                            options=IngestOptions(), items=items, users=segments)
    model = state.ModelInUse(recommender=recommender, name="shop.csv", origin="trained in tests",
                             created=dt.datetime.now(dt.UTC).isoformat(),
                             validation_ndcg=history.best_validation["NDCG@10"])
    return dataset, model


def open_page(app, trained):
    dataset, model = trained
    at = app
    at.session_state[state.DATASET] = dataset
    at.session_state[state.MODEL] = model
    at.run()
    at.switch_page("pages/latent.py").run()
    assert not at.exception, at.exception
    return at


def test_without_a_model_the_page_says_what_to_do(app):
    app.run()
    app.switch_page("pages/latent.py").run()
    assert not app.exception
    assert any("Train a model" in i.value for i in app.info)
    # while one trains, the page says so, not "train a model" (a new user clicked Train again)
    from seqvae.ui import jobs

    app.session_state[state.JOB] = jobs.TrainingJob(dataset_name="shop.csv",
                                                    config=SeqVAEConfig(), state="running")
    app.run()
    assert not app.exception, app.exception
    assert any("A model is training on the Train page: come back here once it is done to map "
               "its users" in i.value for i in app.info)
    assert not any("Train a model" in i.value for i in app.info)


def test_map_colours_and_clusters(app, trained):
    at = open_page(app, trained)
    colours = at.selectbox(key="latent_colour")
    assert "segment" in colours.options  # from the user-attributes file
    assert "recency (days since last)" in colours.options  # the log has times
    # views are 70% of the events: offered only if some user's dominant event is another
    frame = at.session_state[state.LATENT][1].frame
    assert ("dominant event" in colours.options) == (frame["dominant_event"].nunique() > 1)
    for choice in colours.options:
        colours.set_value(choice).run()
        assert not at.exception, (choice, at.exception)
    at.slider(key="latent_k").set_value(4).run()
    view = at.session_state[state.LATENT][1]
    assert len(set(view.clusters.tolist())) == 4
    at.radio(key="latent_cluster_method").set_value("HDBSCAN").run()
    colours.set_value("cluster").run()
    # the users HDBSCAN leaves out of every cluster are drawn last, in a pale grey
    import json

    from seqvae.latent import NOISE_COLOUR

    spec = json.loads(next(c.proto.spec for c in at.get("plotly_chart")
                           if '"customdata"' in c.proto.spec))
    traces = [(t["name"], t["marker"]["color"]) for t in spec["data"]]
    assert (-1 in set(at.session_state[state.LATENT][1].clusters.tolist())
            and traces[-1] == ("noise", NOISE_COLOUR))
    assert all(colour != NOISE_COLOUR for _, colour in traces[:-1])
    at.radio(key="latent_dims").set_value(3).run()
    assert not at.exception


def test_far_users_do_not_squeeze_the_map_and_a_searched_one_stays_in_view(app, trained):
    import json

    at = open_page(app, trained)
    view = at.session_state[state.LATENT][1]
    coords = view.coords["PCA-2"].copy()
    spread = coords.max(axis=0) - coords.min(axis=0)
    coords[0] = coords.max(axis=0) + 50 * spread  # two users on a far island
    coords[1] = coords.min(axis=0) - 50 * spread
    view.coords["PCA-2"] = coords
    at.run()
    assert not at.exception, at.exception

    def layout():
        return json.loads(next(c.proto.spec for c in at.get("plotly_chart")
                               if '"customdata"' in c.proto.spec))["layout"]

    x = layout()["xaxis"]["range"]
    assert x[1] < coords[0, 0] and x[0] > coords[1, 0]
    assert any("2 users lie far from the rest, outside this view" in c.value
               and "double-click the map" in c.value for c in at.caption)
    # searched for, the first is in view: one user left out
    at.text_input(key="latent_search").set_value(str(view.frame["user"].iloc[0])).run()
    assert not at.exception, at.exception
    x = layout()["xaxis"]["range"]
    assert x[0] < coords[0, 0] < x[1]
    assert any("1 user lies far from the rest" in c.value for c in at.caption)


def test_every_clustering_asked_for_is_kept(app, trained, monkeypatch):
    """HDBSCAN runs on every user, which takes minutes on a large log: going to k-means and
    back, or changing k and back, computes nothing again."""
    from seqvae import latent

    at = open_page(app, trained)
    calls = []
    exact = latent.cluster_users

    def counted(vectors, k=6, method="kmeans", **kwargs):
        calls.append((method, k))
        return exact(vectors, k=k, method=method, **kwargs)

    monkeypatch.setattr(latent, "cluster_users", counted)
    monkeypatch.setattr(state, "HDBSCAN_SLOW_ABOVE", 50)  # 120 users: the spinner's path
    view = at.session_state[state.LATENT][1]
    first = view.clusters.copy()
    for method, k in (("HDBSCAN", 6), ("k-means", 6), ("HDBSCAN", 6), ("k-means", 4),
                      ("k-means", 6), ("k-means", 4)):
        at.radio(key="latent_cluster_method").set_value(method).run()
        if method == "k-means":  # the slider is disabled under HDBSCAN
            at.slider(key="latent_k").set_value(k).run()
        assert not at.exception, at.exception
    assert calls == [("hdbscan", 6), ("kmeans", 4)]
    np.testing.assert_array_equal(view.clusters, exact(view.mu, k=4))
    at.slider(key="latent_k").set_value(6).run()
    np.testing.assert_array_equal(view.clusters, first)


def test_a_sampled_map_keeps_its_users_and_its_umap_when_the_clusters_change(
        app, trained, monkeypatch):
    monkeypatch.setattr(state, "MAP_LIMIT", 50)  # 120 users: a sample of 50 is drawn
    at = open_page(app, trained)
    view = at.session_state[state.LATENT][1]
    rows = view.sample_rows.copy()
    assert rows.size == 50
    note = next(c.value for c in at.caption if "Showing a sample" in c.value)
    assert note.startswith("Showing a sample of 50 of 120 users, drawn once")
    umap = np.zeros((120, 2))  # stands for a UMAP computed on the sample
    view.coords["UMAP-2"] = umap
    for method, k in (("k-means", 4), ("HDBSCAN", 4), ("k-means", 6)):
        at.radio(key="latent_cluster_method").set_value(method).run()
        if method == "k-means":
            at.slider(key="latent_k").set_value(k).run()
        assert not at.exception, at.exception
        np.testing.assert_array_equal(view.sample_rows, rows)
        assert view.coords["UMAP-2"] is umap


def test_users_are_placed_by_taste_unless_the_next_step_is_chosen(app, trained):
    """The map's default is each user's taste (every event's posterior combined); the next
    step (the state their recommendations decode) is one click away, and each view keeps its
    own map."""
    at = open_page(app, trained)
    recommender = trained[1].recommender
    taste = at.session_state[state.LATENT][1]
    assert taste.view == "taste"
    np.testing.assert_allclose(taste.mu, recommender.encode(recommender.history_, "taste")[0],
                               rtol=1e-5, atol=1e-6)
    assert any("combined over every event" in c.value for c in at.caption)
    at.radio(key="latent_users_by").set_value("next").run()
    assert not at.exception, at.exception
    following = at.session_state[state.LATENT][1]
    assert following.view == "next"
    np.testing.assert_allclose(following.mu, recommender.encode(recommender.history_)[0],
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(following.mu, taste.mu, atol=1e-3)
    assert any("after their last event" in c.value for c in at.caption)
    at.radio(key="latent_users_by").set_value("taste").run()
    assert at.session_state[state.LATENT][1] is taste  # kept, with its maps and clusters


def test_a_selection_becomes_a_cohort_that_can_be_kept_and_compared(app, trained):
    at = open_page(app, trained)
    users = list(at.session_state[state.LATENT][1].frame["user"])
    at.session_state[state.SELECTION] = {"users": users[:30], "how": "lasso"}
    at.run()
    assert not at.exception
    tables = [d.value for d in at.dataframe]
    lift = next(t for t in tables if "lift" in t.columns and "item" in t.columns)
    assert "title" in lift.columns and len(lift) > 0
    at.text_input(key="cohort_name").input("first").run()
    at.button(key="cohort_keep").click().run()
    assert at.session_state[state.COHORTS]["first"] == users[:30]
    # kept: the name box is empty again, so the next selection gets a name of its own
    assert at.text_input(key="cohort_name").value == ""
    assert at.button(key="cohort_keep").disabled
    at.session_state[state.SELECTION] = {"users": users[60:100], "how": "box"}
    at.run()
    at.text_input(key="cohort_name").input("second").run()
    at.button(key="cohort_keep").click().run()
    assert set(at.session_state[state.COHORTS]) == {"first", "second"}
    assert at.session_state[state.COHORTS]["second"] == users[60:100]
    # the attribute shares are shown in percent, their difference in points
    shares = next(d for d in at.dataframe if "everyone" in d.value.columns
                  and "difference" in d.value.columns)
    table = shares.value
    np.testing.assert_allclose(table["difference"], table["cohort"] - table["everyone"],
                               atol=1e-9)
    assert table["cohort"].between(0, 100).all() and table["cohort"].max() > 1
    assert at.selectbox(key="compare_a").value == "first"
    assert at.selectbox(key="compare_b").value == "second"
    assert not at.exception


def test_a_selection_says_which_map_it_was_drawn_on(app, trained):
    at = open_page(app, trained)
    users = list(at.session_state[state.LATENT][1].frame["user"])
    shown = "PCA 2-D map by taste"  # what the page opens on
    at.session_state[state.SELECTION] = {"users": users[:30], "how": "box", "map": shown}
    at.run()
    assert any(f"30 users (box on the {shown})" in m.value for m in at.markdown)
    assert not any("Drawn on the" in c.value for c in at.caption)
    # the same users, now read on the next-step map: the page says the selection is the other's
    at.radio(key="latent_users_by").set_value("next").run()
    assert not at.exception, at.exception
    assert at.session_state[state.SELECTION]["users"] == users[:30]
    note = next(c.value for c in at.caption if "Drawn on the" in c.value)
    assert f"Drawn on the {shown}, not the PCA 2-D map by next step above" in note
    at.radio(key="latent_dims").set_value(3).run()
    assert any("not the PCA 3-D map by next step above" in c.value for c in at.caption)


def test_event_types_are_characterised_only_where_the_log_has_several(app, trained):
    at = open_page(app, trained)
    users = list(at.session_state[state.LATENT][1].frame["user"])
    at.session_state[state.SELECTION] = {"users": users[:30], "how": "lasso"}
    at.run()
    events = next(d.value for d in at.dataframe if "event" in d.value.columns)
    assert set(events["event"]) == {"view", "cart", "purchase"}
    assert any(m.value == "Event types" for m in at.markdown)

    # the same log without its event types and times: one type, so no table of one row, and
    # no colour that would paint every user alike (one dominant event, no recency)
    dataset, model = trained
    plain = pd.read_csv(io.BytesIO(dataset.data)).drop(columns=["event_type", "timestamp"])
    data = plain.to_csv(index=False).encode()
    log, report = read_log(io.BytesIO(data), name="shop.csv")
    sequences = encode(log, report=report)
    recommender, _ = fit(leave_one_out(sequences), SeqVAEConfig(
        embed_dim=8, hidden_dim=16, latent_dim=8, max_len=20, epochs=1),
        history_sequences=sequences)
    at.session_state[state.DATASET] = replace(dataset, data=data, log=log, report=report)
    at.session_state[state.MODEL] = replace(model, recommender=recommender)
    at.session_state[state.LATENT] = None
    at.run()
    users = list(at.session_state[state.LATENT][1].frame["user"])
    at.session_state[state.SELECTION] = {"users": users[:30], "how": "lasso"}
    at.run()
    assert not at.exception, at.exception
    assert any("lift" in d.value.columns and "item" in d.value.columns for d in at.dataframe)
    assert not any("event" in d.value.columns for d in at.dataframe)
    assert not any(m.value == "Event types" for m in at.markdown)
    options = at.selectbox(key="latent_colour").options
    assert "dominant event" not in options and "recency (days since last)" not in options
    assert "activity (events)" in options and "segment" in options


def test_search_neighbours_and_the_line_between_two_users(app, trained):
    at = open_page(app, trained)
    users = list(at.session_state[state.LATENT][1].frame["user"])
    at.text_input(key="latent_search").input(users[5]).run()
    tables = [d.value for d in at.dataframe]
    neighbours = next(t for t in tables if "cosine similarity of μ" in t.columns)
    assert len(neighbours) == 10 and users[5] not in set(neighbours["user"])
    assert list(neighbours.columns) == ["user", "cosine similarity of μ", "events", "last items"]
    assert neighbours["cosine similarity of μ"].is_monotonic_decreasing
    # the same users, and the same figures, as the User page's similar users in this view
    same, similarity = trained[1].recommender.similar_users(users[5], k=10, view="taste")
    assert list(neighbours["user"]) == list(same)
    np.testing.assert_allclose(neighbours["cosine similarity of μ"], similarity, atol=6e-4)
    movers = next(t for t in tables if "change" in t.columns)
    assert (movers["change"].iloc[0] >= 0) and (movers["change"].iloc[-1] <= 0)
    at.text_input(key="latent_search").input("nobody-here").run()
    assert any("No user" in w.value for w in at.warning)


def test_a_long_list_of_users_says_how_to_reach_the_rest(app, trained, monkeypatch):
    monkeypatch.setattr(state, "LISTED_USERS", 50)
    at = open_page(app, trained)
    first = at.selectbox(key="between_a")
    assert len(first.options) == 50
    assert first.help.endswith("The first 50 of 120 users are listed; type any other id in full.")


def test_the_line_between_two_users_starts_at_the_user_opened(app, trained):
    from streamlit.testing.v1 import AppTest

    from seqvae.ui import sessions

    users = list(trained[1].recommender.history_.users.astype(str))
    app.session_state[state.SELECTED_USER] = users[7]  # opened on the User page
    at = open_page(app, trained)
    first, second = at.selectbox(key="between_a"), at.selectbox(key="between_b")
    # the rest listed as a person lists ids (here as text: "=SUM(A1:A9)", "U00001", …)
    ordered = [u for u in sorted(users) if u != users[7]]
    assert first.value == users[7] and second.value == ordered[0]
    assert first.options == [users[7], *ordered]
    chart = next(c for c in at.get("plotly_chart") if "between_chart" in str(c.proto.id))
    lines = json.loads(chart.proto.spec)["data"]
    # the legend's names are cut; a line's point says its whole title
    assert lines and all(line["name"] == shorten(line["hovertemplate"].split("<br>")[0], 40)
                         for line in lines)
    assert "are listed" not in first.help  # all 120 are
    # (an id typed in full, in the list or not, is the browser test's: AppTest cannot type one)
    at.selectbox(key="between_b").set_value(users[3]).run()
    chart = next(c for c in at.get("plotly_chart") if "between_chart" in str(c.proto.id))
    assert json.loads(chart.proto.spec)["layout"]["xaxis"]["title"]["text"] == (
        f"from {users[7]} (0) to {users[3]} (1)")
    # both picks survive a visit to another page and a reload (the new user lost "To user")
    at.selectbox(key="between_a").set_value(users[9]).run()
    at.switch_page("pages/data.py").run()
    at.switch_page("pages/latent.py").run()
    assert (at.selectbox(key="between_a").value, at.selectbox(key="between_b").value) == (
        users[9], users[3])
    again = AppTest.from_file(app._script_path, default_timeout=60)
    again.query_params[sessions.PARAM] = at.session_state[sessions.TOKEN]
    again.run()
    again.switch_page("pages/latent.py").run()
    assert not again.exception, again.exception
    assert (again.selectbox(key="between_a").value, again.selectbox(key="between_b").value) == (
        users[9], users[3])
    # opening another user starts the line there again
    again.session_state[state.SELECTED_USER] = users[11]
    again.run()
    assert again.selectbox(key="between_a").value == users[11]
    assert again.selectbox(key="between_b").value == users[3]


def test_exports_are_complete_and_formula_safe(app, trained):
    at = open_page(app, trained)
    at.button(key="exports_prepare").click().run()
    assert not at.exception
    files = at.session_state["latent_exports"][1]
    users = pd.read_csv(io.BytesIO(files["users.csv"]))
    assert len(users) == 120
    assert {"mu_7", "sigma_7", "cluster", "cluster_name", "x_pca"} <= set(users.columns)
    view = at.session_state[state.LATENT][1]
    np.testing.assert_allclose(users[[f"mu_{i}" for i in range(8)]].to_numpy(), view.mu,
                               rtol=1e-5, atol=1e-6)
    names = view.cluster_names()
    assert users["cluster_name"].tolist() == [names[int(c)] for c in view.clusters]
    assert "'=SUM(A1:A9)" in set(users["user"])  # neutralised in CSV
    parquet = pd.read_parquet(io.BytesIO(files["users.parquet"]))
    assert "=SUM(A1:A9)" in set(parquet["user"])  # values kept in Parquet
    assert "attr:segment" in users.columns  # the user attributes travel with the export
    recs = pd.read_csv(io.BytesIO(files["recommendations.csv"]), dtype={"item": str})
    assert len(recs) == 120 * 10 and recs.groupby("user")["rank"].max().eq(10).all()
    dataset, _ = trained
    assert recs["title"].tolist() == dataset.items["title"].reindex(recs["item"]).tolist()
    assert np.isfinite(recs["score"]).all()
    vectors = files["vectors.tsv"].decode().splitlines()
    metadata = files["metadata.tsv"].decode().splitlines()
    assert len(vectors) == 120 and len(metadata) == 121
    # the exports follow the view the map shows: prepared again, they hold the next step's μ
    at.radio(key="latent_users_by").set_value("next").run()
    at.button(key="exports_prepare").click().run()
    following = at.session_state[state.LATENT][1]
    assert following.view == "next" and view.view == "taste"
    again = pd.read_csv(io.BytesIO(at.session_state["latent_exports"][1]["users.csv"]))
    mu = again[[f"mu_{i}" for i in range(8)]].to_numpy()
    np.testing.assert_allclose(mu, following.mu, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mu, view.mu, atol=1e-3)


def test_umap_runs_on_request_with_its_parameters(app, trained):
    at = open_page(app, trained)
    at.radio(key="latent_projection").set_value("UMAP").run()
    assert any("Run UMAP" in i.value for i in at.info)  # PCA shown until it is asked for
    at.button[[b.label for b in at.button].index("Run UMAP")].click().run(timeout=300)
    assert not at.exception, at.exception
    view = at.session_state[state.LATENT][1]
    coords = view.coords["UMAP-2"]
    assert coords.shape == (120, 2) and coords.std() > 0
    first = coords.copy()
    # the form stays: re-run with other parameters, both maps are kept
    at.select_slider(key="umap_neighbours_2").set_value(5)
    at.button[[b.label for b in at.button].index("Run UMAP")].click().run(timeout=300)
    assert not at.exception, at.exception
    assert set(view.umaps) == {(2, 15, 0.1), (2, 5, 0.1)}
    assert not np.allclose(view.coords["UMAP-2"], first)
    # one line says what is shown and how long it took; the box that showed while UMAP ran
    # is gone (it said the same)
    assert any("UMAP with neighbours 5, min. distance 0.1, computed in" in c.value
               for c in at.caption), [c.value for c in at.caption]
    assert not at.status, [s.label for s in at.status]
    # back to the first parameters: the cached map, without computing again
    view.compute_umap = None  # would fail if called
    at.select_slider(key="umap_neighbours_2").set_value(15)
    at.button[[b.label for b in at.button].index("Run UMAP")].click().run()
    assert not at.exception, at.exception
    np.testing.assert_array_equal(view.coords["UMAP-2"], first)
    assert any("also computed: 5/0.1" in c.value for c in at.caption)


def test_side_files_attached_after_the_map_was_drawn_are_used(app, trained):
    dataset, model = trained
    bare = state.Dataset(name=dataset.name, data=dataset.data, log=dataset.log,
                         report=dataset.report, options=dataset.options)
    app.session_state[state.DATASET] = bare
    app.session_state[state.MODEL] = model
    app.run()
    app.switch_page("pages/latent.py").run()
    assert "segment" not in app.selectbox(key="latent_colour").options
    bare.items, bare.users = dataset.items, dataset.users  # as the Data page attaches them
    app.run()
    assert not app.exception, app.exception
    assert "segment" in app.selectbox(key="latent_colour").options
    view = app.session_state[state.LATENT][1]
    titles = set(dataset.items["title"].astype(str))
    assert any(part in titles for part in view.frame["last_items"].iloc[0].split(" · "))


def test_attributes_whose_values_hardly_repeat_are_not_offered_as_colours(app, trained):
    dataset, model = trained
    users = dataset.users.copy()
    users["zip"] = [f"{10000 + 37 * i}" for i in range(len(users))]  # one per user, as text
    users["region"] = [f"r{i % 3}" for i in range(len(users))]
    users.loc[users.index[:4], "region"] = None  # users the side file says nothing of
    side = state.Dataset(name=dataset.name, data=dataset.data, log=dataset.log,
                         report=dataset.report, options=dataset.options, items=dataset.items,
                         users=users)
    app.session_state[state.DATASET] = side
    app.session_state[state.MODEL] = model
    app.run()
    app.switch_page("pages/latent.py").run()
    assert not app.exception, app.exception
    colours = app.selectbox(key="latent_colour")
    assert "zip" not in colours.options and {"segment", "region"} <= set(colours.options)
    assert colours.help.startswith("Not offered: zip — its values hardly repeat")
    colours.set_value("region").run()
    assert not app.exception, app.exception
    chart = next(c for c in app.get("plotly_chart") if "latent_map" in str(c.proto.id))
    names = {trace.get("name") for trace in json.loads(chart.proto.spec)["data"]}
    assert {"r0", "r1", "r2", "—"} <= names and "nan" not in names and "None" not in names


def test_a_cohort_shows_its_attributes_against_everyone_and_exports_them(app, trained):
    at = open_page(app, trained)
    view = at.session_state[state.LATENT][1]
    segment = view.frame["attr:segment"]
    chosen = segment.value_counts().index[0]
    users = list(view.frame["user"][segment == chosen])[:25]
    at.session_state[state.SELECTION] = {"users": users, "how": "lasso"}
    at.run()
    assert not at.exception
    tables = [d.value for d in at.dataframe]
    breakdown = next(t for t in tables if "attribute" in t.columns)
    row = breakdown[(breakdown["attribute"] == "segment") & (breakdown["value"] == chosen)].iloc[0]
    # in percent: every selected user is of that segment
    assert row["cohort"] == pytest.approx(100.0)
    assert row["everyone"] == pytest.approx((segment == chosen).mean() * 100)
    # every share on the page is shown with one decimal, whatever the value
    formats = [json.loads(d.proto.columns).get(name, {}).get("type_config", {}).get("format")
               for d in at.dataframe for name in ("cohort", "everyone", "cohort share",
                                                    "overall share")]
    assert formats.count("%.1f%%") >= 4 and set(filter(None, formats)) == {"%.1f%%"}
    lift_table = next(t for t in tables if "cohort share" in t.columns)
    assert lift_table["cohort share"].max() > 1  # scaled to percent, not a fraction
    lift = next(t for t in tables if "raw lift" in t.columns)
    assert (lift["lift"] <= lift["raw lift"] + 1e-9).all() and (lift["cohort users"] >= 5).all()
    # the selected users' table (what the CSV download holds) carries cluster and attributes
    members = next(t for t in tables if "segment" in t.columns and "user" in t.columns)
    assert sorted(members["user"]) == sorted(users)
    assert set(members["segment"]) == {chosen} and "cluster" in members.columns


def test_drift_between_two_dates(app, trained):
    at = open_page(app, trained)
    view = at.session_state[state.LATENT][1]
    at.button(key="FormSubmitter:drift_form-Show the drift").click().run()
    assert not at.exception, at.exception
    ((_, result),) = view.drifts.items()
    tables = [d.value for d in at.dataframe]
    movers = next(t for t in tables if "moved" in t.columns)
    assert movers["moved"].is_monotonic_decreasing
    assert movers["moved"].iloc[0] == pytest.approx(result.movement.max(), rel=1e-6)
    # the second date defaults to the log's last day: the stored users themselves
    np.testing.assert_allclose(result.after, view.mu[result.rows], rtol=1e-5, atol=1e-6)
    clusters = next(t for t in tables if "centre moved" in t.columns)
    assert clusters["users"].sum() == result.rows.size
    assert any("what the" in m.value.lower() and "did between" in m.value for m in at.markdown)
    # other dates, then the first again: each time the drift shown is of the dates asked for,
    # the first one's kept from before
    first = at.date_input(key="drift_start").value

    def shown_as_of() -> list[str]:
        return [m.value for m in at.markdown if "users** on the map as of" in m.value]

    assert str(first) in shown_as_of()[0]
    other = first - dt.timedelta(days=30)
    at.date_input(key="drift_start").set_value(other)  # in the form: sent by its button
    at.button(key="FormSubmitter:drift_form-Show the drift").click().run()
    assert len(view.drifts) == 2 and str(other) in shown_as_of()[0]
    at.date_input(key="drift_start").set_value(first)
    at.button(key="FormSubmitter:drift_form-Show the drift").click().run()
    assert len(view.drifts) == 2 and str(first) in shown_as_of()[0]


def test_the_drift_shown_and_its_dates_survive_a_page_change_and_a_reload(app, trained):
    from streamlit.testing.v1 import AppTest

    from seqvae.ui import sessions

    at = open_page(app, trained)
    other = at.date_input(key="drift_start").value - dt.timedelta(days=30)
    at.date_input(key="drift_start").set_value(other)
    at.number_input(key="drift_arrows").set_value(40)
    at.button(key="FormSubmitter:drift_form-Show the drift").click().run()
    view = at.session_state[state.LATENT][1]
    assert len(view.drifts) == 1

    def shown(page) -> str:
        return next(m.value for m in page.markdown if "users** on the map as of" in m.value)

    before = shown(at)
    assert str(other) in before
    at.switch_page("pages/data.py").run()
    at.switch_page("pages/latent.py").run()
    assert not at.exception, at.exception
    # the form holds the dates of the drift drawn under it, and nothing was computed again
    assert at.date_input(key="drift_start").value == other
    assert at.number_input(key="drift_arrows").value == 40
    assert shown(at) == before and len(view.drifts) == 1
    # a reload: a new browser session opening the same URL
    again = AppTest.from_file(app._script_path, default_timeout=60)
    again.query_params[sessions.PARAM] = at.session_state[sessions.TOKEN]
    again.run()
    again.switch_page("pages/latent.py").run()
    assert not again.exception, again.exception
    assert again.date_input(key="drift_start").value == other
    assert shown(again) == before
    assert again.session_state[state.LATENT][1].drifts is view.drifts


def test_the_map_settings_survive_a_visit_to_another_page(app, trained):
    at = open_page(app, trained)
    at.radio(key="latent_dims").set_value(3).run()
    at.selectbox(key="latent_colour").set_value("segment").run()
    at.switch_page("pages/data.py").run()
    at.switch_page("pages/latent.py").run()
    assert not at.exception
    assert at.radio(key="latent_dims").value == 3
    assert at.selectbox(key="latent_colour").value == "segment"
