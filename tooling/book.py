"""`make book`: the course as a static website, built offline from executed notebooks.

Command line (``make book`` calls it)::

    python -m tooling.book [--executed DIR] [--out DIR]

It reads the seven notebooks as a run executed them -- by default those `make reproduce`
keeps in ``<artifacts>/executed/`` (full size), or ``--executed build/ci/executed`` of
`make notebooks` (CI size) -- and the standard and FGSM-trained models of the same run in
``<artifacts>/models/`` (``MNIST_AD_ARTIFACTS``, as everywhere in the course). Nothing is
executed again. It writes ``<out>/html/index.html`` (default ``build/book/``): the README as
the home page, the notebooks in the course's order with their outputs and figures, the
teacher's guide, an API reference of ``helpers`` from its docstrings, a search page, and
the ε explorer as a page that works without a kernel.

**The tool.** Sphinx with MyST-NB and sphinx-book-theme, the engine of Jupyter Book 1. It
installs from PyPI as pure Python, renders the outputs a notebook already holds
(``nb_execution_mode = "off"`` in ``book/conf.py``), builds its own search index and the API
pages (autodoc and napoleon), and needs no network. Jupyter Book 2 and mystmd are not used:
they run on Node.js and download their page theme when a site is built, which an offline
machine cannot do. Math is written as MathML at build time (``book/_ext/mathml.py``), so
no page loads MathJax from a CDN either.

**The pages** keep the repository's layout in the staging folder ``<out>/src``:
``index.md`` (the README, read when the site is built, so it is never copied by hand)
beside ``notebooks/``, so that the README's links to ``notebooks/*.ipynb`` and
``notebooks/README.md`` resolve to their pages; the one link that would point outside the
site, the notebooks' ``../README.md``, is rewritten to the home page.

**Solutions are not published.** The notebooks are the instructor versions. The site is
not built from nbgrader's release (`make assignments`) because a release is not executed,
and executing it would stop at the first stub. Instead the executed copies are edited the
way nbgrader releases a notebook: each region from a line ``### BEGIN SOLUTION`` to
``### END SOLUTION`` becomes nbgrader's stub ``# YOUR CODE HERE`` /
``raise NotImplementedError()`` (what a student sees; ``YOUR ANSWER HERE`` in a written
answer, a Markdown cell), each ``### BEGIN HIDDEN TESTS`` ...
``### END HIDDEN TESTS`` region is removed, and every exercise cell (solution or test)
loses its outputs, which could give an answer away. The course's own cells never use an
answer (a rule of the teacher's guide), so their outputs stay. A region without its end
stops the build instead of being published.

**TensorFlow's start-up notices** (absl's and oneDNN's lines, :mod:`tooling.quiet`), which
a kernel started elsewhere than by ``tooling.series`` copies into the setup cell's output,
are left out of the pages; every other line of a cell's output stays.

**Widgets** need a kernel. A tqdm progress bar becomes its last line of text; the ε
explorer of notebooks 03 and 05 becomes the screenshot ``docs/explorer.png`` with a note
on how to run it live (`make lab`) and a link to the explorer page.

**The explorer page** (``epsilon_explorer.html``, one self-contained file from the
template ``book/epsilon_explorer.html``; no script or data from elsewhere): for the first
three test digits of each class (30 digits), the probabilities of the standard, the
FGSM-trained and the PGD-trained model, precomputed here, under two attacks.

- FGSM at every stop of the live explorer's slider (ε from 0 to 0.5 in steps of 0.01,
  ``helpers.explorer.EPS_MAX`` and ``EPS_STEP``). Its direction is computed once per digit
  and model (``helpers.attacks.fgsm_signs``); the page stores the digit and that sign
  pattern and draws ``clip(x + ε·sign, 0, 1)`` itself, which is
  :func:`helpers.attacks.apply_signs`, so it needs no copy of each adversarial image.
- PGD, the live explorer's (``helpers.explorer.EPS_ATTACKS``), at every
  :data:`PGD_EVERY`-th stop (ε in steps of 0.05). Its image depends on ε, so the page
  stores each one (in 256 grey levels; the probabilities are those of the image PGD
  found): most of the page's 1.2 MB.

With PGD the page shows what FGSM alone hides: the FGSM-trained model falls, the
PGD-trained one holds.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT, artifacts_dir
from tooling.classroom import (
    HIDDEN_TEST_MARKERS,
    SOLUTION_MARKERS,
    is_graded_cell,
    is_solution_cell,
    load_notebook,
    save_notebook,
)
from tooling.quiet import is_start_up_noise
from tooling.series import NOTEBOOKS, SIZES, cell_text, parameters_for

BOOK_DIR: Path = PROJECT_ROOT / "book"
DEFAULT_OUT: Path = PROJECT_ROOT / "build" / "book"
EXPLORER_SCREENSHOT: Path = PROJECT_ROOT / "docs" / "explorer.png"
EXPLORER_PAGE = "epsilon_explorer.html"
#: The models the explorer page compares: notebook 03's two, and the PGD-trained model,
#: which holds under PGD where the FGSM-trained one falls.
EXPLORER_MODELS: tuple[str, ...] = ("standard", "fgsm_at", "pgd_at")
#: The page stores PGD's images at every ``PGD_EVERY``-th slider stop (ε in steps of 0.05).
PGD_EVERY = 5
DIGITS_PER_CLASS = 3
#: nbgrader's stub for a solution region (``ClearSolutions``), indented like the marker.
SOLUTION_STUB: tuple[str, ...] = ("# YOUR CODE HERE", "raise NotImplementedError()")
#: ... and for a written answer (a Markdown solution cell).
ANSWER_STUB: tuple[str, ...] = ("YOUR ANSWER HERE",)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: Links in the notebooks to files that are pages of the site under another name.
SITE_LINKS: dict[str, str] = {"../README.md": "../index.md"}

EXPLORER_NOTE = (
    "<p><em>The ε explorer is a live widget: it needs a running Python kernel, so this page "
    "shows a screenshot of it. To use it, open the course with <code>make lab</code> and run "
    "this notebook from the top; or try the <a href='../explorer.html'>precomputed explorer"
    "</a> of this site, which works in the browser alone.</em></p>"
)
WIDGET_NOTE = (
    "<p><em>An interactive widget: it needs a running Python kernel. Open the course with "
    "<code>make lab</code> and run this notebook to use it.</em></p>"
)


# --------------------------------------------------------------------- solutions


def strip_solutions(source: str, stub: Sequence[str] = SOLUTION_STUB) -> str:
    """``source`` as nbgrader releases it: every solution region replaced by ``stub``
    (indented like its ``### BEGIN SOLUTION`` line; :data:`ANSWER_STUB` for Markdown), every
    hidden-test region removed, markers included.

    Raises ``ValueError`` for a region that is not closed, an end without a beginning, or
    a region inside another: published as it is, such a cell could show a solution.
    """
    begins = {
        SOLUTION_MARKERS[0]: SOLUTION_MARKERS[1],
        HIDDEN_TEST_MARKERS[0]: HIDDEN_TEST_MARKERS[1],
    }
    kept: list[str] = []
    open_until: str | None = None  # the end marker of the region we are in
    for line in source.splitlines():
        marker = line.strip()
        if open_until is not None:
            if marker == open_until:
                open_until = None
            elif marker in begins or marker in begins.values():
                raise ValueError(f"{marker!r} inside a region that {open_until!r} has not closed")
        elif marker in begins:
            open_until = begins[marker]
            if marker == SOLUTION_MARKERS[0]:
                indent = line[: len(line) - len(line.lstrip())]
                kept += [indent + stub_line for stub_line in stub]
        elif marker in begins.values():
            raise ValueError(f"{marker!r} without its beginning")
        else:
            kept.append(line)
    if open_until is not None:
        raise ValueError(f"a region is never closed: {open_until!r} is missing")
    return "\n".join(kept)


def is_exercise_cell(cell: Mapping[str, Any]) -> bool:
    """A solution or test cell of an exercise (nbgrader's metadata or its markers)."""
    text = cell_text(cell)
    markers = (SOLUTION_MARKERS[0], HIDDEN_TEST_MARKERS[0])
    return is_solution_cell(cell) or is_graded_cell(cell) or any(m in text for m in markers)


def release_cell(cell: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``cell`` without solutions or hidden tests; an exercise cell also loses
    its outputs. A written answer (Markdown) becomes nbgrader's ``YOUR ANSWER HERE``: its
    solution region, or the whole cell if it has no markers."""
    cell = dict(cell)
    if not is_exercise_cell(cell):
        return cell
    text = cell_text(cell)
    if cell["cell_type"] != "markdown":
        cell["source"] = strip_solutions(text)
    elif SOLUTION_MARKERS[0] in text or not is_solution_cell(cell):
        cell["source"] = strip_solutions(text, ANSWER_STUB)
    else:
        cell["source"] = "\n".join(ANSWER_STUB)
    if cell["cell_type"] == "code":
        cell["outputs"], cell["execution_count"] = [], None
    return cell


# ----------------------------------------------------------------------- widgets


def _widget(state: Mapping[str, Any], model_id: str) -> dict[str, Any]:
    return state.get(model_id.removeprefix("IPY_MODEL_"), {})


def progress_text(state: Mapping[str, Any], model_id: str) -> str | None:
    """The last line a tqdm progress bar showed (``"training: 100%|██████████| 44/44 ..."``),
    from the widget state the notebook saved; ``None`` if ``model_id`` is another widget."""
    box = _widget(state, model_id)
    parts = [_widget(state, child) for child in box.get("state", {}).get("children", [])]
    if box.get("model_name") != "HBoxModel" or not any(
        p.get("model_name") == "FloatProgressModel" for p in parts
    ):
        return None
    text = []
    for part in parts:
        values = part.get("state", {})
        if part.get("model_name") == "HTMLModel":
            text.append(html.unescape(values.get("value", "")))
        elif part.get("model_name") == "FloatProgressModel":
            share = values.get("value", 0) / values["max"] if values.get("max") else 0.0
            filled = round(10 * min(max(share, 0.0), 1.0))
            text.append("|" + "█" * filled + " " * (10 - filled) + "|")
    return "".join(text).replace("\u2007", " ")  # tqdm pads with figure spaces


def explorer_outputs(screenshot: bytes) -> list[dict[str, Any]]:
    """What the site shows instead of the explorer widget: its screenshot and a note."""
    return [
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {
                "image/png": base64.b64encode(screenshot).decode("ascii"),
                "text/plain": "the ε explorer in JupyterLab (screenshot)",
            },
        },
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": EXPLORER_NOTE}},
    ]


def replace_widgets(cell: dict[str, Any], state: Mapping[str, Any], screenshot: bytes) -> None:
    """Replace, in place, each widget output of ``cell`` by what a page can show."""
    outputs = []
    for output in cell.get("outputs", []):
        view = output.get("data", {}).get(WIDGET_VIEW)
        if view is None:
            outputs.append(output)
            continue
        progress = progress_text(state, view.get("model_id", ""))
        if progress is not None:
            outputs.append({"output_type": "stream", "name": "stdout", "text": progress + "\n"})
        elif "explorer" in cell_text(cell):
            outputs += explorer_outputs(screenshot)
        else:
            outputs.append(
                {"output_type": "display_data", "metadata": {}, "data": {"text/html": WIDGET_NOTE}}
            )
    cell["outputs"] = outputs


def drop_start_up_noise(cell: dict[str, Any]) -> None:
    """Remove, in place, TensorFlow's start-up notices from ``cell``'s text outputs
    (:func:`tooling.quiet.is_start_up_noise`), and any output left empty by it."""
    outputs = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
            kept = [ln for ln in text.splitlines(keepends=True) if not is_start_up_noise(ln)]
            if not kept:
                continue
            output = {**output, "text": "".join(kept)}
        outputs.append(output)
    cell["outputs"] = outputs


# ------------------------------------------------------------------------- pages


def rewrite_links(markdown: str, links: Mapping[str, str]) -> str:
    """``markdown`` with each link target ``](old)`` of ``links`` replaced by ``](new)``."""
    for old, new in links.items():
        markdown = markdown.replace(f"]({old})", f"]({new})")
    return markdown


def site_notebook(nb: Mapping[str, Any], screenshot: bytes) -> dict[str, Any]:
    """The page version of an executed notebook: no solutions, no hidden tests, no widget
    state (a page cannot run it), links to the README pointing to the home page."""
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    cells = []
    for cell in nb["cells"]:
        cell = release_cell(cell)
        if cell["cell_type"] == "markdown":
            cell["source"] = rewrite_links(cell_text(cell), SITE_LINKS)
        if cell["cell_type"] == "code":
            replace_widgets(cell, state, screenshot)
            drop_start_up_noise(cell)
        cells.append(cell)
    metadata = {k: v for k, v in nb.get("metadata", {}).items() if k != "widgets"}
    return {**nb, "metadata": metadata, "cells": cells}


def run_size(notebooks: Mapping[str, Mapping[str, Any]]) -> str:
    """``"full"``, ``"classroom"``, ``"ci"`` or ``"custom"``: the size papermill's recorded
    parameters say the executed notebooks were run at (notebooks without CI parameters tell
    nothing)."""
    sizes = set()
    for name, nb in notebooks.items():
        recorded = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
        if parameters_for(name, "ci"):
            matching = [size for size in SIZES if parameters_for(name, size) == recorded]
            sizes.add(matching[0] if matching else "custom")
    return sizes.pop() if len(sizes) == 1 else "custom"


def size_note(size: str, date: str) -> str:
    """The home page's note on which run the pages show."""
    run = {
        "full": "at full size by `make reproduce`",
        "ci": "at CI size by `make notebooks` (small samples and few epochs, so their numbers "
        "are far from those in the text)",
        "classroom": "at classroom size by `python -m tooling.series --size classroom` "
        "(smaller samples and fewer epochs than the text's, every effect it describes shown)",
        "custom": "with parameters of their own",
    }[size]
    return (
        f":::{{note}}\nThese pages show the notebooks as they were executed {run}"
        f"{f', on {date}' if date else ''}: every output is the one stored in the run, "
        "nothing was executed to build the site. The solutions of the graded exercises are "
        "left out, as in the students' version. The ε explorer works here without a kernel: "
        "[The ε explorer](explorer.md).\n:::\n"
    )


def home_page(readme: str, note: str) -> str:
    """The README as the home page: its title, ``note``, the rest, and the navigation."""
    title, _, rest = readme.partition("\n")
    course = "\n".join(f"notebooks/{Path(n).stem}" for n in NOTEBOOKS)
    return (
        f"{title}\n\n{note}\n{rest.rstrip()}\n\n"
        f"```{{toctree}}\n:hidden:\n:caption: The course\n\n{course}\nexplorer\n```\n\n"
        "```{toctree}\n:hidden:\n:caption: Teaching and reference\n\n"
        "notebooks/README\napi/index\n```\n"
    )


def readme_images(markdown: str) -> list[str]:
    """The local image paths of ``![alt](path)`` in ``markdown``, in order."""
    paths = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)
    return [p for p in dict.fromkeys(paths) if "://" not in p]


