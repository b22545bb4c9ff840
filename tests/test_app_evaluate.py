"""The Evaluate page through AppTest: a comparison runs in the background and shows its table
and charts; Stop keeps what was tested; a protocol the data cannot support says why."""

from __future__ import annotations

import time

import pytest

from seqvae.sample import generate
from seqvae.ui import state


def load(at, events):
    at.run()
    at.file_uploader(key="log_upload").upload("shop.csv", events.to_csv(index=False).encode(),
                                              "text/csv")
    at.run()
    at.switch_page("pages/evaluate.py").run()
    assert not at.exception, at.exception
    return at


def wait(at, seconds=240):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = at.session_state[state.EVALUATION]
        if not job.active:
            return at.run()
        time.sleep(0.5)
    raise AssertionError("the evaluation did not finish in time")


def test_without_data_the_page_says_what_to_do(app):
    app.run()
    app.switch_page("pages/evaluate.py").run()
    assert not app.exception
    assert any("Load a log" in i.value for i in app.info)


def test_compare_baselines_and_read_the_results(app):
    at = load(app, generate(n_users=150, n_items=60, seed=4).events)
    assert not any("needs times" in c for c in at.radio(key="eval_protocol").proto.captions)
    at.multiselect(key="eval_models").set_value(["ease", "itemknn", "pop"])
    at.multiselect(key="eval_ks").set_value([5, 10])
    at.button(key="eval_start").click().run()
    wait(at)
    assert not at.exception, at.exception
    job = at.session_state[state.EVALUATION]
    assert job.state == "done", job.message
    table = next(d.value for d in at.dataframe if "NDCG@10" in d.value.columns)
    assert list(table["model"]) == ["EASE", "item-KNN", "most popular"]
    assert table["chosen"].iloc[0].startswith("l2=")
    # compact: NDCG, HR, coverage; Recall is HR under leave-one-out, so it is left out
    assert [c for c in table.columns if "@" in c] == [
        "NDCG@5",
        "HR@5",
        "Coverage@5",
        "NDCG@10",
        "HR@10",
        "Coverage@10",
    ]
    results = {r.model: r for r in job.result.results}
    # the page says in words which model to trust, per NDCG column
    from seqvae.compare import leaders, summary

    stats = summary(job.result, ["NDCG@5", "HR@5", "Coverage@5", "NDCG@10", "HR@10",
                                 "Coverage@10"])
    verdict = next(m.value for m in at.markdown if "Which to trust" in m.value)
    names = {"ease": "EASE", "itemknn": "item-KNN", "pop": "most popular"}
    for metric in ("NDCG@5", "NDCG@10"):
        best, level, below = leaders(stats, metric)
        line = next(x for x in verdict.splitlines() if f"**{metric}**" in x)
        assert f"best **{names[best]}**" in line
        assert all(names[m] in line.split("below:")[1] for m in below)
        assert all(names[m] in line.split("level with it:")[1].split("below:")[0] for m in level)
    assert "HR@5" not in verdict  # NDCG speaks for the ranking
    for model, name in (("ease", "EASE"), ("pop", "most popular")):  # values alone: fits the page
        cell = table.loc[table["model"] == name, "NDCG@10"].iloc[0].replace("≈", "").strip()
        assert float(cell) == pytest.approx(results[model].metrics["NDCG@10"], abs=5e-5)
    at.toggle(key="eval_intervals").set_value(True).run()
    table = next(d.value for d in at.dataframe if "NDCG@10" in d.value.columns)
    for model, name in (("ease", "EASE"), ("pop", "most popular")):
        cell = table.loc[table["model"] == name, "NDCG@10"].iloc[0]
        value, low, high = (
            float(x) for x in cell.replace("[", "").replace("]", "").replace(",", "").replace("≈", "").split()
        )
        assert value == pytest.approx(results[model].metrics["NDCG@10"], abs=5e-5)
        assert low <= value <= high
    # wide enough columns for a value, its interval and the tie mark (cut short when sized to
    # the contents): the table scrolls sideways instead
    import json

    element = next(d for d in at.dataframe if "NDCG@10" in d.value.columns)
    widths = {name: spec.get("width") for name, spec in json.loads(element.proto.columns).items()}
    assert widths["NDCG@10"] == widths["HR@5"] == 190
    def catalogue_note() -> bool:
        return any("whole catalogue" in c.value for c in at.caption)

    at.selectbox(key="eval_metric").set_value("Coverage@10").run()
    assert catalogue_note()  # coverage has no per-user values to spread
    for metric in ("AUC", "MRR@5"):
        at.selectbox(key="eval_metric").set_value(metric).run()
        assert not at.exception, metric
        assert not catalogue_note()


