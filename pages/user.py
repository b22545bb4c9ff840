"""User page: one user's story — timeline, what the model reconstructs, recommendations with the
history items that explain them, similar users, and "what if" edits of the sequence."""

import warnings

import numpy as np
import pandas as pd
import streamlit as st

from seqvae import latent
from seqvae.sequences import PAD
from seqvae.ui import charts, state
from seqvae.ui.text import escape_markdown, matching_ids, plotly_text


def labels_for(items, metadata: pd.DataFrame | None) -> list[str]:
    """'title (id)' when the item metadata has a title, else the id."""
    items = [str(i) for i in items]
    if metadata is None or "title" not in metadata.columns:
        return items
    titles = metadata["title"].reindex(items)
    return [f"{t} ({i})" if isinstance(t, str) else i for i, t in zip(items, titles, strict=True)]


def pick_user_ui(users: np.ndarray) -> str | None:
    pending = st.session_state.pop("user_pick_pending", None)  # a similar user was clicked
    if pending is not None:
        st.session_state["user_query"] = ""
        st.session_state["user_pick"] = pending
    query = st.text_input("Find a user by id", key="user_query",
                          placeholder="type part of an id"
                          + (f", e.g. {users[len(users) // 2]}" if len(users) else ""))
    matches = matching_ids(users, query)  # the id typed in full first
    if matches.size == 0:
        st.warning(f"No user id contains “{escape_markdown(query)}”.")
        return None
    shown = matches[:500]
    current = st.session_state.get(state.SELECTED_USER)
    if current is not None and current not in set(shown) and current in set(matches):
        shown = np.concatenate([[current], shown[:499]])  # opened from another page
    index = int(np.flatnonzero(shown == current)[0]) if current in set(shown) else 0
    typed = query.strip()
    if typed != st.session_state.get("user_query_seen") and str(matches[0]) == typed:
        st.session_state["user_pick"] = matches[0]  # a new query naming an id in full opens it
    st.session_state["user_query_seen"] = typed
    chosen = st.selectbox(f"User ({matches.size:,} match{'es' if matches.size != 1 else ''}"
                          + (", first 500 listed" if matches.size > 500 else "") + ")",
                          list(shown), index=index, key="user_pick", filter_mode="contains")
    st.session_state[state.SELECTED_USER] = chosen
    return str(chosen)


def user_values(dataset: state.Dataset | None, user: str, items: np.ndarray) -> np.ndarray | None:
    """The value (rating) of each of the user's events, from the loaded log when it is the
    model's own data and the log has values; None otherwise."""
    if dataset is None or not dataset.log.has_value or state.data_mismatch() is not None:
        return None
    log = dataset.log
    order = log.time_order if log.time_order is not None else np.arange(log.n_events)
    own = order[(log.frame["user"].to_numpy()[order] == user)]
    rows = log.frame.iloc[own]
    if len(rows) != len(items) or (rows["item"].astype(str).to_numpy() != items.astype(str)).any():
        return None  # the model's history is not the log's rows (e.g. rare items left out)
    return rows["value"].to_numpy(dtype=float)


def attributes_ui(dataset: state.Dataset | None, user: str) -> None:
    users = dataset.users if dataset is not None else None
    if users is None or user not in users.index:
        return
    row = users.loc[user]
    if isinstance(row, pd.DataFrame):
        row = row.iloc[0]
    st.markdown(" · ".join(f"**{escape_markdown(str(k))}**: {escape_markdown(str(v))}"
                           for k, v in row.items()))


