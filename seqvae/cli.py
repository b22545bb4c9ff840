"""The ``seqvae`` command line: the same library as the dashboard, from a terminal.

Every command takes ``--help``; commands that read a log share the reading flags
(`add_reading_flags`); ``--json`` writes exactly one JSON object on stdout; bad input exits with
status 2 and a one-line reason on stderr. TensorFlow is imported only by the commands that need it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from seqvae.cliflags import (
    add_reading_flags,
    add_side_table_flags,
    add_store_flags,
    options_from_args,
    read_side_table,
    sequence_options,
)
from seqvae.errors import SeqVAEError

EXIT_BAD_INPUT = 2




# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    from seqvae.sample import generate

    sample = generate(n_users=args.users, n_items=args.items, seed=args.seed)
    paths = sample.write(args.out)
    if args.json:
        print(json.dumps({
            "events": len(sample.events),
            "users": int(sample.events["user_id"].nunique()),
            "items": int(sample.events["item_id"].nunique()),
            "files": {k: str(v) for k, v in paths.items()},
        }))
    else:
        print(f"wrote {len(sample.events):,} events of {args.users:,} users to {paths['events']}")
        print(f"item titles and categories: {paths['items']}")
        print(f"planted segment of each user: {paths['segments']}")
    return 0


def inspect_log(path: str, args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """Read and encode a log -> (the JSON object `seqvae inspect --json` prints, the sequences)."""
    from seqvae.pipeline import prepare

    data = prepare(path, options_from_args(args), sequence_options(args))
    log, report, sequences = data.log, data.report, data.sequences
    lengths = sequences.lengths
    summary = log.summary()
    return {
        "source": report.source,
        "format": report.format,
        "rows_read": report.rows_read,
        "rows_kept": report.rows_kept,
        "dropped": report.dropped,
        "dropped_lines": report.dropped_lines,
        "filled": report.filled,
        "users": sequences.n_users,
        "items": sequences.item_vocab.size - 2,
        "events": sequences.n_events,
        "event_types": summary["event_types"],
        "time_span": summary["time_span"],
        "events_per_user": {
            "min": int(lengths.min()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        "columns": report.columns,
        "details": report.details,
        "warnings": report.warnings,
    }, sequences


def cmd_inspect(args: argparse.Namespace) -> int:
    result, sequences = inspect_log(args.log, args)
    for kind in ("item", "user"):
        read = read_side_table(args, kind)
        if read is not None:
            table, how = read
            known = (list(sequences.item_vocab.tokens) if kind == "item"
                     else [str(u) for u in sequences.users])
            how["matched"] = int(table.index.isin(known).sum())
            how["of"] = len(known)
            result[f"{kind}_meta"] = how
    if args.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return 0
    print(f"{result['source']}  ({result['format']}"
          + "".join(f", {k} {v}" for k, v in result["details"].items()) + ")")
    print()
    rows = [
        ("users", f"{result['users']:,}"),
        ("items", f"{result['items']:,}"),
        ("events", f"{result['events']:,}"),
        ("events per user", "min {min:,} · median {median:,.0f} · max {max:,}".format(
            **result["events_per_user"])),
    ]
    if result["time_span"]:
        rows.append(("time span", f"{result['time_span']['start']} → {result['time_span']['end']}"))
    if result["event_types"]:
        rows.append(("event types", ", ".join(f"{k} {v:,}" for k, v in
                                                result["event_types"].items())))
    rows.append(("columns", ", ".join(f"{role}={col}" for role, col in result["columns"].items()
                                      if col)))
    _print_table(rows)
    print()
    print("ingest report")
    report_rows = [("rows read", f"{result['rows_read']:,}"), ("rows kept", f"{result['rows_kept']:,}")]
    from seqvae.logs import DROP_REASONS

    for reason, count in result["dropped"].items():
        lines = result["dropped_lines"].get(reason, [])
        where = f" (lines {', '.join(map(str, lines))}…)" if lines else ""
        report_rows.append((f"dropped: {DROP_REASONS.get(reason, reason)}", f"{count:,}{where}"))
    for what, count in result["filled"].items():
        report_rows.append((f"filled: {what}", f"{count:,}"))
    _print_table(report_rows)
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    for kind in ("item", "user"):
        side_info = result.get(f"{kind}_meta")
        if side_info is None:
            continue
        how = side_info
        print()
        print(f"{kind} table {how['source']}: {how['rows']:,} rows, {kind} id column {how['key']!r}"
              + (f", title column {how['title']!r}" if how.get("title") else "")
              + f"; {how['matched']:,} of the log's {how['of']:,} {kind}s found in it")
        print(f"  columns: {', '.join(how['columns'])}")
        for row in how["preview"]:
            line = " | ".join("" if value is None else str(value) for value in row.values())
            print("  " + (line if len(line) <= 150 else line[:149] + "…"))
        if how["matched"] == 0:
            print(f"warning: no {kind} id of the log is in the {kind} table: check "
                  f"--{kind}-meta-key and --{kind}-meta-header")
    return 0


def _print_table(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def _quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up noise before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import logging
    import warnings

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="keras")


class ProgressBar:
    """One line on stderr, redrawn after every batch; a line per finished epoch."""

    def __init__(self, stream: Any = None, width: int = 24) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        # redraw on a terminal only, at most five times a second; logs get the epoch lines
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_draw = 0.0
        self.open_line = False  # a batch line is drawn and not yet ended

    def batch(self, p: Any) -> None:
        now = time.monotonic()
        if not self.live or (now - self.last_draw < 0.2 and p.batch < p.batches):
            return
        self.last_draw = now
        self.open_line = True
        done = int(self.width * p.batch / p.batches)
        network = f"network {p.network}/{p.networks} " if p.networks > 1 else ""
        self.stream.write(
            f"\r{network}epoch {p.epoch}/{p.epochs} [{'#' * done}{'.' * (self.width - done)}] "
            f"{p.batch}/{p.batches}  loss {p.loss:.3f}  rec {p.reconstruction_loss:.3f}  "
            f"kl {p.kl_loss:.2f}  β {p.beta:.3f}  {p.elapsed:.0f}s ")
        self.stream.flush()

    def epoch(self, record: Any) -> None:
        metrics = "  ".join(f"val {k} {v:.4f}" for k, v in record.validation.items())
        self.stream.write(f"\repoch {record.epoch}: loss {record.loss:.3f}  {metrics}  "
                          f"({record.seconds:.1f}s){' ' * 30}\n")
        self.stream.flush()
        self.open_line = False

    def phase(self, name: str) -> None:
        """A stage after the epochs (`seqvae.pipeline.train`'s `on_phase`): the refit says so."""
        if name == "refitting":
            self.end()
            self.stream.write("retraining on every event for the epochs early stopping chose "
                              "(--refit)\n")
            self.stream.flush()

    def end(self) -> None:
        """Ends a batch line left open (the refit's epochs print no epoch lines)."""
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False


def _strategy(name: str) -> Any:
    """The `tf.distribute` strategy for --strategy, made before TensorFlow does anything else
    (a multi-worker strategy must exist before the first operation)."""
    if name == "single":
        return None
    if name == "multi-worker":
        raw = os.environ.get("TF_CONFIG", "")
        try:
            tf_config = json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            raise ValueError(f"TF_CONFIG is not valid JSON ({exc}); see docs/scaling.md") from None
        workers = (tf_config or {}).get("cluster", {}).get("worker")
        task = (tf_config or {}).get("task", {})
        if not workers or "index" not in task or "type" not in task:
            raise ValueError(
                "--strategy multi-worker needs TF_CONFIG with the cluster's workers and this "
                "worker's task, e.g. {\"cluster\": {\"worker\": [\"host1:12345\", "
                "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}; "
                "see docs/scaling.md")
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO))


