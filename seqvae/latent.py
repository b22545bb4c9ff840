"""The latent space of users: maps, clusters, cohorts and directions.

Everything here works on the users' μ (the mean of each user's latent Gaussian, in either view
of `SeqVAERecommender.encode`: after their last event, or every event of their last window
combined) and on their sequences; it is plain NumPy / scikit-learn, so the dashboard's Latent page,
the command line and notebooks share it.

* `user_frame` — one row per user: activity, recency, dominant event type, last items, and any
  user attributes.
* `project_pca` (instant) and `project_umap` (non-linear; parameters fixed before it runs).
* `stratified_sample` — above a size limit, a sample that keeps each group's share.
* `cluster_users` — k-means (or HDBSCAN) on μ in the full latent space, never on the 2-D map.
* `characterise` — the items and event types that set a cohort apart (lift against all users).
* `cluster_names` — a label per cluster from its most characteristic items.
* `nearest_users` — cosine neighbours in the full latent space, with distances.
* `interpolate` — what the decoder produces along the line between two users.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from seqvae.sequences import OOV, Sequences

# Okabe & Ito's colour-blind-safe palette first, then lighter and darker companions: 20
# distinguishable colours for the map's categories (grey is kept for "other")
# the first six (k-means' default k) are far apart in hue: the sky blue comes after them, away
# from the blue (clusters 0 and 5 were two blues a new user could not tell apart)
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#8C564B", "#F0E442",
           "#000000", "#56B4E9", "#17BECF", "#BCBD22", "#7F3C8D", "#1B9E77", "#E7298A",
           "#A6761D", "#66A61E", "#2F4B7C", "#FF7C43", "#A05195", "#665191"]
OTHER_COLOUR = "#BBBBBB"
# HDBSCAN's users in no cluster: a paler grey, so the clusters stand out of them
NOISE_COLOUR = "#DDDDDD"


def user_frame(sequences: Sequences, item_vocab: Any, event_vocab: Any,
               items: pd.DataFrame | None = None, users: pd.DataFrame | None = None,
               last_n: int = 3) -> pd.DataFrame:
    """One row per user of `sequences` (same order): ``user``, ``events``, ``days_since_last``
    (to the log's last event; NaN without timestamps), ``dominant_event``, ``last_items`` (titles
    when `items` has a ``title`` column), and the columns of `users` (attributes) as
    ``attr:<name>``."""
    n = sequences.n_users
    lengths = sequences.lengths
    frame = pd.DataFrame({"user": sequences.users.astype(str), "events": lengths})
    if sequences.has_timestamps and sequences.n_events:
        last_ts = sequences.timestamps[np.maximum(sequences.offsets[1:] - 1, 0)]
        frame["days_since_last"] = (sequences.timestamps.max() - last_ts) / 86_400e6
    else:
        frame["days_since_last"] = np.nan
    # dominant event type: the most frequent per user, ties to the more common type
    n_types = max(event_vocab.size, 1)
    counts = np.zeros((n, n_types), dtype=np.int64)
    np.add.at(counts, (sequences.user_of_event, sequences.events), 1)
    frame["dominant_event"] = event_vocab.token(counts.argmax(axis=1)) if n else []
    titles = None
    if items is not None and "title" in items.columns:
        titles = items["title"]
    # the last `last_n` items, newest first: one vectorised pass per position, not per user
    starts, ends = sequences.offsets[:-1], sequences.offsets[1:]
    parts = []
    for back in range(last_n):
        position = ends - 1 - back
        present = position >= starts
        labels = np.full(n, None, dtype=object)
        if present.any():
            ids = item_vocab.token(sequences.items[position[present]]).astype(str)
            if titles is not None:
                shown = titles.reindex(ids).to_numpy()
                is_title = np.array([isinstance(t, str) for t in shown], dtype=bool)
                ids = np.where(is_title, shown.astype(object), ids.astype(object))
            labels[present] = ids
        parts.append(labels)
    last = ([" · ".join(str(p) for p in row if p is not None) for row in zip(*parts, strict=True)]
            if n else [])
    frame["last_items"] = last
    if users is not None and len(users.columns):
        attributes = users.reindex(frame["user"])
        for column in attributes.columns:
            frame[f"attr:{column}"] = attributes[column].to_numpy()
    return frame


def pca_basis(vectors: np.ndarray, dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components (dims, Z)) of the principal components of `vectors` (SVD);
    deterministic signs (the largest loading of each component is positive). Other points (the
    same users at another date) are placed on the same map by ``(x - mean) @ components.T``."""
    vectors = np.asarray(vectors, dtype=np.float64)
    mean = vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    components = vt[:dims]
    signs = np.sign(components[np.arange(components.shape[0]),
                               np.abs(components).argmax(axis=1)])
    return mean, components * np.where(signs == 0, 1, signs)[:, None]


