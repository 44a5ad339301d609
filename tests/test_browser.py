"""Notebook 03's epsilon explorer in a real browser: JupyterLab + headless Chromium.

Starts JupyterLab on loopback with a token, opens notebook 03 (with the CI parameters
injected by papermill, so it runs in about a minute), runs all cells, moves the epsilon
slider and checks that the prediction and the figure change and that no widget error shows.
Screenshots go to build/browser/.

Needs Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it) and the
models in ``$MNIST_AD_ARTIFACTS`` (``make browser`` uses those of ``make notebooks``).
Without Chromium the test is skipped, except under CI (``CI=true``), where a missing
browser is a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import chromium_path, free_port

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT, artifacts_dir

pytestmark = pytest.mark.browser
SHOTS = PROJECT_ROOT / "build" / "browser"
NOTEBOOK = "03_fgsm_attack.ipynb"
# Read at import, before conftest's autouse fixture points MNIST_AD_ARTIFACTS at a scratch
# folder: `make browser` sets it to the CI-size run of `make notebooks`; with
# MNIST_AD_ARTIFACTS=artifacts the explorer shows the full-size models instead.
MODELS_DIR = artifacts_dir()
# A clean, predictable JupyterLab: every cell stays in the DOM (the default windowing
# detaches or hides cells outside the viewport), and no news pop-up covers the page.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on loopback serving a CI-parameterised copy of notebook 03."""
    import papermill

    from tooling.series import parameters_for

    if not (MODELS_DIR / "models" / "standard.keras").exists():
        pytest.fail(f"no model in {MODELS_DIR}: run `make notebooks` before the browser test")
    root = tmp_path / "lab"
    root.mkdir()
    papermill.execute_notebook(
        str(NOTEBOOKS_DIR / NOTEBOOK),
        str(root / NOTEBOOK),
        parameters=parameters_for(NOTEBOOK, "ci"),
        prepare_only=True,
        kernel_name="python3",
    )
    settings = tmp_path / "settings"
    for plugin, values in LAB_SETTINGS.items():
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    # The course's look, without the nbgrader menus and sidebar (make assignments needs them).
    config = tmp_path / "config"
    (config / "labconfig").mkdir(parents=True)
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyter/nbgrader": True}})
    )
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "MNIST_AD_ARTIFACTS": str(MODELS_DIR), "JUPYTER_CONFIG_DIR": str(config)}
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--allow-root",  # CI runs as root
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            "--LabApp.news_url=",
            "--ServerApp.disable_check_xsrf=False",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.terminate()
                log.close()
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyter.log").read_text())
            time.sleep(0.5)
    yield f"{base}/lab/tree/{NOTEBOOK}?token={token}"
    server.terminate()
    server.wait(timeout=30)
    log.close()


def _run_all_cells(page) -> None:
    """Run > Run All Cells once the kernel is connected, retrying if nothing starts.

    A Run All clicked as soon as the notebook showed was seen to leave every cell
    unexecuted, so wait for the status bar to report the kernel idle and check that the
    first cell really got an execution count.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_have_count(1, timeout=90_000)
    first_prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
    for _ in range(3):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        try:
            expect(first_prompt).not_to_have_text("[ ]:", timeout=30_000)
            return
        except (AssertionError, PlaywrightTimeout):
            page.keyboard.press("Escape")
    raise AssertionError("Run All Cells did not start the kernel after three tries")


def test_epsilon_slider_changes_the_prediction(lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path("browser test"), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(lab)
            page.locator(".jp-NotebookPanel").first.wait_for(timeout=60_000)
            _run_all_cells(page)

            status = page.locator(".widget-html-content", has_text="accuracy at ε=")
            expect(status).to_have_count(1, timeout=240_000)
            slider = page.locator(".widget-hslider", has_text="ε (budget)")
            slider.evaluate("e => e.scrollIntoView({block: 'start'})")
            expect(status).to_contain_text("accuracy at ε=0.25", timeout=30_000)
            before_text = status.inner_text()
            assert "accuracy at ε=0.25" in before_text, "the explorer is not on screen"
            image = page.locator(".widget-image").first
            before_src = image.get_attribute("src")
            page.screenshot(path=str(SHOTS / "explorer_before.png"), full_page=False)
            # The widget alone (the README's docs/explorer.png is a copy of this one).
            output = page.locator(".jp-OutputArea-child").filter(has=slider)
            output.screenshot(path=str(SHOTS / "explorer_widget.png"))

            readout = slider.locator(".widget-readout")
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("0.45")
            page.keyboard.press("Enter")
            # The kernel reads the slider's message only after the cells Run All queued
            # before it (the rest of the notebook): on a busy machine that takes minutes.
            expect(
                page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
            ).to_have_count(1, timeout=240_000)
            expect(status).to_contain_text("accuracy at ε=0.45", timeout=30_000)
            page.wait_for_timeout(500)
            after_text = status.inner_text()
            after_src = image.get_attribute("src")
            page.screenshot(path=str(SHOTS / "explorer_after.png"), full_page=False)
            body = page.locator("body").inner_text()
        except Exception:
            # Keep what the browser showed and what the server logged, to see why.
            page.screenshot(path=str(SHOTS / "explorer_failure.png"), full_page=True)
            (SHOTS / "failure_page.txt").write_text(page.locator("body").inner_text())
            print((tmp_path / "jupyter.log").read_text()[-5000:])
            raise
        browser.close()

    assert after_text != before_text
    assert after_src != before_src, "the figure did not change"
    assert "Error displaying widget" not in body
    assert "Traceback" not in body and "Error" not in before_text
    assert "no trained model" not in body
    Path(SHOTS / "status.txt").write_text(f"before: {before_text}\nafter: {after_text}\n")
