"""Training off the script thread: a job object the page polls, and a server-wide limit.

A Streamlit script must not block while a model trains, so `start_training` runs the whole
pipeline (encode -> split -> fit) on a daemon thread and returns a `TrainingJob` at once. The job
records progress after every batch and epoch (under a lock) and holds the result; the page reads
it on each rerun and can cancel it. At most `MAX_CONCURRENT_TRAININGS` jobs train at a time in
the server process; the others wait in state "queued".
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from seqvae.errors import SeqVAEError
from seqvae.logs import EventLog
from seqvae.training import BatchProgress, CancelToken, EpochRecord, SeqVAEConfig
from seqvae.ui.text import duration

logger = logging.getLogger("seqvae.ui")

MAX_CONCURRENT_TRAININGS = int(os.environ.get("SEQVAE_MAX_TRAININGS", "1"))
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_TRAININGS)


@dataclass(kw_only=True)
class _Job:
    """What every background job shares with the page that polls it."""

    state: str = "queued"  # queued, running, done, failed, cancelled
    message: str = ""
    started: float | None = None
    finished: float | None = None
    cancel_token: CancelToken = field(default_factory=CancelToken)
    # who stopped it, for the page: the analyst, or the server when the session went away
    cancel_reason: str = "stopped by you"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def cancel(self, reason: str = "stopped by you") -> None:
        with self._lock:
            if not self.cancel_token.cancelled:
                self.cancel_reason = reason
        self.cancel_token.cancel()

    def _failed(self, what: str, exc: BaseException) -> None:
        """Record a failure as a message for the page (a traceback goes to the server log)."""
        if not isinstance(exc, SeqVAEError):
            logger.error("%s failed: %s", what, traceback.format_exc())
        message = (str(exc) if isinstance(exc, SeqVAEError)
                   else f"{what} failed ({type(exc).__name__}: {exc})")
        with self._lock:
            self.state, self.message = "failed", message

    def took(self) -> str | None:
        """How long the job ran, from its slot to its end ("1 min 05 s"); None while it runs
        or if it never started."""
        with self._lock:
            started, finished = self.started, self.finished
        if started is None or finished is None:
            return None
        return duration(finished - started)

    def _finish(self) -> None:
        with self._lock:
            self.finished = time.monotonic()
        _SLOTS.release()

    def _wait_for_slot(self) -> bool:
        """Take one of the server's slots; False (and state "cancelled") if cancelled first."""
        while not _SLOTS.acquire(timeout=0.5):
            if self.cancel_token.cancelled:
                with self._lock:
                    self.state = "cancelled"
                    self.message = f"{self.cancel_reason} while waiting for a free slot"
                    self.finished = time.monotonic()
                return False
        with self._lock:
            self.state = "running"
            self.started = time.monotonic()
        return True


