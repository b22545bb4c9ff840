"""An ensemble of SeqVAEs: `SeqVAEConfig.members` networks, each trained alone (seeds `seed`,
`seed` + 1, …, and their own order of batches) and early-stopped on its own validation score.
`SeqVAERecommender` ranks items by the mean of their log-softmax; the latent map, similar users
and the explanations read the first network.

Where training runs in this process alone (no `tf.distribute` strategy, the windows in memory)
and the machine has two cores or more, every network trains in a process of its own, as many at
once as there are cores, each pinned to its share of them: one network leaves most of a second
core idle, so on 2 cores two networks at once took 1.28x the time of one, where one after the
other take 2x (docs/model.md, the ninth and tenth passes). Otherwise they train one after the
other in this process: under a strategy each worker runs this same code, so the workers still
agree step by step.

Progress: ``on_batch`` hears one network at a time, its `BatchProgress` saying which
(``network`` of ``networks``): the first running network, in processes (the first while it trains,
then the next that is still training), or each network in turn, one after the other. ``on_epoch``
hears the first network's epochs; the others' are kept in the history's ``members``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from seqvae.config import SeqVAEConfig
from seqvae.errors import TrainingDataError


def member_config(config: SeqVAEConfig, index: int) -> SeqVAEConfig:
    """The settings network `index` (0-based) of an ensemble trains with: one network, its own
    seed."""
    return replace(config, members=1, seed=config.seed + index)


def member_checkpoint(checkpoint_dir: Any, index: int) -> Path | None:
    """Where network `index` keeps its checkpoint: the first in `checkpoint_dir` itself (so a
    single network's checkpoint there goes on as the ensemble's first), the others in
    ``member-2``, ``member-3``, … inside it."""
    if checkpoint_dir is None:
        return None
    return Path(checkpoint_dir) if index == 0 else Path(checkpoint_dir) / f"member-{index + 1}"


def available_cores() -> list[int]:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def train_members(source: Any, train: Any, validation: Any, config: SeqVAEConfig, *,
                  history_sequences: Any = None, on_batch: Any = None, on_epoch: Any = None,
                  cancel: Any = None, strategy: Any = None, checkpoint_dir: Any = None,
                  processes: bool | None = None, member_epochs: Any = None) -> tuple[Any, Any]:
    """Train `config.members` networks on `source` (as `seqvae.training.train_from` trains
    one) -> ``(recommender, history)``: one `SeqVAERecommender` that holds them all.

    `processes`: None chooses (see the module's text); False trains one after the other here.
    `member_epochs` (a refit's): how many epochs each network trains, instead of
    `config.epochs` for all. A cancelled training keeps every network trained so far, each at
    its best epoch (in processes, all of them stop together)."""
    from seqvae.training import MemoryBatches

    started = time.perf_counter()
    configs = [member_config(config, index) for index in range(config.members)]
    if member_epochs is not None:
        if len(member_epochs) != len(configs):
            raise ValueError(f"`member_epochs` gives {len(member_epochs)} counts for "
                             f"{len(configs)} networks")
        configs = [replace(member, epochs=int(epochs))
                   for member, epochs in zip(configs, member_epochs, strict=True)]
    if processes is None:
        processes = (strategy is None and isinstance(source, MemoryBatches)
                     and len(available_cores()) >= 2)
    checkpoints = [member_checkpoint(checkpoint_dir, i) for i in range(len(configs))]
    if processes:
        trained = _in_processes(source, train, validation, configs, checkpoints,
                                on_batch=on_batch, on_epoch=on_epoch, cancel=cancel)
    else:
        trained = _one_after_another(source, train, validation, configs, checkpoints,
                                     on_batch=on_batch, on_epoch=on_epoch, cancel=cancel,
                                     strategy=strategy)
    return _assemble(trained, train, validation, config, history_sequences,
                     time.perf_counter() - started)


def _one_after_another(source: Any, train: Any, validation: Any, configs: list[SeqVAEConfig],
                       checkpoints: list[Path | None], *, on_batch: Any, on_epoch: Any,
                       cancel: Any, strategy: Any) -> list[tuple[list[np.ndarray], Any, Any]]:
    from seqvae.training import train_from

    trained = []
    for index, member in enumerate(configs):
        recommender, history = train_from(
            source.with_seed(member.seed), train, validation, member,
            on_batch=_labelled(on_batch, index, len(configs)),
            on_epoch=on_epoch if index == 0 else None, cancel=cancel, strategy=strategy,
            checkpoint_dir=checkpoints[index])
        trained.append((recommender.model_.get_weights(), history, recommender.config_))
        if history.cancelled:
            break
    return trained


def _labelled(on_batch: Any, index: int, networks: int) -> Any:
    """`on_batch` hearing network `index` (0-based) of `networks`, each progress saying so."""
    if on_batch is None:
        return None
    return lambda progress: on_batch(replace(progress, network=index + 1, networks=networks))


def _member_entry(inbox: int, outbox: int) -> None:
    """One network's process (``python -c``, so that nothing of the parent's main module runs
    again): read the work from `inbox`, train, send progress and then the weights, the history
    and the settings used (or the error) to `outbox`. A word on `inbox`, or the parent gone,
    stops the training after the current batch."""
    from multiprocessing.connection import Connection

    from seqvae.training import CancelToken

    receive, send = Connection(inbox, writable=False), Connection(outbox, readable=False)
    index, cores, source, train, validation, config, checkpoint_dir, report_batches = (
        receive.recv())
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)  # before TensorFlow sizes its thread pools
    cancel = CancelToken()

    def listen() -> None:
        with contextlib.suppress(EOFError, OSError):
            receive.recv()
        cancel.cancel()

    threading.Thread(target=listen, daemon=True).start()
    try:
        from seqvae.training import train_from

        recommender, history = train_from(
            source, train, validation, config,
            on_batch=(lambda progress: send.send(("batch", index, progress)))
            if report_batches else None,
            on_epoch=lambda record: send.send(("epoch", index, record)),
            cancel=cancel, checkpoint_dir=checkpoint_dir)
        weights = [np.asarray(w) for w in recommender.model_.get_weights()]
        send.send(("done", index, (weights, history, recommender.config_)))
    except BaseException as exc:  # every failure goes back to the caller
        try:
            pickle.dumps(exc)
            error: BaseException = exc
        except Exception:  # an exception that cannot travel goes as text
            error = RuntimeError(f"{type(exc).__name__}: {exc}")
        send.send(("error", index, (error, traceback.format_exc())))


class _Network:
    """A network's process seen from the parent: started, told to stop, waited for."""

    def __init__(self, index: int, work: tuple[Any, ...]) -> None:
        from multiprocessing.connection import Connection

        import seqvae

        self.index = index
        to_child, inbox = os.pipe()[::-1]  # (write end, read end) of the child's inbox
        outbox_read, outbox = os.pipe()
        package_root = str(Path(seqvae.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from seqvae.ensemble import _member_entry; "
             "_member_entry(int(sys.argv[1]), int(sys.argv[2]))", str(inbox), str(outbox)],
            pass_fds=(inbox, outbox), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL)
        os.close(inbox)
        os.close(outbox)
        self.inbox = Connection(to_child, readable=False)
        self.messages = Connection(outbox_read, writable=False)
        try:
            self.inbox.send(work)
        except OSError:
            code = self.process.wait()
            self.close(wait=0)
            raise RuntimeError(f"network {index + 1}'s process could not start (exit code "
                               f"{code}); its error is above") from None

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # it has ended already
            self.inbox.send("stop")

    def close(self, wait: float) -> None:
        self.stop()
        try:
            self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.inbox.close()
        self.messages.close()


def _in_processes(source: Any, train: Any, validation: Any, configs: list[SeqVAEConfig],
                  checkpoints: list[Path | None], *, on_batch: Any, on_epoch: Any,
                  cancel: Any) -> list[tuple[list[np.ndarray], Any, Any]]:
    """Every network in a process of its own (a fresh interpreter), as many at once as there
    are cores, each pinned to its share."""
    from multiprocessing.connection import wait

    cores = available_cores()
    slots = min(len(configs), len(cores))
    shares = [cores[slot::slots] for slot in range(slots)]
    waiting = list(range(len(configs)))
    free = list(range(slots))
    running: dict[int, tuple[_Network, int]] = {}
    results: dict[int, tuple[list[np.ndarray], Any, Any]] = {}
    stopping = False
    try:
        while waiting or running:
            while waiting and free and not stopping:
                index, slot = waiting.pop(0), free.pop(0)
                running[index] = (_Network(index, (
                    index, shares[slot], source.with_seed(configs[index].seed), train,
                    validation, configs[index], checkpoints[index], on_batch is not None)),
                    slot)
            if not running:  # stopped before the next network started
                break
            if cancel is not None and cancel.cancelled and not stopping:
                stopping = True
                for network, _ in running.values():
                    network.stop()
            by_connection = {network.messages: network for network, _ in running.values()}
            for connection in wait(list(by_connection), timeout=0.2):
                network = by_connection[connection]  # type: ignore[index]
                try:
                    kind, index, payload = network.messages.recv()
                except EOFError:
                    code = network.process.wait()
                    raise RuntimeError(
                        f"network {network.index + 1} of {len(configs)} ended without a result "
                        f"(its process exited with code {code}; out of memory?)") from None
                if kind == "batch":
                    if index == min(running):  # the first network still training is heard
                        on_batch(replace(payload, network=index + 1, networks=len(configs)))
                elif kind == "epoch":
                    if index == 0 and on_epoch is not None:
                        on_epoch(payload)
                elif kind == "done":
                    results[index] = payload
                    _, slot = running.pop(index)
                    network.close(wait=60)
                    free.append(slot)
                    stopping = stopping or payload[1].cancelled
                else:  # "error"
                    error, trace = payload
                    if isinstance(error, TrainingDataError):
                        raise error
                    raise RuntimeError(f"network {index + 1} of {len(configs)} failed: "
                                       f"{type(error).__name__}: {error}\n{trace}") from error
    finally:
        for network, _ in running.values():
            network.close(wait=10)
    return [results[index] for index in sorted(results)]


def _assemble(trained: list[tuple[list[np.ndarray], Any, Any]], train: Any, validation: Any,
              config: SeqVAEConfig, history_sequences: Any, seconds: float) -> tuple[Any, Any]:
    """The trained networks as one recommender, and the first network's history with the
    others' in ``members`` and, given the `validation`, the ensemble's score on it."""
    import tensorflow as tf

    from seqvae.recommender import SeqVAERecommender
    from seqvae.training import build_model

    models = []
    for weights, _, used in trained:
        with tf.distribute.get_strategy().scope():
            model = build_model(used, train)
            model.build_for_inputs()
        model.set_weights(weights)
        models.append(model)
    history = trained[0][1]
    history.members = [member.to_dict() for _, member, _ in trained[1:]]
    history.cancelled = any(member.cancelled for _, member, _ in trained)
    history.seconds = seconds
    used = replace(trained[0][2], members=len(models), seed=config.seed)
    recommender = SeqVAERecommender(models[0], used, train.item_vocab, train.event_vocab,
                                    history_sequences if history_sequences is not None
                                    else train)
    recommender.others_ = models[1:]
    recommender.training_history_ = history
    if validation is not None and recommender.others_:
        from seqvae.training import evaluate_holdout

        # what the model as used scores: each network's curve says only what it scores alone
        history.ensemble_validation = evaluate_holdout(recommender, validation, config.eval_k)
    return recommender, history
