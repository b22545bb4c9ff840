"""Session-state keys and their defaults, in one place.

Everything a user loads lives in `st.session_state`, so one browser session never sees another's
data. Pages read and write state only through these helpers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def model() -> ModelInUse | None:
    value = st.session_state.get(MODEL)
    return value if isinstance(value, ModelInUse) else None


def set_model(value: ModelInUse | None) -> None:
    st.session_state.pop(MODEL_ZIP, None)  # a zip prepared for the previous model is stale
    if value is None:
        st.session_state.pop(MODEL, None)
    else:
        st.session_state[MODEL] = value


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
        origin="trained in this session",
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        validation_ndcg=best.get(f"NDCG@{job.config.eval_k}"),
    ))
