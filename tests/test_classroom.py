"""nbgrader assignments, end to end at CI size (``make classroom``, after ``make notebooks``).

Builds the student release from the course notebooks into a scratch course folder and
proves: the release holds no solution text; autograding gives the unchanged student
version zero, cell by cell, and the instructor version full marks, without the grader
failing; validation passes on the instructor version and, inverted, on the student
version; and the student version runs without an error up to its first exercise, and in
every cell outside the exercises.

Each version of a notebook is executed once, and every check reads that execution:

- the student version of every graded notebook is autograded (``python -m tooling.classroom
  grade``, the command behind ``make grade``, in the sandbox);
- the instructor version of every graded notebook was executed by ``make notebooks`` at the
  same size (``build/ci/executed``, checked to be of the current notebooks): nbgrader's own
  scoring and validation (:func:`tooling.classroom.validate_executed`) read those outputs.
  The instructor version goes through the whole grading pipeline only for INSTRUCTOR_GRADED
  (one notebook without written answers, one with), as do five more students in the
  sandbox test below;
- ``nbgrader validate``, the students' own tool, executes a notebook itself, so it runs on
  notebook 01 only (both versions); its checks are applied to every other execution without
  running anything again.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from conftest import skip_or_fail
from nbgrader.utils import determine_grade

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from tooling import classroom, written
from tooling.series import NOTEBOOKS, cell_text

pytestmark = pytest.mark.classroom
GRADED = classroom.graded_notebooks()
INSTRUCTOR, STUDENT, ABSENT = "instructor", "unchanged-student", "absent-student"
VALIDATED = [n for n in GRADED if n.startswith("01")]
INSTRUCTOR_GRADED = [n for n in GRADED if n.split("_")[0] in ("01", "03")]
#: The instructor version of every notebook as `make notebooks` executed it at CI size.
EXECUTED = PROJECT_ROOT / "build" / "ci" / "executed"
_WRITTEN = {
    classroom.assignment_id(n): written.written_answers(classroom.load_notebook(NOTEBOOKS_DIR / n))
    for n in GRADED
}
#: Per assignment, the points of its written answers (graded by hand, not by nbgrader).
WRITTEN_POINTS = {aid: sum(a["max_score"] for a in answers) for aid, answers in _WRITTEN.items()}
WRITTEN_IDS = {a["question"] for answers in _WRITTEN.values() for a in answers}


def _path(course: Path, folder: str, notebook: str) -> Path:
    return course / folder / classroom.assignment_id(notebook) / notebook


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _env(course: Path, threads: int) -> dict[str, str]:
    """nbgrader's environment for ``course``, TensorFlow on ``threads`` threads."""
    env = classroom.nbgrader_env(course)
    env["MNIST_AD_ARTIFACTS"] = str(course / "artifacts")
    env.update({k: str(threads) for k in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")})
    env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


def _validate(course: Path, version: str) -> tuple[bool, str]:
    """``nbgrader validate`` of notebook 01's version ``source`` (instructor) or, inverted,
    ``release`` (student), on one thread."""
    paths = [_path(course, version, n) for n in VALIDATED]
    return classroom.validate(paths, course, invert=version == "release", env=_env(course, 1))


def _grade(course: Path, student: str, version: str, notebooks: list[str], threads: int) -> dict:
    """Grade ``notebooks`` of one version (``source``: instructor, ``release``: student)
    as the submission of ``student``, with ``python -m tooling.classroom grade``."""
    # The student hands in nbgrader's layout, the instructor a flat folder: both are read.
    incoming = course / "incoming" / student
    for notebook in notebooks:
        target = incoming / classroom.assignment_id(notebook) if version == "release" else incoming
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(_path(course, version, notebook), target / notebook)
    (incoming.parent / ABSENT).mkdir(exist_ok=True)  # handed in nothing
    command = ["grade", str(incoming.parent), "--course-dir", str(course)]
    graded = subprocess.run(
        [sys.executable, "-m", "tooling.classroom", *command],
        cwd=PROJECT_ROOT,
        env=_env(course, threads),
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "grade_returncode": graded.returncode,
        "grade_log": graded.stdout + graded.stderr,
        "grades": course / "grades.csv",
        "by_exercise": course / "grades_by_exercise.csv",
        "written": course / "grades_written.csv",
        "autograded": course / "autograded" / student,
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """The assignments built at CI size, as `make assignments SIZE=ci` does."""
    course = tmp_path_factory.mktemp("classroom") / "course"
    classroom.build_assignments("ci", course)
    return course


@pytest.fixture(scope="module")
def chains(course) -> dict[str, dict]:
    """Side by side: the student's every notebook graded (the long one, on two threads);
    and on one thread, both versions of notebook 01 validated, then the instructor's
    INSTRUCTOR_GRADED graded, then the sandbox round (:func:`_sandbox_round`), which fills
    the core the student's notebooks leave idle."""
    # A short name: the kernels' Unix sockets lie deep inside it (grading.SOCKET_PATH_MAX)
    student_course = course.parent / "student"
    shutil.copytree(course, student_course)

    def instructor_side() -> dict[str, dict]:
        checks = {v: _validate(c, v) for v, c in (("source", course), ("release", student_course))}
        graded = _grade(course, INSTRUCTOR, "source", INSTRUCTOR_GRADED, 1)
        return {"validated": checks, **graded, "sandbox": _sandbox_round(course)}

    with ThreadPoolExecutor(max_workers=2) as pool:
        student = pool.submit(_grade, student_course, STUDENT, "release", GRADED, 2)
        instructor = pool.submit(instructor_side)
        return {INSTRUCTOR: instructor.result(), STUDENT: student.result()}


@pytest.fixture(scope="module")
def executed() -> dict[str, dict]:
    """``make notebooks``' executions of the instructor version, each checked to be of the
    current course notebook (same cells, same sources, but for the parameters)."""
    found = {}
    for notebook in GRADED:
        path = EXECUTED / notebook
        if not path.exists():
            skip_or_fail(f"no executed copy {path}: run `make notebooks` first", "classroom test")
        nb = classroom.load_notebook(path)
        course = classroom.load_notebook(NOTEBOOKS_DIR / notebook)

        def sources(n: dict) -> list[str]:
            return [
                cell_text(c)
                for c in n["cells"]
                if not {"parameters", "injected-parameters"} & set(c["metadata"].get("tags", []))
            ]

        if sources(nb) != sources(course):
            pytest.fail(f"{path} is of an older {notebook}: run `make notebooks` again")
        found[notebook] = nb
    return found


def test_every_notebook_with_exercises_is_released(course):
    assert {"01_data_and_preprocessing", "02_training_a_cnn", "03_fgsm_attack"} <= {
        classroom.assignment_id(n) for n in GRADED
    }
    assert classroom.course_assignments(course) == [classroom.assignment_id(n) for n in GRADED]
    for notebook in NOTEBOOKS:
        released = _path(course, "release", notebook)
        assert released.exists() == (notebook in GRADED), notebook
    for notebook in GRADED:
        nbformat.validate(nbformat.read(_path(course, "release", notebook), as_version=4))


def test_student_kit_is_the_course_without_solutions(course):
    top = classroom.COURSE_ID
    with zipfile.ZipFile(course / "student-kit.zip") as kit:
        names = set(kit.namelist())
        for needed in ("helpers/__init__.py", "data/mnist.npz", "requirements.txt", "STUDENTS.md"):
            assert f"{top}/{needed}" in names
        for notebook in NOTEBOOKS:
            text = kit.read(f"{top}/notebooks/{notebook}").decode()
            assert classroom.SOLUTION_MARKERS[0] not in text, notebook
            assert classroom.HIDDEN_TEST_MARKERS[0] not in text, notebook
            if notebook in GRADED:
                assert text == _path(course, "release", notebook).read_text()


@pytest.mark.parametrize("notebook", GRADED)
def test_release_contains_no_solution_text(course, notebook):
    source = classroom.load_notebook(NOTEBOOKS_DIR / notebook)
    release = classroom.load_notebook(_path(course, "release", notebook))
    text = "\n".join(classroom.cell_text(c) for c in release["cells"])
    for marker in (*classroom.SOLUTION_MARKERS, *classroom.HIDDEN_TEST_MARKERS):
        assert marker not in text, f"{marker!r} left in the student version"
    hidden = [line for line in classroom.solution_lines(source) if line in text]
    assert not hidden, f"solution or hidden-test lines in the student version: {hidden}"
    solutions = [c for c in release["cells"] if classroom.is_solution_cell(c)]
    assert solutions
    for cell in solutions:  # nbgrader's stubs: code to write, or a written answer
        stub = written.STUB if written.is_written_cell(cell) else "raise NotImplementedError()"
        assert stub in classroom.cell_text(cell), classroom.cell_text(cell)
    assert all(c.get("outputs", []) == [] for c in release["cells"])


def test_nbgrader_validate_passes_on_both_versions_of_notebook_01(chains):
    """The students' own tool: the instructor version passes, the student version fails
    every test (``--invert``)."""
    assert len(VALIDATED) == 1
    for version, (ok, log) in chains[INSTRUCTOR]["validated"].items():
        assert ok, (version, log[-4000:])


@pytest.mark.parametrize("notebook", GRADED)
def test_validation_of_each_execution(chains, executed, notebook):
    """nbgrader's validation of the executions made once: the instructor version (as
    ``make notebooks`` and, for INSTRUCTOR_GRADED, the autograder ran it) passes every
    test; the unchanged student version, as the autograder ran it, passes none."""
    aid = classroom.assignment_id(notebook)
    assert classroom.validate_executed(EXECUTED / notebook) == {}
    if notebook in INSTRUCTOR_GRADED:
        autograded = chains[INSTRUCTOR]["autograded"] / aid / notebook
        assert classroom.validate_executed(autograded) == {}
    student = chains[STUDENT]["autograded"] / aid / notebook
    assert classroom.validate_executed(student, invert=True) == {}
    found = classroom.validate_executed(student)  # and it is a failure, not an empty check
    graded = [c for c in executed[notebook]["cells"] if classroom.is_graded_cell(c)]
    assert len(found["failed"]) == len(graded), found


@pytest.mark.parametrize("notebook", GRADED)
def test_instructor_version_as_executed_scores_full_marks(executed, notebook):
    """nbgrader's scoring rule on ``make notebooks``' execution: every autograded test cell
    of the instructor version earns its points (no error, nothing on stderr); written
    answers are left for the teacher. The same rule scores the autograded notebooks."""
    cells = [c for c in executed[notebook]["cells"] if classroom.is_graded_cell(c)]
    assert cells
    for cell in map(nbformat.from_dict, cells):
        score, points = determine_grade(cell)
        hand = cell.metadata.nbgrader["grade_id"] in WRITTEN_IDS
        assert (score is None) if hand else (score == points > 0), cell_text(cell)[:300]


def test_autograde_full_marks_for_instructor_zero_for_unchanged_student(chains):
    for student in (INSTRUCTOR, STUDENT):
        assert chains[student]["grade_returncode"] == 0, chains[student]["grade_log"][-4000:]
    ids = [classroom.assignment_id(n) for n in GRADED]
    for student, full in ((INSTRUCTOR, True), (STUDENT, False)):
        handed_in = INSTRUCTOR_GRADED if full else GRADED
        rows = _read_csv(chains[student]["grades"])
        assert [(r["student"], r["assignment"]) for r in rows] == [
            (name, a) for name in sorted((student, ABSENT)) for a in ids
        ]
        for row in rows:
            if row["student"] == ABSENT or f"{row['assignment']}.ipynb" not in handed_in:
                assert (row["status"], float(row["score"])) == ("missing", 0.0), row
                continue
            # a written answer waits for the teacher; an untouched one scores 0 at once
            by_hand = WRITTEN_POINTS[row["assignment"]]
            status = "needs manual grading" if full and by_hand else "graded"
            assert row["status"] == status and float(row["max_score"]) > 0, row
            expected = float(row["max_score"]) - by_hand if full else 0.0
            assert float(row["score"]) == expected, (row, chains[student]["grade_log"][-4000:])
        cells = _read_csv(chains[student]["by_exercise"])
        graded_cells = sum(
            classroom.is_graded_cell(c)
            for n in handed_in
            for c in classroom.load_notebook(NOTEBOOKS_DIR / n)["cells"]
        )
        assert len(cells) == graded_cells
        for cell in cells:
            hand = cell["exercise"] in WRITTEN_IDS
            expected = float(cell["max_score"]) if full and not hand else 0.0
            assert float(cell["score"]) == expected, cell


def test_written_answers_are_collected_for_the_teacher(chains):
    """grades_written.csv: every written answer handed in, the instructor's (the model
    answer) left for the teacher's points, the untouched stub already at 0."""
    for student, full in ((INSTRUCTOR, True), (STUDENT, False)):
        handed_in = INSTRUCTOR_GRADED if full else GRADED
        asked = {a["question"] for n in handed_in for a in _WRITTEN[classroom.assignment_id(n)]}
        assert asked, "no written answer among the notebooks handed in"
        rows = _read_csv(chains[student]["written"])
        assert {r["question"] for r in rows} == asked
        assert {r["student"] for r in rows} == {student}  # the absent student wrote nothing
        for row in rows:
            if full:
                assert "Model answer" in row["answer"] and row["points"] == "", row
            else:
                assert row["answer"] == written.STUB and float(row["points"]) == 0, row


@pytest.mark.parametrize("notebook", GRADED)
def test_student_version_runs_up_to_the_first_exercise(chains, notebook):
    """The autograder ran the unchanged student version: no cell before the first exercise
    failed, and no cell outside the exercises did (they never use a student's answer)."""
    executed = classroom.load_notebook(
        chains[STUDENT]["autograded"] / classroom.assignment_id(notebook) / notebook
    )
    cells = executed["cells"]
    first = next(i for i, c in enumerate(cells) if classroom.is_solution_cell(c))
    assert any(c["cell_type"] == "code" for c in cells[:first])
    for i, cell in enumerate(cells):
        if i < first or not (classroom.is_solution_cell(cell) or classroom.is_graded_cell(cell)):
            errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
            assert not errors, f"cell {i} failed: {classroom.cell_text(cell)[:200]}"


EVIL = """
import json, socket
from pathlib import Path
tried = {{}}
def attempt(name, action):
    try:
        action()
        tried[name] = "done"
    except Exception as err:
        tried[name] = type(err).__name__
attempt("read solutions", lambda: Path({source!r}).read_text())
attempt("read instructor notebook", lambda: Path({instructor!r}).read_text())
attempt("write course library", lambda: Path({library!r}).write_text("x = 1"))
attempt("write gradebook", lambda: open({gradebook!r}, "ab").write(b"x"))
attempt("edit other submission", lambda: Path({victim!r}).write_text("{{}}"))
attempt("network", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2))
print("TRIED", json.dumps(tried))
"""


#: The sandbox round's limit per notebook: notebook 01 takes about 12 s to grade alone and
#: shares the cores with the student's series here; the endless notebook runs into it.
SANDBOX_TIMEOUT = 60


def _sandbox_round(course: Path) -> dict:
    """Grade notebook 01 as handed in by Victor and by .dave (the instructor version), by
    Mallory (an attack on the grader in a cell of her notebook), and as a broken (by
    ``*``), a linked (by ``_carol``) and an endless notebook, two students at a time in the
    sandbox; ``{"skipped": why}`` where the sandbox is not available. Odd folder names
    hand in the notebooks that need no kernel: the listing and staging of every name are
    unit-tested (``tests/test_classroom_tools.py``), here they pass the whole pipeline."""
    import hashlib
    import socket
    import tempfile

    from tooling import grading, sandbox

    ok, reason = sandbox.is_available()
    if not ok:
        return {"skipped": reason}
    notebook = VALIDATED[0]
    instructor = _path(course, "source", notebook)
    subs = Path(tempfile.mkdtemp(dir=course.parent, prefix="sandbox-")) / "subs"
    for student in ("victor", ".dave"):
        (subs / student).mkdir(parents=True)
        shutil.copy(instructor, subs / student / notebook)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    nb = nbformat.read(instructor, as_version=4)
    evil = EVIL.format(
        source=str(instructor),
        instructor=str(NOTEBOOKS_DIR / notebook),
        library=str(PROJECT_ROOT / "helpers" / "evil.py"),
        gradebook=str(course / "gradebook.db"),
        victim=str(subs / "victor" / notebook),
        port=listener.getsockname()[1],
    )
    nb.cells.insert(2, nbformat.v4.new_code_cell(evil))
    (subs / "mallory").mkdir()
    nbformat.write(nb, subs / "mallory" / notebook)
    (subs / "*").mkdir()
    (subs / "*" / notebook).write_text('{"cells": [')  # broken
    (subs / "_carol").mkdir()
    (subs / "_carol" / notebook).symlink_to(instructor)
    endless = nbformat.read(instructor, as_version=4)  # sleeps: the limit, not the cores
    endless.cells.insert(
        2, nbformat.v4.new_code_cell("import time\nwhile True:\n    time.sleep(1)")
    )
    (subs / "endless").mkdir()
    nbformat.write(endless, subs / "endless" / notebook)

    def digests() -> dict[Path, str]:
        watched = (course / "gradebook.db", subs / "victor" / notebook)
        return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in watched}

    before = digests()
    with pytest.MonkeyPatch.context() as patch:  # this process only: the others are their own
        patch.setitem(grading.NOTEBOOK_TIMEOUT, "ci", SANDBOX_TIMEOUT)
        out = grading.grade(subs, course, subs.parent / "grades.csv", jobs=2)
    listener.close()
    mallory = course / "autograded" / "mallory" / classroom.assignment_id(notebook) / notebook
    return {
        "rows": {(r["student"], r["assignment"]): r for r in _read_csv(out)},
        "unchanged": digests() == before,
        "mallory": nbformat.read(mallory, as_version=4),
    }


def test_a_malicious_submission_changes_nothing_but_its_own_grade(chains):
    """Mallory's notebook tries to read the solutions, write the course library, the
    gradebook and Victor's submission, and reach the network; everything fails, Victor
    keeps full marks, and the odd folders, a broken, a linked and an endless notebook are
    graded or reported one by one, under their names as given (:func:`_sandbox_round`)."""
    import json

    found = chains[INSTRUCTOR]["sandbox"]
    if "skipped" in found:
        pytest.skip(found["skipped"])
    aid = classroom.assignment_id(VALIDATED[0])
    rows = found["rows"]
    full = float(rows[("victor", aid)]["max_score"])
    for student in ("victor", ".dave", "mallory"):  # names taken literally
        assert rows[(student, aid)]["status"] == "graded", rows[(student, aid)]
        assert float(rows[(student, aid)]["score"]) == full, rows[(student, aid)]
    assert (
        rows[("*", aid)]["status"].startswith("not graded: ")
        and "readable" in rows[("*", aid)]["status"]
    )
    assert "symbolic link" in rows[("_carol", aid)]["status"]
    assert float(rows[("_carol", aid)]["score"]) == 0.0
    assert rows[("endless", aid)]["status"] == f"timed out after {SANDBOX_TIMEOUT} s"
    assert found["unchanged"], "the gradebook or Victor's notebook was changed"
    assert not (PROJECT_ROOT / "helpers" / "evil.py").exists()
    printed = "".join(o.get("text", "") for o in found["mallory"].cells[2].outputs)
    tried = json.loads(printed.split("TRIED", 1)[1])
    assert tried["read solutions"] == "FileNotFoundError", tried
    assert tried["read instructor notebook"] == "FileNotFoundError", tried
    assert all(v != "done" for v in tried.values()), tried