def timeline_ui(recommender, user: str, metadata, dataset) -> list[str]:
    history = recommender.history_
    row = int(history.user_position([user])[0])
    events = history.of_user(row)
    items = recommender.item_vocab_.token(events["items"])
    when = (pd.to_datetime(events["timestamps"], unit="us", utc=True) if history.has_timestamps
            else np.arange(1, items.size + 1))
    frame = pd.DataFrame({
        "when": when,
        "event": recommender.event_vocab_.token(events["events"]),
        "item": items,
        "label": [plotly_text(label) for label in labels_for(items, metadata)],
    })
    values = user_values(dataset, user, items)
    choices = ["event type"] + (["value"] if values is not None else [])
    if values is not None:
        frame["value"] = values
    colour_by, along = "event type", "time"
    slots = iter(st.columns(2))  # the choices shown, side by side from the left
    if len(choices) > 1:
        colour_by = next(slots).radio("Timeline by", choices, horizontal=True, key="timeline_colour",
                               index=len(choices) - 1 if frame["event"].nunique() == 1 else 0,
                               help="Event type, or the value (rating) each event carries in "
                                    "the log.")
    if history.has_timestamps:
        # a user of many events a day (MovieLens: hundreds of ratings in a few sittings) opens
        # in order, where on a time axis the day's points would lie on one another
        crowded = charts.crowded_days(frame["when"])
        along = next(slots).radio("Along", ["time", "order"], horizontal=True,
                            index=1 if crowded else 0, key=f"timeline_along:{user}",
                            help="Time, or the events evenly spaced in their order (the point "
                                 "still says its time)."
                                 + (" This user's events crowd a few days, so the timeline "
                                    "opens in order." if crowded else ""))
    recent = labels_for(items[::-1][:8], metadata)
    st.markdown("**Most recent:** " + " · ".join(escape_markdown(t) for t in recent))
    # titles beside the points when they fit; the list above and the table below always have them
    st.plotly_chart(charts.user_timeline(frame, "value" if colour_by == "value" else "event",
                                         labels_up_to=20 if len(frame) <= 20 else 0,
                                         along=along),
                    width="stretch", key="timeline")
    with st.expander(f"All {len(frame):,} events"):
        st.dataframe(frame.rename(columns={"label": "item (title)"}).drop(columns="item"),
                     hide_index=True)
    return [str(i) for i in items]


def reconstruction_ui(recommender, user: str, metadata) -> None:
    items, probabilities = recommender.reconstruct(user)
    if len(items) < 2:
        st.caption("One event only: nothing to compare the model's expectations with.")
        return
    vocab = recommender.item_vocab_
    steps = recommender.next_item_ranks(user)  # rank 1 = the model's first guess
    table = pd.DataFrame({
        "after": labels_for(steps["after"], metadata),
        "what came next": labels_for(steps["next"], metadata),
        "its rank": steps["rank"],
        "p": np.round(steps["p"], 4),
        "the model's top 3": [", ".join(labels_for(top, metadata)) for top in steps["top"]],
    })
    hits = int((steps["rank"] <= 10).sum())
    window = recommender.config_.max_len
    st.caption(f"For {hits:,} of the {len(table):,} steps below ({hits / max(len(table), 1):.0%}), "
               "what came next was among "
               "the model's top 10 guesses (ranking all items). The steps are this user's most "
               f"recent {len(items):,} events: the model reads at most {window:,}. It trained "
               "on them (all but the last two, held out to validate and test it, unless it was "
               "retrained on every event), so this shows how well it fits the history, not a "
               "forecast; and it ranks every item here, the one just seen included, where the "
               "recommendations leave out what the user already has.")
    st.dataframe(table, hide_index=True)
    strongest = np.argsort(-probabilities.max(axis=0))[:15]
    strongest = strongest[strongest != PAD]
    st.plotly_chart(charts.reconstruction_heatmap(
        probabilities[:, strongest], [plotly_text(t) for t in labels_for(items, metadata)],
        [plotly_text(t) for t in labels_for(vocab.token(strongest), metadata)]),
        width="stretch", key="heatmap")


