"""Showing text that came from a user's file, safely.

Streamlit renders Markdown (links, images) in `st.markdown`, `st.error`, `st.warning` and
captions. Ids, titles and messages that quote them are escaped first, so a title such as
``![x](http://...)`` or ``<script>`` shows as the characters it is and never loads or runs.
"""

from __future__ import annotations

import re

import numpy as np

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


def escape_markdown(text: object) -> str:
    """Backslash-escape every Markdown-significant character of `text`."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def plotly_text(text: object) -> str:
    """Text for Plotly labels and hovers, which read a few HTML tags: `<` and `>` become entities,
    so a tag in a title shows as typed."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def natural_key(value: object) -> tuple:
    """Sorts "9" before "10" and "9 · a" before "10 · b" (by a leading number, then the text),
    numbered values before the others."""
    text = str(value)
    head = text.split(" ", 1)[0]
    return (0, int(head), text) if head.lstrip("-").isdigit() else (1, 0, text)


def natural_order(ids: np.ndarray) -> np.ndarray:
    """`ids` sorted as a person lists them: the ids that are whole numbers first, by value
    (MovieLens' users 1, 2, 3, … rather than the log's 196, 186, 22, …), then the others as
    text. Vectorised: it runs on every rerun of a page that lists a log's users."""
    text = np.asarray(ids).astype(str)
    if text.size == 0:
        return np.asarray(ids)
    digits = np.char.isdigit(text) & (np.char.str_len(text) <= 18)  # fits an int64
    numbers = np.zeros(text.size, dtype=np.int64)
    numbers[digits] = text[digits].astype(np.int64)
    # numbers first, by value, then the rest as text (the text breaks ties such as "007", "7")
    return np.asarray(ids)[np.lexsort((text, numbers, ~digits))]


def matching_ids(ids: np.ndarray, query: str) -> np.ndarray:
    """The ids that contain `query` (stripped), the id equal to it first, then those that start
    with it, then the rest, each group in `natural_order`; every id, in that order, for an empty
    query."""
    ids = natural_order(ids)
    query = query.strip()
    if not query:
        return ids
    text = ids.astype(str)
    found = np.char.find(text, query) >= 0
    rank = np.where(text == query, 0, np.where(np.char.startswith(text, query), 1, 2))
    return ids[found][np.argsort(rank[found], kind="stable")]


def shorten(text: object, width: int) -> str:
    """`text` cut to at most `width` characters, with "…" where it was cut."""
    text = str(text)
    return text if len(text) <= width else text[:max(width - 1, 0)].rstrip() + "…"


def duration(seconds: float) -> str:
    """A time span as a person reads it: "48 s", "3 min 26 s", "1 h 05 min"."""
    whole = max(round(seconds), 0)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
