"""Lesson 1 in a real browser: JupyterLab on loopback, headless Chromium driven by Playwright.

Runs every cell, moves the temperature slider and checks that the entropy shown changes.
A screenshot is kept in ``test-artifacts/``. Skipped where Chromium is not installed, except
under CI, where it must run.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, free_port, require_chromium, wait_until_answering

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = "01_temperature_softmax.ipynb"
TOKEN = "fedkd-browser-test"

pytestmark = pytest.mark.browser


def write_settings(folder: Path) -> None:
    """Render every cell (no windowing, so the widget far down exists in the page) and ask no news."""
    for plugin, values in {
        "notebook-extension/tracker": {"windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        path = folder / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving a *copy* of lesson 1; stopped by its PID afterwards."""
    require_chromium()
    served = tmp_path / "lab"
    served.mkdir()
    shutil.copy(REPO / "notebooks" / NOTEBOOK, served / NOTEBOOK)  # the browser autosaves: never into notebooks/
    port = free_port()
    settings = tmp_path / "settings"
    write_settings(settings)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings)}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={served}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/api/status?token={TOKEN}", server, 60,
                             lambda: "JupyterLab did not start:\n" + (tmp_path / "server.log").read_text()[-3000:])
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def shown_entropy(page) -> float:
    text = page.locator(".widget-html-content", has_text="entropy H").first.inner_text()
    return float(re.search(r"entropy H = ([0-9.]+)", text).group(1))


def test_slider_changes_the_entropy_in_jupyterlab(jupyterlab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{jupyterlab}/lab/tree/{NOTEBOOK}?token={TOKEN}")
            expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_attached(timeout=90_000)
            try:  # on a loaded machine JupyterLab may ask which kernel to start; its default is right
                page.get_by_role("button", name="Select", exact=True).click(timeout=3_000)
            except PlaywrightTimeout:
                pass
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            readout = page.locator(".widget-html-content", has_text="entropy H").first
            expect(readout).to_be_visible(timeout=120_000)
            readout.scroll_into_view_if_needed()
            before = shown_entropy(page)

            slider_readout = page.locator(".widget-slider .widget-readout").first
            slider_readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("50")
            page.keyboard.press("Enter")
            expect(readout).not_to_contain_text(f"entropy H = {before:.3f}", timeout=30_000)
            after, after_text = shown_entropy(page), readout.inner_text()
            page.wait_for_timeout(500)  # let the new picture paint before the screenshot
            page.screenshot(path=str(artifacts / "lesson1_temperature_widget.png"))
        except Exception:
            page.screenshot(path=str(artifacts / "lesson1_failure.png"))
            raise
        finally:
            browser.close()
    assert after > before + 0.5, f"entropy shown went from {before} to {after} after raising T to 50"
    assert "T = 50" in after_text
