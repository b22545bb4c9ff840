"""Evaluate page: the SeqVAE against the baselines on a held-out split of the loaded log — the
same code as `seqvae evaluate`, run in the background with progress and Stop."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from seqvae import compare
from seqvae.errors import SeqVAEError
from seqvae.evaluation import METRIC_HELP
from seqvae.latent import PALETTE
from seqvae.training import SeqVAEConfig
from seqvae.ui import jobs, state
from seqvae.ui.text import duration, escape_markdown

PROTOCOLS = {
    "leave-one-out": "next item: each user's last event is the test target",
    "holdout-users": "unseen users: 80% of their events in, the rest predicted",
    "time-cut": "one global time: predict what happens after it",
}
MODEL_NAMES = jobs.MODEL_NAMES


def settings_ui(dataset: state.Dataset) -> None:
    job = st.session_state.get(state.EVALUATION)
    busy = job is not None and job.active
    a, b, c = st.columns([1.6, 7, 2.2])  # room for six models' chips on one line
    captions = dict(PROTOCOLS)
    if not dataset.log.has_timestamp:  # offered, and refused with the reason if chosen
        captions["time-cut"] += " (needs times: this log has none)"
    protocol = a.radio("Protocol", list(PROTOCOLS), key="eval_protocol",
                       captions=list(captions.values()))
    models = b.multiselect("Models", list(MODEL_NAMES), default=list(MODEL_NAMES),
                           format_func=MODEL_NAMES.get, key="eval_models",
                           help="SASRec: the SeqVAE without its latent (same network, no KL); "
                           "Mult-VAE: a VAE over the bag of items, no order; EASE and item-KNN: "
                           "item-item models; most popular: the same list for everyone.")
    ks = c.multiselect("K", [1, 5, 10, 20, 50, 100], default=[10, 20], key="eval_ks")
    model_in_use = state.model()
    config = (model_in_use.recommender.config_ if model_in_use is not None
              else SeqVAEConfig(epochs=state.DASHBOARD_EPOCHS))
    neural = [MODEL_NAMES[m] for m in models if m in ("seqvae", "sasrec")]
    if neural:
        c.caption(f"{' and '.join(neural)} {'are' if len(neural) > 1 else 'is'} trained afresh "
                  "on the split with "
                  f"{'the model in use’s' if model_in_use else 'the Train page’s default'} "
                  f"settings (at most {config.epochs} epochs"
                  + (f", {config.members} networks averaged" if config.members > 1 else "")
                  + "). ")
        took = training_seconds(model_in_use)
        if took:
            # the split trains on nearly the events the model in use saw, with its settings
            c.caption(f"The model in use took {duration(took)} to train: expect about as "
                      f"long for {'each of them' if len(neural) > 1 else 'it'}"
                      + (f" (about {duration(took * len(neural))} in all)" if len(neural) > 1
                         else "") + ", plus the other models' time.")
    items = dataset.log.n_items
    if "ease" in models and items > compare.EASE_SLOW_ABOVE:
        c.caption(f"EASE inverts a {items:,} × {items:,} matrix for each of its "
                  f"{len(compare.GRIDS['ease'])} settings: on this many items that takes "
                  "minutes (its time grows with the cube of the items).")
    c.caption("Every choice is made on validation; the test part is scored once per model.")
    earlier = getattr(job, "result", None) if job is not None and not busy else None
    if earlier is not None and earlier.results:
        c.caption("A new run replaces the results below ("
                  + ", ".join(MODEL_NAMES[r.model] for r in earlier.results)
                  + "): choose every model to compare.")
    if st.button("Run the evaluation", type="primary", key="eval_start",
                 disabled=busy or not models or not ks):
        try:
            st.session_state[state.EVALUATION] = jobs.start_evaluation(
                dataset.log, dataset.name, protocol, list(models), sorted(ks), config)
        except SeqVAEError as exc:
            st.error(f"**This evaluation cannot run:** {escape_markdown(exc)}", icon="⚠️")
            return
        except ValueError as exc:
            st.error(escape_markdown(exc), icon="⚠️")
            return
        st.rerun()


def training_seconds(model_in_use: state.ModelInUse | None) -> float | None:
    """How long the model in use took to train (every network, validation included), where
    it records it: the estimate of a neural model's time on the Evaluate split."""
    history = getattr(getattr(model_in_use, "recommender", None), "training_history_", None)
    seconds = getattr(history, "seconds", 0.0) or 0.0
    return float(seconds) if seconds > 0 else None