@dataclass
class TrainingJob(_Job):
    """One training run, shared between its thread and the page that polls it."""

    dataset_name: str
    config: SeqVAEConfig
    data_fingerprint: str = ""  # the `Dataset.fingerprint` of the log it trains on
    # written after every epoch, so that "Continue training" picks up where this job ended
    checkpoint_dir: str | None = None
    progress: BatchProgress | None = None
    epochs: list[EpochRecord] = field(default_factory=list)
    recommender: Any = None
    history: Any = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    popularity_metrics: dict[str, float] = field(default_factory=dict)  # the same test
    created: float = field(default_factory=time.monotonic)
    # after the last epoch: "testing" (scoring the test split), "refitting" (with `refit`),
    # then "encoding" (μ of every user, for the Latent page)
    phase: str = ""
    # retrain on every event for the chosen epochs once tested (`seqvae.pipeline.train`), and
    # what that retraining was (epochs, events, seconds) once it has replaced the tested model
    refit: bool = False
    refit_info: dict[str, Any] | None = None
    # epochs trained by the job this one continues ("Continue training"); 0 for a new model
    earlier_epochs: int = 0
    # (time, epochs done) at this job's first finished batch: the time-left estimate's origin,
    # after the data preparation and the step's first trace, which later batches do not repeat
    # (an ensemble's: at the first batch heard from the network its progress now follows)
    _pace_origin: tuple[float, float] | None = field(default=None, repr=False)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of what the page shows."""
        with self._lock:
            return {"state": self.state, "progress": self.progress, "epochs": list(self.epochs),
                    "message": self.message, "started": self.started, "finished": self.finished,
                    "phase": self.phase}

    @property
    def continues(self) -> bool:
        """Whether this job goes on training an earlier job's model ("Continue training")."""
        return self.earlier_epochs > 0

    @property
    def own_epochs(self) -> int:
        """The epochs this job trained itself, not those of the job it continues."""
        with self._lock:
            return len(self.epochs) - self.earlier_epochs

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Time left if the rest of the run goes at this job's pace since its first batch
        (validation included once an epoch has ended); None until that pace is known.

        The pace leaves out what comes once per job (reading and splitting the log, building
        the model, tracing the step: the first batch) and the epochs of the job it continues,
        which this job did not train: counting either made the estimate several times too
        high early in a run, and too low in a continued one."""
        with self._lock:
            progress, origin = self.progress, self._pace_origin
            if progress is None or origin is None:
                return None
            done = epochs_done(progress)
            since, done_then = origin
            if done <= done_then:
                return None
            now = time.monotonic() if now is None else now
            return (now - since) / (done - done_then) * max(progress.epochs - done, 0.0)

    def progress_text(self, snapshot: dict[str, Any], now: float | None = None) -> str:
        """The line under the Train page's progress bar, for `snapshot` (`snapshot()`)."""
        progress = snapshot["progress"]
        if snapshot["state"] == "queued":
            return ("Waiting for a free training slot (another training is running on this "
                    "server)…")
        if progress is None:
            started = snapshot.get("started")
            if started is None:
                return "Preparing…"
            elapsed = (time.monotonic() if now is None else now) - started
            return (f"Preparing… {duration(elapsed)} so far: cutting the log into windows, "
                    "building the network and compiling its training step (once per training; "
                    "the epochs' batches then follow with a time estimate)")
        phase = snapshot.get("phase")
        if phase == "testing":
            return "Training done · scoring the test split (touched once, for the metrics below)…"
        if phase == "encoding":
            return "Training done · encoding every user (μ) for the Latent page…"
        # an ensemble's progress is one network's at a time: it says which
        several = progress.networks > 1
        network = f"network {progress.network} of {progress.networks}" if several else ""
        at = f"epoch {progress.epoch}/{progress.epochs}"
        if phase == "refitting":
            return (f"Training done · retraining on every event: {network + ', ' if several else ''}"
                    f"{at}, batch {progress.batch}/{progress.batches}…")
        lead = f"{network.capitalize()} · {at}" if several else at.capitalize()
        if progress.batch >= progress.batches:  # the epoch's batches are done: scoring validation
            return f"{lead} · validating (ranking every item for each validation user)…"
        eta = self.eta_seconds(now)
        eta_text = (f" · about {eta:.0f} s left{' for this network' if several else ''}"
                    if eta is not None else "")
        return (f"{lead} · batch {progress.batch}/{progress.batches} · loss {progress.loss:.3f} "
                f"(reconstruction {progress.reconstruction_loss:.3f}, KL {progress.kl_loss:.2f}, "
                f"β {progress.beta:.2g}){eta_text}")

    # called on the training thread
    def _on_batch(self, progress: BatchProgress, now: float | None = None) -> None:
        with self._lock:
            changed = self.progress is not None and self.progress.network != progress.network
            self.progress = progress
            if self._pace_origin is None or changed:  # another network of an ensemble: its pace
                self._pace_origin = (time.monotonic() if now is None else now,
                                     epochs_done(progress))

    def _on_epoch(self, record: EpochRecord) -> None:
        with self._lock:
            self.epochs.append(record)

    def _set_phase(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    @property
    def can_continue(self) -> bool:
        """Finished on its epoch limit while still improving: more epochs would likely help."""
        history = self.history
        return (self.state == "done" and history is not None and not history.stopped_early
                and bool(history.epochs) and history.best_epoch == len(history.epochs)
                and self.checkpoint_dir is not None and not self.refit)

    def discard(self) -> None:
        """Delete the job's checkpoint (a job that is replaced, or whose session expired)."""
        from seqvae.training import remove_checkpoint

        if self.checkpoint_dir is not None and not self.active:
            remove_checkpoint(self.checkpoint_dir)
            self.checkpoint_dir = None


def epochs_done(progress: BatchProgress) -> float:
    """Epochs done, counting the current epoch's finished batches as its fraction."""
    return (progress.epoch - 1) + progress.batch / max(progress.batches, 1)


def prepare_split(log: EventLog) -> tuple[Any, Any]:
    """Encode and split a log for training; raises a readable error when it cannot train."""
    from seqvae.pipeline import encode_log, training_split

    sequences = encode_log(log).sequences
    return sequences, training_split(sequences)


def start_training(log: EventLog, dataset_name: str, config: SeqVAEConfig,
                   data_fingerprint: str = "", continue_from: TrainingJob | None = None,
                   refit: bool = False) -> TrainingJob:
    """Check the data, then train on a background thread. Raises `SeqVAEError` at once when the
    data cannot train a model (so the page says why before anything starts).

    `continue_from`: a finished job on the same log; training goes on from its last epoch (its
    checkpoint) up to ``config.epochs``, and the new job's curves start with its epochs.
    `refit`: once tested, retrain on every event for the chosen epochs (such a job cannot be
    continued: its model is not the checkpoint's)."""
    sequences, split = prepare_split(log)
    # Import TensorFlow here, on the script thread, before the training thread starts, so the
    # thread never races another thread's first import of it (a page test once saw the first
    # training step fail with "SymbolicTensor has no attribute handle" and not since).
    import keras  # noqa: F401

    if continue_from is not None and continue_from.checkpoint_dir is not None:
        checkpoint, earlier = continue_from.checkpoint_dir, list(continue_from.epochs)
        continue_from.checkpoint_dir = None  # the new job owns it now
    else:
        checkpoint, earlier = tempfile.mkdtemp(prefix="seqvae-training-"), []
    job = TrainingJob(dataset_name=dataset_name, config=config,
                      data_fingerprint=data_fingerprint, checkpoint_dir=checkpoint,
                      epochs=earlier, refit=refit, earlier_epochs=len(earlier))
    thread = threading.Thread(target=_run, args=(job, sequences, split), daemon=True,
                              name=f"seqvae-training-{id(job)}")
    thread.start()
    return job


def _run(job: TrainingJob, sequences: Any, split: Any) -> None:
    if not job._wait_for_slot():
        return
    try:
        from seqvae.pipeline import refit_epochs_text, train

        # μ of every user is encoded on this thread too: the Latent page then opens at once
        trained = train(sequences, job.config, split=split, on_phase=job._set_phase,
                        encode_users=True, popularity=True, refit=job.refit,
                        on_batch=job._on_batch, on_epoch=job._on_epoch,
                        cancel=job.cancel_token, checkpoint_dir=job.checkpoint_dir)
        history = trained.history
        with job._lock:
            job.recommender = trained.recommender
            job.history = history
            job.test_metrics = trained.test
            job.popularity_metrics = trained.popularity or {}
            job.refit_info = trained.refit
            # a stop after the epochs (while testing, retraining or encoding) keeps a complete,
            # tested model: only epochs cut short make a "cancelled" job
            job.state = "cancelled" if history.cancelled else "done"
            if history.cancelled:
                job.message = (f"{job.cancel_reason} after epoch {len(history.epochs)}; kept "
                               f"the best epoch ({history.best_epoch})")
            elif job.refit and trained.refit is None and job.cancel_token.cancelled:
                job.message = (f"{job.cancel_reason} while retraining on every event; kept the "
                               f"tested model (best epoch {history.best_epoch})")
            else:
                job.message = f"best epoch {history.best_epoch} of {len(history.epochs)}"
                if trained.refit is not None:
                    job.message += (f", then retrained on all {trained.refit['events']:,} "
                                    f"events for {refit_epochs_text(trained.refit)}")
    except Exception as exc:  # reported on the page, never a traceback there
        job._failed("training", exc)
    finally:
        job._finish()


@dataclass
class EvaluationJob(_Job):
    """One comparison run (`seqvae.compare.compare`) on a background thread."""

    dataset_name: str
    protocol: str
    models: list[str]
    ks: list[int]
    lines: list[str] = field(default_factory=list)  # progress, newest last
    result: Any = None  # a `Comparison` (partial when cancelled)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"state": self.state, "lines": list(self.lines), "result": self.result,
                    "message": self.message, "started": self.started,
                    "finished": self.finished}

    def _say(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def fraction_done(self) -> float:
        """How far the run is, 0 to 1: each model an equal share, a neural model's share
        filled epoch by epoch up to its epoch limit (early stopping may end it sooner), a
        tuned model's setting by setting."""
        with self._lock:
            lines = list(self.lines)
        done = sum(1 for line in lines if line.endswith(": testing"))
        step = (_EPOCH_LINE.match(lines[-1]) or _SETTING_LINE.match(lines[-1])) if lines else None
        within = min(int(step[1]) / max(int(step[2]), 1), 1.0) if step else 0.0
        return min((done + within) / max(len(self.models), 1), 1.0)

    def status(self, now: float | None = None) -> str:
        """The progress bar's text: the latest line, which model of how many, and the time since
        the run started (no estimate of what is left: the models' costs differ by 100×)."""
        with self._lock:
            lines, started = list(self.lines), self.started
        if not lines or started is None:
            return "waiting for a free slot…"
        tested = sum(1 for line in lines if line.endswith(": testing"))
        current = tested + (0 if lines[-1].endswith(": testing") else 1)
        elapsed = int((time.monotonic() if now is None else now) - started)
        # the line's model by the name the page gives it ("most popular", not "pop")
        model, said, rest = lines[-1].partition(": ")
        latest = f"{MODEL_NAMES.get(model, model)}{said}{rest}"
        return (f"{latest} · model {max(min(current, len(self.models)), 1)} of "
                f"{len(self.models)} · {duration(elapsed)} so far")


# the models as the pages name them; short, so every chosen model's chip shows in the Evaluate
# page's box
MODEL_NAMES = {"seqvae": "SeqVAE", "sasrec": "SASRec", "multvae": "Mult-VAE", "ease": "EASE",
               "itemknn": "item-KNN", "pop": "most popular"}
_EPOCH_LINE = re.compile(r"^\w+: epoch (\d+) of at most (\d+),")
_SETTING_LINE = re.compile(r"^\w+: .*, setting (\d+) of (\d+), validation ")


def start_evaluation(log: EventLog, dataset_name: str, protocol: str, models: list[str],
                     ks: list[int], seqvae_config: SeqVAEConfig) -> EvaluationJob:
    """Split the log now (so a protocol that cannot work says why at once), then compare the
    models on a background thread, sharing the server's training slots."""
    from seqvae.compare import make_split
    from seqvae.pipeline import encode_log

    sequences = encode_log(log).sequences
    split = make_split(sequences, protocol)
    import keras  # noqa: F401  (imported on the script thread, as for training)

    job = EvaluationJob(dataset_name=dataset_name, protocol=protocol, models=list(models),
                        ks=list(ks))
    thread = threading.Thread(target=_evaluate, args=(job, sequences, split, seqvae_config),
                              daemon=True, name=f"seqvae-evaluation-{id(job)}")
    thread.start()
    return job


def _evaluate(job: EvaluationJob, sequences: Any, split: Any, config: SeqVAEConfig) -> None:
    from seqvae.compare import compare
    from seqvae.evaluation import EvaluationCancelled

    if not job._wait_for_slot():
        return
    try:
        result = compare(sequences, job.protocol, job.models, job.ks, seqvae_config=config,
                         split=split, progress=job._say, cancel=job.cancel_token)
        with job._lock:
            job.result = result
            done = [r.model for r in result.results]
            job.state = "cancelled" if job.cancel_token.cancelled else "done"
            job.message = (f"{job.cancel_reason}; finished: {', '.join(done) or 'none'}"
                           if job.cancel_token.cancelled else f"{len(done)} models compared")
    except EvaluationCancelled:
        with job._lock:
            job.state, job.message = "cancelled", job.cancel_reason
    except Exception as exc:  # reported on the page, never a traceback there
        job._failed("evaluation", exc)
    finally:
        job._finish()
