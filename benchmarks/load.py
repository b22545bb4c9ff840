"""Load run: 8 browser sessions at once against one dashboard server while one of them trains.

    python benchmarks/load.py [--sessions 8]

Starts `streamlit run app.py` on 127.0.0.1 and drives Debian's Chromium with Playwright (async,
one browser context per session). Every session uploads a log of its own (a generated log with
its own number of users and its own file name); session 0 then trains a model (2 epochs) while
the others move through every page (Data, Train, User, Latent space, Evaluate) three times.
Measured: each page change, from the click to the page's heading and its charts (median and
95th percentile over all sessions), the server's resident memory (sampled every 0.5 s, peak),
and that nothing was lost or crossed: at the end each session's sidebar still names its own file
and user count. Writes `benchmarks/load.json` and `.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import chromium_path  # noqa: E402
from tests.test_browser import CHROMIUM_FLAGS, _free_port  # noqa: E402

PAGES = [("Data", "Data"), ("Train", "Train"), ("User", "User"), ("Latent space", "Latent space"),
         ("Evaluate", "Evaluate")]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (MB), from /proc."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                text=True).stdout.split()]
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


async def session(browser, url: str, index: int, log: Path, users: int, timings: list,
                  outcome: dict, trainer_done: asyncio.Event) -> None:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(600_000)
    await page.goto(url)
    await page.get_by_role("heading", name="Data").wait_for()
    await page.locator("input[type=file]").first.set_input_files(str(log))
    await page.get_by_text(f"Summary of {log.name}").wait_for()
    if index == 0:  # the one that trains
        await page.get_by_role("link", name="Train").click()
        epochs = page.get_by_role("spinbutton", name="Epochs (at most)")
        await epochs.fill("2")
        await epochs.press("Enter")
        started = time.perf_counter()
        await page.get_by_role("button", name="Train", exact=True).click()
        await page.get_by_text("Training finished").wait_for()
        outcome["training_s"] = time.perf_counter() - started
        trainer_done.set()
    else:
        for _ in range(3):
            for link, heading in PAGES:
                started = time.perf_counter()
                await page.get_by_role("link", name=link).click()
                await page.get_by_role("heading", name=heading, exact=True).wait_for()
                if link == "Data":
                    await page.wait_for_function(
                        "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2")
                timings.append((link, time.perf_counter() - started))
    sidebar = await page.locator("[data-testid=stSidebar]").inner_text()
    outcome[index] = (log.name in sidebar) and (f"{users:,} users" in sidebar)
    await context.close()


async def drive(url: str, n_sessions: int, logs: list[tuple[Path, int]], pid: int) -> dict:
    from playwright.async_api import async_playwright

    timings: list[tuple[str, float]] = []
    outcome: dict = {}
    memory: list[float] = []
    trainer_done = asyncio.Event()
    stop = asyncio.Event()

    async def sample_memory() -> None:
        while not stop.is_set():
            memory.append(rss_mb(pid))
            await asyncio.sleep(0.5)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(),
                                                   args=CHROMIUM_FLAGS)
        sampler = asyncio.create_task(sample_memory())
        idle = rss_mb(pid)
        started = time.perf_counter()
        await asyncio.gather(*(session(browser, url, i, logs[i][0], logs[i][1], timings, outcome,
                                       trainer_done) for i in range(n_sessions)))
        wall = time.perf_counter() - started
        stop.set()
        await sampler
        await browser.close()
    seconds = np.array([t for _, t in timings])
    by_page = {link: np.array([t for name, t in timings if name == link]) for link, _ in PAGES}
    return {
        "sessions": n_sessions, "page_changes": len(timings), "wall_s": wall,
        "page_median_s": float(np.median(seconds)), "page_p95_s": float(np.percentile(seconds, 95)),
        "by_page": {k: {"median_s": float(np.median(v)), "p95_s": float(np.percentile(v, 95))}
                    for k, v in by_page.items() if v.size},
        "training_s": outcome.get("training_s"),
        "server_idle_mb": idle, "server_peak_mb": max(memory) if memory else None,
        "sessions_intact": sum(bool(outcome.get(i)) for i in range(n_sessions)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    args = parser.parse_args()
    if chromium_path() is None:
        sys.exit("no Chromium: install Debian's chromium package")
    from seqvae.sample import generate

    folder = Path(tempfile.mkdtemp(prefix="seqvae-load-"))
    logs = []
    for i in range(args.sessions):
        users = 300 + 25 * i
        path = folder / f"load-{i}.csv"
        generate(n_users=users, n_items=200, seed=100 + i).events.to_csv(path, index=False)
        logs.append((path, users))
    port = _free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address",
         "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        results = asyncio.run(drive(url, args.sessions, logs, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    (HERE / "load.json").write_text(json.dumps({"machine": machine, "results": results},
                                               indent=2) + "\n")
    r = results
    lines = [
        f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, "
        f"{machine['date']}. One server on 127.0.0.1, {r['sessions']} Chromium sessions at once "
        f"(each uploads its own generated log of 300–{300 + 25 * (r['sessions'] - 1)} users); "
        "session 0 trains 2 epochs while the others change pages 15 times each.",
        "",
        "| measurement | value |",
        "|---|---:|",
        f"| page changes measured | {r['page_changes']} |",
        f"| page change, median | {r['page_median_s']:.2f} s |",
        f"| page change, 95th percentile | {r['page_p95_s']:.2f} s |",
        *[f"| {k}: median / p95 | {v['median_s']:.2f} / {v['p95_s']:.2f} s |"
          for k, v in r["by_page"].items()],
        f"| the training in session 0 (2 epochs, while the others browse) | "
        f"{r['training_s']:.0f} s |",
        f"| server memory: before the sessions / peak | {r['server_idle_mb']:,.0f} / "
        f"{r['server_peak_mb']:,.0f} MB |",
        f"| sessions whose sidebar still names their own file and users at the end | "
        f"{r['sessions_intact']} of {r['sessions']} |",
        f"| wall time of the run | {r['wall_s']:.0f} s |",
    ]
    (HERE / "load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
