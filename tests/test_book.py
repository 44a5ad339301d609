"""The course website of `make book` (tooling/book.py).

Unit tests (fast, no browser; part of `make unit`): the solutions and hidden tests are
stripped from a tiny notebook and from every course notebook, widgets become what a page
can show, a missing input is reported with the command that makes it, and the explorer
page's precomputed numbers are FGSM's.

The site test (marker ``book``: `make book-test`, part of `make test` after `make notebooks`)
builds the website at CI size from ``build/ci/executed`` and the models in
``build/ci/artifacts`` into ``build/book-ci/`` and opens every page in headless Chromium:
pages and images load, no local link is broken, no page shows a traceback, makes a request
off this machine or leaks a solution, and the explorer's ε slider changes the prediction,
the probabilities and the image. Without those inputs the test is skipped, and without
Chromium too (CHROMIUM_PATH or Debian's ``chromium``), except under CI (``CI=true``), where
either is a failure.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import re
import threading
import time
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from conftest import chromium_path, skip_or_fail, tiny_smooth_model

from helpers.attacks import apply_signs
from helpers.data import preprocess_images
from helpers.explorer import EPS_ATTACKS
from helpers.model import predict_probabilities
from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from tooling import book
from tooling.classroom import load_notebook, solution_lines
from tooling.series import NOTEBOOKS, cell_text, parameters_for

CI_EXECUTED = PROJECT_ROOT / "build" / "ci" / "executed"
CI_ARTIFACTS = PROJECT_ROOT / "build" / "ci" / "artifacts"
SITE_OUT = PROJECT_ROOT / "build" / "book-ci"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]


def _code(source: str, outputs: list | None = None, **nbgrader) -> dict:
    metadata = {"nbgrader": nbgrader} if nbgrader else {}
    return {
        "cell_type": "code",
        "metadata": metadata,
        "source": source,
        "outputs": outputs or [],
        "execution_count": 1,
    }


def _printed(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


EXERCISE = (
    "def relu(x):\n"
    '    """The positive part of x."""\n'
    "    ### BEGIN SOLUTION\n"
    "    return max(\n"
    "        x, 0\n"
    "    )\n"
    "    ### END SOLUTION\n"
)
TESTS = "assert relu(1) == 1\n### BEGIN HIDDEN TESTS\nassert relu(-7) == 0\n### END HIDDEN TESTS\n"


def _tiny_notebook() -> dict:
    """A course notebook in miniature: a course cell, an exercise and its tests (with the
    outputs an executed instructor version has), a progress bar and the explorer widget."""
    progress = {"model_id": "box", "version_major": 2, "version_minor": 0}
    state = {
        "box": {
            "model_name": "HBoxModel",
            "state": {"children": ["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]},
        },
        "left": {"model_name": "HTMLModel", "state": {"value": "training\u2007(none):\u2007100%"}},
        "bar": {"model_name": "FloatProgressModel", "state": {"value": 44.0, "max": 44.0}},
        "right": {"model_name": "HTMLModel", "state": {"value": "\u200744/44\u2007[00:06&lt;00]"}},
        "vbox": {"model_name": "VBoxModel", "state": {"children": []}},
    }

    def widget(model_id: str) -> dict:
        view = {**progress, "model_id": model_id}
        data = {book.WIDGET_VIEW: view, "text/plain": "VBox(...)"}
        return {"output_type": "display_data", "metadata": {}, "data": data}

    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"widgets": {book.WIDGET_STATE: {"state": state}}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "See the [README](../README.md)."},
            _code("print(2 + 2)", [_printed("4\n")]),
            _code(EXERCISE, [_printed("defined\n")], solution=True, grade=False),
            _code(TESTS, [_printed("secret result\n")], solution=False, grade=True, points=2),
            {
                "cell_type": "markdown",
                "metadata": {"nbgrader": {"solution": True, "grade": True, "points": 2}},
                "source": "### BEGIN SOLUTION\n**Model answer.** Because.\n### END SOLUTION",
            },
            _code("model = train()", [widget("box")]),
            _code("explorer = make_explorer(models)\nexplorer.widget", [widget("vbox")]),
        ],
    }


# ------------------------------------------------------------------ unit tests


def _lines_only_in_regions(nb: dict) -> set[str]:
    """The stripped lines written only inside the notebook's solution and hidden-test
    regions (a line that also occurs outside them, like a repeated ``assert``, gives
    nothing away)."""
    outside = {
        line.strip()
        for cell in nb["cells"]
        for line in book.strip_solutions(cell_text(cell)).splitlines()
    }
    return set(solution_lines(nb)) - outside


def test_a_solution_becomes_nbgraders_stub_and_hidden_tests_vanish():
    assert book.strip_solutions(EXERCISE).splitlines() == [
        "def relu(x):",
        '    """The positive part of x."""',
        "    # YOUR CODE HERE",
        "    raise NotImplementedError()",
    ]
    assert book.strip_solutions(TESTS) == "assert relu(1) == 1"
    assert book.strip_solutions("x = 1\ny = 2") == "x = 1\ny = 2"


@pytest.mark.parametrize(
    "source",
    [
        "### BEGIN SOLUTION\nreturn 42\n",  # never closed
        "return 42\n### END SOLUTION\n",  # an end without its beginning
        "### BEGIN HIDDEN TESTS\n### BEGIN SOLUTION\nx\n### END SOLUTION\n### END HIDDEN TESTS",
        "### BEGIN SOLUTION\nreturn 42\n### END HIDDEN TESTS\n",  # the wrong end
    ],
)
def test_a_broken_region_stops_the_build_instead_of_being_published(source):
    with pytest.raises(ValueError, match="###"):
        book.strip_solutions(source)


def test_the_page_version_of_a_notebook_hides_answers_and_keeps_the_course():
    nb = _tiny_notebook()
    page = book.site_notebook(nb, screenshot=b"PNG bytes")
    link, course, solution, tests, written, progress, explorer = page["cells"]
    assert "widgets" not in page["metadata"]
    assert link["source"] == "See the [README](../index.md)."
    assert course["outputs"] == nb["cells"][1]["outputs"]  # a course cell keeps its output
    assert "return max(" not in solution["source"] and "# YOUR CODE HERE" in solution["source"]
    assert solution["outputs"] == [] and tests["outputs"] == []
    assert tests["source"] == "assert relu(1) == 1"
    assert written["source"] == "YOUR ANSWER HERE"
    text = json.dumps(page)
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "relu(-7)", "x, 0", "secret", "Because"):
        assert secret not in text
    assert progress["outputs"] == [
        {
            "output_type": "stream",
            "name": "stdout",
            "text": "training (none): 100%|██████████| 44/44 [00:06<00]\n",
        }
    ]
    image, note = explorer["outputs"]
    assert base64.b64decode(image["data"]["image/png"]) == b"PNG bytes"
    assert "make lab" in note["data"]["text/html"] and "explorer.html" in note["data"]["text/html"]
    assert nb["cells"][2]["source"] == EXERCISE, "the executed notebook itself is not changed"


def test_tensorflows_start_up_notices_are_left_out_of_a_page_and_nothing_else():
    notice = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796414121.354487   31599 port.cc:153] oneDNN custom operations are on.\n"
    )
    cell = {
        "cell_type": "code",
        "source": "import tensorflow",
        "metadata": {},
        "outputs": [
            {"output_type": "stream", "name": "stderr", "text": notice},
            {"output_type": "stream", "name": "stderr", "text": [notice, "UserWarning: kept\n"]},
            {"output_type": "stream", "name": "stdout", "text": "accuracy 99%\n"},
        ],
    }
    book.drop_start_up_noise(cell)
    assert cell["outputs"] == [
        {"output_type": "stream", "name": "stderr", "text": "UserWarning: kept\n"},
        {"output_type": "stream", "name": "stdout", "text": "accuracy 99%\n"},
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_no_line_of_a_solution_or_hidden_test_survives_in_a_course_notebook(notebook):
    """Every line written only inside a solution or hidden-test region of the instructor
    version is absent from the page version (lines that also occur outside, like a
    repeated ``assert``, give nothing away)."""
    nb = load_notebook(NOTEBOOKS_DIR / notebook)
    secret = _lines_only_in_regions(nb)
    page = book.site_notebook(nb, screenshot=b"")
    shown = {line.strip() for c in page["cells"] for line in cell_text(c).splitlines()}
    assert secret, "the course notebooks all have exercises"
    assert not secret & shown
    assert not any(book.is_exercise_cell(c) and c.get("outputs") for c in page["cells"])


def test_the_run_size_comes_from_papermills_record():
    def executed(parameters: dict) -> dict:
        return {"metadata": {"papermill": {"parameters": parameters}}}

    ci = {n: executed(parameters_for(n, "ci")) for n in NOTEBOOKS}
    full = {n: executed({}) for n in NOTEBOOKS}
    assert book.run_size(ci) == "ci" and book.run_size(full) == "full"
    classroom = {n: executed(parameters_for(n, "classroom")) for n in NOTEBOOKS}
    assert book.run_size(classroom) == "classroom"
    assert "classroom size" in book.size_note("classroom", "2026-12-03")
    assert book.run_size({**full, NOTEBOOKS[1]: executed({"EPOCHS": 7})}) == "custom"
    assert book.run_size({**ci, NOTEBOOKS[1]: classroom[NOTEBOOKS[1]]}) == "custom"


def test_a_missing_input_is_named_with_the_command_that_makes_it(tmp_path, capsys):
    (tmp_path / NOTEBOOKS[0]).write_text(json.dumps({"metadata": {}, "cells": []}))
    assert book.main(["--executed", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    message = capsys.readouterr().err
    assert NOTEBOOKS[1] in message and "standard.keras" in message
    assert NOTEBOOKS[0] not in message
    assert "make reproduce" in message and "make notebooks" in message
    assert not (tmp_path / "out").exists()


def test_the_home_page_is_the_readme_with_the_courses_navigation():
    readme = (PROJECT_ROOT / "README.md").read_text()
    page = book.home_page(readme, "NOTE")
    assert page.startswith(readme.partition("\n")[0] + "\n\nNOTE")
    assert readme.partition("\n")[2].strip() in page  # all of it, word for word
    toctree = page[page.index("```{toctree}") :]
    order = [toctree.index(f"notebooks/{Path(n).stem}") for n in NOTEBOOKS]
    assert order == sorted(order)
    assert "](notebooks/01_data_and_preprocessing.ipynb)" in page  # resolved by the build
    assert {"docs/explorer.png", "results/robustness_curves.png"} <= set(book.readme_images(readme))


def test_the_api_reference_has_a_page_for_every_helpers_module():
    modules = book.api_modules()
    found = {p.stem for p in (PROJECT_ROOT / "helpers").glob("*.py") if p.stem != "__init__"}
    assert sorted(modules) == sorted(f"helpers.{m}" for m in found)
    assert modules[:2] == ["helpers.paths", "helpers.data"]  # the course's order
    assert ".. automodule:: helpers.attacks" in book.api_pages(modules)["api/helpers.attacks.md"]


def test_the_explorer_page_holds_fgsm_at_every_slider_stop_and_pgd_at_every_fifth():
    model = tiny_smooth_model()
    data = book.explorer_data({"standard": model}, provenance="test")
    epsilons = np.array(data["epsilons"])
    assert epsilons[0] == 0 and epsilons[-1] == 0.5 and len(epsilons) == 51
    n = len(data["labels"])
    assert n == 30 and sorted(set(data["labels"])) == list(range(10))
    raw = np.frombuffer(base64.b64decode(data["clean"]), np.uint8).reshape(n, 28, 28)
    (entry,) = data["models"]
    signs = np.frombuffer(base64.b64decode(entry["signs"]), np.uint8).reshape(n, 28, 28) - 1.0
    probs = np.array(entry["probs"]).reshape(n, len(epsilons), 10) / 1000
    assert np.allclose(probs.sum(axis=2), 1, atol=0.01)
    x = preprocess_images(raw)
    for stop in (0, 25, 50):  # what the page draws is apply_signs, and what it shows the model's
        page_image = np.clip(raw / 255 + epsilons[stop] * signs, 0, 1)
        x_adv = apply_signs(x, signs[..., None].astype(np.float32), epsilons[stop])
        assert np.allclose(page_image, x_adv[..., 0], atol=1e-6)
        assert np.allclose(probs[:, stop], predict_probabilities(model, x_adv), atol=6e-4)
    every = data["pgd_every"]
    assert every == book.PGD_EVERY and data["pgd_name"] in EPS_ATTACKS
    pgd_stops = epsilons[every::every]
    images = np.frombuffer(base64.b64decode(entry["pgd_images"]), np.uint8)
    images = images.reshape(n, len(pgd_stops), 28, 28)
    pgd_probs = np.array(entry["pgd_probs"]).reshape(n, len(pgd_stops), 10) / 1000
    for k in (0, len(pgd_stops) - 1):  # the live explorer's PGD, drawn in 256 grey levels
        x_adv = EPS_ATTACKS[data["pgd_name"]](model, x, data["labels"], pgd_stops[k])
        assert np.array_equal(images[:, k], np.rint(255 * x_adv[..., 0]))
        assert np.abs(images[:, k] / 255 - raw / 255).max() <= pgd_stops[k] + 0.5 / 255
        assert np.allclose(pgd_probs[:, k], predict_probabilities(model, x_adv), atol=6e-4)
    page = book.explorer_html(data)
    assert "/*EXPLORER_DATA*/" not in page and "<script src" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external resource"
    assert len(page.encode()) < 500_000  # one model here; three make about 1.2 MB


# ------------------------------------------------------------------- the site


@pytest.fixture(scope="module")
def site():
    """The CI-size website, built once for this module: its html folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MNIST_AD_ARTIFACTS", str(CI_ARTIFACTS))
        missing = book.missing_inputs(CI_EXECUTED, CI_ARTIFACTS / "models")
        if missing:
            reason = f"run `make notebooks` first; missing {', '.join(missing)}"
            skip_or_fail(reason, "website test")
        start = time.perf_counter()
        with warnings.catch_warnings():  # Sphinx 11's deprecations in the theme and MyST
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            index = book.build_book(CI_EXECUTED, SITE_OUT)
        print(f"built the CI-size website in {time.perf_counter() - start:.1f} s")
    return index.parent


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request in the test's output
        pass


