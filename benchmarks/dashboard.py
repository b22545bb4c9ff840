"""Dashboard timings: first page load, upload -> trained model, and page reruns with a model.

    python benchmarks/dashboard.py

Starts `streamlit run app.py` on 127.0.0.1 and drives Debian's Chromium with Playwright, like
the browser test: measures the first page load (navigation to the Data heading), then uploads the
bundled sample, trains with the default knobs and measures the time from the upload to the
finished model; then, with the model in the session, the time of each page's rerun through
Streamlit's AppTest (script time, best of 5). Writes `benchmarks/dashboard.json` and `.md`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import chromium_path  # noqa: E402
from tests.test_browser import CHROMIUM_FLAGS, _free_port  # noqa: E402


def browser_timings() -> dict[str, float]:
    import subprocess
    import urllib.request

    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(),
                                                 args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(900_000)
            started = time.perf_counter()
            page.goto(url)
            page.get_by_role("heading", name="Data").wait_for()
            first_load = time.perf_counter() - started
            started = time.perf_counter()
            page.locator("input[type=file]").first.set_input_files(
                str(ROOT / "sample_data" / "events.csv"))
            page.get_by_text("Summary of events.csv").wait_for()
            loaded = time.perf_counter() - started
            page.get_by_role("link", name="Train").click()
            page.get_by_role("button", name="Train", exact=True).click()
            page.get_by_text("Training finished").wait_for()
            trained = time.perf_counter() - started
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"first_page_load_s": first_load, "upload_to_summary_s": loaded,
            "upload_to_trained_model_s": trained}


def rerun_timings() -> dict[str, float]:
    """Script time of each page with the sample and a trained model in the session."""
    import streamlit.testing.v1.app_test as app_test_module
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    class _PagesManager(PagesManager):
        pass

    app_test_module.PagesManager = _PagesManager  # see tests/conftest.py: app
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).run()
    at.button(key="load_sample").click().run()
    at.switch_page("pages/train.py").run()
    at.button(key="train_start").click().run()  # default knobs
    while at.session_state["training_job"].active:
        time.sleep(1)
    at.run()
    out = {"default_model_validation_ndcg10": at.session_state["model"].validation_ndcg,
           "default_model_epochs": len(at.session_state["training_job"].history.epochs)}
    for name, path in (("Data", "pages/data.py"), ("Train", "pages/train.py"),
                       ("User", "pages/user.py")):
        at.switch_page(path).run()
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            at.run()
            runs.append(time.perf_counter() - started)
        assert not at.exception, at.exception
        out[f"rerun_{name}_s"] = min(runs)
    return out


def main() -> None:
    results = {**browser_timings(), **rerun_timings()}
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    (HERE / "dashboard.json").write_text(json.dumps({"machine": machine, "results": results},
                                                    indent=2) + "\n")
    lines = [
        f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, "
        f"{machine['date']}. Browser: headless Chromium through Playwright; reruns: AppTest "
        "script time, best of 5, with the sample and a default-knob model in the session "
        f"({results['default_model_epochs']} epochs, validation NDCG@10 "
        f"{results['default_model_validation_ndcg10']:.3f}).",
        "",
        "| measurement | seconds | target |",
        "|---|---:|---:|",
        f"| first page load (navigation → Data heading) | {results['first_page_load_s']:.2f} | ≤ 3 |",
        f"| upload of the sample → summary shown | {results['upload_to_summary_s']:.2f} | |",
        f"| upload → trained model, default knobs (early stopping) | "
        f"{results['upload_to_trained_model_s']:.0f} | ≤ 60 |",
    ]
    for name in ("Data", "Train", "User"):
        lines.append(f"| rerun of the {name} page with a model | {results[f'rerun_{name}_s']:.2f} | ≤ 1 |")
    (HERE / "dashboard.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
