"""Fast checks of the classroom machinery and of the exercise cells (no nbgrader runs).

The end-to-end proof (release, validate, autograde) is tests/test_classroom.py
(``make classroom``); these run with the unit tests.
"""

from __future__ import annotations

import json
import re
import tomllib
import zipfile
from pathlib import Path

import pytest

from helpers.paths import NOTEBOOKS_DIR
from tooling import classroom, written
from tooling.series import NOTEBOOKS, parameters_for

GRADED = classroom.graded_notebooks()
GRADE_ID = re.compile(r"^[a-zA-Z0-9_\-]+$")


def _toy_notebook(parameters: str) -> dict:
    return {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# toy"},
            {
                "cell_type": "code",
                "metadata": {"tags": ["parameters"]},
                "source": parameters,
                "outputs": [],
                "execution_count": None,
            },
        ]
    }


def test_set_parameters_keeps_comments_and_says_what_changed():
    nb = _toy_notebook("SEED = 0\nN_TEST = None  # images to attack (None: all)\nEPS = 0.25")
    classroom.set_parameters(nb, {"N_TEST": 500, "SEED": 3}, label="size ci")
    assert classroom.cell_text(nb["cells"][1]).splitlines() == [
        "SEED = 3  # size ci, course default 0",
        "N_TEST = 500  # size ci, course default None: images to attack (None: all)",
        "EPS = 0.25",
    ]
    with pytest.raises(KeyError, match="EPOCHS"):
        classroom.set_parameters(nb, {"EPOCHS": 1})


@pytest.mark.parametrize("size", ["ci", "classroom"])
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_each_size_applies_to_every_notebook(notebook, size):
    nb = classroom.load_notebook(NOTEBOOKS_DIR / notebook)
    classroom.set_parameters(nb, parameters_for(notebook, size), label=f"size {size}")
    text = classroom.cell_text(classroom.parameters_cell(nb))
    for name, value in parameters_for(notebook, size).items():
        assert f"{name} = {value!r}  # size {size}" in text


def test_every_size_of_the_series_can_be_released_and_graded():
    from tooling import grading

    assert set(classroom.SIZES) == {"full", "classroom", "ci"}
    for size in classroom.SIZES:
        assert classroom.CELL_TIMEOUT[size] <= grading.NOTEBOOK_TIMEOUT[size]
    assert classroom.CELL_TIMEOUT["ci"] < classroom.CELL_TIMEOUT["classroom"]
    assert classroom.CELL_TIMEOUT["classroom"] < classroom.CELL_TIMEOUT["full"]
    with pytest.raises(ValueError, match="size must be one of"):
        classroom.build_assignments("tiny")


def test_notebooks_01_to_03_have_exercises():
    assert GRADED[:3] == list(NOTEBOOKS[:3])
    assert all(n in NOTEBOOKS for n in GRADED)


@pytest.mark.parametrize("notebook", GRADED)
def test_exercise_cells_follow_the_conventions(notebook):
    """What nbgrader needs, checked without running it (see notebooks/README.md)."""
    nb = classroom.load_notebook(NOTEBOOKS_DIR / notebook)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(classroom.nbgrader_metadata(c) for c in code[:2]), (
        "the parameters and setup cells are course cells, not exercises"
    )
    ids = [
        classroom.nbgrader_metadata(c)["grade_id"]
        for c in nb["cells"]
        if "nbgrader" in c.get("metadata", {})
    ]
    assert len(ids) == len(set(ids)) and all(GRADE_ID.match(i) for i in ids), ids
    solutions = graded = 0
    for cell in nb["cells"]:
        meta, text = classroom.nbgrader_metadata(cell), classroom.cell_text(cell)
        if not meta:
            for marker in (*classroom.SOLUTION_MARKERS, *classroom.HIDDEN_TEST_MARKERS):
                assert marker not in text, f"{marker!r} outside an exercise cell"
            continue
        assert meta["schema_version"] == 3
        if written.is_written_cell(cell):  # a written answer: one cell, graded by hand
            assert not meta["locked"] and meta["points"] > 0, meta["grade_id"]
            lines = [line.strip() for line in text.splitlines()]
            assert lines[0] == classroom.SOLUTION_MARKERS[0], meta["grade_id"]
            assert lines[-1] == classroom.SOLUTION_MARKERS[1], meta["grade_id"]
            continue
        if meta["solution"]:
            solutions += 1
            assert cell["cell_type"] == "code" and not meta["grade"] and not meta["locked"]
            assert [line.strip() for line in text.splitlines()].count(
                classroom.SOLUTION_MARKERS[0]
            ) == 1 and classroom.SOLUTION_MARKERS[1] in text, meta["grade_id"]
        if meta["grade"]:
            graded += 1
            assert cell["cell_type"] == "code" and meta["locked"] and meta["points"] > 0
            assert classroom.SOLUTION_MARKERS[0] not in text
            assert text.count(classroom.HIDDEN_TEST_MARKERS[0]) == text.count(
                classroom.HIDDEN_TEST_MARKERS[1]
            )
    assert solutions >= 1 and graded >= 1


def _course(tmp_path, notebook="01_data_and_preprocessing.ipynb"):
    course = tmp_path / "course"
    aid = classroom.assignment_id(notebook)
    nb = classroom.load_notebook(NOTEBOOKS_DIR / notebook)
    classroom.save_notebook(nb, course / "source" / aid / notebook)
    (course / "classroom.json").write_text(json.dumps({"size": "full", "assignments": [aid]}))
    return course, aid, nb