def project_pca(vectors: np.ndarray, dims: int = 2) -> np.ndarray:
    """Principal components of the centred vectors, (n, dims) (see `pca_basis`)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    dims = min(dims, vectors.shape[1]) if vectors.ndim == 2 else dims
    if vectors.shape[0] == 0:
        return np.zeros((0, dims))
    mean, components = pca_basis(vectors, dims)
    out = (vectors - mean) @ components.T
    if out.shape[1] < dims:
        out = np.pad(out, ((0, 0), (0, dims - out.shape[1])))
    return out


def view_range(points: np.ndarray, keep: np.ndarray | None = None, share: float = 0.99,
               stretch: float = 1.5) -> tuple[list[tuple[float, float]], int] | None:
    """The window a 2-D map opens on when a few far points would squeeze the rest: per axis the
    central `share` of the points, padded by a tenth of its width on each side, used only where
    the points' full extent is more than `stretch` times that window on some axis. `keep`: rows
    that must be in view (a searched user). -> (a (low, high) per axis, how many points lie
    outside), or None where the full extent is fine (the chart's own autorange)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) < 20:
        return None
    tail = (1.0 - share) / 2
    low, high = np.quantile(points, [tail, 1.0 - tail], axis=0)
    pad = 0.1 * np.maximum(high - low, 1e-12)
    low, high = low - pad, high + pad
    full = points.max(axis=0) - points.min(axis=0)
    if not np.any(full > stretch * (high - low)):
        return None
    if keep is not None and len(keep):
        kept = points[np.asarray(keep)]
        low = np.minimum(low, kept.min(axis=0) - pad)
        high = np.maximum(high, kept.max(axis=0) + pad)
    outside = int(np.any((points < low) | (points > high), axis=1).sum())
    return [(float(a), float(b)) for a, b in zip(low, high, strict=True)], outside


def project_umap(vectors: np.ndarray, dims: int = 2, n_neighbors: int = 15,
                 min_dist: float = 0.1, seed: int = 0) -> np.ndarray:
    """UMAP (McInnes et al. 2018) of the vectors with cosine distance: `n_neighbors` (local vs
    global structure) and `min_dist` (how tightly points pack) are fixed before it runs."""
    import umap

    n = vectors.shape[0]
    if n < 4:
        return project_pca(vectors, dims)
    reducer = umap.UMAP(n_components=dims, n_neighbors=min(n_neighbors, n - 1),
                        min_dist=min_dist, metric="cosine", random_state=seed, n_jobs=1)
    return np.asarray(reducer.fit_transform(vectors))


def warm_umap() -> None:
    """Run UMAP once so numba compiles its kernels (about a minute on 2 cores, once per process).

    4,200 points: above 4,096 UMAP finds neighbours by NN-descent instead of exactly, and that
    path has kernels of its own — warmed on 64 points only, the first 20,000-user map still took
    76 s; warmed on 4,200, 12 s."""
    rng = np.random.default_rng(0)
    project_umap(rng.normal(size=(4200, 8)), n_neighbors=5)


def stratified_sample(groups: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Row indices of at most `limit` rows keeping each group's share (at least one row of
    every group); all rows, in order, when there are no more than `limit`."""
    groups = np.asarray(groups)
    n = groups.shape[0]
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    values, inverse = np.unique(groups, return_inverse=True)
    chosen = []
    for g in range(values.size):
        members = np.flatnonzero(inverse == g)
        take = max(1, round(limit * members.size / n))
        chosen.append(rng.choice(members, size=min(take, members.size), replace=False))
    picked = np.sort(np.concatenate(chosen))
    if picked.size > limit:  # rounding up the small groups: trim at random, keeping each group
        keep = np.ones(picked.size, dtype=bool)
        first = np.unique(inverse[picked], return_index=True)[1]
        spare = np.setdiff1d(np.arange(picked.size), first)
        keep[rng.choice(spare, size=picked.size - limit, replace=False)] = False
        picked = picked[keep]
    return picked


def cluster_users(vectors: np.ndarray, k: int = 6, method: str = "kmeans",
                  seed: int = 0) -> np.ndarray:
    """Cluster labels (0..) of the users from their μ in the full latent space.

    `method`: ``kmeans`` (k clusters) or ``hdbscan`` (the number is found; noise is -1).
    μ is used as it is — the prior makes its dimensions comparable already, and standardising
    would blow up the inactive ones (a VAE leaves some dimensions at the prior: noise); on the
    sample that lowered the agreement with the planted segments from ARI 0.32 to 0.25.
    """
    n = vectors.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # single precision: k-means in float32 takes ~30% less time on 20,000 users (same labels)
    scaled = np.asarray(vectors, dtype=np.float32)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        k = max(1, min(k, n))
        return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(scaled)
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        return HDBSCAN(min_cluster_size=max(5, n // 100), copy=True).fit_predict(scaled)
    raise ValueError(f"`method` should be 'kmeans' or 'hdbscan'. Received: {method!r}")


def item_reach(sequences: Sequences, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (user, item) pairs of `sequences` as ``(pair_user, pair_item)`` and, per
    item, the number of users who had it."""
    keep = sequences.items > OOV
    pairs = np.unique(sequences.user_of_event[keep].astype(np.int64) * n_items
                      + sequences.items[keep])
    pair_user, pair_item = pairs // n_items, pairs % n_items
    return pair_user, pair_item, np.bincount(pair_item, minlength=n_items)


def characterise(sequences: Sequences, members: np.ndarray, item_vocab: Any, event_vocab: Any,
                 top: int = 10, min_users: int | None = None, prior_users: float = 20.0,
                 reach: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What sets the users at `members` (row indices or a boolean mask) apart.

    For each item: the share of the cohort's users who interacted with it, the share of all
    users, the raw lift (cohort share / overall share, = the cohort's users of the item / the
    number expected if the cohort were like everyone) and the **lift** the items are ranked by,
    shrunk toward 1 by `prior_users` pseudo-users added to both counts: (observed + prior) /
    (expected + prior). An item 3 cohort users touched where 0.3 were expected (raw lift 10) gets
    1.13; one 60 touched where 20 were expected (raw lift 3) gets 2.0 and ranks first. (A pseudo-
    count proportional to the overall share would leave the order of raw lift unchanged.) Items
    reached by fewer than
    `min_users` of the cohort (default: 5, or 2% of the cohort when that is more; never more
    than the cohort) are left out. For event types: the share of the cohort's events against all
    events. Returns ``(items, events)``, highest lift first. `reach`: `item_reach` of the same
    sequences, when several cohorts of them are characterised.
    """
    mask = np.zeros(sequences.n_users, dtype=bool)
    mask[np.asarray(members)] = True
    n_all, n_in = sequences.n_users, int(mask.sum())
    if min_users is None:
        min_users = max(5, int(np.ceil(0.02 * n_in)))
    user = sequences.user_of_event
    pair_user, pair_item, all_users = reach if reach is not None else item_reach(
        sequences, item_vocab.size)
    in_users = np.bincount(pair_item[mask[pair_user]], minlength=item_vocab.size)
    share_in = in_users / max(n_in, 1)
    share_all = all_users / max(n_all, 1)
    candidates = np.flatnonzero(in_users >= max(1, min(min_users, n_in)))
    expected = n_in * share_all
    shrunk = (in_users + prior_users) / (expected + prior_users) if prior_users > 0 else (
        share_in / np.maximum(share_all, 1e-12))
    order = candidates[np.lexsort((-in_users[candidates], -shrunk[candidates]))][:top]
    # lift first after the item: the column a narrow table must not hide
    items = pd.DataFrame({"item": item_vocab.token(order), "lift": shrunk[order],
                          "cohort users": in_users[order], "cohort share": share_in[order],
                          "overall share": share_all[order],
                          "raw lift": share_in[order] / np.maximum(share_all[order], 1e-12)})
    event_all = np.bincount(sequences.events, minlength=event_vocab.size)
    event_in = np.bincount(sequences.events[mask[user]], minlength=event_vocab.size)
    present = np.flatnonzero(event_all > 0)
    e_share_in = event_in[present] / max(event_in.sum(), 1)
    e_share_all = event_all[present] / max(event_all.sum(), 1)
    events = pd.DataFrame({"event": event_vocab.token(present), "cohort share": e_share_in,
                           "overall share": e_share_all, "lift": e_share_in / e_share_all})
    return items, events.sort_values("lift", ascending=False, kind="stable").reset_index(drop=True)


def attribute_breakdown(frame: pd.DataFrame, members: np.ndarray,
                        max_values: int = 12) -> pd.DataFrame:
    """The cohort at `members` (rows of `frame`, a `user_frame`) against everyone, attribute by
    attribute (the ``attr:`` columns).

    A categorical attribute (or a numeric one with at most `max_values` distinct values) gets one
    row per value: ``cohort share``, ``overall share`` and their ``difference`` (the cohort's
    users without a value count as "—"); values beyond the `max_values` most common are pooled as
    "other". A numeric attribute gets one row, ``value`` = "mean", with the cohort's and
    everyone's mean (and medians in ``cohort median`` / ``overall median``). Rows: attribute,
    then largest absolute difference first.
    """
    mask = np.zeros(len(frame), dtype=bool)
    mask[np.asarray(members)] = True
    rows = []
    for column in (c for c in frame.columns if c.startswith("attr:")):
        name = column.removeprefix("attr:")
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and values.nunique() > max_values:
            numbers = values.astype(float)
            cohort, everyone = numbers[mask], numbers
            rows.append({"attribute": name, "value": "mean", "cohort": cohort.mean(),
                         "everyone": everyone.mean(), "difference": cohort.mean() - everyone.mean(),
                         "cohort median": cohort.median(), "overall median": everyone.median(),
                         "kind": "numeric"})
            continue
        labels = values.astype(object).where(values.notna(), "—").astype(str)
        common = labels.value_counts().index[:max_values]
        labels = labels.where(labels.isin(common), "other")
        overall = labels.value_counts(normalize=True)
        inside = labels[mask].value_counts(normalize=True).reindex(overall.index, fill_value=0.0)
        part = pd.DataFrame({"attribute": name, "value": overall.index.astype(str),
                             "cohort": inside.to_numpy(), "everyone": overall.to_numpy(),
                             "kind": "share"})
        part["difference"] = part["cohort"] - part["everyone"]
        part = part.reindex(part["difference"].abs().sort_values(ascending=False,
                                                                 kind="stable").index)
        rows.extend(part.to_dict("records"))
    columns = ["attribute", "value", "kind", "cohort", "everyone", "difference",
               "cohort median", "overall median"]
    return pd.DataFrame(rows, columns=columns).reset_index(drop=True)


def top_categories(values: pd.Series, top: int = 20, other: str = "other") -> pd.Series:
    """The `top` most common values kept, the rest pooled as `other` (for a legend that stays
    readable: 21 occupations with 20 colours and a grey "other")."""
    labels = values.astype(str)
    counts = labels.value_counts()
    if counts.size <= top + 1:
        return labels
    return labels.where(labels.isin(counts.index[:top]), other)


def categories_repeat(values: pd.Series, top: int = 20, share: float = 0.5) -> bool:
    """Whether colouring by `values` as categories would tell groups apart: the `top` most common
    values (those `top_categories` gives colours) hold at least `share` of the users that have a
    value. A zip code on MovieLens (795 values among 943 users) does not: nearly every user
    would be the grey "other"."""
    present = values.dropna().astype(str)
    if present.empty:
        return False
    return bool(present.value_counts().iloc[:top].sum() >= share * present.size)


def cluster_names(sequences: Sequences, labels: np.ndarray, item_vocab: Any, event_vocab: Any,
                  items: pd.DataFrame | None = None, n: int = 2,
                  reach: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                  ) -> dict[int, str]:
    """A short automatic label per cluster: its `n` most characteristic items (by lift), with
    their categories when the item metadata has a ``category`` column and one category
    dominates them. `reach`: `item_reach` of the same sequences, when it is at hand."""
    names = {}
    if reach is None:
        reach = item_reach(sequences, item_vocab.size)
    for label in np.unique(labels):
        if label < 0:
            names[int(label)] = "noise"
            continue
        top, _ = characterise(sequences, np.flatnonzero(labels == label), item_vocab,
                              event_vocab, top=max(n, 5), reach=reach)
        ids = [str(i) for i in top["item"].head(n)]
        titles = (items["title"].reindex(ids).tolist()
                  if items is not None and "title" in items.columns else [None] * len(ids))
        shown = [str(t) if isinstance(t, str) else _item_label(i)
                 for i, t in zip(ids, titles, strict=True)]
        label_text = " · ".join(shown) or "—"
        if items is not None and "category" in items.columns and len(top):
            categories = items["category"].reindex([str(i) for i in top["item"]]).dropna()
            if len(categories) and categories.value_counts().iloc[0] >= 0.6 * len(top):
                label_text = f"{categories.value_counts().index[0]}: {label_text}"
        names[int(label)] = f"{int(label)} · {label_text}"
    return names


def _item_label(item: str) -> str:
    """An item shown by its id: "item 528" where the id is a number (MovieLens), so that a
    legend of "0 · 528 · 523" does not read as a cluster and two counts."""
    return f"item {item}" if item.lstrip("-").isdigit() else item


def nearest_users(vectors: np.ndarray, row: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The `k` users nearest to user `row` by cosine distance in the full latent space:
    ``(rows, distances)``, nearest first (the user itself left out)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    distance = 1.0 - unit @ unit[row]
    distance[row] = np.inf
    order = np.argsort(distance, kind="stable")[:k]
    return order, distance[order]


def interpolate(recommender: Any, start: np.ndarray, end: np.ndarray, steps: int = 7,
                top: int = 8) -> tuple[np.ndarray, pd.DataFrame]:
    """Decode the points on the segment from `start` to `end` (two μ).

    Returns ``(probabilities, movers)``: the (steps, n_items) item distributions along the line,
    and the items whose probability rises or falls most between the ends (``item``,
    ``at start``, ``at end``, ``change``), the `top` risers then the `top` fallers.
    """
    t = np.linspace(0.0, 1.0, steps)[:, None]
    points = (1 - t) * start[None, :] + t * end[None, :]
    logits = recommender.decode_scores(points.astype(np.float32))
    logits = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    change = probabilities[-1] - probabilities[0]
    order = np.argsort(-change, kind="stable")
    picked = np.concatenate([order[:top], order[::-1][:top]])
    movers = pd.DataFrame({"item": recommender.item_vocab_.token(picked),
                           "at start": probabilities[0, picked],
                           "at end": probabilities[-1, picked], "change": change[picked]})
    return probabilities, movers
