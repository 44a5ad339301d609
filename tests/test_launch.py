"""The launch links: the Colab cell in every notebook and the Binder (repo2docker) files.

Fast and offline: the Colab cell is executed here with every way of starting a process
replaced, once as it runs on a laptop and once with a stand-in ``google.colab`` module.
"""

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
import types

import pytest
from packaging.specifiers import SpecifierSet

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT

PATHS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
MARKER = '"google.colab" in sys.modules'


def load(path):
    return json.loads(path.read_text())


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def colab_cell(path):
    """The notebook's second code cell, which must be the Colab cell."""
    cells = code_cells(load(path))
    assert len(cells) > 1 and MARKER in "".join(cells[1]["source"]), (
        f"{path.name}: the code cell after the parameters cell is not the Colab cell"
    )
    return cells[1]


def colab_source(path):
    return "".join(colab_cell(path)["source"])


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_colab_cell_follows_the_parameters_cell_with_a_note(path):
    nb = load(path)
    cell = colab_cell(path)
    assert cell["metadata"] == {} and cell["outputs"] == [] and cell["execution_count"] is None
    before = nb["cells"][nb["cells"].index(cell) - 1]
    assert before["cell_type"] == "markdown" and "Colab" in "".join(before["source"]), (
        f"{path.name}: no note above the Colab cell"
    )


def test_colab_cell_is_the_same_everywhere():
    """One cell, copied unchanged, so setting the repository's address is one replacement."""
    sources = {path.name: colab_source(path) for path in PATHS}
    assert len(set(sources.values())) == 1, f"the Colab cells differ: {sorted(sources)}"


def test_colab_cell_names_the_repository_once():
    source = colab_source(PATHS[0])
    tree = ast.parse(source)
    urls = [
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["COURSE_REPOSITORY"]
        and isinstance(node.value, ast.Constant)
    ]
    assert len(urls) == 1 and urls[0].startswith("https://"), urls
    assert source.count(urls[0]) == 1, "the address is written more than once"
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "COURSE_REPOSITORY"]
    assert len(uses) >= 2, "COURSE_REPOSITORY is assigned but never used"


def _forbid_processes(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the Colab cell started a process: {args}")

    for name in ("run", "Popen", "call", "check_call", "check_output", "getoutput"):
        monkeypatch.setattr(subprocess, name, refuse)
    for name in ("system", "popen", "execv", "execvp", "spawnv", "posix_spawn"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_colab_cell_does_nothing_elsewhere(path, monkeypatch, capfd):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = list(sys.path)
    _forbid_processes(monkeypatch)
    namespace = {}
    exec(compile(colab_source(path), f"{path.name}:colab", "exec"), namespace)
    assert sys.path == before
    assert set(namespace) - {"__builtins__"} == {"sys", "COURSE_REPOSITORY"}
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_colab_cell_on_colab_clones_installs_and_imports(monkeypatch):
    """With a stand-in google.colab module: clone (unless already there), install editable
    with the kernel's own pip, and make helpers importable without a restart."""
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    _forbid_processes(monkeypatch)
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    namespace = {}
    exec(compile(colab_source(PATHS[0]), "colab", "exec"), namespace)
    course, url = str(namespace["course"]), namespace["COURSE_REPOSITORY"]
    clone = ["git", "clone", "--depth=1", url, course]
    install = [sys.executable, "-m", "pip", "install", "-q", "-e", course]
    expected = [install] if namespace["course"].exists() else [clone, install]
    assert [cmd for cmd, _ in calls] == expected
    assert all(kw.get("check") for _, kw in calls), "a failed clone or install must stop"
    assert sys.path[0] == course


# --------------------------------------------------------------------------- Binder


def test_binder_reads_the_top_level():
    """repo2docker reads only binder/ or .binder/ when either exists, and a Dockerfile or an
    environment.yml would replace requirements.txt (and make runtime.txt ignored)."""
    for name in ("binder", ".binder", "Dockerfile", "environment.yml"):
        assert not (PROJECT_ROOT / name).exists(), f"{name} would change what Binder builds"


def test_runtime_txt_names_a_python_the_project_supports():
    text = (PROJECT_ROOT / "runtime.txt").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 1
    match = re.fullmatch(r"python-(3\.\d+)", text.strip())
    assert match, f"runtime.txt must read python-3.X, not {text.strip()!r}"
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    # repo2docker refuses a runtime.txt outside pyproject.toml's requires-python.
    assert match[1] in SpecifierSet(pyproject["project"]["requires-python"])


def test_requirements_install_the_course_and_the_widgets():
    lines = [
        line.split("#")[0].strip()
        for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
    ]
    assert "-e ." in lines
    assert any(line.startswith("jupyterlab_widgets") for line in lines), (
        "the explorer's ipywidgets need jupyterlab_widgets in JupyterLab"
    )


def test_post_build_reinstalls_the_course_editable():
    path = PROJECT_ROOT / "postBuild"
    text = path.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert os.access(path, os.X_OK), "postBuild must be executable (git mode 100755)"
    commands = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    assert "set -euo pipefail" in commands, "without set -e a failing step would not stop"
    assert any(re.search(r"pip install .*-e \.$", c) for c in commands)
