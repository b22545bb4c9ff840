"""Loading logs and side tables into a session's `Dataset`."""

from __future__ import annotations

from seqvae.logs import IngestOptions, keep_positive, read_log, read_metadata
from seqvae.ui.state import SAMPLE_EVENTS, SAMPLE_ITEMS, SAMPLE_SEGMENTS, Dataset


def load_dataset(name: str, data: bytes, options: IngestOptions | None = None,
                 min_value: float | None = None) -> Dataset:
    """Read `data` (a file's bytes) as a log; with `min_value`, keep only the events whose value
    (rating) reaches it, the others counted in the report. Raises `LogFormatError` with a
    readable message."""
    options = options or IngestOptions()
    log, report = read_log(data, options, name=name)
    if min_value is not None:
        log = keep_positive(log, min_value, report)
    return Dataset(name=name, data=data, log=log, report=report, options=options,
                   min_value=min_value)


def load_sample() -> Dataset:
    """The bundled sample, with its item titles and planted user segments."""
    dataset = load_dataset(SAMPLE_EVENTS.name, SAMPLE_EVENTS.read_bytes())
    dataset.name = "sample: events.csv"
    dataset.items = read_metadata(SAMPLE_ITEMS, key="item")
    dataset.users = read_metadata(SAMPLE_SEGMENTS, key="user")
    return dataset