def test_stop_keeps_what_was_tested(app):
    at = load(app, generate(n_users=150, n_items=60, seed=4).events)
    at.multiselect(key="eval_models").set_value(["pop", "multvae"])
    at.button(key="eval_start").click().run()
    job = at.session_state[state.EVALUATION]
    deadline = time.monotonic() + 120
    while not any(line.startswith("multvae") for line in job.snapshot()["lines"]):
        assert time.monotonic() < deadline and job.active
        time.sleep(0.2)
    at.run()  # the bar says which model of how many, and the time so far
    bar = at.get("progress")[0].proto.text
    # by the page's name for the model (markdown-escaped in the bar's text)
    assert bar.startswith(r"Mult\-VAE\:") and "model 2 of 2" in bar and "so far" in bar, bar
    job.cancel()
    wait(at)
    assert job.state == "cancelled"
    assert [r.model for r in job.result.results] == ["pop"]
    assert any("stopped by you" in w.value for w in at.warning)
    assert not at.exception


def test_a_protocol_the_data_cannot_support_says_why(app):
    events = generate(n_users=60, n_items=30, seed=4).events.drop(columns=["timestamp"])
    at = load(app, events)
    captions = list(at.radio(key="eval_protocol").proto.captions)
    assert any("(needs times: this log has none)" in str(c) for c in captions), captions
    at.radio(key="eval_protocol").set_value("time-cut").run()
    at.multiselect(key="eval_models").set_value(["pop"])
    at.button(key="eval_start").click().run()
    assert not at.exception
    assert any("time cut needs timestamps" in e.value for e in at.error)
    assert state.EVALUATION not in at.session_state


def test_the_page_says_whether_the_seqvae_is_the_one_to_trust(app):
    """The verdict under the table, on results made here (a finished job put in the session):
    the SeqVAE below the best names the metric and the leader; level or best, it says so."""
    from types import SimpleNamespace

    import numpy as np

    from seqvae.compare import Comparison, ModelResult
    from seqvae.evaluation import Evaluation

    rng = np.random.default_rng(0)
    n = 2000
    strong = (rng.random(n) < 0.30).astype(float)
    weak = (rng.random(n) < 0.10).astype(float)

    def result(name, hits, at5=None):
        at5 = hits if at5 is None else at5
        per_user = {"NDCG@5": at5 * 0.4, "HR@5": at5, "NDCG@10": hits * 0.5, "HR@10": hits}
        metrics = ({k: float(v.mean()) for k, v in per_user.items()}
                   | {"Coverage@5": 0.3, "Coverage@10": 0.4})
        return ModelResult(model=name, params={}, validation={}, metrics=metrics,
                           fit_seconds=0.0, eval_seconds=0.0,
                           evaluation=Evaluation(metrics, per_user, np.arange(n), 0.0))

    def finished(*results) -> None:  # a finished job with these results, in the session
        comparison = Comparison("leave-one-out", {"users": n, "items": 50, "events": 9 * n},
                                [5, 10], "NDCG@10", list(results))
        app.session_state[state.EVALUATION] = SimpleNamespace(
            active=False, result=comparison, dataset_name="shop.csv",
            snapshot=lambda: {"state": "done", "message": "", "lines": []})
        app.run()
        assert not app.exception, app.exception

    def shown(seqvae_hits, sasrec_hits, pop_at5=None) -> tuple[str, str]:
        finished(result("seqvae", seqvae_hits), result("sasrec", sasrec_hits),
                 result("pop", weak, pop_at5))
        verdict = next(m.value for m in app.markdown if "Which to trust" in m.value)
        return verdict, next(c.value for c in app.caption if "The SeqVAE" in c.value)

    load(app, generate(n_users=60, n_items=30, seed=4).events)  # the page needs a log
    verdict, caption = shown(weak, strong)
    assert "**NDCG@10**: best **SASRec**; level with it: none; below: SeqVAE, most popular" \
        in verdict
    # the best ranking value is bold; coverage, which describes the lists, is never marked
    table = next(d for d in app.dataframe if "model" in d.value.columns)
    styles, columns = table.proto.arrow_data.styler.styles, list(table.value.columns)
    sasrec = list(table.value["model"]).index("SASRec")
    assert f"row{sasrec}_col{columns.index('NDCG@10')}" in styles and "bold" in styles
    for metric in ("Coverage@5", "Coverage@10"):  # the same for every model: once all bold
        assert f"_col{columns.index(metric)}" not in styles, styles
    assert ("The SeqVAE ranks below SASRec on NDCG@5 and NDCG@10: on this log, SASRec's lists "
            "are the better ones") in caption
    verdict, caption = shown(strong, strong.copy())
    assert "best **SeqVAE**; level with it: SASRec; below: most popular" in verdict
    assert "best or level with the best on every ranking metric" in caption
    very = (rng.random(n) < 0.6).astype(float)  # most popular leads at 5, SASRec at 10
    verdict, caption = shown(weak, strong, pop_at5=very)
    assert "**NDCG@5**: best **most popular**" in verdict
    assert ("ranks below the best on NDCG@5 (most popular leads) and NDCG@10 (SASRec leads): "
            "on this log, those models' lists are the better ones") in caption
    # a new run would replace these results: the page says which, before the button
    assert any("A new run replaces the results below (SeqVAE, SASRec, most popular)" in c.value
               for c in app.caption)
    # a network whose best epoch was its last was cut off while improving: the page says so,
    # and the verdict holds at this epoch limit, not for the log (seen on MovieLens at 6 epochs)
    climbing = result("seqvae", weak)
    climbing.tried = [{"epoch": e, "NDCG@10": 0.1 * e} for e in (1, 2, 3)]
    passed = result("sasrec", strong)  # early stopping ends past the best epoch
    passed.tried = [{"epoch": 1, "NDCG@10": 0.2}, {"epoch": 2, "NDCG@10": 0.3},
                    {"epoch": 3, "NDCG@10": 0.25}]
    finished(climbing, passed, result("pop", weak))
    warnings = [w.value for w in app.warning]
    assert any("SeqVAE was still improving when it stopped" in w and "more epochs" in w
               for w in warnings), warnings
    assert not any("SASRec" in w for w in warnings)
    assert any("at this epoch limit, SASRec's lists are the better ones" in c.value
               for c in app.caption)
    # one model alone is best of one: no verdict, a word on what to run instead
    finished(result("seqvae", weak))
    verdict = next(m.value for m in app.markdown if "Which to trust" in m.value)
    assert "Only SeqVAE was evaluated" in verdict and "best" not in verdict
    assert not any("The SeqVAE is best" in c.value for c in app.caption)