def api_modules() -> list[str]:
    """The modules of ``helpers``: in the order its docstring lists them, then any other."""
    import pkgutil

    import helpers

    found = sorted(f"helpers.{m.name}" for m in pkgutil.iter_modules(helpers.__path__))
    listed = [m for m in dict.fromkeys(re.findall(r":mod:`(helpers\.\w+)`", helpers.__doc__))]
    return [m for m in listed if m in found] + [m for m in found if m not in listed]


def api_pages(modules: Sequence[str]) -> dict[str, str]:
    """The API reference: ``{path: MyST text}``, an index page and one page per module.

    autodoc writes reStructuredText, so its directives sit in ``{eval-rst}`` blocks."""
    toctree = "\n".join(modules)
    pages = {
        "api/index.md": (
            "# API reference: helpers\n\n```{eval-rst}\n.. automodule:: helpers\n```\n\n"
            f"```{{toctree}}\n:maxdepth: 1\n\n{toctree}\n```\n"
        )
    }
    for module in modules:
        pages[f"api/{module}.md"] = (
            f"# {module}\n\n```{{eval-rst}}\n.. automodule:: {module}\n   :members:\n```\n"
        )
    return pages


# ------------------------------------------------------------ the explorer page


def explorer_epsilons() -> np.ndarray:
    """The live explorer's slider stops: 0 to ``EPS_MAX`` (0.5) in steps of ``EPS_STEP``."""
    from helpers.explorer import EPS_MAX, EPS_STEP

    return np.round(np.arange(0, EPS_MAX + 1e-9, EPS_STEP), 4)