def test_stage_student_reads_both_layouts_and_resets_parameters(tmp_path):
    from tooling import grading

    course, aid, nb = _course(tmp_path)
    notebook = f"{aid}.ipynb"
    changed = json.loads(json.dumps(nb))
    classroom.parameters_cell(changed)["source"] = "SEED = 5\nN_SHOW = 1000"
    subs = tmp_path / "subs"
    classroom.save_notebook(changed, subs / "ada" / notebook)  # flat
    classroom.save_notebook(changed, subs / "*" / aid / notebook)  # nbgrader's layout
    (subs / "*" / aid / "timestamp.txt").write_text("2026-11-20 10:00:00 UTC")
    (subs / "cyd").mkdir()  # handed in nothing
    (subs / ".dave").mkdir()
    (subs / "_carol").mkdir()
    assert [p.name for p in grading.students_in(subs)] == ["*", ".dave", "_carol", "ada", "cyd"]
    for student in ("ada", "*"):
        scratch = tmp_path / "scratch" / student
        found = grading.stage_student(subs / student, course, scratch)
        assert found == {
            aid: grading.Submission(grading.find_submission(subs / student, aid).path, None)
        }
        staged = classroom.load_notebook(
            scratch / "course" / "submitted" / grading.SCRATCH_STUDENT / aid / notebook
        )
        assert classroom.cell_text(classroom.parameters_cell(staged)) == classroom.cell_text(
            classroom.parameters_cell(nb)
        )
        assert (scratch / "course" / "source" / aid / notebook).exists()
    stamp = tmp_path / "scratch" / "*" / "course" / "submitted" / "student" / aid / "timestamp.txt"
    assert stamp.exists()
    assert grading.find_submission(subs / "cyd", aid) == grading.Submission(None, None)


def test_a_broken_or_linked_notebook_is_a_problem_of_that_student_only(tmp_path):
    from tooling import grading

    aid = "01_data_and_preprocessing"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / f"{aid}.ipynb").write_text('{"cells": [')
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / f"{aid}.ipynb").symlink_to(NOTEBOOKS_DIR / f"{aid}.ipynb")
    (tmp_path / "folder-link").symlink_to(tmp_path / "linked", target_is_directory=True)
    broken = grading.find_submission(tmp_path / "broken", aid)
    assert broken.path is None and "not a readable notebook" in broken.problem
    for student in ("linked", "folder-link"):
        linked = grading.find_submission(tmp_path / student, aid)
        assert linked.path is None and "symbolic link" in linked.problem, linked


def test_grade_without_a_release_says_what_to_do(tmp_path, capsys):
    (tmp_path / "subs" / "ada").mkdir(parents=True)
    code = classroom.main(["grade", str(tmp_path / "subs"), "--course-dir", str(tmp_path / "c")])
    assert code == 1
    assert "make assignments" in capsys.readouterr().err


def test_solution_lines_are_the_lines_that_would_give_the_answer_away():
    source = (
        "def f(x):\n    ### BEGIN SOLUTION\n    return max(\n        x, 0\n    )\n\n"
        "    ### END SOLUTION\nassert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(-1) == 0\n"
        "### END HIDDEN TESTS"
    )
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": source, "outputs": []}]}
    assert classroom.solution_lines(nb) == ["return max(", "x, 0", "assert f(-1) == 0"]


def test_student_kit_ships_the_course_library_and_no_tooling(tmp_path):
    """The kit is for students: the course library ``helpers`` and nothing of the project's
    tooling (reproduction, the series runner, the classroom itself), and its pyproject
    installs with what it ships."""
    kit = classroom.write_student_kit(tmp_path, [], NOTEBOOKS_DIR)
    top = classroom.COURSE_ID
    with zipfile.ZipFile(kit) as zf:
        names = zf.namelist()
        pyproject = tomllib.loads(zf.read(f"{top}/pyproject.toml").decode())
    modules = {Path(n).stem for n in names if n.startswith(f"{top}/helpers/")}
    assert {"__init__", "attacks", "data", "model", "paths", "training"} <= modules
    assert not modules & {"reproduce", "classroom", "series", "run_facts"}, sorted(modules)
    assert not [n for n in names if n.startswith((f"{top}/tooling/", f"{top}/benchmarks/"))]
    listed = pyproject["tool"]["setuptools"].get("packages")
    if isinstance(listed, list):  # an explicit list must name only packages the kit has
        assert all(f"{top}/{p}/__init__.py" in names for p in listed), listed


def test_each_grading_run_gets_its_own_private_folder_or_a_clear_error():
    import tempfile

    from tooling import grading

    with tempfile.TemporaryDirectory(prefix="runs-") as short:  # pytest's own folders are long
        base = Path(short)
        first, second = grading.new_run_folder(base), grading.new_run_folder(base)
        assert first != second and first.parent == second.parent == base
        assert first.stat().st_mode & 0o077 == 0  # the kernels' connection keys live in it
        deep = base / ("x" * (grading.SOCKET_PATH_MAX - len(str(base))))
        with pytest.raises(ValueError, match="too long for the kernels' sockets"):
            grading.new_run_folder(deep)
        assert list(deep.iterdir()) == []  # nothing left behind