def test_the_page_estimates_the_time_from_the_model_in_use(app):
    """Before a run, the page says how long the model in use took to train: each neural model
    trains about as long on the split, which is most of an evaluation's time."""
    from seqvae.sequences import encode
    from seqvae.splits import leave_one_out
    from seqvae.training import SeqVAEConfig, fit
    from seqvae.ui.text import duration

    assert [duration(s) for s in (0.4, 48, 103, 206.4, 3900)] == [
        "0 s", "48 s", "1 min 43 s", "3 min 26 s", "1 h 05 min"]
    load(app, generate(n_users=60, n_items=30, seed=4).events)
    assert not any("to train" in c.value for c in app.caption)  # no model: nothing to go by
    dataset = app.session_state[state.DATASET]
    recommender, history = fit(leave_one_out(encode(dataset.log)), SeqVAEConfig(
        embed_dim=8, hidden_dim=16, latent_dim=8, max_len=20, epochs=1))
    assert recommender.training_history_ is history
    history.seconds = 103.0  # as if it had trained for 1 min 43 s
    app.session_state[state.MODEL] = state.ModelInUse(
        recommender=recommender, name="shop.csv", origin="trained in this session",
        created="2026-12-07T20:00:00+00:00", validation_ndcg=0.1, data_name="shop.csv",
        data_fingerprint=dataset.fingerprint)
    app.run()
    assert not app.exception, app.exception
    estimate = next(c.value for c in app.caption if "to train" in c.value)
    assert "took 1 min 43 s to train: expect about as long for each of them (about " \
        "3 min 26 s in all)" in estimate
    app.multiselect(key="eval_models").set_value(["seqvae", "ease"]).run()
    estimate = next(c.value for c in app.caption if "to train" in c.value)
    assert "expect about as long for it, plus" in estimate and "in all" not in estimate
    app.multiselect(key="eval_models").set_value(["ease", "pop"]).run()
    assert not any("to train" in c.value for c in app.caption)


def test_the_page_warns_that_ease_takes_minutes_on_a_large_catalogue(app, monkeypatch):
    from seqvae import compare

    load(app, generate(n_users=60, n_items=30, seed=4).events)
    assert not any("EASE inverts" in c.value for c in app.caption)  # 30 items: seconds
    monkeypatch.setattr(compare, "EASE_SLOW_ABOVE", 10)
    app.run()
    items = app.session_state[state.DATASET].log.n_items
    note = next(c.value for c in app.caption if "EASE inverts" in c.value)
    assert note.startswith(f"EASE inverts a {items:,} × {items:,} matrix for each of its 6 "
                           "settings")
    app.multiselect(key="eval_models").set_value(["seqvae", "pop"]).run()
    assert not any("EASE inverts" in c.value for c in app.caption)