@st.fragment(run_every=2.0)
def progress_ui() -> None:
    job = st.session_state.get(state.EVALUATION)
    if job is None:
        return
    snapshot = job.snapshot()
    if snapshot["state"] in ("queued", "running"):
        st.progress(job.fraction_done(), text=escape_markdown(job.status()))
        if st.button("Stop", key="eval_stop", help="Stops after the current step; models "
                     "already tested are kept."):
            job.cancel()
        with st.expander("Progress log"):
            st.code("\n".join(snapshot["lines"][-40:]) or "…", language=None)
        st.session_state["eval_was_active"] = True
        return
    if st.session_state.pop("eval_was_active", False):
        st.rerun(scope="app")
    if snapshot["state"] == "failed":
        st.error(f"**The evaluation failed:** {escape_markdown(snapshot['message'])}", icon="⚠️")
    elif snapshot["state"] == "cancelled":
        st.warning(f"Evaluation {escape_markdown(snapshot['message'])}.")


@st.cache_data(show_spinner="Bootstrap intervals…", max_entries=8)
def _summary(_result, key: tuple, shown: tuple[str, ...]) -> pd.DataFrame:
    return compare.summary(_result, list(shown))


# metrics that describe the lists rather than score them: no "best" among them
DESCRIPTIVE = ("Coverage@", "AvgPopularity@")


def summary_table(result, shown: list[str], intervals: bool = False):
    """The compact table: the value per metric (with `intervals`, value [interval]), the best
    bold, ties marked."""
    stats = _summary(result, (id(result), len(result.results)), tuple(shown))
    rows = {}
    for r in result.results:
        row = {"model": MODEL_NAMES[r.model]}
        for metric in shown:
            value, low, high = (stats.loc[r.model, f"{metric}{s}"] for s in ("", " low", " high"))
            mark = {"best": "", "tied": " ≈", "worse": ""}.get(stats.loc[r.model, f"{metric} vs best"], "")
            interval = f" [{low:.4f}, {high:.4f}]" if intervals and np.isfinite(low) else ""
            row[metric] = f"{value:.4f}{interval}{mark}"
        row["chosen"] = ", ".join(
            f"{k}={v}" for k, v in r.params.items() if k in ("l2", "neighbours", "epochs")
        )
        row["fit s"] = f"{r.fit_seconds:.1f}"
        rows[r.model] = row
    frame = pd.DataFrame(rows.values())
    best = {m: stats.index[stats[f"{m} vs best"] == "best"].tolist() for m in shown}
    models = list(rows)

    def bold(column: pd.Series) -> list[str]:
        # coverage (how much of the catalogue the lists reach) describes the lists, it does not
        # score them: more is not better in itself, so it is never marked as a win
        if column.name not in best or str(column.name).startswith(DESCRIPTIVE):
            return [""] * len(column)
        return [
            "font-weight: bold; background-color: #e8f4fa" if models[i] in best[column.name] else ""
            for i in range(len(column))
        ]

    return frame.style.apply(bold, axis=0)


def verdict_ui(result, shown: list[str]) -> None:
    """Which model to trust, in words: per ranking metric shown (NDCG, else the first per-user
    metric), the best model, those level with it and those below."""
    ranking = ([m for m in shown if m.startswith("NDCG@")]
               or [m for m in shown if m.startswith(("HR@", "Recall@", "MRR@"))][:1])
    if not ranking:
        return
    if len(result.results) < 2:  # one model is best of one: there is nothing to judge it by
        st.markdown(f"**Which to trust.** Only {MODEL_NAMES[result.results[0].model]} was "
                    "evaluated: run it beside other models (most popular at least) to see "
                    "whether its lists are worth reading.")
        return
    stats = _summary(result, (id(result), len(result.results)), tuple(shown))

    def names(models: list[str]) -> str:
        return ", ".join(MODEL_NAMES[m] for m in models) or "none"

    lines, behind = [], {}
    for metric in ranking:
        best, level, below = compare.leaders(stats, metric)
        lines.append(f"- **{metric}**: best **{MODEL_NAMES[best]}**; level with it: "
                     f"{names(level)}; below: {names(below)}.")
        if "seqvae" in below:
            behind[metric] = MODEL_NAMES[best]
    st.markdown("**Which to trust.** Level models cannot be told apart on these test users (the "
                "paired interval of their difference includes 0).\n\n" + "\n".join(lines))
    # a network cut off by its epoch limit while still improving is judged before its best
    unfinished = [r.model for r in result.results if r.still_improving()]
    if unfinished:
        were, they, them, their = (("were", "they", "them", "their") if len(unfinished) > 1
                                   else ("was", "it", "it", "its"))
        st.warning(f"{names(unfinished)} {were} still improving when {they} stopped: the best "
                   f"validation score came at the last epoch, so this verdict judges {them} "
                   f"before {their} best. The epoch limit here is the model in use's: train it "
                   "with more epochs on the Train page, then evaluate again.", icon="⏳")
    where = "at this epoch limit" if unfinished else "on this log"
    if "seqvae" not in stats.index:
        return
    if not behind:
        st.caption("The SeqVAE is best or level with the best on every ranking metric shown: "
                   f"{where} its lists are as good as any model's here.")
    elif len(set(behind.values())) == 1:
        leader = next(iter(behind.values()))
        st.caption(f"The SeqVAE ranks below {leader} on {' and '.join(behind)}: {where}, "
                   f"{leader}'s lists are the better ones.")
    else:
        st.caption("The SeqVAE ranks below the best on " + " and ".join(
            f"{metric} ({leader} leads)" for metric, leader in behind.items())
            + f": {where}, those models' lists are the better ones.")