@pytest.fixture(scope="module")
def served(site):
    """The website on a loopback HTTP server: its base address."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path("website test")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts)


def _secret_lines() -> set[str]:
    """The course's solution and hidden-test lines that occur nowhere else, neither in the
    notebooks nor in the course library (whose code the site shows, and notebook 03 too),
    at least 20 characters long (shorter ones, like ``return x``, occur in any code)."""
    library = {
        line.strip()
        for path in (PROJECT_ROOT / "helpers").glob("*.py")
        for line in path.read_text().splitlines()
    }
    return {
        line
        for notebook in NOTEBOOKS
        for line in _lines_only_in_regions(load_notebook(NOTEBOOKS_DIR / notebook)) - library
        if len(line) >= 20
    }


@pytest.mark.book
def test_the_site_has_every_page_and_no_solution(site):
    for page in [
        "index.html",
        *(f"notebooks/{Path(n).stem}.html" for n in NOTEBOOKS),
        "notebooks/README.html",
        "explorer.html",
        book.EXPLORER_PAGE,
        "api/index.html",
        "api/helpers.attacks.html",
        "search.html",
    ]:
        assert (site / page).is_file(), page
    home = (site / "index.html").read_text()
    for notebook in NOTEBOOKS:  # the README's links to the notebooks lead to their pages
        assert f'href="notebooks/{Path(notebook).stem}.html"' in home
    assert 'href="notebooks/README.html"' in home
    api = (site / "api" / "helpers.attacks.html").read_text()
    assert 'id="helpers.attacks.fgsm"' in api, "autodoc documented the functions"

    secret = _secret_lines()
    assert len(secret) > 10
    stems = tuple(Path(n).stem for n in NOTEBOOKS)
    for path in site.rglob("*"):
        if path.suffix not in {".html", ".js", ".txt", ".ipynb", ".md", ".json"}:
            continue
        raw = path.read_text(errors="replace")
        if path.name.startswith(stems):  # the teacher's guide explains the markers
            assert "BEGIN SOLUTION" not in raw and "BEGIN HIDDEN TESTS" not in raw, path
        # What a reader sees (tags removed) and the downloadable sources (JSON strings).
        text = html.unescape(re.sub(r"<[^>]+>", "", raw)).replace('\\"', '"')
        leaked = [line for line in secret if line in text]
        assert not leaked, f"{path.relative_to(site)} shows solution lines {leaked[:3]}"


@pytest.mark.book
def test_every_page_loads_with_its_images_and_links_in_chromium(site, served, browser):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    outside, failed, errors = [], [], []
    page.on(
        "request",
        lambda r: None if r.url.startswith((served, "data:", "blob:")) else outside.append(r.url),
    )
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    broken_links, broken_images, tracebacks = [], [], []
    for path in _pages(site):
        name = path.relative_to(site).as_posix()
        response = page.goto(f"{served}/{name}", wait_until="load")
        assert response is not None and response.ok, name
        broken_images += [
            f"{name}: {src}"
            for src in page.eval_on_selector_all(
                "img", "images => images.filter(i => !(i.naturalWidth > 0)).map(i => i.src)"
            )
        ]
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            if href.startswith(served):
                target = site / unquote(urlsplit(href).path).lstrip("/")
                if not (target.is_file() or (target / "index.html").is_file()):
                    broken_links.append(f"{name} -> {href}")
        if "Traceback" in page.inner_text("body"):
            tracebacks.append(name)
    page.close()
    assert len(_pages(site)) > 20
    assert not broken_images and not broken_links, broken_images + broken_links
    assert not tracebacks, f"pages with a Python traceback: {tracebacks}"
    assert not outside, f"requests off this machine: {sorted(set(outside))[:5]}"
    assert not failed and not errors, failed + errors


@pytest.mark.book
def test_the_explorer_follows_the_slider_without_a_kernel(site, served, browser):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{served}/{book.EXPLORER_PAGE}")
    slider, panels = page.locator("#eps"), page.locator("#models")
    adversarial = page.locator("section[data-model='standard'] canvas.adversarial")

    def shown() -> tuple[str, str]:
        return panels.inner_text(), adversarial.evaluate("canvas => canvas.toDataURL()")

    assert "ε = 0.25" in panels.inner_text()  # the course's budget to start with
    page.locator("#digit").select_option("7")
    slider.fill("0")
    text_clean, image_clean = shown()
    slider.fill(slider.get_attribute("max"))
    text_attacked, image_attacked = shown()
    assert "at ε = 0.00" in text_clean and "at ε = 0.50" in text_attacked
    assert text_attacked != text_clean, "the prediction and probabilities did not change"
    assert image_attacked != image_clean, "the adversarial image did not change"
    assert "FGSM-trained CNN" in text_clean and "PGD-trained CNN" in text_clean
    assert "Correct under FGSM at ε = 0.50" in page.inner_text("body")

    page.locator("#attack").select_option(index=1)  # PGD, stored at every fifth stop
    assert slider.get_attribute("step") == str(book.PGD_EVERY)
    text_pgd, image_pgd = shown()
    assert "PGD-40 at ε = 0.50" in text_pgd and image_pgd != image_attacked
    slider.fill("0")
    assert shown() == (text_clean.replace("FGSM at", "PGD-40 at"), image_clean)  # ε = 0: clean
    page.locator("#attack").select_option(index=0)
    slider.fill("7")  # FGSM again: every stop
    assert "FGSM at ε = 0.07" in panels.inner_text()
    assert not errors, errors

    page.goto(f"{served}/explorer.html")  # the site's page shows it in a frame
    frame = page.frame_locator("iframe")
    frame.locator("#eps").fill("10")
    assert "at ε = 0.10" in frame.locator("#models").inner_text()
    page.close()
