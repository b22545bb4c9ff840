"""Exports: users' latent vectors and tables, written whole or not at all.

* `user_embeddings` — one row per user: id, number of events, μ and σ of the latent Gaussian.
* `write_table` — Parquet, CSV or TSV by the file's extension; text cells that a spreadsheet
  would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) are
  prefixed with ``'`` in CSV/TSV (OWASP's advice for CSV injection); Parquet keeps the values.
* `write_projector` — the vectors + metadata TSV pair that TensorBoard's Embedding Projector
  (projector.tensorflow.org, "Load") reads.

Every file is written to a temporary name beside the target and renamed into place, so an
interrupted export never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
FORMATS = ("parquet", "csv", "tsv", "projector")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot start a spreadsheet formula (prefixed with ``'``)."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype | pd.CategoricalDtype):
            text = values.astype("string")
            risky = text.str.startswith(FORMULA_START).fillna(False).to_numpy(dtype=bool)
            if risky.any():
                text = text.mask(risky, "'" + text)
                out[column] = text.astype(object)
    if any(str(c).startswith(FORMULA_START) for c in out.columns):
        out.columns = [f"'{c}" if str(c).startswith(FORMULA_START) else c for c in out.columns]
    return out


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)`` and move the result to `path` once it is complete."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def atomic_directory(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(staging_folder)`` on a new folder beside `path`; once it returns, the folder
    replaces `path` (which the caller has checked may be replaced). On any error the staging
    folder is removed and `path` is left as it was."""
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def table_format(path: str | os.PathLike[str], requested: str = "auto") -> str:
    """The format to write: `requested`, or from the file's extension."""
    if requested != "auto":
        if requested not in FORMATS:
            raise ValueError(f"unknown format {requested!r}; use one of {', '.join(FORMATS)}")
        return requested
    suffix = Path(path).suffix.lower()
    by_suffix = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv"}
    if suffix not in by_suffix:
        raise ValueError(f"cannot tell the format of {Path(path).name!r} from its extension; "
                         "name it .parquet, .csv or .tsv, or pass --format")
    return by_suffix[suffix]


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str], fmt: str = "auto") -> Path:
    """Write `frame` as Parquet, CSV or TSV (see the module docstring)."""
    fmt = table_format(path, fmt)
    if fmt == "parquet":
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    if fmt in ("csv", "tsv"):
        safe = neutralise_formulas(frame)
        sep = "," if fmt == "csv" else "\t"
        return atomic_write(path, lambda tmp: safe.to_csv(tmp, index=False, sep=sep))
    raise ValueError(f"{fmt!r} is not a table format; use write_projector")