def explorer_digits(per_class: int = DIGITS_PER_CLASS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``per_class`` test digits of each class: (test indices, raw ``uint8``
    images ``(n, 28, 28)``, labels), ordered by class."""
    from helpers.data import NUM_CLASSES, load_mnist

    mnist = load_mnist()
    index = np.concatenate(
        [np.flatnonzero(mnist.y_test == digit)[:per_class] for digit in range(NUM_CLASSES)]
    )
    return index, mnist.x_test[index], mnist.y_test[index].astype(np.int64)


def fgsm_at_every_stop(
    model: Any, x: np.ndarray, y: np.ndarray, epsilons: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """FGSM against ``model`` at every budget: the direction ``sign(grad_x loss)`` of each
    image, ``int8 (n, 28, 28)``, computed once, and the probabilities ``(n, len(epsilons),
    10)`` of ``clip(x + eps * sign, 0, 1)`` for each ``eps``."""
    from helpers.attacks import apply_signs, fgsm_signs
    from helpers.model import predict_probabilities

    signs = fgsm_signs(model, x, y)
    x_adv = np.concatenate([apply_signs(x, signs, eps) for eps in epsilons])
    probabilities = predict_probabilities(model, x_adv).reshape(len(epsilons), len(x), -1)
    return signs[..., 0].astype(np.int8), probabilities.transpose(1, 0, 2)


def pgd_at_stops(
    model: Any, x: np.ndarray, y: np.ndarray, epsilons: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The live explorer's PGD (``helpers.explorer.EPS_ATTACKS``) against ``model`` at each
    budget of ``epsilons`` (all > 0): the adversarial images in 256 grey levels, ``uint8
    (n, len(epsilons), 28, 28)``, for the page to draw, and the probabilities ``(n,
    len(epsilons), 10)`` of the images PGD found (before rounding)."""
    from helpers.explorer import EPS_ATTACKS
    from helpers.model import predict_probabilities

    (attack,) = EPS_ATTACKS.values()
    x_adv = np.stack([attack(model, x, y, float(eps)) for eps in epsilons], axis=1)
    probabilities = predict_probabilities(model, x_adv.reshape(-1, *x.shape[1:]))
    grey = np.rint(255 * x_adv[..., 0]).astype(np.uint8)
    return grey, probabilities.reshape(len(x), len(epsilons), -1)


def _per_mille(probabilities: np.ndarray) -> list[int]:
    return np.rint(1000 * probabilities).astype(int).ravel().tolist()


def _base64(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.uint8).tobytes()).decode()