def results_ui() -> None:
    job = st.session_state.get(state.EVALUATION)
    if job is None or job.active or job.result is None or not job.result.results:
        return
    result = job.result
    data = result.dataset
    st.subheader("Results on the test part", anchor=False)
    st.caption(f"{escape_markdown(job.dataset_name)}, {result.protocol}: {data['users']:,} users, "
               f"{data['items']:,} items, {data['events']:,} events. Choices on validation "
               f"{result.selection}; ranking over all items, each user's input excluded.")
    names = [r.model for r in result.results]
    metrics = [m for m in result.results[0].metrics if not m.startswith("AvgPopularity")]
    shown = st.multiselect(
        "Columns", metrics, default=compare.default_metrics(result), key="eval_columns",
        help="NDCG, HR and coverage by default; Recall is left out when it equals HR (one target per user).")
    intervals = st.toggle("95% intervals", key="eval_intervals",
                          help="Each value's bootstrap interval over users, in brackets (the "
                          "table grows wider than the page: scroll it sideways).")
    table = summary_table(result, shown, intervals)
    # sized to their contents, the cells with an interval were cut short ("0.0977 [0.0833,"):
    # wide enough for "0.0977 [0.0833, 0.1120] ≈", the table then scrolls sideways
    widths = ({metric: st.column_config.TextColumn(width=190) for metric in shown}
              if intervals else None)
    st.dataframe(table, width="stretch", key="eval_table", hide_index=True,
                 column_config=widths)
    st.caption("Bold: the best value of each ranking metric (coverage describes the lists and "
               "is not marked: more of the catalogue is not better in itself). ≈: not "
               "distinguishable from the best (the "
               "paired bootstrap interval of the difference, on the same users, includes 0)."
               + (" In brackets: the 95% bootstrap interval over users." if intervals else ""))
    verdict_ui(result, shown)
    with st.expander("What the metrics mean"):
        st.markdown("\n".join(f"- **{k}** — {v}" for k, v in METRIC_HELP.items()))
    a, b = st.columns(2)
    chosen = a.selectbox("Metric", metrics, index=0, key="eval_metric")
    fig = go.Figure(go.Bar(x=[MODEL_NAMES[n] for n in names],
                           y=[r.metrics[chosen] for r in result.results],
                           marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(names))]))
    fig.update_layout(height=360, yaxis_title=chosen, margin={"l": 10, "r": 10, "t": 20, "b": 10})
    a.plotly_chart(fig, width="stretch", key="eval_bar")
    spread = chosen
    if spread not in result.results[0].evaluation.per_user:
        b.caption(f"{chosen} is one figure for the whole catalogue, not per user.")
        return
    box = go.Figure()
    for i, r in enumerate(result.results):
        values = r.evaluation.per_user[spread]
        values = values[np.isfinite(values)]
        nonzero = values[values > 0]
        share = nonzero.size / max(values.size, 1)
        box.add_trace(go.Box(y=nonzero, name=f"{MODEL_NAMES[r.model]}<br>{share:.1%} > 0",
                             marker_color=PALETTE[i % len(PALETTE)], boxmean=True))
    box.update_layout(height=360, yaxis_title=f"{spread} per user, where above 0", showlegend=False,
                      margin={"l": 10, "r": 10, "t": 20, "b": 10})
    b.plotly_chart(box, width="stretch", key="eval_box")
    b.caption("Most users score 0 (the target is not in their list): under each model, the "
              "share of users above 0; the boxes show how high those users score (dashed: mean).")

st.title("Evaluate")
dataset = state.dataset()
if dataset is None:
    st.info("Load a log on the Data page first; then compare the SeqVAE with the baselines here.")
else:
    st.caption("Split the loaded log, fit the SeqVAE and the baselines you choose on the "
               "training part, and measure each once on the held-out part — the same code as "
               "`seqvae evaluate`.")
    settings_ui(dataset)
    progress_ui()
    results_ui()
