"""Graded homework with nbgrader: student releases of the course notebooks, autograding, grades.

The course notebooks in ``notebooks/`` are the instructor version and nbgrader's only
source: exercises are written into them with nbgrader's cell metadata and markers (see
``notebooks/README.md``). A notebook without exercises is **skipped** (not released, not
graded) until it gets some. Everything below is generated into nbgrader's standard course
layout under ``build/classroom/`` (git-ignored)::

    nbgrader_config.py                 written on every build
    classroom.json                     the size of the build and its assignments
    source/<id>/<id>.ipynb             copies of notebooks/<id>.ipynb, parameters at SIZE
    release/<id>/<id>.ipynb            the student versions (no solutions, no hidden tests)
    gradebook.db                       nbgrader's database; it keeps the hidden tests
    submitted/<student>/<id>/<id>.ipynb   copied from a folder of submissions by `grade`
    autograded/<student>/<id>/...      the executed, graded submissions
    student-kit.zip                    the course for students: the course library helpers,
                                       data, requirements, the student versions in notebooks/
    grades.csv, grades_by_exercise.csv the grade tables
    artifacts/                         models the graded notebooks save (MNIST_AD_ARTIFACTS)

One assignment per notebook; its id is the notebook's name without ``.ipynb``.

Size: ``full`` keeps each notebook's own parameters; ``classroom`` writes the values of
:data:`tooling.series.CLASSROOM_PARAMETERS` into the parameters cell of the copies (each
notebook in about a third of its full-size time or less, every effect its text describes
still visible); ``ci`` writes the small CI values of :data:`tooling.series.CI_PARAMETERS`,
so students run (and the autograder re-runs) a notebook in seconds instead of minutes, but
some effects the text describes do not show. Grading resets every submission's parameters
cell to the released one, so all students are graded at the same size whatever they
experimented with.

Command line (``make assignments`` / ``make grade`` call these)::

    python -m tooling.classroom assignments [--size full|classroom|ci]
    python -m tooling.classroom grade SUBMISSIONS [--out grades.csv] [--jobs N] [--no-sandbox]
    python -m tooling.classroom written [--grades grades.csv]   # add hand-graded points
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from tooling.series import (
    NOTEBOOKS,
    SIZES,
    cell_text,
    parameter_statements,
    parameters_cell,
    parameters_for,
)

COURSE_DIR: Path = PROJECT_ROOT / "build" / "classroom"
COURSE_ID = "mnist-adversarial-defense"
#: Seconds one cell may run under `nbgrader validate` and `autograde` (nbgrader's default
#: is 30 s, less than training takes); a student's endless loop costs at most this.
CELL_TIMEOUT: dict[str, int] = {"full": 1800, "classroom": 900, "ci": 300}
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_TEST_MARKERS = ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
VALIDATE_PASSED = "Success! Your notebook passes all the tests."
VALIDATE_INVERT_PASSED = "Success! The notebook does not pass any tests."

_CONFIG = """\
# Written by tooling/classroom.py (`make assignments`); rewritten on every build, do not edit.
# Run nbgrader commands from this folder so that they read this file.
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.Execute.timeout = {timeout}
"""


# --------------------------------------------------------------------------- notebooks


def assignment_id(notebook: str) -> str:
    """The assignment of a course notebook: its file name without ``.ipynb``."""
    return Path(notebook).stem


def load_notebook(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def save_notebook(nb: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def nbgrader_metadata(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The cell's ``metadata.nbgrader`` (empty for a plain course cell)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def is_solution_cell(cell: Mapping[str, Any]) -> bool:
    return bool(nbgrader_metadata(cell).get("solution"))


def is_graded_cell(cell: Mapping[str, Any]) -> bool:
    return bool(nbgrader_metadata(cell).get("grade"))


def has_exercises(nb: Mapping[str, Any]) -> bool:
    """Whether a notebook contains nbgrader exercise cells (solutions or graded tests)."""
    return any(is_solution_cell(c) or is_graded_cell(c) for c in nb["cells"])


def graded_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[str]:
    """The notebooks of :data:`tooling.series.NOTEBOOKS` that have exercises, in order."""
    return [n for n in NOTEBOOKS if has_exercises(load_notebook(notebooks_dir / n))]


def solution_lines(nb: Mapping[str, Any]) -> list[str]:
    """Every line written between solution or hidden-test markers, stripped, that has a
    letter or digit: the text a student release must not contain. (Blank lines and lines
    of brackets alone, such as the ``)`` closing a call, occur in any code and give
    nothing away.)"""
    found = []
    for cell in nb["cells"]:
        inside = False
        for line in cell_text(cell).splitlines():
            stripped = line.strip()
            if stripped in (SOLUTION_MARKERS[0], HIDDEN_TEST_MARKERS[0]):
                inside = True
            elif stripped in (SOLUTION_MARKERS[1], HIDDEN_TEST_MARKERS[1]):
                inside = False
            elif inside and any(ch.isalnum() for ch in stripped):
                found.append(stripped)
    return found


def set_parameters(nb: dict[str, Any], values: Mapping[str, Any], label: str = "changed") -> None:
    """Assign new values in the parameters cell, in place; each changed line keeps its
    comment and says ``label`` and the course's value.

    Raises ``KeyError`` for a name the cell does not assign (the same rule as CI's).
    """
    if not values:
        return
    cell = parameters_cell(nb)
    if cell is None:
        raise KeyError("the notebook has no cell tagged 'parameters'")
    lines = cell_text(cell).splitlines()
    statements = parameter_statements("\n".join(lines))
    missing = set(values) - set(statements)
    if missing:
        raise KeyError(f"not assigned in the parameters cell: {sorted(missing)}")
    # Replace bottom-up so that earlier line numbers stay valid.
    for name in sorted(values, key=lambda n: statements[n].lineno, reverse=True):
        node = statements[name]
        first, last = node.lineno - 1, node.end_lineno - 1
        course_value = ast.get_source_segment("\n".join(lines), node.value)
        comment = lines[last].encode()[node.end_col_offset :].decode().strip().lstrip("#")
        note = f"# {label}, course default {course_value}" + (f":{comment}" if comment else "")
        lines[first : last + 1] = [f"{name} = {values[name]!r}  {note}"]
    cell["source"] = "\n".join(lines)


# --------------------------------------------------------------------------- nbgrader


def nbgrader_env(course_dir: Path) -> dict[str, str]:
    """The environment for nbgrader and the kernels it starts. Graded notebooks save their
    models under ``<course>/artifacts`` unless ``MNIST_AD_ARTIFACTS`` says otherwise, so
    grading never overwrites your own full-size models."""
    env = dict(os.environ)
    env.setdefault("MNIST_AD_ARTIFACTS", str(course_dir / "artifacts"))
    # nbgrader runs the `alembic` script of its own environment to set up the gradebook.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` as the process environment (kernels inherit it), and quiet about the
    SQLAlchemy 2 warnings that nbgrader 0.9's gradebook triggers."""
    from sqlalchemy.exc import SAWarning

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=SAWarning)
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def course_size(course_dir: Path = COURSE_DIR) -> str:
    """The size the course folder was built at; raises if it was never built."""
    info = course_dir / "classroom.json"
    if not info.exists():
        raise FileNotFoundError(f"no assignments in {course_dir}: run `make assignments` first")
    return json.loads(info.read_text())["size"]


