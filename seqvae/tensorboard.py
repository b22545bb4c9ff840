"""Per-epoch training scalars in TensorBoard's event-file format: ``seqvae train --tensorboard DIR``.

`TensorBoardLogger` is an ``on_epoch`` hook for `seqvae.training.fit` (and `fit_store`): after
every epoch it writes, at step = the epoch number, the tags

* ``loss``, ``reconstruction_loss``, ``kl_loss``, ``beta`` — the epoch's mean losses and the KL
  weight at its end, the same numbers as ``history.json``;
* ``validation/<metric>`` — each validation metric (``validation/NDCG@10``, …);
* ``epoch_seconds`` — the epoch's wall time, validation included.

The scalars are written with `tf.summary.write` and the scalars plugin's metadata — what
``tensorboard.summary.scalar`` writes — so TensorBoard shows them as scalar charts while TensorBoard
itself stays out of the dependencies (``pip install tensorboard`` to view:
``tensorboard --logdir DIR``). Only the chief of a multi-worker run writes; the others' hooks do
nothing, so the workers never write into the same folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seqvae.training import EpochRecord

# the plugin TensorBoard draws these tags with (tensorboard/plugins/scalar/metadata.py)
SCALARS_PLUGIN = "scalars"


def epoch_scalars(record: EpochRecord) -> dict[str, float]:
    """The tags and values `TensorBoardLogger` writes for one epoch (see the module docstring)."""
    scalars = {
        "loss": record.loss,
        "reconstruction_loss": record.reconstruction_loss,
        "kl_loss": record.kl_loss,
        "beta": record.beta,
    }
    scalars.update({f"validation/{name}": value for name, value in record.validation.items()})
    scalars["epoch_seconds"] = record.seconds
    return {tag: float(value) for tag, value in scalars.items()}


class TensorBoardLogger:
    """An ``on_epoch`` hook that appends each epoch's scalars to an event file in `logdir`.

    The file is flushed after every epoch, so a TensorBoard pointed at `logdir` follows a run
    live. The writer is made on the first epoch (a multi-worker strategy must exist before
    TensorFlow's first operation, and the hook is made before training starts).

    Args:
        logdir: the folder of the event files (made if missing); one file per run.
        strategy: the run's `tf.distribute` strategy, or None for this process alone; with a
            strategy, only the chief writes (`seqvae.training.is_chief`).

    Example:
        >>> board = TensorBoardLogger("runs/sample")
        >>> recommender, history = fit(split, config, on_epoch=board)  # doctest: +SKIP
        >>> board.close()  # doctest: +SKIP
    """

    def __init__(self, logdir: str | os.PathLike[str], strategy: Any = None) -> None:
        from seqvae.training import is_chief

        self.logdir = Path(logdir)
        self.writes = strategy is None or is_chief(strategy)
        self._writer: Any = None

    def __call__(self, record: EpochRecord) -> None:
        if not self.writes:
            return
        import tensorflow as tf

        if self._writer is None:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self._writer = tf.summary.create_file_writer(str(self.logdir))
        metadata = tf.compat.v1.SummaryMetadata()
        metadata.plugin_data.plugin_name = SCALARS_PLUGIN
        with self._writer.as_default(step=record.epoch):
            for tag, value in epoch_scalars(record).items():
                tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file (a later epoch would start a new file)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


__all__ = ["TensorBoardLogger", "epoch_scalars"]
