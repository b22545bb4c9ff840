"""Process-wide settings of the dashboard's Streamlit server, applied once at start.

Streamlit calls ``keras.backend.clear_session()`` after every script run once Keras is imported
(`streamlit.runtime.scriptrunner.script_runner._clean_problem_modules`, meant for scripts that
build a new model on every run). Here models live in the session across reruns and train on a
background thread, and the Train page redraws every few seconds while one trains: each redraw
dropped TensorFlow's kernel cache and ran a full garbage collection under the training thread —
training the sample in the browser took 85 s against 37 s without a browser — and reset Keras'
global state mid-training. `keep_keras_state` leaves Keras alone and keeps the rest of that
clean-up (closing matplotlib figures).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

logger = logging.getLogger("seqvae.ui")


def _clean_up_without_keras() -> None:
    pyplot: Any = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


def keep_keras_state() -> bool:
    """Stop Streamlit from clearing the Keras session after each run; True once in place."""
    try:
        from streamlit.runtime.scriptrunner import script_runner
    except ImportError:  # pragma: no cover - a Streamlit without that module clears nothing
        return False
    if not hasattr(script_runner, "_clean_problem_modules"):
        logger.warning("Streamlit no longer has _clean_problem_modules; nothing to replace")
        return False
    script_runner._clean_problem_modules = _clean_up_without_keras
    return True


_UMAP_WARM = threading.Event()
_UMAP_STARTED = threading.Lock()


def warm_umap_in_background() -> None:
    """Compile UMAP's numba kernels once per server process, on a background thread (~30 s), so
    the first map an analyst asks for takes seconds. Called once a model exists — TensorFlow is
    then already imported on the script thread, which `import umap` needs."""
    if os.environ.get("SEQVAE_WARM_UMAP", "1") == "0" or not _UMAP_STARTED.acquire(
            blocking=False):
        return  # SEQVAE_WARM_UMAP=0: the page test suite, where it would only compete for CPU

    def warm() -> None:
        try:
            from seqvae.latent import warm_umap

            warm_umap()
        except Exception:  # the page computes UMAP on request anyway
            logger.exception("warming UMAP failed")
        finally:
            _UMAP_WARM.set()

    threading.Thread(target=warm, daemon=True, name="seqvae-umap-warm").start()


def umap_is_warm() -> bool:
    return _UMAP_WARM.is_set()