def recommendations_ui(recommender, user: str, history_items: list[str], metadata) -> None:
    k = st.slider("How many", 5, 30, 10, key="rec_k")
    ids, scores = recommender.recommend([user], k=k)
    because = recommender.explain(history_items, list(ids[0]))
    table = pd.DataFrame({
        "rank": np.arange(1, ids.shape[1] + 1),
        "item": labels_for(ids[0], metadata),
        "score": np.round(scores[0], 3),
        "because of": ["; ".join(f"{label} ({sim:.2f})" for label, sim in zip(
            labels_for([i for i, _ in why], metadata), [s for _, s in why], strict=True))
            for why in because],
    })
    if metadata is not None and "category" in metadata.columns:
        table.insert(2, "category", metadata["category"].reindex(ids[0]).to_numpy())
    st.dataframe(table, hide_index=True)
    st.caption("“Because of”: the items of this user's history whose vectors in the model are "
               "closest to the recommended item's (cosine similarity).")


def similar_users_ui(recommender, user: str, dataset) -> None:
    view = st.radio(
        "Similar by", list(state.USERS_BY), horizontal=True, key="similar_users_by",
        format_func=state.USERS_BY.get,
        help="Taste: users whose events, all of their last window, the network reads alike "
             "(as the Latent page places them by default). Next step: users in the same state "
             "after their last event, whose recommendations are alike.")
    neighbours, similarity = recommender.similar_users(user, k=10, view=view)
    frame = pd.DataFrame({"user": neighbours, "cosine similarity of μ": np.round(similarity, 3)})
    # their activity and latest items, as the Latent page's nearest users show them
    history = recommender.history_
    about = latent.user_frame(
        history.subset_users(history.user_position([str(u) for u in neighbours])),
        recommender.item_vocab_, recommender.event_vocab_,
        items=dataset.items if dataset is not None else None)
    frame["events"] = about["events"].to_numpy()
    frame["last items"] = about["last_items"].to_numpy()
    users = dataset.users if dataset is not None else None
    if users is not None and len(users.columns) and state.data_mismatch() is None:
        frame = frame.join(users.reindex(frame["user"].astype(str)).reset_index(drop=True))
    picked = st.dataframe(frame, hide_index=True, key=f"similar_{user}", on_select="rerun",
                          selection_mode="single-row")
    st.caption("Select a row to open that user.")
    rows = getattr(getattr(picked, "selection", None), "rows", None) or []
    if rows:
        st.session_state[state.SELECTED_USER] = str(frame["user"].iloc[rows[0]])
        st.session_state["user_pick_pending"] = str(frame["user"].iloc[rows[0]])
        st.rerun()


