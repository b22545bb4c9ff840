"""End to end in a real browser: Playwright drives Debian's Chromium against `streamlit run`.

Without a Chromium the tests are skipped with the reason, except in CI (CI=true), where they fail:
`make test` installs Debian's `chromium` package when it can. Screenshots are written to
`tests/artifacts/` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLE_DIR, chromium_path

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    break
        except OSError:
            time.sleep(0.5)
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited: {process.stdout.read() if process.stdout else ''}")
    else:
        process.kill()
        raise RuntimeError("streamlit did not answer within 90 s")
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        reason = ("no Chromium found (install Debian's `chromium` package; `make test` does "
                  "so when it runs as root)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 2600})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def map_ready(page) -> None:
    """Wait until the first Plotly chart has its axes, and bring it into view."""
    page.wait_for_function(
        "document.querySelector('.js-plotly-plot') && "
        "document.querySelector('.js-plotly-plot')._fullLayout && "
        "document.querySelector('.js-plotly-plot')._fullLayout.xaxis")
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()


def test_load_sample_and_upload_a_log(page, server):
    outside: list[str] = []  # nothing may be fetched from the internet (favicon included)
    page.on(
        "request", lambda r: None if r.url.startswith((server, "data:", "blob:")) else outside.append(r.url)
    )
    started = time.monotonic()
    page.goto(server)
    page.get_by_role("heading", name="Data").wait_for()
    first_load = time.monotonic() - started
    page.get_by_text("none loaded yet").wait_for()
    shot(page, "01-landing")

    page.get_by_role("button", name="Load the bundled sample").click()
    page.get_by_role("heading", name="Ingest report").wait_for()
    page.get_by_text("2,000 users · 1,000 items").wait_for()  # the sidebar
    assert page.get_by_text("69,372").first.is_visible()
    # the three charts are drawn (Plotly renders them after the page arrives)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3")
    shot(page, "02-sample-loaded")

    # upload the sample CSV through the file input, as a person would
    page.locator("input[type=file]").first.set_input_files(str(SAMPLE_DIR / "events.csv"))
    page.get_by_text("Summary of events.csv").wait_for()
    page.get_by_text("Columns and reading options of events.csv").wait_for()
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3")
    shot(page, "03-uploaded")
    print(f"first page load {first_load:.2f} s")
    assert page.evaluate("document.querySelector('link[rel*=icon]').href").startswith(server)
    assert outside == [], outside


def test_bad_upload_shows_a_message_not_a_traceback(page, server, tmp_path):
    page.goto(server)
    page.get_by_role("heading", name="Data").wait_for()
    bad = tmp_path / "one-item.csv"
    bad.write_text("user,item\n1,5\n2,5\n3,5\n")
    page.locator("input[type=file]").first.set_input_files(str(bad))
    page.get_by_text("one-item.csv was not loaded").wait_for()
    assert page.get_by_text("only one item").first.is_visible()
    assert page.locator("text=Traceback").count() == 0
    shot(page, "04-bad-upload")


def settle(page) -> None:
    """Wait until no script run is in flight (Streamlit's running icon is gone): a click that
    comes while the rerun of the previous input (an Enter in a number field) runs can be lost
    to it — once in a CI run under load, Train was pressed and no training started."""
    page.wait_for_timeout(200)
    page.wait_for_function(
        "!document.querySelector('[data-testid^=stStatusWidgetRunning]')", timeout=60_000)


def wait_for_text(page, text: str | re.Pattern[str], timeout: float, name: str) -> None:
    """Wait for `text` (a string or a pattern); on a timeout keep a screenshot
    (`FAILED-<name>.png`) and say what the page showed instead, so a failure in CI can be read
    without rerunning it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(text).wait_for(timeout=timeout)
    except PlaywrightTimeout:
        shot(page, f"FAILED-{name}")
        shown = " | ".join(page.locator("body").inner_text().split("\n"))[:1500]
        raise AssertionError(f"{getattr(text, 'pattern', text)!r} not shown within "
                             f"{timeout / 1000:.0f} s; the page showed: {shown}") from None


def upload_and_train(page, server: str, log: Path) -> None:
    """Upload `log` on the Data page and train 2 epochs; returns once the page has settled
    (the run that follows the job's end has drawn the sidebar's model and the zip button: a
    click before it can be lost to that rerun)."""
    page.goto(server)
    page.get_by_role("heading", name="Data").wait_for()
    page.locator("input[type=file]").first.set_input_files(str(log))
    page.get_by_text(f"Summary of {log.name}").wait_for()
    page.get_by_role("link", name="Train").click()
    page.get_by_role("heading", name="Train").wait_for()
    epochs = page.get_by_role("spinbutton", name="Epochs (at most)")
    epochs.fill("2")
    epochs.press("Enter")
    settle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("Training finished").wait_for(timeout=240_000)
    page.get_by_text(f"Model: SeqVAE on {log.name}").wait_for()  # the sidebar has the model
    page.get_by_role("button", name="Prepare the zip").wait_for()


def test_upload_train_open_a_user_and_read_recommendations(page, server, tmp_path):
    """The whole path a person clicks through: upload, train a tiny model, open a user."""
    from seqvae.sample import generate

    log = tmp_path / "shop.csv"
    generate(n_users=80, n_items=40, seed=3).events.to_csv(log, index=False)
    upload_and_train(page, server, log)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2")
    shot(page, "05-trained")

    page.get_by_role("link", name="User").click()
    page.get_by_role("heading", name="User", exact=True).wait_for()
    page.get_by_label("Find a user by id").fill("U00002")
    page.get_by_label("Find a user by id").press("Enter")
    page.get_by_role("heading", name="User U00002").wait_for()
    table = page.locator("[data-testid=stDataFrame]:visible").first
    table.wait_for()
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 1")
    shot(page, "06-user")
    assert page.get_by_text("“Because of”").is_visible()

    # the latent space: click a user -> their page; lasso a region -> a cohort
    page.get_by_role("link", name="Latent space").click()
    page.get_by_role("heading", name="Latent space").wait_for()
    map_ready(page)
    point = page.evaluate("""() => {
        const gd = document.querySelector('.js-plotly-plot');
        const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const trace = gd._fullData[0];  // decoded arrays (the figure JSON holds binary ones)
        // a point in view: the map may open on the body of the users, far ones left out
        const inside = (v, a) => v >= Math.min(...a.range) && v <= Math.max(...a.range);
        let i = 0;
        while (!(inside(trace.x[i], xa) && inside(trace.y[i], ya))) i++;
        return {x: r.left + xa._offset + xa.l2p(trace.x[i]),
                y: r.top + ya._offset + ya.l2p(trace.y[i]), user: String(trace.customdata[i])};
    }""")
    # Plotly picks the clicked point from its hover: hover first, as a hand would
    page.mouse.move(point["x"] - 20, point["y"] - 20)
    page.mouse.move(point["x"], point["y"], steps=5)
    page.wait_for_timeout(500)
    page.mouse.click(point["x"], point["y"])
    page.get_by_role("heading", name=f"User {point['user']}").wait_for()
    shot(page, "07-user-from-map")

    page.get_by_role("link", name="Latent space").click()
    page.get_by_role("heading", name="Latent space").wait_for()
    map_ready(page)
    # the line between two users starts at the user just opened, and takes any id typed in full
    from playwright.sync_api import expect

    expect(page.get_by_role("combobox", name="From user")).to_have_value(point["user"])
    to_user = page.get_by_role("combobox", name="To user")
    to_user.click()
    to_user.fill("nobody-here")
    to_user.press("Enter")
    wait_for_text(page, "No user “nobody-here” in this model's log", 30_000, "between-unknown")
    to_user.click()
    to_user.fill("U00002")
    to_user.press("Enter")
    page.get_by_text("from " + point["user"] + " (0) to U00002 (1)").wait_for()
    box = page.evaluate("""() => {
        const gd = document.querySelector('.js-plotly-plot');
        const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        return {left: r.left + xa._offset, top: r.top + ya._offset, w: xa._length, h: ya._length};
    }""")
    # the toolbar's lasso, then a lasso around the left half of the map
    page.locator(".js-plotly-plot").first.hover()
    page.locator(".js-plotly-plot .modebar-btn[data-title='Lasso Select']").first.click()
    corners = [(0.01, 0.01), (0.5, 0.01), (0.5, 0.99), (0.01, 0.99), (0.01, 0.02)]
    page.mouse.move(box["left"] + box["w"] * corners[0][0], box["top"] + box["h"] * corners[0][1])
    page.mouse.down()
    for fx, fy in corners[1:]:
        page.mouse.move(box["left"] + box["w"] * fx, box["top"] + box["h"] * fy, steps=8)
    page.mouse.up()
    page.get_by_text("Selection:").wait_for()
    page.get_by_text("lasso on the PCA 2-D map by taste").wait_for()
    page.get_by_text("Items that set them apart").wait_for()
    page.locator("[data-testid=stDataFrame]:visible").first.wait_for()
    shot(page, "08-latent-cohort")


def test_a_reload_mid_training_keeps_the_data_and_the_job(page, server):
    """Reload the tab while a model trains: the data, the job and its Stop are still there, and
    the session's token stays in the URL across page changes."""
    page.goto(server)
    page.get_by_role("heading", name="Data").wait_for()
    page.get_by_role("button", name="Load the bundled sample").click()
    page.get_by_text("2,000 users · 1,000 items").wait_for()
    page.wait_for_function("location.search.includes('session=')")
    token = page.evaluate("new URLSearchParams(location.search).get('session')")

    page.get_by_role("link", name="Train").click()
    page.get_by_role("heading", name="Train").wait_for()
    page.wait_for_function(f"location.search.includes('session={token}')")  # after navigating
    epochs = page.get_by_role("spinbutton", name="Epochs (at most)")
    epochs.fill("50")
    epochs.press("Enter")
    settle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    # any epoch: the Train page polls the job every 5 s, and on a fast host an epoch of the
    # sample takes less, so "Epoch 1/50" itself may never be on screen (it was not, once in CI)
    wait_for_text(page, re.compile(r"Epoch \d+/50"), 120_000, "reload-training-started")

    page.reload()
    page.get_by_role("heading", name="Train").wait_for()
    page.get_by_text("2,000 users · 1,000 items").wait_for()  # the data, in the sidebar
    page.get_by_text("Model: training…").wait_for()
    assert page.evaluate("new URLSearchParams(location.search).get('session')") == token
    page.get_by_role("button", name="Stop").wait_for()
    shot(page, "09-reloaded-mid-training")
    page.get_by_role("button", name="Stop").click()
    wait_for_text(page, re.compile(r"Training stopped after (\d+ min )?\d+ s: stopped by you"),
                  120_000, "reload-stopped")
    assert page.get_by_text("Training finished").count() == 0
    shot(page, "10-stopped-after-reload")


def grid_text(page, index: int = 0) -> str:
    """The text of the visible cells of the index-th visible table (Glide's accessible grid)."""
    return page.locator("[data-testid=stDataFrame]:visible").nth(index).locator(
        "table").inner_text()


def test_what_if_umap_side_files_and_drift(page, server, tmp_path):
    """What-if with no edit (no change) and with one (a change); UMAP run and re-run; user
    attributes attached after the map; drift between two dates."""
    from seqvae.sample import generate

    sample = generate(n_users=120, n_items=60, seed=4)
    log, users = tmp_path / "shop.csv", tmp_path / "segments.csv"
    sample.events.to_csv(log, index=False)
    sample.segments.to_csv(users, index=False)
    upload_and_train(page, server, log)

    # What-if: unedited, nothing is new; with an added item, the list changes
    page.get_by_role("link", name="User").click()
    page.get_by_role("heading", name="User", exact=True).wait_for()
    page.get_by_role("tab", name="What if").click()
    page.get_by_text("No edit yet").wait_for()
    unedited = grid_text(page)
    print("what-if unedited:", unedited[:300])
    assert "new" not in unedited.split() and "up" not in unedited.split()
    shot(page, "11-what-if-unedited")
    page.get_by_label("Add at the end").click()
    # typed text is matched as written: every option listed contains it (a fuzzy match also
    # listed ids and titles that only share its characters in order: P0054 for "P004")
    page.keyboard.type("P004")
    every_option_holds_it = """() => {
        const shown = [...document.querySelectorAll('[role=option]')].map(o => o.innerText);
        return shown.length > 0 && shown.every(text => text.includes('P004'));
    }"""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:  # the list filters as it is typed: wait for it rather than for a fixed time
        page.wait_for_function(every_option_holds_it, timeout=10_000)
    except PlaywrightTimeout:
        shot(page, "FAILED-what-if-filter")
        raise AssertionError("options that do not hold 'P004' stayed listed: "
                             f"{page.get_by_role('option').all_inner_texts()}") from None
    page.get_by_role("option").nth(0).click()
    page.keyboard.press("Escape")
    page.wait_for_function("!document.body.innerText.includes('No edit yet')")
    page.wait_for_timeout(1500)
    edited = grid_text(page)
    print("what-if edited:", edited[:300])
    assert edited != unedited
    shot(page, "12-what-if-edited")

    # the latent page: UMAP on request, then again with other parameters (the first kept)
    page.get_by_role("link", name="Latent space").click()
    page.get_by_role("heading", name="Latent space").wait_for()
    map_ready(page)
    page.get_by_text("UMAP", exact=True).click()
    page.get_by_role("button", name="Run UMAP").click()
    page.get_by_text("UMAP with neighbours 15, min. distance 0.1, computed in").wait_for(
        timeout=180_000)
    slider = page.get_by_role("slider", name="UMAP neighbours")
    slider.focus()
    slider.press("ArrowLeft")
    page.get_by_role("button", name="Run UMAP").click()
    page.get_by_text(re.compile(r"UMAP with neighbours 10, min\. distance 0\.1, computed in "
                                r"[0-9.]+ s; also computed: 15/0\.1")).wait_for(timeout=180_000)
    shot(page, "13-umap-rerun")
    # a visit to the User page and back keeps the map's settings on screen
    page.get_by_role("link", name="User").click()
    page.get_by_role("heading", name="User", exact=True).wait_for()
    page.get_by_role("link", name="Latent space").click()
    page.get_by_role("heading", name="Latent space").wait_for()
    page.get_by_text("UMAP with neighbours 10").wait_for()
    assert page.get_by_role("radio", name="UMAP").is_checked()

    # user attributes attached after the map was drawn reach it
    page.get_by_role("link", name="Data").click()
    page.get_by_text("Optional: item titles and user attributes").click()
    page.locator("input[type=file]").nth(2).set_input_files(str(users))
    page.get_by_text("users: 1 attribute columns").wait_for()
    page.get_by_role("link", name="Latent space").click()
    page.get_by_role("heading", name="Latent space").wait_for()
    # back from another page, the controls show what was chosen (UMAP), not their defaults
    page.get_by_text("UMAP with neighbours 10").wait_for()
    assert page.get_by_role("radio", name="UMAP").is_checked()
    page.get_by_label("Colour by").click()
    page.get_by_role("option", name="segment").click()
    segments = sorted(set(sample.segments["segment"]))
    # the map's legend now lists the attribute's values
    page.wait_for_function(
        "names => { const l = document.querySelector('.js-plotly-plot .legend');"
        " return l && names.every(n => l.textContent.includes(n)); }", arg=segments)
    # and the next click kept the projection: the browser did not send PCA back
    assert page.get_by_role("radio", name="UMAP").is_checked()
    page.get_by_text("UMAP with neighbours 10").wait_for()
    shot(page, "14-side-file-after-map")

    # drift: every user as of two dates
    page.get_by_role("button", name="Show the drift").click()
    page.get_by_text("Users who moved most (select a row").wait_for(timeout=120_000)
    page.get_by_text("Where they moved to").wait_for()
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3")
    page.wait_for_timeout(1000)
    # the page scrolls inside Streamlit's main container: bring the drift to the top of the shot
    page.get_by_role("heading", name="Drift over time").evaluate("h => h.scrollIntoView()")
    page.wait_for_timeout(500)
    shot(page, "15-drift")

    # the map places users by their taste (every event combined) unless told otherwise
    page.get_by_text("combined over every event of their last window").wait_for()
    page.get_by_text("next step (after the last event)").click()
    page.get_by_text(re.compile(r"each a point: their μ \(latent size \d+\) after their last "
                                r"event")).wait_for()
    settle(page)  # the map is drawn anew for the other view: wait for that run to end
    map_ready(page)
    shot(page, "16-next-step-view")

    # the Train page's knobs, set before all these visits, are still what was chosen
    page.get_by_role("link", name="Train").click()
    page.get_by_role("heading", name="Train").wait_for()
    assert page.get_by_role("spinbutton", name="Epochs (at most)").input_value() == "2"
