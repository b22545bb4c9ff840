"""Session-state keys and their defaults, in one place.

Everything a user loads lives in `st.session_state`, so one browser session never sees another's
data. Pages read and write state only through these helpers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from seqvae.logs import EventLog, IngestOptions, IngestReport

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
SAMPLE_EVENTS = SAMPLE_DIR / "events.csv"
SAMPLE_ITEMS = SAMPLE_DIR / "items.csv"
SAMPLE_SEGMENTS = SAMPLE_DIR / "segments.csv"

# The Train page's epoch limit: a first model in about a minute on the sample (2-core machine,
# benchmarks/dashboard.md), where `SeqVAEConfig`'s 30 suit the command line.
DASHBOARD_EPOCHS = 6

# session keys
DATASET = "dataset"  # the loaded `Dataset`, or absent
UPLOAD_ERROR = "upload_error"  # the last reading error, shown on the Data page
MODEL = "model"  # the `ModelInUse`, or absent
JOB = "training_job"  # the session's `TrainingJob` (running or finished), or absent
SELECTED_USER = "selected_user"  # the user the User page shows
PENDING_UPLOAD = "pending_upload"  # (name, bytes) of an upload that failed to read, to retry
SEEN_UPLOAD = "seen_upload_{}"  # file id of the last upload handled, per uploader widget
MODEL_ZIP = "model_zip"  # the zipped model directory, once prepared for download
ADOPTED_JOB = "adopted_job"  # id of the training job whose model is in use
JOB_WAS_ACTIVE = "job_was_active"  # the Train page saw the job running on its last redraw
CURVES = "training_curves"  # ((job id, epochs drawn), loss figure, validation figure)
LATENT = "latent_view"  # the `LatentView` of the model in use (μ, user table, projections)
SELECTION = "latent_selection"  # {"users": [ids], "how": "box" | "lasso" | ..., "map": words}
DRIFT_SHOWN = "drift_shown"  # the (as of, compared with) dates of the drift the page shows
BETWEEN_OPENED = "between_opened"  # the user last opened, where "Between two users" began
COHORTS = "cohorts"  # name -> list of user ids, kept by the analyst
EVALUATION = "evaluation_job"  # the session's `EvaluationJob`, or absent


def is_new_upload(widget_key: str, upload: Any) -> bool:
    """True once per uploaded file: Streamlit keeps returning the same upload on every rerun."""
    if upload is None:
        return False
    key = SEEN_UPLOAD.format(widget_key)
    if st.session_state.get(key) == upload.file_id:
        return False
    st.session_state[key] = upload.file_id
    return True


@dataclass
class Dataset:
    """A log the user loaded in this session, with how it was read."""

    name: str
    data: bytes  # the file's bytes, kept to re-read it with other options
    log: EventLog
    report: IngestReport
    options: IngestOptions
    items: Any = None  # item metadata DataFrame (index: item id), when given
    users: Any = None  # user attributes DataFrame (index: user id), when given
    # what the log is: the file's bytes and the reading options (a model trained on this log
    # carries it, so every page can say when the model in use belongs to other data)
    min_value: float | None = None  # events below this value (rating) were left out
    fingerprint: str = ""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            digest = hashlib.sha256(self.data)
            digest.update(repr((self.options, self.min_value)).encode())
            self.fingerprint = digest.hexdigest()[:16]


def dataset() -> Dataset | None:
    value = st.session_state.get(DATASET)
    return value if isinstance(value, Dataset) else None


def set_dataset(value: Dataset | None) -> None:
    if value is None:
        st.session_state.pop(DATASET, None)
    else:
        st.session_state[DATASET] = value


@dataclass
class ModelInUse:
    """The model this session recommends with: trained here or uploaded."""

    recommender: Any
    name: str
    origin: str  # "trained in this session" or "uploaded"
    created: str  # when it was trained or loaded, ISO-8601 (UTC)
    validation_ndcg: float | None
    data_name: str | None = None  # the log it was trained on, when trained in this session
    data_fingerprint: str | None = None  # that log's `Dataset.fingerprint`


def no_model_yet(to: str) -> str:
    """What a page that needs a model says without one: that one is training, where it is
    (so nobody starts a second), or where to get one. `to`: what the page would do with it."""
    job = st.session_state.get(JOB)
    if job is not None and getattr(job, "active", False):
        return f"A model is training on the Train page: come back here once it is done to {to}."
    return f"Train a model on the Train page (or upload one there) to {to}."


def model() -> ModelInUse | None:
    value = st.session_state.get(MODEL)
    return value if isinstance(value, ModelInUse) else None


def set_model(value: ModelInUse | None) -> None:
    st.session_state.pop(MODEL_ZIP, None)  # a zip prepared for the previous model is stale
    if value is None:
        st.session_state.pop(MODEL, None)
    else:
        st.session_state[MODEL] = value


def with_refit_note(origin: str, recommender: Any) -> str:
    """`origin`, noting when the model was retrained on every event after its evaluation (its
    recorded validation is then its held-out predecessor's)."""
    if getattr(recommender, "metrics_", {}).get("refit"):
        return f"{origin} (validation before retraining on every event)"
    return origin


def adopt_finished_training() -> None:
    """Make the session's finished training job's model the model in use (once per job).

    Called by every page run (from `app.py`), so a model that finished while the analyst was
    on another page is picked up there.
    """
    import datetime as dt

    job = st.session_state.get(JOB)
    if job is None or job.recommender is None or job.active:
        return
    if st.session_state.get(ADOPTED_JOB) == id(job):
        return
    st.session_state[ADOPTED_JOB] = id(job)
    best = job.history.best_validation if job.history else {}
    set_model(ModelInUse(
        recommender=job.recommender,
        name=f"SeqVAE on {job.dataset_name}",
        origin=with_refit_note("trained in this session", job.recommender),
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        validation_ndcg=best.get(f"NDCG@{job.config.eval_k}"),
        data_name=job.dataset_name,
        data_fingerprint=job.data_fingerprint or None,
    ))


def data_mismatch() -> str | None:
    """A sentence when the model in use does not belong to the data loaded now, else None."""
    current, in_use = dataset(), model()
    if in_use is None:
        return None
    if in_use.data_fingerprint is None:  # uploaded: compare its users with the log's
        if current is None:
            return None
        history = in_use.recommender.history_
        users = current.log.frame["user"].cat.categories
        if len(users) == history.n_users and (history.user_position(users[:1000]) >= 0).all():
            return None
        return (f"The model in use was uploaded and its {history.n_users:,} users are not "
                f"those of {current.name} ({len(users):,} users): its map and recommendations "
                "are its own users'.")
    if current is None:
        return f"The model in use was trained on {in_use.data_name}; that log is not loaded now."
    if current.fingerprint != in_use.data_fingerprint:
        same_name = current.name == in_use.data_name
        return (f"The model in use was trained on {in_use.data_name}"
                + (" as read with other settings" if same_name else "")
                + f", not on the data loaded now ({current.name}): its users, map and "
                "recommendations are that log's. Train on the Train page for this one.")
    return None


# the most users a map draws: above it, a sample of this many, drawn once per view
MAP_LIMIT = 20_000
# the users the Latent page's Between-two-users pickers list; any other id can be typed in full.
# Every rerun of the page sends both lists: with 20,000 each a pick took 0.7 s in Chromium, with
# 2,000 0.2 s (one run each, this project's 2-core machine)
LISTED_USERS = 2_000
# above this many users the Latent page says HDBSCAN takes a while (Beauty's 22,363: 70-90 s)
HDBSCAN_SLOW_ABOVE = 5_000


class LatentView:
    """The model in use seen as a latent space: μ, σ and a table of its users, computed once per
    model and view (`seqvae.recommender.VIEWS`: "taste", every event of a user's last window
    combined; "next", the state after their last event); projections and clusters cached as
    the analyst asks for them."""

    def __init__(self, recommender: Any, dataset: Dataset | None, limit: int | None = None,
                 view: str = "taste") -> None:
        self.recommender = recommender
        self.view = view
        self.sequences = recommender.history_
        self.item_vocab = recommender.item_vocab_
        self.event_vocab = recommender.event_vocab_
        self.mu, log_var = recommender.history_encoding(view)
        self.sigma = np.exp(0.5 * log_var)
        self._side_key: tuple[int, int] | None = None
        self.frame = pd.DataFrame()
        self.use_side_tables(dataset)
        self.limit = MAP_LIMIT if limit is None else limit
        # the map shown per projection ("PCA-2", "UMAP-3", ...), and every UMAP computed on
        # the current sample, by (dims, neighbours, minimum distance): re-running with earlier
        # parameters is instant
        self.coords: dict[str, np.ndarray] = {}
        self.umaps: dict[tuple[int, int, float], np.ndarray] = {}
        self.umap_params: dict[int, tuple[int, float]] = {}  # dims -> the UMAP shown's
        self._clusters_key: tuple[str, int] | None = None
        self._clusterings: dict[tuple[str, int], np.ndarray] = {}  # every one computed
        self.clusters = np.zeros(len(self.frame), dtype=np.int64)
        self._names: dict[int, str] | None = None
        self.sample_rows = np.arange(len(self.frame))
        self._sample_drawn = False  # the sample is drawn with the first clusters, then kept
        self._index = pd.Index(self.frame["user"])

    def use_side_tables(self, dataset: Dataset | None) -> None:
        """(Re)build the user table when the dataset's item or user table changed since (side
        files attached after the map was first drawn); μ, maps and clusters are kept."""
        from seqvae.latent import user_frame

        items = dataset.items if dataset is not None else None
        users = dataset.users if dataset is not None else None
        key = (id(items), id(users))
        if key == self._side_key:
            return
        self._side_key = key
        self.frame = user_frame(self.sequences, self.item_vocab, self.event_vocab,
                                items=items, users=users)
        self._names = None

    def rows_of(self, users: list[str], missing_ok: bool = False) -> np.ndarray:
        rows = self._index.get_indexer([str(u) for u in users])
        if not missing_ok and (rows < 0).any():
            raise KeyError(f"unknown users: {[u for u, r in zip(users, rows, strict=True) if r < 0][:5]}")
        return rows[rows >= 0]

    @staticmethod
    def _clustering(method: str, k: int) -> tuple[str, int]:
        return (method, k if method == "kmeans" else 0)  # HDBSCAN finds its own number

    def has_clusters(self, method: str, k: int) -> bool:
        """Whether the clusters of `method` (and `k`) were computed already (then they are
        instant: every clustering asked for is kept)."""
        return self._clustering(method, k) in self._clusterings

    def set_clusters(self, method: str, k: int) -> None:
        from seqvae.latent import cluster_users, stratified_sample

        key = self._clustering(method, k)
        if self._clusters_key == key:
            return
        if key not in self._clusterings:
            self._clusterings[key] = cluster_users(self.mu, k=k, method=method)
        self.clusters = self._clusterings[key]
        self._clusters_key = key
        self._names = None
        # the map's sample (when there are too many users) is drawn once, keeping each first
        # cluster's share: a UMAP map is tied to the users it was computed on, so a sample
        # drawn again for every clustering threw the UMAP away whenever k or the method changed
        if not self._sample_drawn:
            self.sample_rows = stratified_sample(self.clusters, self.limit)
            self._sample_drawn = True

    def cluster_names(self, items: Any = None) -> dict[int, str]:
        from seqvae.latent import cluster_names

        if self._names is None:
            self._names = cluster_names(self.sequences, self.clusters, self.item_vocab,
                                        self.event_vocab, items=items, reach=self.reach)
        return self._names

    @property
    def reach(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`seqvae.latent.item_reach` of the users (computed once): every cluster name and
        cohort table counts users per item from it."""
        if getattr(self, "_reach", None) is None:
            from seqvae.latent import item_reach

            self._reach = item_reach(self.sequences, self.item_vocab.size)
        return self._reach

    def reconstruction_error(self) -> np.ndarray:
        """Each user's mean -log p(next item) along their last window (computed once)."""
        if getattr(self, "_reconstruction_error", None) is None:
            self._reconstruction_error = self.recommender.reconstruction_error(self.sequences)
        return self._reconstruction_error

    def show_umap(self, dims: int, n_neighbors: int, min_dist: float) -> bool:
        """Make the UMAP with these parameters the one shown, if it was computed; -> whether."""
        cached = self.umaps.get((dims, n_neighbors, min_dist))
        if cached is not None:
            self.coords[f"UMAP-{dims}"] = cached
            self.umap_params[dims] = (n_neighbors, min_dist)
        return cached is not None

    def compute_umap(self, dims: int, n_neighbors: int, min_dist: float) -> None:
        from seqvae.latent import project_umap

        coords = np.zeros((len(self.frame), dims))
        coords[self.sample_rows] = project_umap(self.mu[self.sample_rows], dims=dims,
                                                n_neighbors=n_neighbors, min_dist=min_dist)
        self.umaps[(dims, n_neighbors, min_dist)] = coords
        self.coords[f"UMAP-{dims}"] = coords
        self.umap_params[dims] = (n_neighbors, min_dist)


# a user's two views (`seqvae.recommender.VIEWS`) as the pages' radios name them: the Latent page
# places users by one, the User page finds similar users by one
USERS_BY = {"taste": "taste (every event)", "next": "next step (after the last event)"}


def latent_view(model_in_use: ModelInUse, dataset: Dataset | None,
                view: str = "taste") -> LatentView:
    """The session's `LatentView` of `model_in_use` in `view` (built on first use; each view
    keeps its own maps and clusters). Kept as (recommender, the view shown, every view built)."""
    recommender = model_in_use.recommender
    cached = st.session_state.get(LATENT)
    if cached is None or cached[0] is not recommender:
        cached = (recommender, None, {})
        st.session_state.pop(SELECTION, None)
        st.session_state.pop("latent_exports", None)
    views: dict[str, LatentView] = cached[2]
    if view not in views:
        views[view] = LatentView(recommender, dataset, view=view)
    st.session_state[LATENT] = (recommender, views[view], views)
    views[view].use_side_tables(dataset)
    return views[view]
