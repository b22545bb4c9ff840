"""seqvae: learn, explore and use representations of users from their behaviour logs.

The reading side (`seqvae.logs`, `seqvae.sequences`, `seqvae.splits`) imports no TensorFlow;
`load`, `fit` and the model import it on first use.
"""

from __future__ import annotations

from typing import Any

from seqvae.errors import LogFormatError, NotFittedError, SeqVAEError, TrainingDataError
from seqvae.logs import EventLog, IngestOptions, IngestReport, read_log, read_metadata
from seqvae.sequences import SequenceOptions, Sequences, encode, encode_user
from seqvae.splits import Split, holdout_users, leave_one_out, time_cut

__version__ = "0.1.0"


def load(directory: Any) -> Any:
    """Load a model directory -> a working `SeqVAERecommender` (see `seqvae.bundle`)."""
    from seqvae.bundle import load as load_bundle

    return load_bundle(directory)


def fit(*args: Any, **kwargs: Any) -> Any:
    """Train a SeqVAE on a split (see `seqvae.training.fit`)."""
    from seqvae.training import fit as fit_model

    return fit_model(*args, **kwargs)


__all__ = [
    "EventLog", "IngestOptions", "IngestReport", "LogFormatError", "NotFittedError",
    "SeqVAEError", "SequenceOptions", "Sequences", "Split", "TrainingDataError", "encode",
    "encode_user", "fit", "holdout_users", "leave_one_out", "load", "read_log", "read_metadata",
    "time_cut",
]