def course_assignments(course_dir: Path = COURSE_DIR) -> list[str]:
    """The assignment ids of the course folder, in the course's order."""
    course_size(course_dir)
    return json.loads((course_dir / "classroom.json").read_text())["assignments"]


def nbgrader_api(
    course_dir: Path, size: str, kernel: str | None = None, sockets: Path | None = None
) -> Any:
    """nbgrader's high-level Python API (``NbGraderAPI``) on the course folder, configured
    like its ``nbgrader_config.py``; ``kernel``: the kernel spec to execute notebooks with
    (instead of the notebook's own), reached over Unix sockets named ``sockets-<port>``
    (the grading sandbox of :mod:`tooling.sandbox` has no network)."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(course_dir)
    config.CourseDirectory.course_id = COURSE_ID
    config.Execute.timeout = CELL_TIMEOUT[size]
    if kernel is not None:
        config.Execute.kernel_name = kernel
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(sockets)
    # No exchange here (that is JupyterHub's business): point it at a folder that does not
    # exist, so the API does not look for the system-wide one.
    config.Exchange.root = str(course_dir / "no-exchange")
    return NbGraderAPI(config=config)


def _check(result: Mapping[str, Any], what: str) -> None:
    if not result["success"]:
        raise RuntimeError(
            f"nbgrader {what} failed:\n{result.get('log', '')}{result.get('error', '')}"
        )


def build_assignments(
    size: str = "full",
    course_dir: Path = COURSE_DIR,
    notebooks_dir: Path = NOTEBOOKS_DIR,
) -> list[str]:
    """Copy the graded course notebooks into ``source/`` at ``size`` and generate the
    student version of each (``nbgrader generate_assignment``); return the assignment ids.

    ``source/`` and ``release/`` are rebuilt from scratch; the gradebook, submissions and
    grades stay. A notebook without exercises is skipped, with a note.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    course_dir.mkdir(parents=True, exist_ok=True)
    course_dir = course_dir.resolve()
    (course_dir / "nbgrader_config.py").write_text(
        _CONFIG.format(course_id=COURSE_ID, timeout=CELL_TIMEOUT[size])
    )
    for folder in ("source", "release"):
        shutil.rmtree(course_dir / folder, ignore_errors=True)
    ids = []
    for notebook in NOTEBOOKS:
        nb = load_notebook(notebooks_dir / notebook)
        if not has_exercises(nb):
            print(f"{notebook}: no exercises yet, skipped (not released, not graded)")
            continue
        set_parameters(nb, parameters_for(notebook, size), label=f"size {size}")
        save_notebook(nb, course_dir / "source" / assignment_id(notebook) / notebook)
        ids.append(assignment_id(notebook))
    with _environment(nbgrader_env(course_dir)):
        api = nbgrader_api(course_dir, size)
        for aid in ids:
            _check(
                api.generate_assignment(aid, force=True, create=True), f"generate_assignment {aid}"
            )
    (course_dir / "classroom.json").write_text(
        json.dumps({"size": size, "assignments": ids}, indent=2) + "\n"
    )
    kit = write_student_kit(course_dir, ids, notebooks_dir)
    print(f"released {len(ids)} assignments at size {size!r} in {course_dir / 'release'}")
    print(f"the course for students, with these versions in notebooks/: {kit}")
    return ids