def cmd_ingest(args: argparse.Namespace) -> int:
    from seqvae.ondisk import build_store

    started = time.perf_counter()
    store, report = build_store(args.log, args.out, options_from_args(args),
                                sequence_options(args), min_value=args.min_rating,
                                sizes=_store_sizes(args),
                                progress=None if args.json else _RowProgress())
    seconds = time.perf_counter() - started
    result = {"out": str(store.path), "users": int(store.meta["users"]),
              "items": store.item_vocab.size - 2, "events": store.n_events,
              "rows_read": report.rows_read, "rows_kept": report.rows_kept,
              "dropped": report.dropped, "seconds": round(seconds, 2),
              "rows_per_s": round(report.rows_read / max(seconds, 1e-9))}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"\rstore written to {store.path}  ({seconds:.1f} s, "
          f"{result['rows_per_s']:,} rows/s){' ' * 20}")
    _print_table([("users", f"{result['users']:,}"), ("items", f"{result['items']:,}"),
                  ("events", f"{result['events']:,}"), ("rows read", f"{report.rows_read:,}")]
                 + [(f"dropped: {reason}", f"{count:,}") for reason, count in report.dropped.items()])
    for warning in report.warnings:
        print(f"warning: {warning}")
    return 0


class _RowProgress:
    """`rows read` on one line of a terminal."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()

    def __call__(self, stage: str, done: int) -> None:
        if self.live:
            sys.stderr.write(f"\r{stage} {done:,} rows")
            sys.stderr.flush()


def _store_sizes(args: argparse.Namespace) -> Any:
    from seqvae.ondisk import StoreOptions

    return StoreOptions(chunk_bytes=int(args.chunk_mb * 1024 * 1024),
                        block_events=args.block_events)


def cmd_train(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    strategy = _strategy(args.strategy)
    import shutil
    import tempfile
    from pathlib import Path

    from seqvae.bundle import check_target
    from seqvae.ondisk import SequenceStore, build_store, fit_store, is_store
    from seqvae.pipeline import prepare, refit_epochs_text, retrain, tested, train
    from seqvae.training import SeqVAEConfig, is_chief, remove_checkpoint

    config = SeqVAEConfig(epochs=args.epochs, latent_dim=args.latent_dim, max_len=args.max_len,
                          encoder=args.encoder, beta_cap=args.beta_cap, seed=args.seed,
                          batch_size=args.batch_size, learning_rate=args.learning_rate,
                          embed_dim=args.embed_dim, hidden_dim=args.hidden_dim,
                          n_blocks=args.blocks, n_heads=args.heads,
                          variational=not args.deterministic, negatives=args.negatives,
                          dropout=args.dropout, steps_per_epoch=args.steps_per_epoch,
                          lowpass=args.lowpass, label_smoothing=args.label_smoothing,
                          position_from=args.position_from, members=args.members)
    out = check_target(args.out)
    chief = strategy is None or is_chief(strategy)
    checkpoint = Path(args.checkpoint_dir or f"{out}.checkpoint")
    progress = ProgressBar() if not args.quiet and chief else None
    board = None
    if args.tensorboard:
        from seqvae.tensorboard import TensorBoardLogger

        board = TensorBoardLogger(args.tensorboard, strategy)
    hooks = {"on_batch": progress.batch if progress else None,
             "on_epoch": _each(progress.epoch if progress else None, board),
             "strategy": strategy, "checkpoint_dir": checkpoint}
    if is_store(args.log):
        shaped = [flag for flag, value, default in (
            ("--min-rating", args.min_rating, None), ("--k-core", args.k_core, 0),
            ("--min-item-count", args.min_item_count, 1)) if value != default]
        if shaped:
            raise ValueError(f"{', '.join(shaped)} shaped the store when it was built; pass "
                             "them to `seqvae ingest` (nothing was trained)")
    if args.out_of_core and args.strategy == "multi-worker" and not is_store(args.log):
        raise ValueError("build the store once with `seqvae ingest LOG --out STORE`, then run "
                         "`seqvae train STORE --strategy multi-worker` on every worker")
    temporary = None
    try:
        if is_store(args.log) or args.out_of_core:
            if is_store(args.log):
                store = SequenceStore.open(args.log)
            else:
                temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.store.",
                                                  dir=out.parent if out.parent.exists() else None))
                store, _ = build_store(args.log, args.store or temporary / "store",
                                       options_from_args(args), sequence_options(args),
                                       min_value=args.min_rating, sizes=_store_sizes(args))
            trained = tested(*fit_store(store, config, eval_users=args.eval_users,
                                        block_events=args.block_events, **hooks), config)
            if args.refit:
                retrain(trained, store=store, block_events=args.block_events,
                        on_phase=progress.phase if progress else None, **hooks)
                if progress:
                    progress.end()
            report = store.report
        else:
            data = prepare(args.log, options_from_args(args), sequence_options(args),
                           min_rating=args.min_rating)
            trained = train(data.sequences, config, refit=args.refit,
                            on_phase=progress.phase if progress else None, **hooks)
            if progress:
                progress.end()
            report = data.report
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        if board is not None:
            board.close()
    history = trained.history
    result: dict[str, Any] = {
        "epochs": len(history.epochs), "best_epoch": history.best_epoch,
        "stopped_early": history.stopped_early, "seconds": round(history.seconds, 1),
        "validation": history.best_validation, "test": trained.test,
        "workers": getattr(strategy, "num_replicas_in_sync", 1), "refit": trained.refit}
    if chief:
        result["out"] = str(trained.save(out, report))
        remove_checkpoint(checkpoint)  # the run is complete
    if args.json:
        print(json.dumps(result))
    elif chief:
        print(f"model saved to {out}  (best epoch {history.best_epoch} of {len(history.epochs)}, "
              f"{history.seconds:.0f} s)")
        if trained.refit is not None:
            print(f"retrained on all {trained.refit['events']:,} events for "
                  f"{refit_epochs_text(trained.refit)} ({trained.refit['seconds']:.0f} s); the "
                  "scores below are the model's before, which held each user's last two out")
        _print_table([(f"validation {k}", f"{v:.4f}") for k, v in history.best_validation.items()]
                     + [(f"test {k}", f"{v:.4f}") for k, v in trained.test.items()])
    return 0


def _each(*hooks: Any) -> Any:
    """One hook that calls each of `hooks` that is set, in order (None when none is)."""
    chosen = [hook for hook in hooks if hook is not None]
    if not chosen:
        return None

    def call(value: Any) -> None:
        for hook in chosen:
            hook(value)

    return call


def cmd_recommend(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from seqvae.bundle import load

    if args.log is not None:
        others = [flag for flag, given in (("--user", args.user is not None),
                                           ("--items", bool(args.items)), ("--all", args.all))
                  if given]
        if others:
            raise ValueError(f"--log recommends for the users of the log; leave out "
                             f"{' and '.join(others)}")
        shaped = [flag for flag, value, default in (("--k-core", args.k_core, 0),
                                                    ("--min-item-count", args.min_item_count, 1))
                  if value != default]
        if shaped:
            raise ValueError(f"{', '.join(shaped)} shaped the model's vocabulary when it was "
                             "trained; a new log is encoded with that vocabulary as it is")
    recommender = load(args.model)
    side = read_side_table(args, "item")
    args.titles = side[0]["title"] if side is not None and "title" in side[0].columns else None
    if args.log is not None:
        return _recommend_log(recommender, args)
    if args.all:
        if not args.out:
            raise ValueError("--all needs --out FILE.parquet (or .csv)")
        return _write_recommendations(recommender, args, recommender.history_)
    if args.items:
        query: Any = [[item.strip() for item in args.items.split(",") if item.strip()]]
        label = "the given items"
    elif args.user is not None:
        query = [args.user]
        label = f"user {args.user}"
    else:
        raise ValueError("give --user ID or --items A,B,C")
    try:
        ids, scores = recommender.recommend(query, k=args.k, exclude_seen=not args.include_seen)
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]} is not in the model's users; pass --items to recommend "
                         "for a new sequence") from None
    rows = _ranked(ids[0], scores[0], args.titles)
    if args.json:
        print(json.dumps({"user": args.user, "items": rows}, ensure_ascii=False))
    else:
        print(f"top {len(rows)} for {label}")
        _print_table(_ranked_lines(rows))
    return 0


def _ranked(ids: np.ndarray, scores: np.ndarray,
            titles: pd.Series | None = None) -> list[dict[str, Any]]:
    """One user's ranked items as JSON rows (with ``title`` from `--item-meta`); items that
    cannot be recommended (-inf) left out."""
    rows = [{"rank": r + 1, "item": str(i), "score": float(s)}
            for r, (i, s) in enumerate(zip(ids, scores, strict=True)) if np.isfinite(s)]
    if titles is not None:
        for row in rows:
            title = titles.get(row["item"])
            row["title"] = None if title is None or title != title else str(title)
    return rows


def _ranked_lines(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f"{row['rank']:>2}. {row['item']}"
             + (f"  {row['title']}" if row.get("title") else ""), f"{row['score']:.3f}")
            for row in rows]


def _write_recommendations(recommender: Any, args: argparse.Namespace, sequences: Any) -> int:
    """`--out`: every user of `sequences`, streamed to Parquet or CSV in chunks."""
    from seqvae.export import write_all_recommendations

    bar = None if args.json else ProgressBar()

    def progress(done: int, total: int) -> None:
        if bar is not None and bar.live:
            bar.stream.write(f"\rscored {done:,} / {total:,} users")

    started = time.perf_counter()
    path = write_all_recommendations(recommender, args.out, k=args.k,
                                     exclude_seen=not args.include_seen, progress=progress,
                                     sequences=sequences, titles=args.titles)
    seconds = time.perf_counter() - started
    n_users = sequences.n_users
    if args.json:
        print(json.dumps({"out": str(path), "users": n_users, "k": args.k,
                          "seconds": round(seconds, 2)}))
    else:
        print(f"\rtop {args.k} for {n_users:,} users written to {path} "
              f"({n_users / max(seconds, 1e-9):,.0f} users/s)")
    return 0


SHOWN_USERS = 5  # users the human table of `recommend --log` shows


def _recommend_log(recommender: Any, args: argparse.Namespace) -> int:
    """`recommend MODEL --log FILE`: every user of FILE scored from FILE's events alone, as a
    new user, encoded exactly as the training data was (`fold_in`)."""
    import warnings

    from seqvae.logs import read_log

    log, report = read_log(args.log, options_from_args(args))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sequences = recommender.fold_in(log)
    for note in [*report.warnings, *(str(w.message) for w in caught)]:
        print(f"warning: {' '.join(note.split())}", file=sys.stderr)
    if sequences.n_users == 0:
        raise ValueError(f"{report.source}: no user has an item the model knows; nothing to "
                         "recommend from (is it the same kind of log the model was trained on?)")
    if args.out:
        return _write_recommendations(recommender, args, sequences)
    exclude_seen = not args.include_seen
    if args.json:
        ids, scores = recommender.recommend_sequences(sequences, args.k, exclude_seen)
        print(json.dumps({"source": report.source, "k": args.k, "recommendations": [
            {"user": str(user), "items": _ranked(ids[row], scores[row], args.titles)}
            for row, user in enumerate(sequences.users)]}, ensure_ascii=False))
        return 0
    shown = sequences.subset_users(np.arange(min(SHOWN_USERS, sequences.n_users)))
    ids, scores = recommender.recommend_sequences(shown, args.k, exclude_seen)
    for row, user in enumerate(shown.users):
        rows = _ranked(ids[row], scores[row], args.titles)
        events = int(shown.lengths[row])
        print(f"top {len(rows)} for {user} ({events:,} event{'s' if events != 1 else ''} of "
              f"{report.source})")
        _print_table(_ranked_lines(rows))
    if sequences.n_users > shown.n_users:
        print(f"… and {sequences.n_users - shown.n_users:,} more users; --out FILE.parquet "
              "(or .csv) writes every one, --json prints them")
    return 0


def _metric_columns(ks: Sequence[int]) -> list[str]:
    names = [f"{m}@{k}" for m in ("NDCG", "HR", "Recall", "TruncatedRecall", "Precision", "F1",
                                  "MRR") for k in ks]
    return names + ["AUC"] + [f"{m}@{k}" for m in ("Coverage", "AvgPopularity") for k in ks]


def cmd_evaluate(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from seqvae.compare import compare
    from seqvae.export import atomic_write
    from seqvae.pipeline import prepare
    from seqvae.training import SeqVAEConfig

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--k should be comma-separated integers, e.g. 10,20; got {args.k!r}") from None
    data = prepare(args.log, options_from_args(args), sequence_options(args),
                   min_rating=args.min_rating)
    sequences, report = data.sequences, data.report
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if not args.quiet else None
    config = SeqVAEConfig(epochs=args.epochs, seed=args.seed, members=args.members)
    from seqvae.compare import make_split

    split = make_split(sequences, args.protocol, seed=args.seed, min_length=args.min_length)
    result = compare(sequences, args.protocol, models, ks, seqvae_config=config,
                     select_k=args.select_k, seed=args.seed, split=split, progress=say)
    payload = result.to_dict()
    payload["source"] = report.source
    if args.json:
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))
    columns = [c for c in _metric_columns(result.ks) if c in result.results[0].metrics]
    if not args.metrics_all:
        columns = [c for c in columns if c.split("@")[0] in ("NDCG", "HR", "TruncatedRecall",
                                                              "AUC", "Coverage")]
    print(f"{result.protocol} on {report.source}: {result.dataset['users']:,} users, "
          f"{result.dataset['items']:,} items, {result.dataset['events']:,} events; "
          f"choices on validation {result.selection}, test touched once per model")
    header = ["model", *columns, "fit s", "eval s"]
    rows = [[r.model, *(f"{r.metrics[c]:.4f}" if c in r.metrics else "" for c in columns),
             f"{r.fit_seconds:.1f}", f"{r.eval_seconds:.1f}"] for r in result.results]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(w) if i else str(cell).ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    for r in result.results:
        shown = {k: v for k, v in r.params.items() if k in ("l2", "neighbours", "epochs")}
        if shown:
            print(f"  {r.model}: chosen {', '.join(f'{k}={v}' for k, v in shown.items())}")
    if args.json:
        print(f"results written to {args.json}")
    if args.save_models:
        from seqvae.bundle import check_target

        for r in result.results:
            folder = check_target(Path(args.save_models) / r.model)
            r.recommender.save(folder, metrics={"protocol": result.protocol, "params": r.params,
                                                "validation": r.validation, "test": r.metrics},
                               data={"source": report.source})
        print(f"models saved in {args.save_models}: "
              + ", ".join(r.model for r in result.results))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from seqvae.bundle import load
    from seqvae.export import table_format, user_embeddings, write_projector, write_table

    # for embeddings, a .tsv is the Embedding Projector's pair
    fmt = table_format(args.out, args.format)
    fmt = "projector" if fmt == "tsv" and args.format == "auto" else fmt
    recommender = load(args.model)
    frame, mean = user_embeddings(recommender, view=args.view)
    side = read_side_table(args, "user")
    attributes: list[str] = []
    if side is not None:  # each user's attributes beside the vectors (colour the projector by them)
        table = side[0].add_prefix("attr_") if set(side[0].columns) & set(frame.columns) else side[0]
        attributes = [str(c) for c in table.columns]
        frame = frame.join(table, on="user")
        found = int(frame[attributes].notna().any(axis=1).sum())
        print(f"user attributes from {side[1]['source']}: {found:,} of {len(frame):,} users found")
    if fmt == "projector":
        written = write_projector(mean, frame[["user", "events", "last_item", *attributes]],
                                  args.out)
        print(f"{len(frame):,} users: vectors in {written[0]}, metadata in {written[1]} "
              "(load both in the Embedding Projector)")
    else:
        path = write_table(frame, args.out, fmt)
        print(f"{len(frame):,} users x {mean.shape[1]} latent dimensions (μ and σ) written to {path}")
    return 0


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from seqvae.training import SeqVAEConfig  # light: TensorFlow loads only when training

    parser = argparse.ArgumentParser(
        prog="seqvae",
        description="Learn, explore and use representations of users from behaviour logs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sample = sub.add_parser("sample", help="write the generated e-commerce sample log",
                            description="Write a realistic e-commerce log with planted user "
                            "segments (events, item titles, and each user's segment).")
    sample.add_argument("--out", required=True, help="path of the events CSV to write")
    sample.add_argument("--users", type=int, default=2000, help="number of users (default 2000)")
    sample.add_argument("--items", type=int, default=1000, help="number of items (default 1000)")
    sample.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    sample.add_argument("--json", action="store_true", help="print one JSON object")
    sample.set_defaults(func=cmd_sample)

    inspect = sub.add_parser("inspect", help="read a log and report what was found",
                             description="Read a behaviour log, print its summary and the ingest "
                             "report (every row kept or dropped, with the reason).")
    inspect.add_argument("log", help="the log: CSV / TSV / any delimiter, Parquet, JSON lines")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    add_reading_flags(inspect)
    add_side_table_flags(inspect, ("item", "user"))
    inspect.set_defaults(func=cmd_inspect)

    train = sub.add_parser("train", help="train a SeqVAE and save the model directory",
                           description="Train a sequential VAE on a log (leave-one-out: the last "
                           "event of each user is the test, the one before the validation that "
                           "early stopping watches) and save the model directory.")
    train.add_argument("log", help="the log to train on")
    train.add_argument("--out", required=True, help="the model directory to write")
    defaults = SeqVAEConfig()
    train.add_argument("--epochs", type=int, default=defaults.epochs,
                       help=f"at most this many epochs ({defaults.epochs})")
    train.add_argument("--encoder", choices=["attention", "gru", "lstm"],
                       default=defaults.encoder, help=f"({defaults.encoder})")
    train.add_argument("--latent-dim", type=int, default=defaults.latent_dim,
                       help=f"size of μ ({defaults.latent_dim})")
    train.add_argument("--embed-dim", type=int, default=defaults.embed_dim,
                       help=f"embedding and attention width ({defaults.embed_dim})")
    train.add_argument("--hidden-dim", type=int, default=defaults.hidden_dim,
                       help="recurrent width, or the attention blocks' feed-forward width "
                       f"({defaults.hidden_dim})")
    train.add_argument("--blocks", type=int, default=defaults.n_blocks,
                       help=f"attention blocks ({defaults.n_blocks})")
    train.add_argument("--heads", type=int, default=defaults.n_heads,
                       help=f"attention heads per block ({defaults.n_heads})")
    train.add_argument("--lowpass", type=float, default=defaults.lowpass,
                       help="share of BSARec's low-pass branch beside the attention in every "
                       f"block, 0 to 1 (attention only; 0: attention alone) ({defaults.lowpass})")
    train.add_argument("--max-len", type=int, default=defaults.max_len,
                       help=f"events per window ({defaults.max_len})")
    train.add_argument("--beta-cap", type=float, default=defaults.beta_cap,
                       help=f"KL weight cap ({defaults.beta_cap})")
    train.add_argument("--deterministic", action="store_true",
                       help="train the twin without the latent's noise and KL (SASRec)")
    train.add_argument("--negatives", type=int, default=defaults.negatives,
                       help="sampled softmax against this many negatives per batch (0: the "
                       "full softmax over every item)")
    train.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing,
                       help="share of each target's mass spread evenly over the catalogue, 0 to "
                       f"1 (exclusive) ({defaults.label_smoothing})")
    train.add_argument("--position-from", choices=("start", "end"),
                       default=defaults.position_from,
                       help="attention's positions counted from each window's start, or from "
                       "the end: how many events follow the one a step predicts "
                       f"({defaults.position_from})")
    train.add_argument("--batch-size", type=int, default=defaults.batch_size,
                       help="windows per batch (0: chosen from the data)")
    train.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                       help=f"({defaults.learning_rate})")
    train.add_argument("--seed", type=int, default=0, help="random seed (0)")
    train.add_argument("--members", type=int, default=defaults.members, metavar="N",
                       help="train N networks (seeds SEED, SEED+1, ...) and rank items by the "
                       "mean of their log-softmax; each trains in a process of its own, as "
                       "many at once as there are cores (with --strategy, --out-of-core or on "
                       f"one core: one after the other) ({defaults.members})")
    train.add_argument("--dropout", type=float, default=defaults.dropout,
                       help=f"({defaults.dropout})")
    train.add_argument("--min-rating", type=float, default=None,
                       help="keep only events whose value (rating) is at least this")
    train.add_argument("--refit", action="store_true",
                       help="after the test, retrain on every event for the epochs early "
                       "stopping chose, so the model learns from each user's latest events; "
                       "pays where users have few events (twice the time; the scores printed "
                       "are the held-out model's)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--tensorboard", metavar="DIR",
                       help="write each epoch's losses, β, validation metrics and seconds as "
                       "TensorBoard scalars to DIR (`tensorboard --logdir DIR` to view)")
    train.add_argument("--json", action="store_true", help="print one JSON object")
    scale = train.add_argument_group("large logs and several machines (docs/scaling.md)")
    scale.add_argument("--out-of-core", action="store_true",
                       help="stream the log into an on-disk store and train from it, in memory "
                       "bounded by the chunk and block sizes (LOG may also be a store written by "
                       "`seqvae ingest`)")
    scale.add_argument("--store", help="with --out-of-core: keep the store here (default: a "
                       "temporary folder beside --out, removed at the end)")
    scale.add_argument("--steps-per-epoch", type=int, default=None,
                       help="end an epoch (validate, checkpoint) after this many batches "
                       "(default: one pass over every window)")
    scale.add_argument("--eval-users", type=int, default=10_000,
                       help="out of core: users whose last two events validate and test (10000)")
    scale.add_argument("--strategy", choices=["single", "mirrored", "multi-worker"],
                       default="single",
                       help="single: this process; mirrored: every local GPU; multi-worker: one "
                       "of the machines named in TF_CONFIG (run the same command on each)")
    scale.add_argument("--checkpoint-dir",
                       help="written after every epoch, read to resume (default: OUT.checkpoint; "
                       "removed when the model is saved)")
    add_store_flags(scale)
    add_reading_flags(train)
    train.set_defaults(func=cmd_train)

    ingest = sub.add_parser("ingest", help="stream a log of any size into a sequence store",
                            description="Read a log (CSV/TSV, gzip, Parquet file or folder) in "
                            "chunks into an on-disk sequence store that `seqvae train STORE` "
                            "trains from; memory stays bounded by the chunk and block sizes.")
    ingest.add_argument("log", help="the log: delimited text (optionally .gz), Parquet file or "
                        "folder of Parquet files")
    ingest.add_argument("--out", required=True, help="the store folder to write")
    ingest.add_argument("--min-rating", type=float, default=None,
                        help="keep only events whose value (rating) is at least this")
    ingest.add_argument("--json", action="store_true", help="print one JSON object")
    add_store_flags(ingest)
    add_reading_flags(ingest)
    ingest.set_defaults(func=cmd_ingest)

    recommend = sub.add_parser("recommend", help="recommend items from a saved model",
                               description="Top-K items for a known user, for a new sequence "
                               "of items, or for every user of a new log from the log's events "
                               "alone (no retraining).")
    recommend.add_argument("model", help="a model directory written by `seqvae train`")
    recommend.add_argument("--user", help="a user id the model knows")
    recommend.add_argument("--items", help="comma-separated item ids: a new user's sequence "
                           "(no event types or times; --log keeps them)")
    recommend.add_argument("--log", metavar="FILE",
                           help="a behaviour log: every user in it is scored from its events "
                           "(items, event types, times) as a new user, encoded as the training "
                           "data was; read with the reading flags below")
    recommend.add_argument("--k", type=int, default=10, help="how many items (10)")
    recommend.add_argument("--include-seen", action="store_true",
                           help="also recommend items already in the sequence")
    recommend.add_argument("--all", action="store_true",
                           help="every user of the model, written to --out in chunks")
    recommend.add_argument("--out", help="with --all or --log: FILE.parquet or FILE.csv")
    recommend.add_argument("--json", action="store_true", help="print one JSON object")
    add_reading_flags(recommend)
    add_side_table_flags(recommend, ("item",))
    recommend.set_defaults(func=cmd_recommend)

    evaluate = sub.add_parser(
        "evaluate", help="compare the SeqVAE with the baselines under one protocol",
        description="Split the log by a protocol, fit every model on the training part, choose "
        "hyperparameters and epochs on validation, and measure each chosen model once on the "
        "test part (full ranking over all items, each user's input items excluded).")
    evaluate.add_argument("log", help="the log to evaluate on")
    evaluate.add_argument("--protocol", default="leave-one-out",
                          choices=["leave-one-out", "holdout-users", "time-cut"],
                          help="leave-one-out: last item per user (P1); holdout-users: unseen "
                          "users, first 80%% of their events in, the rest predicted (P2); "
                          "time-cut: one global time (default: leave-one-out)")
    evaluate.add_argument("--models", default="seqvae,sasrec,multvae,ease,itemknn,pop",
                          help="comma-separated, from seqvae, sasrec (the SeqVAE without its "
                          "latent), multvae, ease, itemknn, pop (default: all)")
    evaluate.add_argument("--k", default="10,20", help="cut-offs, e.g. 10,20,100 (default 10,20)")
    evaluate.add_argument("--select-k", type=int, default=None,
                          help="choices are made on validation NDCG at this K (default: the "
                          "largest --k)")
    evaluate.add_argument("--min-rating", type=float, default=None,
                          help="keep only events whose value (rating) is at least this: ratings "
                          "become positives (e.g. 4 for MovieLens)")
    evaluate.add_argument("--min-length", type=int, default=None,
                          help="users with fewer events are not evaluated (default 3 for "
                          "leave-one-out, 2 for holdout-users)")
    evaluate.add_argument("--epochs", type=int, default=30,
                          help="the SeqVAE's epoch limit; early stopping picks the epoch (30)")
    evaluate.add_argument("--seed", type=int, default=0, help="seeds the split and the models (0)")
    evaluate.add_argument("--members", type=int, default=1, metavar="N",
                          help="networks averaged in the SeqVAE and in its twin (1)")
    evaluate.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    evaluate.add_argument("--save-models", metavar="DIR",
                          help="also save every chosen model as a model directory DIR/<model> "
                          "(`seqvae.load` reads any of them back)")
    evaluate.add_argument("--metrics-all", action="store_true",
                          help="show every metric in the table (the JSON always has them all)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_reading_flags(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    embed = sub.add_parser("embed", help="write every user's latent vector",
                           description="Write each user's μ and σ from a saved model: Parquet, "
                           "CSV, or the vectors + metadata TSV pair of TensorBoard's Embedding "
                           "Projector.")
    embed.add_argument("model", help="a model directory written by `seqvae train`")
    embed.add_argument("--out", required=True, help="FILE.parquet, FILE.csv, or FILE.tsv (the "
                       "projector pair: FILE.tsv and FILE_metadata.tsv)")
    embed.add_argument("--format", default="auto", choices=["auto", "parquet", "csv", "projector"],
                       help="default: from the extension (.tsv = projector)")
    embed.add_argument("--view", default="next", choices=["next", "taste"],
                       help="next (default): μ after each user's last event, what their "
                       "recommendations decode; taste: every event of their last window "
                       "combined (the Latent page's default map)")
    add_side_table_flags(embed, ("user",))
    embed.set_defaults(func=cmd_embed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (SeqVAEError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        print(f"seqvae {args.command}: {reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `seqvae inspect LOG | head`: the reader left, nothing to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 — silences the flush at exit
        return 0
    except OSError as exc:
        print(f"seqvae {args.command}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["add_reading_flags", "add_store_flags", "build_parser", "main", "options_from_args"]
