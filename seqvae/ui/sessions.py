"""What a browser session has loaded, kept on the server so that it survives a reload of the tab.

Streamlit forgets `st.session_state` when the tab reloads: the page opens a new websocket and a
new, empty session, while the training thread of the old one runs on with nobody to stop it. So
every session gets a random token, kept in the URL (``?session=…``); what the pages keep (the
`KEPT` keys: data, model, jobs, selections, cohorts) is copied into a server-side store at the end
of every script run, and copied back when a new Streamlit session opens with a known token.

The store is bounded and cleans up after itself, on every run of any session:

* a session nobody has used for `IDLE_EXPIRY_S` is dropped and its jobs are stopped;
* a session whose tabs are all closed (no connected Streamlit session holds its token) for
  `ORPHAN_GRACE_S` has its running jobs stopped, so they give the server's training slot back;
  its data stay until expiry, so a tab reopened from the same URL still finds them;
* at most `MAX_SESSIONS` are kept: beyond that, the least recently used are dropped first.

The token is a capability: anyone with the URL opens the same session (as with any shared link
to a notebook server). It is 128 random bits, never derived from the data.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from seqvae.ui import state

logger = logging.getLogger("seqvae.ui")

PARAM = "session"  # the URL's query parameter
TOKEN = "session_token"  # the st.session_state key that holds this session's token
EXPIRED = "session_expired"  # set when the URL named a session the server no longer has
PAGE = "session_page"  # the page the last run showed
IDLE_EXPIRY_S = float(os.environ.get("SEQVAE_SESSION_EXPIRY_S", str(4 * 3600)))
ORPHAN_GRACE_S = float(os.environ.get("SEQVAE_ORPHAN_GRACE_S", "600"))
MAX_SESSIONS = int(os.environ.get("SEQVAE_MAX_SESSIONS", "32"))

# the session-state keys a reload must not lose (widgets' own keys are Streamlit's business)
KEPT = (state.DATASET, state.UPLOAD_ERROR, state.MODEL, state.JOB, state.ADOPTED_JOB,
        state.EVALUATION, state.SELECTED_USER, state.LATENT, state.SELECTION, state.COHORTS,
        state.DRIFT_SHOWN, state.BETWEEN_OPENED)

# the settings an analyst chose, restored too; a widget's value is Streamlit's only while its
# page is open, so the last value seen is kept (never buttons, uploaders or charts, whose state
# cannot be set)
KEPT_WIDGETS = (
    "knob_latent", "knob_epochs", "knob_max_len", "knob_beta", "knob_encoder", "knob_hidden",
    "knob_batch", "knob_lr", "knob_patience", "knob_seed", "knob_refit", "latent_users_by",
    "latent_projection", "latent_dims", "latent_colour", "latent_cluster_method", "latent_k",
    "latent_size", "user_query", "rec_k", "eval_protocol", "eval_models", "eval_ks",
    "eval_metric", "eval_intervals", "opt_format", "opt_sep", "opt_header", "opt_missing_ts",
    "opt_missing_value", "opt_dups", "latent_search", "user_tab",
    "similar_users_by", "drift_start", "drift_end", "drift_arrows", "between_a", "between_b",
)
# widgets with one key per user (the User page's What-if edits): kept by their key's prefix
KEPT_WIDGET_PREFIXES = ("whatif_remove:", "whatif_add:", "whatif_event:")


def kept_widget(key: str) -> bool:
    """Whether the widget under `key` is one whose last value a reload or a page change keeps."""
    return key in KEPT_WIDGETS or key.startswith(KEPT_WIDGET_PREFIXES)


@dataclass
class _Entry:
    values: dict[str, Any] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.monotonic)
    streamlit_ids: set[str] = field(default_factory=set)  # the Streamlit sessions that used it
    disconnected_since: float | None = None


class SessionStore:
    """Token -> what a session kept; thread-safe (every Streamlit session runs on its thread)."""

    def __init__(self, idle_expiry_s: float = IDLE_EXPIRY_S,
                 orphan_grace_s: float = ORPHAN_GRACE_S, max_sessions: int = MAX_SESSIONS
                 ) -> None:
        self.idle_expiry_s = idle_expiry_s
        self.orphan_grace_s = orphan_grace_s
        self.max_sessions = max_sessions
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, token: str) -> bool:
        with self._lock:
            return token in self._entries

    def new_token(self) -> str:
        return secrets.token_urlsafe(16)

    def open(self, token: str, streamlit_id: str | None) -> dict[str, Any] | None:
        """The values kept under `token` (None if unknown or expired); marks it in use."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            entry.last_seen = time.monotonic()
            entry.disconnected_since = None
            if streamlit_id is not None:
                entry.streamlit_ids.add(streamlit_id)
            return dict(entry.values)

    def widgets(self, token: str) -> dict[str, Any]:
        """The last value of each kept widget under `token` (none if unknown)."""
        with self._lock:
            entry = self._entries.get(token)
            return {} if entry is None else {k: v for k, v in entry.values.items()
                                             if kept_widget(k)}

    def save(self, token: str, values: dict[str, Any], streamlit_id: str | None,
             widgets: dict[str, Any] | None = None) -> None:
        """Keep `values` (replacing what was kept) and update the `widgets` values for `token`."""
        with self._lock:
            entry = self._entries.setdefault(token, _Entry())
            kept_widgets = {k: v for k, v in entry.values.items() if kept_widget(k)}
            entry.values = {**kept_widgets, **(widgets or {}), **values}
            entry.last_seen = time.monotonic()
            entry.disconnected_since = None
            if streamlit_id is not None:
                entry.streamlit_ids.add(streamlit_id)

    def sweep(self, is_connected: Any = None, now: float | None = None) -> list[str]:
        """Apply the expiry, orphan and size rules; -> the tokens dropped.

        `is_connected(streamlit_id) -> bool` says whether a Streamlit session still has a tab
        (None: unknown, and only idle expiry and the size bound apply).
        """
        now = time.monotonic() if now is None else now
        dropped: dict[str, _Entry] = {}
        orphaned: list[_Entry] = []
        with self._lock:
            for token, entry in list(self._entries.items()):
                if now - entry.last_seen > self.idle_expiry_s:
                    dropped[token] = self._entries.pop(token)
                    continue
                if is_connected is None or not _has_active_job(entry):
                    continue
                if any(is_connected(sid) for sid in entry.streamlit_ids):
                    entry.disconnected_since = None
                elif entry.disconnected_since is None:
                    entry.disconnected_since = now
                elif now - entry.disconnected_since > self.orphan_grace_s:
                    orphaned.append(entry)
            by_age = sorted(self._entries, key=lambda t: self._entries[t].last_seen)
            for token in by_age[:max(0, len(self._entries) - self.max_sessions)]:
                dropped[token] = self._entries.pop(token)
        for entry in dropped.values():
            _stop_jobs(entry, "its session expired", discard=True)
        for entry in orphaned:
            _stop_jobs(entry, "its browser tab was closed")
        if dropped:
            logger.info("dropped %d idle session(s); %d kept", len(dropped), len(self))
        return list(dropped)


