"""Property-based tests of seqvae.logs: accounting holds on random valid logs, and random bytes
never raise anything but LogFormatError."""

from __future__ import annotations

import contextlib
import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqvae.errors import LogFormatError
from seqvae.logs import IngestOptions, read_log

# An empty mean or a division by zero inside the reader is a bug, not noise.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

ids = st.one_of(st.integers(0, 30).map(str),
                st.text(alphabet="abcXYZ_é用户", min_size=1, max_size=6))
maybe = lambda s: st.one_of(st.just(""), s)  # noqa: E731 — a missing cell

rows = st.lists(
    st.tuples(
        maybe(ids),
        maybe(ids),
        maybe(st.integers(1_500_000_000, 1_700_000_000).map(str)),
        maybe(st.sampled_from(["view", "cart", "purchase"])),
        maybe(st.integers(1, 5).map(str)),
    ),
    min_size=1,
    max_size=60,
)


def to_csv(records, sep: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=sep, lineterminator="\n")
    writer.writerow(["user", "item", "ts", "event", "rating"])
    writer.writerows(records)
    return out.getvalue().encode("utf-8")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=rows, sep=st.sampled_from([",", "\t", ";", "|"]),
       missing_timestamp=st.sampled_from(["previous", "drop", "file-order"]),
       missing_value=st.sampled_from(["median", "mean", "drop"]),
       drop_duplicates=st.booleans())
def test_every_row_is_accounted_for(records, sep, missing_timestamp, missing_value,
                                    drop_duplicates):
    options = IngestOptions(missing_timestamp=missing_timestamp, missing_value=missing_value,
                            drop_duplicates=drop_duplicates)
    try:
        log, report = read_log(to_csv(records, sep), options, name="random.csv")
    except LogFormatError:
        return  # e.g. one item only, or every row dropped: refused with a clear error
    assert report.rows_read == len(records)
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())
    assert report.rows_kept == log.n_events
    frame = log.frame
    assert frame["user"].notna().all() and frame["item"].notna().all()
    assert log.n_items >= 2


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000))
def test_random_bytes_raise_only_log_format_errors(data):
    with contextlib.suppress(LogFormatError):
        read_log(data, name="random.bin")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=800))
def test_random_text_raises_only_log_format_errors(text):
    try:
        _log, report = read_log(text.encode("utf-8"), name="random.txt")
    except LogFormatError:
        return
    assert report.rows_read == report.rows_kept + sum(report.dropped.values())