def write_projector(vectors: np.ndarray, metadata: pd.DataFrame,
                    path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The Embedding Projector's pair: ``path`` (one vector per line, tab-separated, no header)
    and ``<stem>_metadata.tsv`` (a header, then one row per vector)."""
    target = Path(path)
    if target.suffix.lower() != ".tsv":
        target = target.with_suffix(".tsv")
    meta_path = target.with_name(f"{target.stem}_metadata.tsv")
    vectors_out = atomic_write(target, lambda tmp: np.savetxt(tmp, vectors, delimiter="\t",
                                                              fmt="%.6g"))
    clean = projector_metadata(metadata)
    meta_out = atomic_write(meta_path, lambda tmp: clean.to_csv(tmp, index=False, sep="\t"))
    return vectors_out, meta_out


def projector_metadata(metadata: pd.DataFrame) -> pd.DataFrame:
    """`metadata` as the Embedding Projector reads it: every cell text, without the tabs and
    newlines it splits on, and with spreadsheet formulas neutralised."""
    return neutralise_formulas(metadata.astype(str).replace({r"[\t\r\n]": " "}, regex=True))


def user_embeddings(recommender: Any, sequences: Any = None,
                    view: str = "next") -> tuple[pd.DataFrame, np.ndarray]:
    """One row per user of `sequences` (default: the model's history): ``user``, ``events``,
    ``last_item``, ``mu_0..``, ``sigma_0..``; and the μ matrix. ``view``: as in
    `SeqVAERecommender.encode` ("next", after the last event; "taste", every event combined)."""
    sequences = recommender.history_ if sequences is None else sequences
    mean, log_var = recommender.encode(sequences, view=view)
    sigma = np.exp(0.5 * log_var)
    lengths = sequences.lengths
    last = np.where(lengths > 0, sequences.items[np.maximum(sequences.offsets[1:] - 1, 0)], 0)
    frame = pd.DataFrame({"user": sequences.users.astype(str), "events": lengths,
                          "last_item": recommender.item_vocab_.token(last)})
    frame.loc[lengths == 0, "last_item"] = ""
    mu = pd.DataFrame(mean, columns=[f"mu_{i}" for i in range(mean.shape[1])])
    sd = pd.DataFrame(sigma, columns=[f"sigma_{i}" for i in range(sigma.shape[1])])
    return pd.concat([frame, mu, sd], axis=1), mean


def recommendation_chunks(recommender: Any, k: int = 10, exclude_seen: bool = True,
                          chunk_users: int = 2048, sequences: Any = None,
                          titles: pd.Series | None = None,
                          progress: Callable[[int, int], None] | None = None
                          ) -> Iterator[pd.DataFrame]:
    """Top-`k` items of every user of `sequences` (default: the model's history; or new users,
    `recommender.fold_in(log)`), one frame per `chunk_users` users: ``user``, ``rank``,
    ``item`` (and ``title`` from `titles`, item id -> title, when given), ``score``. Items that
    cannot be recommended (already seen, or reserved) never appear, so a user with fewer than
    `k` candidates gets fewer rows."""
    from seqvae.evaluation import top_k

    history = recommender.history_ if sequences is None else sequences
    users = np.asarray(history.users, dtype=object)
    for start in range(0, users.size, chunk_users):
        chunk = users[start:start + chunk_users]
        scores = recommender.score(history.subset_users(np.arange(start, start + chunk.size)),
                                   exclude_seen=exclude_seen)
        best = top_k(scores, k)
        best_scores = np.take_along_axis(scores, best, axis=1)
        finite = np.isfinite(best_scores)
        items = recommender.item_vocab_.token(best[finite]).astype(str)
        frame = pd.DataFrame({
            "user": np.repeat(chunk, best.shape[1])[finite.ravel()].astype(str),
            "rank": np.tile(np.arange(1, best.shape[1] + 1, dtype=np.int32),
                            chunk.size)[finite.ravel()],
            "item": items})
        if titles is not None:
            frame["title"] = titles.reindex(items).astype(object).where(
                lambda t: t.notna(), "").to_numpy()
        frame["score"] = best_scores[finite].astype(np.float32)
        if progress is not None:
            progress(start + chunk.size, users.size)
        yield frame


def all_recommendations(recommender: Any, k: int = 10, sequences: Any = None,
                        titles: pd.Series | None = None) -> pd.DataFrame:
    """`recommendation_chunks` as one frame (for the dashboard; files: `write_all_recommendations`)."""
    frames = list(recommendation_chunks(recommender, k, sequences=sequences, titles=titles))
    columns = ["user", "rank", "item", *(["title"] if titles is not None else []), "score"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def user_table(frame: pd.DataFrame, mu: np.ndarray, sigma: np.ndarray,
               coords: dict[str, np.ndarray], clusters: np.ndarray,
               cluster_names: dict[int, str] | None = None,
               mapped: np.ndarray | None = None) -> pd.DataFrame:
    """The latent page's users as one table: the user columns of `frame` (id, events, dominant
    event, last items, ``attr:*`` attributes), each projection in `coords` ("PCA-2" ->
    ``x_pca``, ``y_pca``; "UMAP-3" -> ``x_umap3d``, ``y_umap3d``, ``z_umap3d``; NaN for users outside
    `mapped`, the rows a sampled projection covers), the cluster and its name, μ and σ. The
    dominant event is left out where every user has the same one (a log without event types,
    whose one type would read as a value of the data)."""
    table = frame.reset_index(drop=True).copy()
    if "dominant_event" in table.columns and table["dominant_event"].nunique() <= 1:
        table = table.drop(columns="dominant_event")
    for name, values in sorted(coords.items()):
        method = name.split("-")[0].lower()
        for axis, letter in zip(range(values.shape[1]), "xyz", strict=False):
            column = values[:, axis].astype(np.float64)
            if mapped is not None and method != "pca":
                keep = np.zeros(len(column), dtype=bool)
                keep[mapped] = True
                column = np.where(keep, column, np.nan)
            table[f"{letter}_{method}{'3d' if values.shape[1] == 3 else ''}"] = column
    table["cluster"] = clusters
    if cluster_names is not None:
        table["cluster_name"] = [cluster_names.get(int(c), "") for c in clusters]
    mu_frame = pd.DataFrame(mu, columns=[f"mu_{i}" for i in range(mu.shape[1])])
    sigma_frame = pd.DataFrame(sigma, columns=[f"sigma_{i}" for i in range(sigma.shape[1])])
    return pd.concat([table, mu_frame, sigma_frame], axis=1)


def write_all_recommendations(recommender: Any, path: str | os.PathLike[str], k: int = 10,
                              exclude_seen: bool = True, chunk_users: int = 2048,
                              progress: Callable[[int, int], None] | None = None,
                              sequences: Any = None, titles: pd.Series | None = None) -> Path:
    """`recommendation_chunks` streamed to Parquet or CSV (columns ``user``, ``rank``,
    ``item``, ``title`` when `titles` are given, ``score``). Memory stays at one chunk's score
    matrix whatever the number of users; the file appears only when complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fmt = table_format(path)
    if fmt not in ("parquet", "csv"):
        raise ValueError("recommendations are written as .parquet or .csv")
    schema = pa.schema([("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()),
                        *([("title", pa.string())] if titles is not None else []),
                        ("score", pa.float32())])

    def chunks() -> Iterator[pd.DataFrame]:
        return recommendation_chunks(recommender, k, exclude_seen, chunk_users,
                                     sequences=sequences, progress=progress, titles=titles)

    def write(tmp: Path) -> None:
        if fmt == "parquet":
            with pq.ParquetWriter(tmp, schema) as writer:
                for frame in chunks():
                    writer.write_table(pa.Table.from_pandas(frame, schema=schema,
                                                            preserve_index=False))
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                for number, frame in enumerate(chunks()):
                    neutralise_formulas(frame).to_csv(handle, index=False, header=number == 0)

    return atomic_write(path, write)