KIT_FILES = ("LICENSE", "README.md", "pyproject.toml", "requirements.txt", "data/README.md")
KIT_README = """\
# Student kit: {course}

The course without its solutions: the graded notebooks in `notebooks/` are the student
versions. Set up once (Python 3.11 or newer), then open the course:

    python3 -m venv .venv
    .venv/bin/pip install -r requirements.txt
    .venv/bin/jupyter lab notebooks

Work in the cells that say `# YOUR CODE HERE` (delete the `raise NotImplementedError()`
line), run the test cell below each exercise, and hand in the notebook file itself.

"Run All" stops at the first exercise you have not solved yet: its test cell fails (or its
`raise NotImplementedError()` runs) and the cells below it do not run. Solve it, or click
the first cell after that exercise and choose Run > "Run Selected Cell and All Below". No
cell outside the exercises needs your answers, so the rest of the notebook runs either way.
Graded: {graded}.
"""


def write_student_kit(
    course_dir: Path, ids: Iterable[str], notebooks_dir: Path = NOTEBOOKS_DIR
) -> Path:
    """``<course>/student-kit.zip``: what a student needs beside the notebooks (the
    course library ``helpers``, MNIST, the requirements; not the project's tooling), with
    the student version of every graded notebook and the course version of the others
    (they hold no solutions)."""
    ids = list(ids)
    kit = course_dir / "student-kit.zip"
    top = Path(COURSE_ID)
    with zipfile.ZipFile(kit, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in KIT_FILES:
            zf.write(PROJECT_ROOT / name, top / name)
        zf.write(
            PROJECT_ROOT / "data" / "mnist.npz", top / "data" / "mnist.npz", zipfile.ZIP_STORED
        )
        for module in sorted((PROJECT_ROOT / "helpers").glob("*.py")):
            zf.write(module, top / "helpers" / module.name)
        for notebook in NOTEBOOKS:
            aid = assignment_id(notebook)
            released = course_dir / "release" / aid / notebook
            zf.write(
                released if aid in ids else notebooks_dir / notebook, top / "notebooks" / notebook
            )
        zf.writestr(
            str(top / "STUDENTS.md"),
            KIT_README.format(course=COURSE_ID, graded=", ".join(ids) or "none"),
        )
    return kit


def validate(
    notebooks: Iterable[Path],
    course_dir: Path = COURSE_DIR,
    *,
    invert: bool = False,
    env: Mapping[str, str] | None = None,
) -> tuple[bool, str]:
    """Run ``nbgrader validate [--invert] NOTEBOOK...`` in the course folder; return
    (success, its output).

    Success means that in every notebook each graded test cell passes, or, with
    ``invert``, that none does (the unchanged student version must fail every test).
    """
    paths = [str(Path(p).resolve()) for p in notebooks]
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", "validate", *(["--invert"] if invert else []), *paths],
        cwd=course_dir,
        env=dict(env) if env is not None else nbgrader_env(course_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    expected = VALIDATE_INVERT_PASSED if invert else VALIDATE_PASSED
    ok = result.returncode == 0 and result.stdout.count(expected) == len(paths)
    return ok, result.stdout + result.stderr


def validate_executed(notebook: Path, *, invert: bool = False) -> dict[str, list]:
    """nbgrader's validation of a notebook that has already run, without running it again.

    ``nbgrader validate`` clears a notebook's outputs and executes it; this applies the same
    checks (nbgrader's own ``Validator``) to the outputs the notebook already holds, such as
    an autograded submission or an executed instructor copy: every graded test cell passes
    (or, with ``invert``, none does) and no locked cell changed. Returns nbgrader's findings,
    ``{}`` when the notebook passes, else lists under ``"failed"``, ``"passed"``,
    ``"changed"`` or ``"type_changed"``.
    """
    from nbgrader.preprocessors import CheckCellMetadata
    from nbgrader.validator import Validator

    validator = Validator(invert=invert)
    validator.preprocessors = [CheckCellMetadata]  # nbgrader's list less ClearOutput, Execute
    return validator.validate(str(Path(notebook).resolve()))


# --------------------------------------------------------------------------- grading
# Grading itself is tooling/grading.py: one student at a time, each kernel in a sandbox.


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["student"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tooling.classroom", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("assignments", help="build the student release (nbgrader)")
    build.add_argument("--size", choices=SIZES, default="full")
    build.add_argument("--course-dir", type=Path, default=COURSE_DIR)
    grading = commands.add_parser("grade", help="autograde a folder of submissions")
    grading.add_argument("submissions", type=Path, help="one folder per student")
    grading.add_argument("--course-dir", type=Path, default=COURSE_DIR)
    grading.add_argument("--out", type=Path, default=None, help="CSV (default: course dir)")
    grading.add_argument("--jobs", type=int, default=1, help="students graded side by side")
    grading.add_argument(
        "--no-sandbox", action="store_true", help="run the kernels with your rights (trusted only)"
    )
    hand = commands.add_parser("written", help="add the hand-graded written answers' points")
    hand.add_argument("--grades", type=Path, default=COURSE_DIR / "grades.csv")
    args = parser.parse_args(argv)
    try:
        if args.command == "assignments":
            build_assignments(args.size, args.course_dir)
        elif args.command == "written":
            from tooling.written import add_written

            grades = args.grades
            out = add_written(grades, grades.with_name(f"{grades.stem}_written.csv"))
            print(f"wrote {out}")
        else:
            from tooling.grading import grade

            grade(
                args.submissions, args.course_dir, args.out, jobs=args.jobs,
                isolated=not args.no_sandbox,
            )  # fmt: skip
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
