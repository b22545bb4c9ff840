"""A deterministic generator of a realistic e-commerce behaviour log with planted user segments.

The log is made so that a model has something real to find, and tests can check that it does:

* ~1,000 items in 10 categories, with titles, prices and a long-tailed popularity;
* users belong to one of six planted segments that differ in **taste** (which categories, which
  price range), in **habits** (how often they come back, how long their sessions are, how often a
  view becomes a cart and a purchase, the hour of day they shop) — the segment of each user is
  written to a separate file and never to the events;
* sessions: a user browses a few items in a row, often moving to a *related* item of the one just
  viewed (so order carries signal), adds some to the cart and buys some of those (a view → cart →
  purchase funnel with realistic rates); sessions are days apart, events within a session seconds
  to minutes apart.

Everything is drawn from one seeded `numpy.random.Generator`: the same seed gives the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CATEGORIES = (
    "Electronics", "Books", "Home & Kitchen", "Beauty", "Sports & Outdoors",
    "Toys & Games", "Fashion", "Grocery", "Garden", "Music",
)

_NOUNS = {
    "Electronics": ("Headphones", "Charger", "Smartwatch", "Speaker", "Keyboard", "Webcam",
                    "Power Bank", "Monitor", "Router", "Earbuds"),
    "Books": ("Novel", "Cookbook", "Biography", "Atlas", "Poetry Collection", "Thriller",
              "Field Guide", "Graphic Novel", "History", "Workbook"),
    "Home & Kitchen": ("Frying Pan", "Kettle", "Knife Set", "Blender", "Cutting Board",
                       "Coffee Grinder", "Towel Set", "Lamp", "Storage Box", "Teapot"),
    "Beauty": ("Moisturiser", "Lipstick", "Serum", "Shampoo", "Face Mask", "Perfume",
               "Nail Polish", "Sunscreen", "Eye Cream", "Hair Oil"),
    "Sports & Outdoors": ("Yoga Mat", "Running Shoes", "Water Bottle", "Tent", "Dumbbells",
                          "Cycling Gloves", "Backpack", "Jump Rope", "Headlamp", "Trail Socks"),
    "Toys & Games": ("Puzzle", "Board Game", "Building Blocks", "Plush Bear", "Kite",
                     "Card Game", "Toy Car", "Doll House", "Science Kit", "Marble Run"),
    "Fashion": ("Scarf", "Sneakers", "Denim Jacket", "Sunglasses", "Handbag", "Wool Hat",
                "Belt", "Dress", "Watch Strap", "Raincoat"),
    "Grocery": ("Green Tea", "Olive Oil", "Dark Chocolate", "Granola", "Coffee Beans",
                "Pasta", "Honey", "Spice Mix", "Protein Bar", "Rice"),
    "Garden": ("Seed Pack", "Watering Can", "Pruning Shears", "Planter", "Compost",
               "Garden Gloves", "Hose", "Bird Feeder", "Trowel", "Solar Light"),
    "Music": ("Vinyl Record", "Guitar Strings", "Ukulele", "Metronome", "Harmonica",
              "Drumsticks", "Capo", "Songbook", "Microphone", "Tuner"),
}

_ADJECTIVES = ("Classic", "Compact", "Deluxe", "Everyday", "Eco", "Premium", "Travel", "Mini",
               "Pro", "Vintage", "Smart", "Organic", "Ultra", "Essential", "Handmade", "Nordic")


@dataclass(frozen=True)
class Segment:
    """One planted user segment: its taste and its habits."""

    name: str
    # weight of each category in CATEGORIES order
    category_weights: tuple[float, ...]
    # preferred price level: items are weighted by exp(-|log price - log price_centre|)
    price_centre: float
    # mean number of sessions, items viewed per session
    sessions: float
    session_length: float
    # view -> cart and cart -> purchase probabilities
    p_cart: float
    p_purchase: float
    # typical hour of day of a session (UTC)
    hour: int
    # share of the user population
    share: float


SEGMENTS = (
    Segment("tech enthusiasts", (6, .5, .3, .1, .4, .3, .2, .2, .1, 3), 120.0,
            6.0, 5.0, 0.18, 0.45, 21, 0.18),
    Segment("home makers", (.3, .6, 6, .5, .2, .3, .3, 1.5, 3, .1), 35.0,
            5.0, 4.0, 0.22, 0.55, 10, 0.18),
    Segment("beauty & style", (.2, .4, .3, 6, .3, .1, 4, .3, .1, .2), 25.0,
            7.0, 3.5, 0.25, 0.50, 19, 0.17),
    Segment("parents", (.5, 3, 1, .3, .5, 6, .6, 2, .3, .2), 20.0,
            4.0, 6.0, 0.20, 0.60, 13, 0.17),
    Segment("outdoor athletes", (.6, .3, .2, .2, 6, .2, .8, 1.5, 2, .3), 60.0,
            4.5, 4.0, 0.15, 0.50, 7, 0.15),
    Segment("bargain browsers", (1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 6.0,
            9.0, 7.0, 0.06, 0.30, 23, 0.15),
)


@dataclass
class SampleLog:
    """The three tables of a generated sample."""

    events: pd.DataFrame  # user_id, item_id, event_type, timestamp (ISO-8601 UTC)
    items: pd.DataFrame  # item_id, title, category, price
    segments: pd.DataFrame  # user_id, segment

    def write(self, events_path: str | Path) -> dict[str, Path]:
        """Write ``events.csv``-style files: `events_path`, and ``*_items.csv`` and
        ``*_segments.csv`` beside it (named after `events_path`'s stem)."""
        events_path = Path(events_path)
        stem = events_path.stem
        if stem.endswith("events"):
            stem = stem[: -len("events")].rstrip("_-.")
        prefix = f"{stem}_" if stem else ""
        paths = {
            "events": events_path,
            "items": events_path.with_name(f"{prefix}items.csv"),
            "segments": events_path.with_name(f"{prefix}segments.csv"),
        }
        events_path.parent.mkdir(parents=True, exist_ok=True)
        for key, frame in (("events", self.events), ("items", self.items),
                           ("segments", self.segments)):
            tmp = paths[key].with_suffix(paths[key].suffix + ".tmp")
            frame.to_csv(tmp, index=False)
            tmp.replace(paths[key])  # no half-written file is ever left under the real name
        return paths


def _make_items(rng: np.random.Generator, n_items: int) -> pd.DataFrame:
    category = rng.integers(0, len(CATEGORIES), size=n_items)
    price_base = {c: b for c, b in zip(CATEGORIES, (80, 15, 30, 20, 40, 25, 45, 8, 18, 30),
                                       strict=True)}
    titles, prices = [], []
    seen: set[str] = set()
    for i, c in enumerate(category):
        cat = CATEGORIES[c]
        while True:
            title = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS[cat])}"
            if title not in seen:
                break
            title = f"{title} {rng.integers(2, 99)}"
            if title not in seen:
                break
        seen.add(title)
        titles.append(title)
        prices.append(round(float(price_base[cat] * rng.lognormal(0.0, 0.8)), 2) + 0.99 * (i % 2))
    return pd.DataFrame({
        "item_id": [f"P{i + 1:04d}" for i in range(n_items)],
        "title": titles,
        "category": [CATEGORIES[c] for c in category],
        "price": np.round(prices, 2),
    })


