"""Shared fixtures: the bundled sample, the real datasets beside the project, a log writer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "sample_data"
DATASETS = ROOT.parent / "shared" / "datasets"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    # no background UMAP compile competing with the tests (the UMAP test compiles what it uses)
    os.environ.setdefault("SEQVAE_WARM_UMAP", "0")


@pytest.fixture
def write_log(tmp_path: Path):
    """Write bytes or text to a file under tmp_path and return its path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write


@pytest.fixture(scope="session")
def sample_events() -> Path:
    return SAMPLE_DIR / "events.csv"


def dataset(*parts: str) -> Path:
    """A file of the shared benchmark datasets; skips the test (with the path) when absent."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset not found at {path}")
    return path


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def app(monkeypatch):
    """An `AppTest` of the dashboard, started from `app.py` like `make run` does.

    AppTest resets `PagesManager.uses_pages_directory` before every run, and because the project
    has a `pages/` folder (its layout is fixed) a rerun would then execute the current page file
    alone, without `app.py`'s sidebar. The real server keeps the flag that `st.navigation` sets;
    giving AppTest a subclass to reset keeps that behaviour in tests.
    """
    import streamlit.testing.v1.app_test as app_test_module
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    class _PagesManager(PagesManager):
        pass

    monkeypatch.setattr(app_test_module, "PagesManager", _PagesManager)
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


@pytest.fixture(scope="session")
def timed_events():
    """A generated log with timestamps (ISO text, seconds apart within a session, days between
    sessions) and three event types (view, cart, purchase)."""
    from seqvae.sample import generate

    return generate(n_users=80, n_items=40, seed=5).events


@pytest.fixture(scope="session")
def timed_model(timed_events, tmp_path_factory):
    """A tiny SeqVAE trained on `timed_events` (one epoch), recommending from every event."""
    from seqvae.logs import read_log
    from seqvae.sequences import encode
    from seqvae.splits import leave_one_out
    from seqvae.training import SeqVAEConfig, fit

    path = tmp_path_factory.mktemp("timed") / "events.csv"
    timed_events.to_csv(path, index=False)
    log, _ = read_log(path)
    sequences = encode(log)
    config = SeqVAEConfig(embed_dim=16, hidden_dim=16, latent_dim=8, max_len=20, epochs=1,
                          batch_size=64)
    recommender, _ = fit(leave_one_out(sequences), config, history_sequences=sequences)
    return recommender