def what_if_ui(recommender, user: str, history_items: list[str], metadata) -> None:
    # the edits are this user's (keys per user): another user opens with their own, and a
    # reload or a visit to another page keeps both (`seqvae.ui.sessions.KEPT_WIDGET_PREFIXES`)
    history = recommender.history_
    typed = len(recommender.event_vocab_.tokens) > 1  # a log without types has one, "unknown"
    carries = " and ".join(what for what, has in (("event types", typed),
                                                   ("times", history.has_timestamps)) if has)
    st.caption("Edit the sequence and see the recommendations change — no retraining: the model "
               "encodes the edited sequence as a new user"
               + (f", with its {carries}." if carries else "."))
    all_items = list(recommender.item_vocab_.tokens)
    label_of = dict(zip(all_items, labels_for(all_items, metadata), strict=True))
    unique_history = list(dict.fromkeys(history_items))
    left, middle, right = st.columns([2, 2, 1])
    # no "select all matches" entry: typing a title and pressing Enter would take every item
    # whose title matches (a new user added two films that way, seeing one)
    # the typed text is matched as written ("contains"): the default fuzzy match listed titles
    # that only share its letters in order
    removed = left.multiselect("Remove from the history", unique_history,
                               format_func=lambda i: label_of.get(i, i), filter_mode="contains",
                               key=f"whatif_remove:{user}", select_all=False)
    # an item the user already has is marked: added again, it is the latest event of the edited
    # history and can turn the whole list (a new user added a film the user had rated 5)
    seen = set(history_items)
    added = middle.multiselect(
        "Add at the end", all_items, select_all=False, filter_mode="contains",
        format_func=lambda i: label_of.get(i, i) + (" · already in the history" if i in seen
                                                    else ""),
        key=f"whatif_add:{user}")
    # the user's most common event type is what an added item becomes unless chosen otherwise
    own = history.of_user(int(history.user_position([user])[0]))["events"]
    event_types = list(recommender.event_vocab_.tokens)
    counts = np.bincount(own, minlength=recommender.event_vocab_.size)[2:]
    event = event_types[int(np.argmax(counts))]
    if typed:  # a log without event types has one ("unknown"): nothing to choose
        event = right.selectbox("Added as", event_types, index=int(np.argmax(counts)),
                                key=f"whatif_event:{user}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # items come from the model's vocabulary
        edited = recommender.edited_sequence(user, remove=removed, add=added, add_event=event)
    if edited.n_events == 0:
        st.warning("The edited sequence is empty: nothing to recommend from.")
        return
    before, _ = recommender.recommend([user], k=10)
    after, scores = recommender.recommend_sequences(edited, k=10)
    if not removed and not added:
        st.caption("No edit yet: these are the user's own recommendations."
                   + (" Added items follow the last event by the user's median gap between "
                      "events." if history.has_timestamps else ""))
    was = {item: rank for rank, item in enumerate(before[0], start=1)}

    def change(rank: int, item: str) -> str:
        if item not in was:
            return "new"
        moved = was[item] - rank
        return f"up {moved}" if moved > 0 else f"down {-moved}" if moved < 0 else ""

    st.dataframe(pd.DataFrame({
        "rank": np.arange(1, after.shape[1] + 1),
        "item": labels_for(after[0], metadata),
        "score": np.round(scores[0], 3),
        "change": [change(rank, item) for rank, item in enumerate(after[0], start=1)],
    }), hide_index=True)
    kept = set(after[0])
    gone = [item for item in before[0] if item not in kept]
    if gone:  # the "new" rows took these places
        st.caption("Out of the top 10: " + ", ".join(
            f"{escape_markdown(label)} (was {was[item]})"
            for item, label in zip(gone, labels_for(gone, metadata), strict=True)))


st.title("User")
if (mismatch := state.data_mismatch()) is not None:
    st.warning(escape_markdown(mismatch), icon="⚠️")
model_in_use = state.model()
if model_in_use is None:
    st.info(state.no_model_yet("see a user's story"))
else:
    dataset = state.dataset()
    metadata = dataset.items if dataset is not None else None
    recommender = model_in_use.recommender
    user = pick_user_ui(np.asarray(recommender.history_.users, dtype=str))
    if user is not None:
        st.subheader(f"User {escape_markdown(user)}", anchor=False)
        attributes_ui(dataset, user)
        history_items = timeline_ui(recommender, user, metadata, dataset)
        # the open tab is tracked (a key, a rerun on change) and kept like the What-if edits,
        # so coming back to the page, or reloading it, opens the tab that was open. Only the
        # open tab runs: on Beauty the similar users alone took 0.2 s of every rerun, the
        # reconstruction 0.1 s, whichever tab was shown
        tabs = st.tabs(["Recommendations", "Reconstruction", "Similar users", "What if"],
                       key="user_tab", on_change="rerun")
        sections = (lambda: recommendations_ui(recommender, user, history_items, metadata),
                    lambda: reconstruction_ui(recommender, user, metadata),
                    lambda: similar_users_ui(recommender, user, dataset),
                    lambda: what_if_ui(recommender, user, history_items, metadata))
        for tab, section in zip(tabs, sections, strict=True):
            if tab.open is not False:  # None: a Streamlit that does not track it runs them all
                with tab:
                    section()