def explorer_data(models: Mapping[str, Any], provenance: str) -> dict[str, Any]:
    """What the explorer page needs, as JSON-ready values: the digits (``uint8``, base64),
    and per model its label, FGSM's signs (+1, base64) and probabilities for every digit
    and stop, PGD's images (``uint8``, base64) and probabilities for every digit and
    :data:`PGD_EVERY`-th stop but the first (ε = 0: the clean digit). Probabilities are in
    per mille, as flat lists: digit by digit, stop by stop, class by class."""
    from helpers.attacks import EPS
    from helpers.data import preprocess_images
    from helpers.explorer import EPS_ATTACKS
    from helpers.registry import MODELS

    index, raw, labels = explorer_digits()
    x, epsilons = preprocess_images(raw), explorer_epsilons()
    pgd_epsilons = epsilons[PGD_EVERY::PGD_EVERY]
    entries = []
    for name, model in models.items():
        signs, probabilities = fgsm_at_every_stop(model, x, labels, epsilons)
        pgd_images, pgd_probabilities = pgd_at_stops(model, x, labels, pgd_epsilons)
        entries.append(
            {
                "name": name,
                "label": MODELS[name].label if name in MODELS else name,
                "signs": _base64(signs + 1),
                "probs": _per_mille(probabilities),
                "pgd_images": _base64(pgd_images),
                "pgd_probs": _per_mille(pgd_probabilities),
            }
        )
    return {
        "epsilons": epsilons.tolist(),
        "start_stop": int(np.abs(epsilons - EPS).argmin()),
        "pgd_name": next(iter(EPS_ATTACKS)),
        "pgd_every": PGD_EVERY,
        "labels": labels.tolist(),
        "test_index": index.tolist(),
        "clean": _base64(raw),
        "models": entries,
        "provenance": provenance,
    }