def generate(n_users: int = 2000, n_items: int = 1000, seed: int = 7,
             start: str = "2024-01-01") -> SampleLog:
    """Generate a sample log.

    Args:
        n_users: number of users (each has at least two sessions).
        n_items: number of items.
        seed: the random seed; the same seed gives the same log.
        start: the date of the first possible session (UTC).
    """
    if n_users < 10:
        raise ValueError(f"`n_users` should be at least 10. Received: `n_users`={n_users}")
    if n_items < 20:
        raise ValueError(f"`n_items` should be at least 20. Received: `n_items`={n_items}")
    rng = np.random.default_rng(seed)
    items = _make_items(rng, n_items)
    cat_index = {c: i for i, c in enumerate(CATEGORIES)}
    item_cat = items["category"].map(cat_index).to_numpy()
    log_price = np.log(items["price"].to_numpy())
    popularity = rng.pareto(1.2, size=n_items) + 1.0  # long tail

    # Each item has a few related items in its category: the next view often follows them.
    related = np.empty((n_items, 4), dtype=np.int64)
    for c in range(len(CATEGORIES)):
        members = np.flatnonzero(item_cat == c)
        for i in members:
            related[i] = rng.choice(members, size=4, replace=members.size < 5)

    shares = np.array([s.share for s in SEGMENTS])
    segment_of_user = rng.choice(len(SEGMENTS), size=n_users, p=shares / shares.sum())
    # Per-segment item preference: category taste x price fit x popularity.
    preference = []
    for seg in SEGMENTS:
        weights = np.asarray(seg.category_weights)[item_cat]
        price_fit = np.exp(-np.abs(log_price - np.log(seg.price_centre)))
        p = weights * price_fit * popularity
        preference.append(p / p.sum())

    start_ts = pd.Timestamp(start, tz="UTC").value // 10**9
    horizon_days = 180
    users, item_ids, kinds, times = [], [], [], []
    for u in range(n_users):
        seg = SEGMENTS[segment_of_user[u]]
        pref = preference[segment_of_user[u]]
        # a little individual taste on top of the segment's
        personal = pref * rng.gamma(2.0, 0.5, size=n_items)
        personal /= personal.sum()
        n_sessions = 2 + rng.poisson(seg.sessions - 2)
        # users arrive throughout the period and spread their sessions over what is left of it
        day = rng.uniform(0, horizon_days * 0.7)
        mean_gap = (horizon_days - day) / n_sessions
        for session in range(n_sessions):
            if day > horizon_days:
                if session >= 2:
                    break
                day = horizon_days - rng.uniform(0, 1)  # every user has two sessions at least
            hour = (seg.hour + rng.normal(0, 1.5)) % 24
            t = start_ts + int(day * 86400 + hour * 3600 + rng.integers(0, 3600))
            length = 1 + rng.poisson(seg.session_length - 1)
            current = rng.choice(n_items, p=personal)
            for _ in range(length):
                users.append(u)
                item_ids.append(current)
                kinds.append(0)
                times.append(t)
                if rng.random() < seg.p_cart:
                    t += int(rng.integers(10, 180))
                    users.append(u)
                    item_ids.append(current)
                    kinds.append(1)
                    times.append(t)
                    if rng.random() < seg.p_purchase:
                        t += int(rng.integers(30, 600))
                        users.append(u)
                        item_ids.append(current)
                        kinds.append(2)
                        times.append(t)
                t += int(rng.gamma(2.0, 45.0)) + 5
                if rng.random() < 0.55:
                    current = related[current, rng.integers(0, 4)]
                else:
                    current = rng.choice(n_items, p=personal)
            day += rng.exponential(mean_gap)
    user_labels = np.array([f"U{u + 1:05d}" for u in range(n_users)], dtype=object)
    event_names = np.array(["view", "cart", "purchase"], dtype=object)
    events = pd.DataFrame({
        "user_id": user_labels[np.asarray(users)],
        "item_id": items["item_id"].to_numpy()[np.asarray(item_ids)],
        "event_type": event_names[np.asarray(kinds)],
        "timestamp": pd.to_datetime(np.asarray(times), unit="s", utc=True)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    # the file is in time order, as a real export would be
    order = np.argsort(np.asarray(times), kind="stable")
    events = events.iloc[order].reset_index(drop=True)
    segments = pd.DataFrame({
        "user_id": user_labels,
        "segment": [SEGMENTS[s].name for s in segment_of_user],
    })
    return SampleLog(events=events, items=items, segments=segments)
