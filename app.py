"""seqvae dashboard: the entry point (`make run`, or `streamlit run app.py`).

Routes between the pages with `st.navigation` and draws the sidebar that always shows the data
and the model in use and the next step. Pages are thin: they call the library. Nothing heavy is
imported here (no TensorFlow, no UMAP), so the first page load stays fast.
"""

from pathlib import Path

import streamlit as st

from seqvae.ui import runtime, sessions, state
from seqvae.ui.text import escape_markdown

runtime.keep_keras_state()  # before any page imports Keras; see seqvae/ui/runtime.py

# a favicon from the package: an emoji or Material icon would be fetched from the internet
FAVICON = Path(__file__).resolve().parent / "seqvae" / "ui" / "favicon.png"
st.set_page_config(page_title="seqvae", page_icon=str(FAVICON), layout="wide")

pages = [
    st.Page("pages/data.py", title="Data", icon=":material/table_chart:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/user.py", title="User", icon=":material/person:"),
    st.Page("pages/latent.py", title="Latent space", icon=":material/scatter_plot:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/leaderboard:"),
]
page = st.navigation(pages)
# this session's data, model and jobs live on the server under a token in the URL, so a reload
# of the tab finds them again (seqvae/ui/sessions.py)
sessions.attach(page=page.title)
try:
    state.adopt_finished_training()  # a model that finished while another page was open
    if state.model() is not None:
        runtime.warm_umap_in_background()  # once per process; the Latent page's UMAP is quick
    # The page runs first, so that the sidebar shows what the page just loaded.
    page.run()
finally:
    sessions.save()  # also when the page stopped or reran early

with st.sidebar:
    st.markdown("### seqvae")
    st.caption("User representations from behaviour logs")
    if st.session_state.pop(sessions.EXPIRED, False):
        st.warning("The session in this link has expired (or the server restarted): "
                   "load the data again.")
    current = state.dataset()
    model_in_use = state.model()
    mismatch = state.data_mismatch()
    job = st.session_state.get(state.JOB)
    if current is None:
        st.info("**Data:** none loaded yet.")
    else:
        summary = current.log.summary()
        st.success(
            f"**Data:** {escape_markdown(current.name)}  \n"
            f"{summary['users']:,} users · {summary['items']:,} items · "
            f"{summary['events']:,} events"
        )
    if model_in_use is not None:
        recommender = model_in_use.recommender
        ndcg = (f" · validation NDCG@10 {model_in_use.validation_ndcg:.3f}"
                if model_in_use.validation_ndcg is not None else "")
        (st.warning if mismatch else st.success)(
            f"**Model:** {escape_markdown(model_in_use.name)}  \n"
            f"{model_in_use.origin}, {model_in_use.created}  \n"
            f"latent {recommender.config_.latent_dim} · {recommender.item_vocab_.size - 2:,} items "
            f"· {recommender.history_.n_users:,} users{ndcg}"
        )
    if job is not None and job.active and job.continues:
        st.info(f"**Training:** the model on {escape_markdown(job.dataset_name)} goes on "
                f"after its epoch {job.earlier_epochs}…")
    elif job is not None and job.active and model_in_use is not None:
        st.info(f"**Training** a new model on {escape_markdown(job.dataset_name)}…")
    elif job is not None and job.active:
        st.info("**Model:** training…")
    elif model_in_use is None:
        st.info("**Model:** none yet.")
    if current is None:
        next_step = "load the sample or upload a log on the Data page."
    elif model_in_use is None and (job is None or not job.active):
        next_step = "train a model on the Train page."
    elif model_in_use is None or (mismatch and job is not None and job.active):
        next_step = "watch the training on the Train page."
    elif mismatch:
        next_step = f"train a model on {escape_markdown(current.name)} on the Train page."
    else:
        next_step = "open a user on the User page."
    st.caption(f"**Next:** {next_step}")
    if mismatch:
        st.caption(escape_markdown(mismatch))