def explorer_page() -> str:
    """The site's page around the explorer (``book/explorer.md``), its numbers filled in."""
    from helpers.explorer import EPS_MAX, EPS_STEP

    values = {
        "@N_DIGITS@": str(10 * DIGITS_PER_CLASS),
        "@PER_CLASS@": str(DIGITS_PER_CLASS),
        "@EPS_MAX@": f"{EPS_MAX:g}",
        "@EPS_STEP@": f"{EPS_STEP:g}",
        "@PGD_STEP@": f"{PGD_EVERY * EPS_STEP:g}",
        "@PAGE@": EXPLORER_PAGE,
    }
    text = (BOOK_DIR / "explorer.md").read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def explorer_html(data: Mapping[str, Any]) -> str:
    """The self-contained explorer page: the template with ``data`` written into it."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (BOOK_DIR / EXPLORER_PAGE).read_text().replace("/*EXPLORER_DATA*/null", payload)


# ------------------------------------------------------------------------- build


def _shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def missing_inputs(executed: Path, models_dir: Path) -> list[str]:
    """What the build needs and does not find: executed notebooks, models (empty if all
    are there). A notebook whose run failed counts as missing."""
    missing = []
    for name in NOTEBOOKS:
        path = executed / name
        if not path.exists():
            missing.append(f"{_shown(path)} (the executed notebook)")
        elif load_notebook(path).get("metadata", {}).get("papermill", {}).get("exception"):
            missing.append(f"{_shown(path)} (its run stopped with an error)")
    for name in EXPLORER_MODELS:
        path = models_dir / f"{name}.keras"
        if not path.exists():
            missing.append(f"{_shown(path)} (a model for the explorer page)")
    return missing


def missing_message(missing: Sequence[str]) -> str:
    return (
        "cannot build the website; missing:\n"
        + "".join(f"  - {item}\n" for item in missing)
        + "`make reproduce` executes the notebooks at full size and keeps them in "
        "artifacts/executed/ (the models in artifacts/models/).\n"
        "For a small site from the CI-size run: `make notebooks`, then\n"
        "  make book EXECUTED=build/ci/executed MNIST_AD_ARTIFACTS=build/ci/artifacts"
    )


def stage_pages(executed: Path, src: Path) -> str:
    """Write every source page of the site into ``src`` (emptied first); return the run's
    size (:func:`run_size`)."""
    shutil.rmtree(src, ignore_errors=True)
    (src / "notebooks").mkdir(parents=True)
    notebooks = {name: load_notebook(executed / name) for name in NOTEBOOKS}
    screenshot = EXPLORER_SCREENSHOT.read_bytes()
    for name, nb in notebooks.items():
        save_notebook(site_notebook(nb, screenshot), src / "notebooks" / name)
    shutil.copyfile(NOTEBOOKS_DIR / "README.md", src / "notebooks" / "README.md")

    size = run_size(notebooks)
    end = notebooks[NOTEBOOKS[-1]].get("metadata", {}).get("papermill", {}).get("end_time")
    readme = (PROJECT_ROOT / "README.md").read_text()
    (src / "index.md").write_text(home_page(readme, size_note(size, (end or "")[:10])))
    for image in readme_images(readme):
        (src / image).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / image, src / image)
    for path, text in api_pages(api_modules()).items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text)
    (src / "explorer.md").write_text(explorer_page())
    return size


def build_book(executed: Path, out: Path = DEFAULT_OUT) -> Path:
    """Build the website from the notebooks in ``executed`` and the models in
    ``<artifacts>/models``; return the path of its ``index.html``.

    Raises ``FileNotFoundError`` (with :func:`missing_message`) when an input is missing
    and ``RuntimeError`` when Sphinx fails or warns.
    """
    missing = missing_inputs(executed, artifacts_dir() / "models")
    if missing:
        raise FileNotFoundError(missing_message(missing))
    from sphinx.cmd.build import build_main

    from helpers.artifacts import load_model
    from helpers.registry import MODELS

    size = stage_pages(executed, out / "src")
    html_dir, doctrees = out / "html", out / "doctrees"
    shutil.rmtree(html_dir, ignore_errors=True)
    shutil.rmtree(doctrees, ignore_errors=True)
    # -W: a Sphinx warning (a broken or ambiguous cross-reference, a page left out of the
    # table of contents) fails the build, as it would otherwise pass unseen
    args = ["-b", "html", "-q", "-W", "--keep-going", "-c", str(BOOK_DIR), "-d", str(doctrees)]
    if build_main([*args, str(out / "src"), str(html_dir)]) != 0:
        raise RuntimeError("Sphinx failed to build the website, or warned (its messages are above)")

    run = {
        "full": "the full-size run",
        "classroom": "the classroom-size run",
        "ci": "the CI-size run",
    }.get(size, "a custom run")
    *others, last = (MODELS[name].label for name in EXPLORER_MODELS)
    labels = f"{', the '.join(others)} and the {last}" if others else last
    provenance = (
        f"Models: the {labels} of {run} ({_shown(artifacts_dir() / 'models')}); "
        "precomputed by make book (tooling/book.py)."
    )
    models = {name: load_model(name) for name in EXPLORER_MODELS}
    (html_dir / EXPLORER_PAGE).write_text(explorer_html(explorer_data(models, provenance)))
    return html_dir / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--executed",
        type=Path,
        help="folder of executed notebooks (default: <artifacts>/executed of make reproduce)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: build/book")
    args = parser.parse_args(argv)
    executed = args.executed or artifacts_dir() / "executed"
    start = time.perf_counter()
    try:
        index = build_book(executed.resolve(), args.out.resolve())
    except (FileNotFoundError, RuntimeError) as err:
        print(err, file=sys.stderr)
        return 1
    print(f"website: {_shown(index)} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    from tooling.quiet import quiet_stderr

    quiet_stderr()  # before TensorFlow is imported: its start-up notices are noise here
    sys.exit(main())