def _jobs(entry: _Entry) -> list[Any]:
    return [entry.values[k] for k in (state.JOB, state.EVALUATION) if entry.values.get(k)]


def _has_active_job(entry: _Entry) -> bool:
    return any(job.active for job in _jobs(entry))


def _stop_jobs(entry: _Entry, why: str, discard: bool = False) -> None:
    for job in _jobs(entry):
        if job.active:
            logger.info("stopping a %s: %s", type(job).__name__, why)
            job.cancel(reason=why)
        if discard and hasattr(job, "discard"):
            job.discard()  # its checkpoint (a job still stopping keeps it: the OS's temp dir)


STORE = SessionStore()


def _streamlit_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def _is_connected() -> Any:
    """`is_connected(streamlit_id)` from Streamlit's runtime, or None outside a server."""
    try:
        from streamlit.runtime import Runtime

        manager = Runtime.instance()._session_mgr
        return manager.is_active_session
    except Exception:  # AppTest, or a Streamlit whose internals moved: idle expiry still applies
        return None


def attach(store: SessionStore = STORE, page: str | None = None) -> str:
    """Called first on every run: give this session its token (restoring what a reloaded tab
    kept), keep the token in the URL, and apply the store's clean-up rules.

    `page` names the page this run shows; when it differs from the last run's, the page's kept
    widget values are set again (see below)."""
    store.sweep(_is_connected())
    token: str | None = st.session_state.get(TOKEN)
    if token is None:
        requested = st.query_params.get(PARAM)
        kept = store.open(requested, _streamlit_id()) if requested else None
        if kept is not None and requested is not None:
            token = requested
            for key, value in kept.items():
                st.session_state.setdefault(key, value)
        else:
            token = store.new_token()
            if requested:
                st.session_state[EXPIRED] = True
        st.session_state[TOKEN] = token
    else:
        # Streamlit forgets a widget once a page without it has run: going back to the Latent
        # page would show PCA again after UMAP was chosen. The last value comes back. On
        # entering a page it is assigned, not merely defaulted: the server may still hold the
        # value while the browser has dropped the widget and would draw its default (and send
        # that default back on the next click); only a value set through the Session State API
        # is sent to the browser to show.
        entered = page is not None and st.session_state.get(PAGE) != page
        for key, value in store.widgets(token).items():
            if entered:
                st.session_state[key] = value
            else:
                st.session_state.setdefault(key, value)
    if page is not None:
        st.session_state[PAGE] = page
    if st.query_params.get(PARAM) != token:
        st.query_params[PARAM] = token  # page navigation clears the URL's parameters
    return token


def save(store: SessionStore = STORE) -> None:
    """Called last on every run (also when a page stops or reruns early)."""
    token = st.session_state.get(TOKEN)
    if token is None:
        return
    present = {k: st.session_state[k] for k in list(st.session_state.keys())
               if isinstance(k, str) and (k in KEPT or kept_widget(k))}
    store.save(token, {k: v for k, v in present.items() if k in KEPT}, _streamlit_id(),
               widgets={k: v for k, v in present.items() if kept_widget(k)})
