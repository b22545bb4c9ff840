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

# session keys
DATASET = "dataset"  # the loaded `Dataset`, or absent
UPLOAD_ERROR = "upload_error"  # the last reading error, shown on the Data page


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
